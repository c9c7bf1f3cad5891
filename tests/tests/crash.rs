//! `kill -9` in the middle of a snapshot leaves the database copy in TMPDIR;
//! in the middle of a restore, the unfinished database beside the target.
//! The next daemon, or restore, removes it, and only what dead jobvault
//! processes left.

use std::fs;
use std::time::Duration;

use jobvault_tests::{
    Backend, Daemon, Emulator, Proxy, StoreReader, Workspace, back_up_once, eventually, free_port,
    jobvault, stderr,
};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_restarted_daemon_removes_the_snapshot_copy_a_killed_one_left_and_nothing_else() {
    let workspace = Workspace::new();
    let jobs: Vec<_> = (0..500)
        .map(|n| json!({ "id": format!("job-{n}"), "name": "x".repeat(4000) }))
        .collect();
    workspace.put_jobs(&jobs);
    let proxy_port = free_port();
    let emulator = Emulator::start_on(free_port(), proxy_port, Backend::Memory);
    // Every request waits, so the snapshot is still uploading when killed.
    let proxy = Proxy::start(proxy_port, emulator.address(), Duration::from_secs(3));
    let url = format!("gs://{}", emulator.new_bucket("crash"));

    // Not a dead process's copy: one of a running process (this test), and
    // a file of someone else's.
    let tmp = workspace.tmp();
    let running = format!(".jobvault-snapshot-{}-running", std::process::id());
    fs::write(tmp.join(&running), b"in use").unwrap();
    fs::write(tmp.join("unrelated.db"), b"not ours").unwrap();

    workspace.trigger("nightly", "");
    let first = Daemon::start(&workspace, Some(&proxy.endpoint()), &url, "200ms", &[]);
    let copy = format!(".jobvault-snapshot-{}-", first.pid());
    eventually("the snapshot's copy in TMPDIR", PATIENCE, || {
        names(&tmp)
            .iter()
            .any(|name| name.starts_with(&copy))
            .then_some(())
    });
    first.kill();
    let after_kill = names(&tmp);
    assert!(
        after_kill.iter().any(|name| name.starts_with(&copy)),
        "the killed daemon's copy is left: {after_kill:?}"
    );

    proxy.set_delay(Duration::ZERO);
    let second = Daemon::start(&workspace, Some(&proxy.endpoint()), &url, "200ms", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    eventually(
        "the snapshot, on the trigger's second attempt",
        PATIENCE,
        || (!reader.names("db-backup/").is_empty()).then_some(()),
    );
    eventually("the trigger served", PATIENCE, || {
        (!workspace.triggers().join("nightly").exists()).then_some(())
    });
    assert_eq!(names(&tmp), [running, "unrelated.db".to_owned()]);
    assert!(
        second
            .log()
            .contains("removed a snapshot copy a crashed jobvault left"),
        "{}",
        second.log()
    );
}

#[test]
fn a_restore_removes_the_unfinished_database_a_killed_restore_left_beside_its_target() {
    let workspace = Workspace::new();
    let jobs: Vec<_> = (0..500)
        .map(|n| json!({ "id": format!("job-{n}"), "name": format!("{n}").repeat(2000) }))
        .collect();
    workspace.put_jobs(&jobs);
    let emulator = Emulator::start(Backend::Memory);
    let url = format!("gs://{}", emulator.new_bucket("killed-restore"));
    back_up_once(Some(&emulator.endpoint()), &url, &workspace.db());

    let folder = workspace.path().join("restored");
    fs::create_dir(&folder).unwrap();
    let running = format!(".jobvault-restore-{}-running", std::process::id());
    fs::write(folder.join(&running), b"in use").unwrap();
    // A slow link: the snapshot arrives 4 KiB every half second.
    let proxy = Proxy::start(free_port(), emulator.address(), Duration::ZERO);
    proxy.trickle_downloads(Some((4096, Duration::from_millis(500))));
    let mut first = jobvault(Some(&proxy.endpoint()))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(folder.join("first.db"))
        .spawn()
        .unwrap();
    let unfinished = format!(".jobvault-restore-{}-", first.id());
    eventually("the killed restore's unfinished database", PATIENCE, || {
        names(&folder)
            .iter()
            .any(|name| name.starts_with(&unfinished))
            .then_some(())
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let after_kill = names(&folder);
    assert!(
        after_kill.iter().any(|name| name.starts_with(&unfinished)),
        "the killed restore's database is left: {after_kill:?}"
    );

    let second = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(folder.join("second.db"))
        .output()
        .unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(names(&folder), [running, "second.db".to_owned()]);
    assert!(
        stderr(&second).contains("removed a restore's unfinished database a crashed jobvault left"),
        "{}",
        stderr(&second)
    );
}
