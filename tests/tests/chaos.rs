//! A store behind a bad network: a share of all requests answered 503 or
//! 429, cut, stalled, or failed after the write happened. Ten thousand jobs
//! and a snapshot still land, a restore equals the database, and the metrics
//! count the retries.

use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_tests::writers::rows;
use jobvault_tests::{
    Backend, Chaos, Daemon, Emulator, Proxy, StoreReader, Workspace, eventually, free_port,
    jobvault, stderr,
};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(300);

fn metric(daemon: &Daemon, name: &str) -> f64 {
    daemon
        .scrape()
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn ten_thousand_jobs_and_a_snapshot_land_through_a_bad_network() {
    // The filesystem backend keeps its pace for ten thousand objects.
    let data = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let emulator = Emulator::start_on(
        free_port(),
        proxy_port,
        Backend::Filesystem(data.path().to_owned()),
    );
    let proxy = Proxy::start(proxy_port, emulator.address(), Duration::ZERO);
    let url = format!("gs://{}", emulator.new_bucket("chaos"));
    let workspace = Workspace::new();
    let jobs: Vec<_> = (0..10_000)
        .map(|n| json!({ "id": format!("job-{n:05}"), "name": format!("job {n}") }))
        .collect();
    workspace.put_jobs(&jobs);
    proxy.set_chaos(
        Some(Chaos {
            unavailable: 0.05,
            throttled: 0.05,
            cut: 0.03,
            stall: 0.02,
            stall_for: Duration::from_secs(2),
            fail_after_write: 0.05,
            cut_body: 0.0,
        }),
        0x5eed,
    );
    workspace.trigger("nightly", "");
    let daemon = Daemon::start(&workspace, Some(&proxy.endpoint()), &url, "200ms", &[]);
    // Checks go to the emulator itself, past the proxy.
    let direct = format!("http://{}", emulator.address());
    let reader = StoreReader::connect(&url, Some(&direct));
    let db = JobDb::open(&workspace.db()).unwrap();
    eventually("every job in the bucket and a snapshot", PATIENCE, || {
        // A trigger whose three attempts all met faults is given up, as the
        // original gives it up; the next night's comes: drop another.
        if !workspace.triggers().join("nightly").exists() && reader.names("db-backup/").is_empty() {
            workspace.trigger("nightly", "");
        }
        (db.cursor().unwrap().seq == 10_000 && !reader.names("db-backup/").is_empty()).then_some(())
    });
    let counts = proxy.chaos_counts();
    for fault in ["503", "429", "cut", "stall", "fail after write"] {
        assert!(
            counts.get(fault).copied().unwrap_or(0) > 0,
            "no {fault}: {counts:?}"
        );
    }
    let errors = metric(
        &daemon,
        "jobvault_upload_errors_total{database=\"task-scheduler\",kind=\"job\"}",
    );
    assert!(errors > 0.0, "retries are counted: {}", daemon.scrape());
    let backed_up = metric(&daemon, "jobvault_jobs_backed_up_total");
    assert!(backed_up >= 10_000.0, "{backed_up}");
    proxy.set_chaos(None, 0);

    let restored = workspace.path().join("restored.db");
    let output = jobvault(Some(&direct))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        rows(&restored),
        rows(&workspace.db()),
        "the restore equals the database"
    );
}
