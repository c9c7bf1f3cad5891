//! What the sections share: the jobs and databases they measure with, the
//! emulator behind its latency proxy, and the measurements taken from
//! outside a process (its CPU from `/proc`, a command's time and peak
//! memory from GNU time). Every wait here and in the sections has a
//! timeout: a bench that hangs tells nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jobvault::db::JobDb;
use jobvault::sample;
use jobvault_core::{Cursor, JobId, Timestamp};
use jobvault_tests::{Backend, Emulator, Proxy, Workspace, eventually_every, free_port, runtime};

/// What the proxy adds to every store request: about GCS's latency.
pub const LATENCY: Duration = Duration::from_millis(20);

/// How long one command a section runs may take before the bench gives up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Runs `work` on the shared runtime; panics naming `what` after `timeout`.
pub fn run_within<T>(what: &str, timeout: Duration, work: impl Future<Output = T>) -> T {
    runtime()
        .block_on(async { tokio::time::timeout(timeout, work).await })
        .unwrap_or_else(|_| panic!("timed out after {timeout:?}: {what}"))
}

/// Waits until the daemon's cursor at `db` covers sequence `seq`.
pub fn wait_for_cursor(db: &JobDb, seq: u64, timeout: Duration) {
    eventually_every(
        &format!("the daemon's cursor to reach {seq}"),
        timeout,
        Duration::from_millis(20),
        || (db.cursor().unwrap().seq >= seq).then_some(()),
    );
}

/// A job as the scheduler writes them: a few hundred bytes of JSON.
pub fn realistic_job(n: usize, rng: &mut fastrand::Rng) -> (JobId, String) {
    let created = Timestamp::from_unix_seconds(1_479_333_865 + n as i64);
    sample::body(sample::scheduler_id(created, n), created, rng)
}

pub fn database_with_jobs(workspace: &Workspace, jobs: usize) {
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
    put_jobs(&mut db, jobs, JOBS_SEED);
}

/// The seed of the jobs [`database_with_jobs`] writes.
pub const JOBS_SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// Writes jobs 0 to `jobs` (new bodies for those that exist), a thousand a
/// commit, with bodies drawn from `seed`.
pub fn put_jobs(db: &mut JobDb, jobs: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for start in (0..jobs).step_by(1000) {
        let batch: Vec<_> = (start..jobs.min(start + 1000))
            .map(|n| realistic_job(n, &mut rng))
            .collect();
        db.put(&batch).unwrap();
    }
}

/// A database of about `mib` MiB of job-like rows.
pub fn database_of_size(workspace: &Workspace, mib: u64) {
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut n = 0;
    while std::fs::metadata(workspace.db())
        .map(|m| m.len())
        .unwrap_or(0)
        < mib << 20
    {
        let batch: Vec<_> = (n..n + 5000).map(|i| realistic_job(i, &mut rng)).collect();
        db.put(&batch).unwrap();
        n += 5000;
    }
    // Closing the last connection folds the WAL into the file.
    drop(db);
}

pub fn emulator_with_proxy() -> (Emulator, Proxy, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let emulator = Emulator::start_on(
        free_port(),
        proxy_port,
        Backend::Filesystem(data.path().to_owned()),
    );
    let proxy = Proxy::start(proxy_port, emulator.address(), LATENCY);
    (emulator, proxy, data)
}

/// `command` run under `timeout`: killed if still running after half an
/// hour, so that it fails the bench instead of hanging it.
pub fn bounded(command: Command) -> Command {
    let timeout = format!("{}s", COMMAND_TIMEOUT.as_secs());
    wrapped("timeout", &["--signal=KILL", &timeout], &command)
}

/// `program` with `args`, running `command` with its environment.
fn wrapped(program: &str, args: &[&str], command: &Command) -> Command {
    let mut wrapper = Command::new(program);
    wrapper
        .args(args)
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapper.env(key, value),
            None => wrapper.env_remove(key),
        };
    }
    wrapper
}

/// Wall seconds and peak memory (KiB) of a command, from GNU time; it runs
/// [`bounded`].
pub fn timed(command: Command) -> (f64, u64) {
    let command = bounded(command);
    let report = tempfile::NamedTempFile::new().unwrap();
    let report_path = report.path().to_str().expect("temporary paths are UTF-8");
    let mut time = wrapped(
        "/usr/bin/time",
        &["-f", "%e %M", "-o", report_path],
        &command,
    );
    let status = time.stdout(std::process::Stdio::null()).status().unwrap();
    assert!(status.success(), "{command:?} failed");
    let text = std::fs::read_to_string(report.path()).unwrap();
    let mut fields = text.split_whitespace();
    (
        fields.next().unwrap().parse().unwrap(),
        fields.next().unwrap().parse().unwrap(),
    )
}

/// User and system CPU time a process has used, from `/proc`, whose times
/// are in USER_HZ: 100 a second on every Linux.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Marks every job of the database at `path` as in the bucket, as in a
/// database jobvault has kept for a while: a new one's daemon would first
/// upload every job.
pub fn mark_backed_up(path: &Path) {
    JobDb::open(path)
        .unwrap()
        .mark_backed_up(|newest, counter| Cursor {
            seq: newest.max(counter),
            time: jobvault::clock::now(),
        })
        .unwrap();
}

/// The database's versions, job by job.
pub fn versions(path: &Path) -> Vec<(String, u64)> {
    let mut all: Vec<_> = JobDb::open(path)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.id.to_string(), e.seq))
        .collect();
    all.sort();
    all
}
