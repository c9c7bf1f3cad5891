//! `jobvault backup` with and without a daemon for the database: through the
//! daemon's core while it runs, in-process otherwise, with the same output.

use std::path::PathBuf;
use std::process::Output;

use jobvault::control::socket_path;
use jobvault_tests::{Daemon, Emulator, StoreReader, Workspace, bodies, jobvault, stderr, stdout};

fn backup(emulator: &Emulator, workspace: &Workspace, bucket: &str) -> Output {
    jobvault(Some(&emulator.endpoint()))
        .args(["backup", "--bucket", &format!("gs://{bucket}"), "--db"])
        .arg(workspace.db())
        .output()
        .unwrap()
}

/// The daemon's count of snapshots it uploaded.
fn snapshots_uploaded(daemon: &Daemon) -> u64 {
    let metrics = daemon.scrape();
    let line = metrics
        .lines()
        .find(|line| {
            line.starts_with("jobvault_uploads_total{") && line.contains("kind=\"snapshot\"")
        })
        .unwrap_or_else(|| panic!("no snapshot upload count in {metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// `jobvault run` for the workspace, with an interval long enough that only
/// its first step runs during a test.
/// A daemon whose first snapshot of its new destination has landed.
fn start_daemon(emulator: &Emulator, workspace: &Workspace, bucket: &str) -> Daemon {
    let bucket = format!("gs://{bucket}");
    let daemon = Daemon::start(workspace, Some(&emulator.endpoint()), &bucket, "1h", &[]);
    daemon.settled();
    daemon
}

/// The snapshots in `reader`'s bucket but the daemon's first.
fn taken_later(reader: &StoreReader) -> Vec<String> {
    let mut names = reader.names("db-backup/");
    names.retain(|n| !n.contains("/new-destination-"));
    names
}

/// Where the daemon of the workspace's database listens: beside the
/// database's canonical path.
fn address_of(workspace: &Workspace) -> PathBuf {
    socket_path(&std::fs::canonicalize(workspace.db()).unwrap())
}

fn workspace_with_a_job() -> Workspace {
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    workspace
}

#[test]
fn backup_while_the_daemon_runs_goes_through_it_and_is_counted() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("through-daemon");
    let workspace = workspace_with_a_job();
    let daemon = start_daemon(emulator, &workspace, &bucket);
    assert!(
        address_of(&workspace).exists(),
        "the daemon says where it listens"
    );
    assert_eq!(snapshots_uploaded(&daemon), 1);

    let output = backup(emulator, &workspace, &bucket);
    assert!(output.status.success(), "{}", stderr(&output));
    let name = stdout(&output).trim().to_owned();
    assert!(
        name.starts_with("db-backup/") && name.contains("/task-scheduler-"),
        "{name}"
    );
    assert_eq!(snapshots_uploaded(&daemon), 2, "the daemon's core took it");
    assert!(
        daemon.log().contains("immediate snapshot done"),
        "{}",
        daemon.log()
    );
    let reader = StoreReader::connect(&format!("gs://{bucket}"), Some(&emulator.endpoint()));
    assert_eq!(taken_later(&reader), [name]);

    assert!(daemon.stop().success());
    assert!(
        !address_of(&workspace).exists(),
        "a stopped daemon leaves no address"
    );
}

#[test]
fn backup_after_the_daemon_was_killed_takes_the_snapshot_itself() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("killed-daemon");
    let workspace = workspace_with_a_job();
    let daemon = start_daemon(emulator, &workspace, &bucket);
    daemon.kill();
    assert!(
        address_of(&workspace).exists(),
        "kill -9 leaves the address behind"
    );

    let output = backup(emulator, &workspace, &bucket);
    assert!(output.status.success(), "{}", stderr(&output));
    let name = stdout(&output).trim().to_owned();
    let reader = StoreReader::connect(&format!("gs://{bucket}"), Some(&emulator.endpoint()));
    assert_eq!(taken_later(&reader), [name]);
}

#[test]
fn backup_to_another_bucket_than_the_daemons_is_taken_here() {
    let emulator = Emulator::shared();
    let watched = emulator.new_bucket("daemon-bucket");
    let other = emulator.new_bucket("other-bucket");
    let workspace = workspace_with_a_job();
    let daemon = start_daemon(emulator, &workspace, &watched);

    let output = backup(emulator, &workspace, &other);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(snapshots_uploaded(&daemon), 1, "the daemon did not take it");
    let reader = StoreReader::connect(&format!("gs://{other}"), Some(&emulator.endpoint()));
    assert_eq!(reader.names("db-backup/"), [stdout(&output).trim()]);
}

#[test]
fn backup_through_a_daemon_of_a_directory_bucket_goes_through_it() {
    // No store of `gs://` was ever made in this process: the request to
    // the daemon must not need one.
    let root = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.path().display());
    let workspace = workspace_with_a_job();
    let daemon = Daemon::start(&workspace, None, &url, "1h", &[]);
    daemon.settled();
    let output = jobvault(None)
        .args(["backup", "--bucket", &url, "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(snapshots_uploaded(&daemon), 2, "the daemon's core took it");
    assert!(daemon.stop().success());
}

/// Another database's snapshot in a prefix a live daemon backs up was the
/// prefix's newest, and a restore gave that database's jobs with the
/// daemon's changes on top. It is refused, naming the holder.
#[test]
fn backup_of_another_database_into_a_prefix_a_daemon_holds_is_refused() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("held-for-another");
    let workspace = workspace_with_a_job();
    let _daemon = start_daemon(emulator, &workspace, &bucket);
    let reader = StoreReader::connect(&format!("gs://{bucket}"), Some(&emulator.endpoint()));
    let before = reader.names("db-backup/");

    let other = workspace_with_a_job();
    let output = backup(emulator, &other, &bucket);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let said = stderr(&output);
    let held_for = std::fs::canonicalize(workspace.db()).unwrap();
    assert!(
        said.contains(&format!("for {}", held_for.display()))
            && said.contains("give this database a prefix of its own"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert_eq!(reader.names("db-backup/"), before, "nothing was uploaded");
}

/// A second name (a hard link) for a database: SQLite keeps a WAL per name,
/// so a backup by the link beside a daemon read the file without the
/// daemon's WAL, and its own WAL, replayed later, put a stale page in the
/// database (a hostile trial's daemon then reused change numbers and
/// reported itself caught up). It is refused, and nothing is uploaded.
#[test]
fn backup_of_a_database_with_a_second_name_is_refused() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("hard-link");
    let workspace = workspace_with_a_job();
    let _daemon = start_daemon(emulator, &workspace, &bucket);
    let reader = StoreReader::connect(&format!("gs://{bucket}"), Some(&emulator.endpoint()));
    let before = reader.names("db-backup/");
    let linked = Workspace::new();
    std::fs::hard_link(workspace.db(), linked.db()).unwrap();
    let output = backup(emulator, &linked, &bucket);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("2 names (hard links)"), "{said}");
    assert_eq!(reader.names("db-backup/"), before, "nothing was uploaded");
    let mut wal = linked.db().into_os_string();
    wal.push("-wal");
    assert!(
        !std::path::Path::new(&wal).exists(),
        "the link was never opened"
    );
}

/// Another database's snapshot taken with no daemon running became the
/// prefix's newest, and the first database's daemon, back, went on on top
/// of it: a restore gave the other database's jobs. The backup writes its
/// own destination marker, so the daemon back takes its full snapshot.
/// (Here no daemon ever ran: after one, the lease it gave back says how far
/// the bucket goes, and a backup of a database behind it is refused.)
/// After a daemon gave the lease back, a backup of another database (its
/// counter below the lease's cursor) is refused: its snapshot would be
/// restored with the first database's newer versions on top.
#[test]
fn backup_of_another_database_after_a_daemon_gave_the_lease_back_is_refused() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("behind-the-lease");
    let workspace = workspace_with_a_job();
    workspace.put_jobs(&[serde_json::json!({ "id": "second", "name": "S" })]);
    let daemon = start_daemon(emulator, &workspace, &bucket);
    assert!(daemon.stop().success());
    let reader = StoreReader::connect(&format!("gs://{bucket}"), Some(&emulator.endpoint()));
    let before = reader.names("db-backup/");
    let other = Workspace::new();
    other.put_jobs(&[serde_json::json!({ "id": "foreign", "name": "F" })]);
    let output = backup(emulator, &other, &bucket);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("is behind what") && said.contains("give it a prefix of its own"),
        "{said}"
    );
    assert_eq!(reader.names("db-backup/"), before, "nothing was uploaded");
}

#[test]
fn backup_of_another_database_while_no_daemon_runs_makes_the_daemon_back_start_again() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("turn-by-backup");
    let url = format!("gs://{bucket}");
    let workspace = workspace_with_a_job();
    let first = backup(emulator, &workspace, &bucket);
    assert!(first.status.success(), "{}", stderr(&first));
    let other = Workspace::new();
    other.put_jobs(&[serde_json::json!({ "id": "foreign", "name": "F" })]);
    let output = backup(emulator, &other, &bucket);
    assert!(output.status.success(), "{}", stderr(&output));
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    daemon.settled();
    assert!(
        daemon
            .log()
            .contains("this bucket prefix is not the one the database was backed up to"),
        "{}",
        daemon.log()
    );
    assert!(daemon.stop().success());
    let to = workspace.path().join("restored.db");
    let restored = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&to)
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert_eq!(bodies(&to), bodies(&workspace.db()));
}
