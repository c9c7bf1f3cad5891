//! The store goes away for a while: nothing written meanwhile may be lost.

use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_tests::{
    Backend, Daemon, Emulator, StoreReader, Workspace, database_versions, eventually,
};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

fn metric(daemon: &Daemon, name: &str) -> f64 {
    daemon
        .scrape()
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

#[test]
fn every_job_written_while_the_store_was_down_lands_when_it_returns() {
    let data = tempfile::tempdir().unwrap();
    let mut emulator = Emulator::start(Backend::Filesystem(data.path().to_owned()));
    let bucket = emulator.new_bucket("outage");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "before", "name": "written before the outage" })]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    eventually("the first job", PATIENCE, || {
        (reader.newest_versions() == database_versions(&workspace)).then_some(())
    });

    emulator.stop();
    for round in 0..5 {
        let jobs: Vec<_> = (0..6)
            .map(|i| json!({ "id": format!("during-{}", (round + i) % 8), "name": format!("round {round}") }))
            .collect();
        workspace.put_jobs(&jobs);
    }
    workspace.put_jobs(&[json!({ "id": "before", "name": "changed during the outage" })]);
    eventually("upload errors while the store is down", PATIENCE, || {
        (metric(
            &daemon,
            "jobvault_upload_errors_total{database=\"task-scheduler\",kind=\"job\"}",
        ) > 0.0)
            .then_some(())
    });
    assert!(metric(&daemon, "jobvault_pending_jobs") > 0.0);
    let cursor_during = JobDb::open(&workspace.db()).unwrap().cursor().unwrap();

    emulator.restart();
    let expected = database_versions(&workspace);
    assert_eq!(expected.len(), 9);
    eventually("every version in the bucket", PATIENCE, || {
        (reader.newest_versions() == expected).then_some(())
    });
    eventually("the cursor to catch up", PATIENCE, || {
        let cursor = JobDb::open(&workspace.db()).unwrap().cursor().unwrap();
        (cursor.seq == *expected.values().max().unwrap()).then_some(())
    });
    assert!(
        cursor_during.seq < *expected.values().max().unwrap(),
        "the cursor waited during the outage"
    );
    eventually("no pending jobs", PATIENCE, || {
        (metric(&daemon, "jobvault_pending_jobs") == 0.0).then_some(())
    });
}
