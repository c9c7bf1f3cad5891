//! A stop drains: on SIGTERM the daemon uploads every change committed
//! before the signal, within its grace, and exits 0; if the grace runs out
//! it says how many changes it left and exits 1. Before, a stop abandoned
//! what it had read and not sent: 246 of 300 changes committed just before
//! it waited for a next start that a retired host never has.

use std::collections::BTreeMap;
use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_core::job_object::decode_job_object;
use jobvault_tests::{
    Backend, Daemon, Emulator, StoreReader, Workspace, database_versions, eventually, writers,
};
use serde_json::json;

fn newest_in_bucket(reader: &StoreReader) -> BTreeMap<String, u64> {
    let mut newest = BTreeMap::new();
    for object in reader.list("job-backup/") {
        let envelope = decode_job_object(&reader.get(&object.name)).unwrap();
        let held = newest.entry(envelope.id.to_string()).or_insert(0);
        *held = (*held).max(envelope.seq);
    }
    newest
}

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
    assert_eq!(newest_in_bucket(&reader), expected, "{log}");
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
