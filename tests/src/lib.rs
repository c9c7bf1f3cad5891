//! Helpers for jobvault's end-to-end tests: the real `jobvault` binary, a real
//! GCS emulator, real SQLite files in a temporary directory.

mod emulator;
mod http;
mod proxy;
pub mod writers;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jobvault::db::JobDb;
use jobvault::store::{BucketUrl, Store};
use jobvault_core::job_object::encode_job_object;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::{Framing, job_object};
use jobvault_core::{Envelope, Timestamp};

pub use emulator::{Backend, Emulator, emulator_binary, free_port, test_ca};
pub use http::{get as http_get, patch_json as http_patch_json, post_json as http_post_json};
pub use proxy::{Chaos, Proxy, Seen};

/// A runtime for the async parts the tests use (store reads, the proxy).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The `jobvault` binary under test: `$JOBVAULT_BIN`, or the one cargo built
/// beside this executable (tests run from `target/<profile>/deps/`, the
/// benchmark from `target/<profile>/`).
pub fn jobvault_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("JOBVAULT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the executable's own path");
    let dir = exe.parent().expect("executables live in a folder");
    let candidates = [dir.join("jobvault"), dir.join("../jobvault")];
    candidates
        .iter()
        .find(|path| path.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no jobvault binary beside {}; build it first (scripts/test does): cargo build -p jobvault",
                exe.display()
            )
        })
}

/// `jobvault` with the emulator's address in its environment.
pub fn jobvault(emulator_endpoint: Option<&str>) -> Command {
    let mut command = Command::new(jobvault_bin());
    command.env_remove("RUST_LOG");
    match emulator_endpoint {
        Some(endpoint) => command.env("STORAGE_EMULATOR_HOST", endpoint),
        None => command.env_remove("STORAGE_EMULATOR_HOST"),
    };
    command
}

/// Runs a command to completion, feeding it `stdin`.
pub fn run_with_stdin(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A finished command's standard output, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A finished command's standard error, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Takes a snapshot of `db` with `jobvault backup` to `url` (through the
/// emulator at `emulator_endpoint`, if any); fails the test if it fails, and
/// returns the object it printed.
pub fn back_up_once(emulator_endpoint: Option<&str>, url: &str, db: &Path) -> String {
    let output = jobvault(emulator_endpoint)
        .args(["backup", "--bucket", url, "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).trim().to_owned()
}

/// Polls `check` every 50 ms until it gives a value; panics naming `what`
/// after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    eventually_every(what, timeout, Duration::from_millis(50), check)
}

/// Polls `check` every `every` until it gives a value; panics naming `what`
/// after `timeout`.
pub fn eventually_every<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// A temporary directory holding a job database and a work directory.
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("jobs.db")
    }

    pub fn workdir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn triggers(&self) -> PathBuf {
        self.workdir().join("trigger-backup")
    }

    /// The daemon's `TMPDIR`, where it copies the database for a snapshot.
    pub fn tmp(&self) -> PathBuf {
        let tmp = self.dir.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        tmp
    }

    /// Writes jobs with `jobvault jobs put`, one JSON object per job.
    pub fn put_jobs(&self, jobs: &[serde_json::Value]) {
        let lines: String = jobs.iter().map(|job| format!("{job}\n")).collect();
        let mut command = jobvault(None);
        command.args(["jobs", "put", "--db"]).arg(self.db());
        let output = run_with_stdin(command, &lines);
        assert!(
            output.status.success(),
            "jobs put failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Drops a trigger file, as `jobvault trigger` does.
    pub fn trigger(&self, name: &str, content: &str) -> PathBuf {
        fs::create_dir_all(self.triggers()).unwrap();
        let path = self.triggers().join(name);
        fs::write(&path, content).unwrap();
        path
    }
}

/// A job's id and a small JSON body for it, as a writer would store them.
pub fn body(id: &str, name: &str) -> (jobvault_core::JobId, String) {
    let job = serde_json::json!({ "id": id, "name": name });
    (jobvault_core::JobId::new(id).unwrap(), job.to_string())
}

/// Every job in the workspace's database: its id and its sequence number.
pub fn database_versions(workspace: &Workspace) -> BTreeMap<String, u64> {
    JobDb::open(&workspace.db())
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.id.to_string(), e.seq))
        .collect()
}

/// A `jobvault run` process, killed if still running when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    pub metrics: SocketAddr,
}

impl Daemon {
    /// Starts `jobvault run` for the workspace against `bucket`, checking
    /// every `interval`; extra arguments follow.
    pub fn start(
        workspace: &Workspace,
        emulator_endpoint: Option<&str>,
        bucket: &str,
        interval: &str,
        extra: &[&str],
    ) -> Daemon {
        let log = workspace.path().join(format!("daemon-{}.log", free_port()));
        let mut command = jobvault(emulator_endpoint);
        command
            .arg("run")
            .arg("--db")
            .arg(workspace.db())
            .args(["--bucket", bucket, "--interval", interval])
            .arg("--workdir")
            .arg(workspace.workdir())
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("TMPDIR", workspace.tmp())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        let mut child = command.spawn().expect("jobvault run starts");
        let metrics = eventually("the daemon to start", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "jobvault run exited with {status}: {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let text = fs::read_to_string(&log).ok()?;
            // Text logs say metrics=http://…, JSON ones "metrics":"http://…".
            let key = ["metrics=http://", r#""metrics":"http://"#]
                .into_iter()
                .find(|key| text.contains(key))?;
            let start = text.find(key)? + key.len();
            let end = start + text[start..].find("/metrics")?;
            text[start..end].parse().ok()
        });
        Daemon {
            child: Some(child),
            log,
            metrics,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon has checked its destination and, if it was
    /// new, its first snapshot has landed and been recorded.
    pub fn settled(&self) {
        eventually(
            "the destination's first snapshot",
            Duration::from_secs(60),
            || {
                let metrics = self.scrape();
                let new = gauge(&metrics, "jobvault_new_destination")?;
                let caught_up = gauge(&metrics, "jobvault_incremental_backup_timestamp_seconds")?;
                (new == 0.0 && caught_up > 0.0).then_some(())
            },
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `GET /metrics`.
    pub fn scrape(&self) -> String {
        let (status, body) =
            http_get(&format!("http://{}/metrics", self.metrics)).expect("metrics answer");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Sends a signal with `kill` and waits up to `timeout` for the exit.
    fn signal(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        eventually("the daemon to exit", timeout, || child.try_wait().unwrap())
    }

    /// SIGTERM: a graceful stop.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("-TERM", Duration::from_secs(60))
    }

    /// SIGTERM, then the exit status and the whole log, its last lines
    /// included.
    pub fn stop_and_log(mut self) -> (ExitStatus, String) {
        let status = self.signal("-TERM", Duration::from_secs(60));
        (status, self.log())
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        self.signal("-KILL", Duration::from_secs(10));
    }

    /// Waits for the daemon to exit by itself.
    pub fn exited(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        eventually("the daemon to exit", timeout, || child.try_wait().unwrap())
    }

    /// Waits for the daemon to exit by itself; its status and whole log.
    pub fn exited_and_log(self, timeout: Duration) -> (ExitStatus, String) {
        let log = self.log.clone();
        let status = self.exited(timeout);
        (status, fs::read_to_string(log).unwrap_or_default())
    }
}

/// Every job in the database at `db`: its id and body.
pub fn bodies(db: &Path) -> BTreeMap<String, String> {
    jobvault::db::JobDb::open(db)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.id.to_string(), e.body().unwrap().to_owned()))
        .collect()
}

/// The value of the gauge `name` in a scrape of the metrics.
pub fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A connection to a store, for reading what jobvault wrote.
pub struct StoreReader {
    store: Store,
}

impl StoreReader {
    /// Connects to `url` (`gs://` through the emulator at `endpoint`).
    pub fn connect(url: &str, emulator_endpoint: Option<&str>) -> StoreReader {
        let url: BucketUrl = url.parse().expect("a valid bucket URL");
        let store = runtime()
            .block_on(Store::connect_with(
                url,
                emulator_endpoint.map(str::to_owned),
            ))
            .expect("the store connects");
        StoreReader { store }
    }

    pub fn list(&self, prefix: &str) -> Vec<ListedObject> {
        runtime()
            .block_on(self.store.list(prefix))
            .expect("listing works")
    }

    pub fn names(&self, prefix: &str) -> Vec<String> {
        self.list(prefix)
            .into_iter()
            .map(|o| o.name.into_string())
            .collect()
    }

    /// The newest version of each job among the job objects, by id: what
    /// [`database_versions`] should match once every change is in.
    pub fn newest_versions(&self) -> BTreeMap<String, u64> {
        let mut newest = BTreeMap::new();
        for object in self.list("job-backup/") {
            let envelope = jobvault_core::job_object::decode_job_object(&self.get(&object.name))
                .expect("a job object decodes");
            let held = newest.entry(envelope.id.to_string()).or_insert(0);
            *held = (*held).max(envelope.seq);
        }
        newest
    }

    pub fn get(&self, name: &str) -> Vec<u8> {
        runtime()
            .block_on(self.store.get(name))
            .expect("the object exists")
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes a job object into the day folder of `day`, framed as jobvault
    /// frames it, as a jobvault of that day would have; returns its name.
    pub fn put_job(&self, day: Timestamp, envelope: &Envelope) -> String {
        let name = job_object(day, &envelope.id);
        let framing = Framing::for_object(&name, envelope.modified);
        let bytes = encode_job_object(envelope, &framing);
        runtime()
            .block_on(self.store.put(&name, bytes, &framing))
            .expect("the job object is written");
        name.into_string()
    }

    /// Writes `database` as the snapshot `name`, gzipped with `mtime` in
    /// its header, as jobvault frames snapshots.
    pub fn put_snapshot(&self, name: &str, mtime: Timestamp, database: &[u8]) {
        let framing = Framing::for_object(name, mtime);
        let mut gz = flate2::GzBuilder::new()
            .filename(framing.gzip_name.as_bytes())
            .mtime(framing.gzip_mtime.gzip_mtime())
            .write(Vec::new(), flate2::Compression::fast());
        gz.write_all(database)
            .expect("writing to a Vec cannot fail");
        let bytes = gz.finish().expect("writing to a Vec cannot fail");
        runtime()
            .block_on(self.store.put(name, bytes, &framing))
            .expect("the snapshot is written");
    }
}

/// `gcloud` pointed at the emulator, as DESIGN.md §4.8 describes.
pub fn gcloud(emulator_endpoint: &str, args: &[&str]) -> Output {
    Command::new("gcloud")
        .args(args)
        .env(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE",
            format!("{emulator_endpoint}/"),
        )
        .env("CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "true")
        .env("CLOUDSDK_CORE_PROJECT", "test")
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .output()
        .expect("gcloud runs")
}

/// True, after one line on stderr saying `test` skips it, when `gcloud` is not on `PATH`.
pub fn skip_without_gcloud(test: &str) -> bool {
    let installed = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("gcloud").is_file()));
    if !installed {
        eprintln!(
            "{test}: skipped: gcloud is not installed (the Google Cloud CLI reads what jobvault wrote)"
        );
    }
    !installed
}

/// Gunzips bytes (checking the CRC), returning the header and the content.
pub fn gunzip(bytes: &[u8]) -> (flate2::GzHeader, Vec<u8>) {
    use std::io::Read;
    let mut decoder = flate2::read::GzDecoder::new(bytes);
    let mut content = Vec::new();
    decoder
        .read_to_end(&mut content)
        .expect("a valid gzip stream");
    let header = decoder.header().expect("a gzip header").clone();
    (header, content)
}

/// Today's `YYYY/MM/DD`, by the same clock the daemon uses.
pub fn today() -> String {
    jobvault::clock::now().day_path()
}
