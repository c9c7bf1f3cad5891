//! Checksums end to end. Every upload declares its CRC32C, which GCS checks
//! before it keeps an object; the emulator does not check it (it keeps a
//! body whose declared CRC32C is wrong), so jobvault also compares the CRC32C
//! the store reports for what it kept with its own. A proxy flips a byte on
//! the way to show both catch the damage. Downloads are checked by the gzip
//! CRC32 inside every object, computed before upload.

use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_core::job_object::decode_job_object;
use jobvault_tests::{
    Backend, Daemon, Emulator, Proxy, StoreReader, Workspace, eventually, free_port, jobvault,
    stderr, stdout, today,
};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

fn emulator_behind_proxy() -> (Emulator, Proxy) {
    let proxy_port = free_port();
    let emulator = Emulator::start_on(free_port(), proxy_port, Backend::Memory);
    let proxy = Proxy::start(proxy_port, emulator.address(), Duration::ZERO);
    (emulator, proxy)
}

#[test]
fn a_job_object_damaged_on_the_way_is_caught_and_sent_again() {
    let (emulator, proxy) = emulator_behind_proxy();
    let url = format!("gs://{}", emulator.new_bucket("damaged-job"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[]);
    let daemon = Daemon::start(&workspace, Some(&proxy.endpoint()), &url, "200ms", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    // The first snapshot is in: from here on the one upload damaged is the
    // job's.
    daemon.settled();
    proxy.corrupt_next_uploads(1);
    workspace.put_jobs(&[json!({ "id": "j1", "name": "Build" })]);
    let db = JobDb::open(&workspace.db()).unwrap();
    eventually("the job in the bucket", PATIENCE, || {
        (db.cursor().unwrap().seq == 1).then_some(())
    });
    let object = format!("job-backup/{}/j1.job", today());
    let stored = decode_job_object(&reader.get(&object)).expect("the object is whole");
    assert_eq!(
        Some(stored),
        db.get(&jobvault_core::JobId::new("j1").unwrap()).unwrap()
    );
    assert!(daemon.log().contains("CRC32C"), "{}", daemon.log());
    assert!(
        daemon
            .scrape()
            .contains("jobvault_upload_errors_total{database=\"task-scheduler\",kind=\"job\"} 1"),
        "{}",
        daemon.scrape()
    );
}

/// A snapshot of `jobs` jobs of `bytes` random characters each.
fn database(workspace: &Workspace, jobs: usize, bytes: usize) {
    let mut rng = fastrand::Rng::with_seed(7);
    let jobs: Vec<_> = (0..jobs)
        .map(|n| {
            let noise: String = (0..bytes).map(|_| rng.alphanumeric()).collect();
            json!({ "id": format!("job-{n}"), "name": noise })
        })
        .collect();
    workspace.put_jobs(&jobs);
}

fn backup(proxy: &Proxy, workspace: &Workspace, url: &str) -> std::process::Output {
    jobvault(Some(&proxy.endpoint()))
        .args(["backup", "--bucket", url, "--db"])
        .arg(workspace.db())
        .output()
        .unwrap()
}

#[test]
fn a_snapshot_damaged_on_the_way_fails_and_leaves_no_object() {
    // One request for a small snapshot; a resumable upload past 8 MiB.
    for (jobs, bytes) in [(10, 100), (3_000, 4_000)] {
        let (emulator, proxy) = emulator_behind_proxy();
        let url = format!("gs://{}", emulator.new_bucket("damaged-snapshot"));
        let workspace = Workspace::new();
        database(&workspace, jobs, bytes);
        proxy.corrupt_next_uploads(1);
        let damaged = backup(&proxy, &workspace, &url);
        assert_eq!(
            damaged.status.code(),
            Some(1),
            "{jobs} jobs: {}",
            stdout(&damaged)
        );
        assert!(
            stderr(&damaged).contains("CRC32C"),
            "{jobs} jobs: {}",
            stderr(&damaged)
        );
        let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
        assert_eq!(
            reader.names("db-backup/"),
            Vec::<String>::new(),
            "{jobs} jobs"
        );
        let whole = backup(&proxy, &workspace, &url);
        assert!(whole.status.success(), "{jobs} jobs: {}", stderr(&whole));
        assert_eq!(reader.names("db-backup/").len(), 1, "{jobs} jobs");
    }
}
