//! A stop drains: on SIGTERM the daemon uploads every change committed
//! before the signal, within its grace, and exits 0; if the grace runs out
//! it says how many changes it left and exits 1. Before, a stop abandoned
//! what it had read and not sent: 246 of 300 changes committed just before
//! it waited for a next start that a retired host never has.

use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_tests::{
    Backend, Daemon, Emulator, StoreReader, Workspace, database_versions, eventually, writers,
};
use serde_json::json;

/// 300 commits by an outside writer (Python's `sqlite3`, one transaction
/// each, 100 jobs changed three times), then SIGTERM at once, with the
/// default interval and grace.
#[test]
fn a_burst_then_sigterm_leaves_every_change_in_the_bucket_and_exits_0() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("drain"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "first", "name": "F" })]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "10s", &[]);
    daemon.settled();
    let burst = writers::python(
        &workspace.db(),
        r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
for round in range(3):
    for i in range(100):
        id = f"burst-{i:03}"
        db.execute("INSERT INTO jobs (id, body) VALUES (?, ?) "
                   "ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                   (id, json.dumps({"id": id, "round": round})))
"#,
    );
    assert!(burst.status.success(), "{burst:?}");
    let (status, log) = daemon.stop_and_log();
    assert!(status.success(), "exit status {status}: {log}");
    let expected = database_versions(&workspace);
    assert_eq!(expected.len(), 101);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    assert_eq!(reader.newest_versions(), expected, "{log}");
    let db = JobDb::open(&workspace.db()).unwrap();
    assert_eq!(db.cursor().unwrap().seq, db.newest_seq().unwrap());
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("every change committed before the stop is in the bucket"),
        "{log}"
    );
}

/// The store is gone when the stop comes: nothing can be drained, and the
/// exit says how much was left.
#[test]
fn a_grace_too_short_names_the_changes_left_and_exits_1() {
    let data = tempfile::tempdir().unwrap();
    let mut emulator = Emulator::start(Backend::Filesystem(data.path().to_owned()));
    let url = format!("gs://{}", emulator.new_bucket("short-grace"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "first", "name": "F" })]);
    let daemon = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        &url,
        "200ms",
        &["--grace", "2s"],
    );
    daemon.settled();
    emulator.stop();
    let jobs: Vec<_> = (0..5)
        .map(|i| json!({ "id": format!("late-{i}"), "name": "written while the store is down" }))
        .collect();
    workspace.put_jobs(&jobs);
    eventually(
        "the daemon to read the late jobs",
        Duration::from_secs(30),
        || {
            daemon
                .scrape()
                .contains("jobvault_pending_jobs{database=\"task-scheduler\"} 5")
                .then_some(())
        },
    );
    let (status, log) = daemon.stop_and_log();
    assert_eq!(status.code(), Some(1), "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains(
            "the grace ran out: 5 changes committed before the stop are not in the bucket"
        ),
        "{log}"
    );
}

/// The prefix wiped just before the stop: what the drain uploaded is not
/// all the prefix needs to restore, and the exit says so instead of 0.
#[test]
fn a_stop_after_the_prefix_was_wiped_does_not_say_the_changes_are_safe() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}/wiped", emulator.new_bucket("drain-wiped"));
    let workspace = Workspace::new();
    let jobs: Vec<_> = (0..20)
        .map(|i| json!({ "id": format!("job-{i}"), "name": "before the wipe" }))
        .collect();
    workspace.put_jobs(&jobs);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "10s", &[]);
    daemon.settled();
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    for object in reader.list("") {
        jobvault_tests::runtime()
            .block_on(reader.store().delete(&object.name))
            .unwrap();
    }
    workspace.put_jobs(&[json!({ "id": "after", "name": "after the wipe" })]);
    let (status, log) = daemon.stop_and_log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        !log.contains("every change committed before the stop is in the bucket"),
        "{log}"
    );
}

/// A clean stop closes the daemon's connections, so SQLite folds the WAL
/// into the database and removes it. Left behind, it was read as the WAL of
/// a restored file moved into place, as the runbook says: a hostile trial's
/// restore of the state before a bad deploy came back as the bad deploy.
#[test]
fn a_clean_stop_leaves_no_wal_for_a_restored_file_to_read() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("wal-left"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "good" })]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1s", &[]);
    daemon.settled();
    // Committed while the daemon's connections are open: it stays in the
    // WAL, not folded in by the writer's own close.
    workspace.put_jobs(&[json!({ "id": "a", "name": "bad deploy" })]);
    let mut wal = workspace.db().into_os_string();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    assert!(wal.exists(), "the writer leaves the WAL to the daemon");
    let (status, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    assert!(!wal.exists(), "the WAL is folded in and removed");
    let stored = JobDb::open(&workspace.db()).unwrap();
    let body = stored
        .get(&jobvault_core::JobId::new("a").unwrap())
        .unwrap()
        .unwrap();
    assert!(body.body().unwrap().contains("bad deploy"));
}

/// stderr a pipe whose reader went away (a log shipper that died): the
/// next log line's failure was reported by tracing with an `eprintln!` to
/// the same stderr, which panicked and stopped the daemon, exit 101. Lines
/// that cannot be written are dropped now, and backing up goes on.
#[test]
fn a_daemon_whose_stderr_reader_went_away_goes_on_backing_up() {
    use std::io::Read;
    use std::process::Stdio;

    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "first", "name": "F" })]);
    let root = workspace.path().join("bucket");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}", root.display());
    let mut daemon = jobvault_tests::jobvault(None)
        .args(["run", "--bucket", &url, "--interval", "200ms", "--db"])
        .arg(workspace.db())
        .arg("--workdir")
        .arg(workspace.workdir())
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0; 16];
    daemon
        .stderr
        .take()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    workspace.put_jobs(&[json!({ "id": "after", "name": "A" })]);
    let reader = StoreReader::connect(&url, None);
    eventually("the job written after", Duration::from_secs(30), || {
        assert_eq!(daemon.try_wait().unwrap(), None, "the daemon exited");
        reader
            .names("job-backup/")
            .iter()
            .any(|name| name.ends_with("/after.job"))
            .then_some(())
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
