//! `run --snapshot-every` / `--snapshot-at`: snapshots with no trigger file
//! and no timer outside, for a host without systemd.

use std::time::Duration;

use jobvault_tests::{Daemon, Emulator, StoreReader, Workspace, eventually, jobvault, stderr};
use serde_json::json;

#[test]
fn a_scheduled_snapshot_is_taken_with_no_trigger_file() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("schedule"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let daemon = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        &url,
        "1s",
        &["--snapshot-every", "1min"],
    );
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    // The new destination's own snapshot lands first; the schedule's comes
    // a minute after it.
    let scheduled = eventually("a scheduled snapshot", Duration::from_secs(150), || {
        reader
            .names("db-backup/")
            .into_iter()
            .find(|name| name.contains("/scheduled-"))
    });
    assert!(scheduled.ends_with(".bdb"), "{scheduled}");
    let triggers: Vec<_> = std::fs::read_dir(workspace.triggers()).unwrap().collect();
    assert!(triggers.is_empty(), "no trigger file: {triggers:?}");
    assert!(daemon.log().contains("every 1m"), "{}", daemon.log());
    assert!(daemon.stop().success());
}

#[test]
fn a_schedule_that_is_not_one_is_a_usage_error_naming_the_flag() {
    for (flag, value) in [
        ("--snapshot-at", "3am"),
        ("--snapshot-at", "24:00"),
        ("--snapshot-every", "30s"),
    ] {
        let output = jobvault(None)
            .args([
                "run",
                "--db",
                "x.db",
                "--bucket",
                "gs://b",
                "--workdir",
                "w",
            ])
            .args([flag, value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let said = stderr(&output);
        assert!(said.contains(flag) && said.contains(value), "{said}");
    }
}
