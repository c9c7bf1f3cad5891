//! The destination's identity: a new, wiped or other prefix gets the whole
//! database (a snapshot at once), and a fresh install has a snapshot from
//! its first minutes.

use std::collections::BTreeMap;
use std::time::Duration;

use jobvault_tests::writers::{caught_up, python, sqlite3};
use jobvault_tests::{
    Daemon, Emulator, StoreReader, Workspace, bodies, eventually, gauge, jobvault, runtime, stderr,
    stdout,
};
use serde_json::json;

/// Restores `url` to a new file and returns its jobs.
fn restored(
    emulator: &Emulator,
    url: &str,
    workspace: &Workspace,
    name: &str,
) -> BTreeMap<String, String> {
    restored_with(emulator, url, workspace, name, &[])
}

/// The same, with more arguments to `restore`.
fn restored_with(
    emulator: &Emulator,
    url: &str,
    workspace: &Workspace,
    name: &str,
    args: &[&str],
) -> BTreeMap<String, String> {
    let to = workspace.path().join(name);
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", url, "--to"])
        .arg(&to)
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    bodies(&to)
}

fn jobs(range: std::ops::Range<u32>) -> Vec<serde_json::Value> {
    range
        .map(|n| json!({ "id": format!("job-{n}"), "name": format!("job {n}") }))
        .collect()
}

fn snapshots(reader: &StoreReader) -> Vec<String> {
    reader.names("db-backup/")
}

/// A fresh install: no trigger yet, and still a snapshot within seconds, so
/// `status` and the stale-snapshot alert are green at once.
#[test]
fn a_fresh_install_has_a_snapshot_at_once() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("fresh-install"));
    let workspace = Workspace::new();
    workspace.put_jobs(&jobs(0..3));
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    daemon.settled();
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let taken = snapshots(&reader);
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert!(taken[0].contains("/new-destination-"), "{taken:?}");
    assert!(
        daemon.log().contains(
            "INFO jobvault_core::machine: first backup of this database to this bucket prefix"
        ) && daemon.log().contains("held no destination marker"),
        "{}",
        daemon.log()
    );
    assert!(
        reader
            .names("")
            .contains(&"jobvault-destination.json".to_owned()),
        "the marker is written"
    );
    // Healthy (exit 0) once the lease says the daemon caught up.
    let status = eventually("status to report healthy", Duration::from_secs(30), || {
        let status = jobvault(Some(&emulator.endpoint()))
            .args(["status", "--bucket", &url])
            .output()
            .unwrap();
        status.status.success().then_some(status)
    });
    let said = stdout(&status);
    assert!(
        !said.contains("no snapshot") && said.contains("/new-destination-"),
        "a snapshot from the first minute: {said}"
    );
    // A restart finds the destination known: no second snapshot.
    assert!(daemon.stop().success());
    let again = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    again.settled();
    assert_eq!(snapshots(&reader).len(), 1, "{:?}", snapshots(&reader));
    assert!(
        !again.log().contains("the destination is new"),
        "{}",
        again.log()
    );
}

/// The cursor lives in the database: pointed at a new prefix, a daemon used
/// to upload only what came after it, and a restore from the new prefix
/// gave no job at all.
#[test]
fn a_new_prefix_for_a_database_backed_up_elsewhere_gets_every_job() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("new-prefix");
    let (first, second) = (format!("gs://{bucket}/one"), format!("gs://{bucket}/two"));
    let workspace = Workspace::new();
    workspace.put_jobs(&jobs(0..4));
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &first, "200ms", &[]);
    daemon.settled();
    assert!(daemon.stop().success());

    let daemon = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        &second,
        "200ms",
        &[],
    );
    daemon.settled();
    assert!(
        daemon
            .log()
            .contains("WARN jobvault_core::machine: this bucket prefix is not the one the database was backed up to"),
        "{}",
        daemon.log()
    );
    assert_eq!(
        restored(emulator, &second, &workspace, "second.db"),
        bodies(&workspace.db())
    );
    // The snapshot recorded the first prefix's id; the restored database
    // records none, so wherever it is backed up next gets a full snapshot
    // (it did not come from the first prefix's state).
    let copy = jobvault::db::JobDb::open(&workspace.path().join("second.db")).unwrap();
    assert_eq!(copy.recorded_destination().unwrap(), None);
}

/// The bucket emptied under a running daemon: it stops (its lease is gone),
/// and once restarted it refills the bucket with a snapshot, so a restore
/// holds the jobs uploaded before the wipe too.
#[test]
fn a_wiped_bucket_is_refilled_after_the_daemon_restarts() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("wiped"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let workspace = Workspace::new();
    workspace.put_jobs(&jobs(0..2));
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    daemon.settled();

    for name in reader.names("") {
        runtime().block_on(reader.store().delete(&name)).unwrap();
    }
    let stopped = daemon.exited(Duration::from_secs(30));
    assert_eq!(stopped.code(), Some(1));
    workspace.put_jobs(&jobs(2..7));

    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    daemon.settled();
    assert!(
        daemon
            .log()
            .contains("held no destination marker (new, wiped or recreated)"),
        "{}",
        daemon.log()
    );
    let expected = bodies(&workspace.db());
    assert_eq!(expected.len(), 7);
    assert_eq!(
        restored(emulator, &url, &workspace, "after-wipe.db"),
        expected
    );
    assert_eq!(
        gauge(&daemon.scrape(), "jobvault_new_destination"),
        Some(0.0)
    );
}

/// A restored database renamed over the one a daemon backs up: the daemon
/// read the old file on and reported itself caught up while the new one's
/// jobs went nowhere. It now exits 1 naming why, and its restart backs the
/// new file up from a full snapshot (a restore records no destination).
#[test]
fn a_database_renamed_over_under_the_daemon_stops_it_and_its_restart_takes_the_new_file() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("replaced"));
    let workspace = Workspace::new();
    workspace.put_jobs(&jobs(0..3));
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1s", &[]);
    daemon.settled();
    let from_bucket = restored(emulator, &url, &workspace, "restored.db");
    assert_eq!(from_bucket.len(), 3);
    std::fs::rename(workspace.path().join("restored.db"), workspace.db()).unwrap();
    let (status, log) = daemon.exited_and_log(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{log}");
    let db = workspace.db().display().to_string();
    assert!(
        log.contains(&format!(
            "job database {db} was replaced while jobvault ran"
        )),
        "{log}"
    );
    // The old file's WAL and its index are still at the path's side files
    // (no connection of the new file has opened them yet): SQLite would
    // read them as the new file's. `restore --force` removes them too.
    for side in ["-wal", "-shm"] {
        let mut path = workspace.db().into_os_string();
        path.push(side);
        let _ = std::fs::remove_file(path);
    }
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let newest = |reader: &StoreReader| reader.list("db-backup/").iter().map(|o| o.updated).max();
    let before = newest(&reader);
    let again = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1s", &[]);
    // Within the same second it has the first one's name, and replaces it.
    eventually(
        "a snapshot of the new file",
        Duration::from_secs(30),
        || (newest(&reader) > before).then_some(()),
    );
    assert!(
        again
            .log()
            .contains("first backup of this database to this bucket prefix"),
        "{}",
        again.log()
    );
}

/// An older copy written over the database in place under the daemon (the
/// sqlite3 CLI's `.restore`, the same file): the daemon kept its file and
/// took the older cursor for one changed by someone, and the copy's next
/// change reused a sequence the bucket held for a version the copy left
/// behind. A restore gave those versions, and a job the copy never held,
/// exit 0. Now the daemon raises the counter past what it read and starts
/// the prefix over: a restore gives the copy and what came after it, and a
/// restore to an instant before the copy went back gives what was then.
#[test]
fn an_older_copy_written_over_the_database_in_place_is_what_a_restore_gives() {
    let went_back = WentBack::new("went-back");
    let at = jobvault::clock::now();
    std::thread::sleep(Duration::from_millis(1100));
    went_back.copied_back();
    let before = restored_with(
        went_back.emulator,
        &went_back.url,
        &went_back.workspace,
        "before.db",
        &["--at", &at.rfc3339()],
    );
    assert_eq!(
        before, went_back.before,
        "what the copy left behind is history"
    );
}

/// The same, with the copy written to since it was taken: its counter is
/// back where the database's was, and only its cursor is behind.
#[test]
fn an_older_copy_written_to_since_is_found_by_its_cursor() {
    let went_back = WentBack::new("went-back-written");
    sqlite3(
        &went_back.copy,
        "INSERT INTO jobs (id, body) VALUES ('copy-1', '{\"id\": \"copy-1\", \"name\": \"in the copy\"}');
         INSERT INTO jobs (id, body) VALUES ('copy-2', '{\"id\": \"copy-2\", \"name\": \"in the copy\"}');
         UPDATE jobs SET body = '{\"id\": \"job-1\", \"name\": \"changed in the copy\"}' WHERE id = 'job-1';",
    );
    went_back.copied_back();
}

/// The daemon stopped (SIGSTOP) before it read the copy, then killed: its
/// restart finds the copy through the lease it left, and raises the
/// counter past what the killed daemon may have uploaded after its last
/// renewal (the changes after the copy went in the same minute).
#[test]
fn an_older_copy_no_daemon_read_is_found_at_the_restart_through_the_lease() {
    let mut went_back = WentBack::new("went-back-killed");
    sqlite3(
        &went_back.copy,
        "INSERT INTO jobs (id, body) VALUES ('copy-1', '{\"id\": \"copy-1\", \"name\": \"in the copy\"}');",
    );
    let daemon = went_back.daemon.take().expect("running");
    let frozen = std::process::Command::new("kill")
        .args(["-STOP", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(frozen.success());
    went_back.copy_back();
    daemon.kill();
    went_back.started_again();
}

/// Stopped cleanly, the copy put back while no daemon ran (a disk
/// restored from an image), then started: the lease the stop gave back
/// holds the cursor it left, above the copy's counter, and the start finds
/// the copy. The stop used to delete the lease, and the daemon went on
/// from the copy's cursor, numbering its changes as the versions the copy
/// left behind, with every signal green.
#[test]
fn an_older_copy_put_back_while_the_daemon_was_stopped_is_found_at_its_start() {
    let mut went_back = WentBack::new("went-back-stopped");
    let daemon = went_back.daemon.take().expect("running");
    assert!(daemon.stop().success());
    went_back.copy_back();
    // No daemon to ask: `backup` takes the snapshot itself, and refuses the
    // copy rather than put it under the newer versions (a hostile trial's
    // restore then gave a job the copy never held).
    let reader = StoreReader::connect(&went_back.url, Some(&went_back.emulator.endpoint()));
    let before = snapshots(&reader);
    let backup = jobvault(Some(&went_back.emulator.endpoint()))
        .args(["backup", "--bucket", &went_back.url, "--db"])
        .arg(went_back.workspace.db())
        .output()
        .unwrap();
    assert_eq!(backup.status.code(), Some(1), "{}", stderr(&backup));
    let said = stderr(&backup);
    let last = said.lines().last().unwrap_or_default();
    assert!(
        last.contains("is behind what") && last.contains("jobvault-lease.json says"),
        "{said}"
    );
    assert_eq!(snapshots(&reader), before, "no snapshot of the copy");
    went_back.started_again();
}

/// A database backed up by a daemon, a copy of it taken before three
/// changes, and the state after them.
struct WentBack {
    emulator: &'static Emulator,
    url: String,
    workspace: Workspace,
    copy: std::path::PathBuf,
    /// Taken to kill it.
    daemon: Option<Daemon>,
    before: BTreeMap<String, String>,
}

impl WentBack {
    fn new(bucket: &str) -> WentBack {
        let emulator = Emulator::shared();
        let url = format!("gs://{}", emulator.new_versioned_bucket(bucket));
        let workspace = Workspace::new();
        workspace.put_jobs(&jobs(0..3));
        let copy = workspace.path().join("copy.db");
        sqlite3(&workspace.db(), &format!(".backup '{}'", copy.display()));
        let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1s", &[]);
        daemon.settled();
        workspace.put_jobs(&[
            json!({ "id": "job-0", "name": "changed after the copy" }),
            json!({ "id": "job-3", "name": "new after the copy" }),
            json!({ "id": "job-4", "name": "new after the copy" }),
        ]);
        caught_up(&workspace.db());
        let before = bodies(&workspace.db());
        WentBack {
            emulator,
            url,
            workspace,
            copy,
            daemon: Some(daemon),
            before,
        }
    }

    /// Writes the copy back over the database, and a job once the copy's
    /// snapshot has landed (a change after the instant would keep a
    /// restore to it off that snapshot anyway), and checks that a restore
    /// gives exactly the database once the daemon is done.
    fn copied_back(&self) {
        self.copy_back();
        self.started_over(self.daemon.as_ref().expect("running"));
    }

    fn copy_back(&self) {
        sqlite3(
            &self.workspace.db(),
            &format!(".restore '{}'", self.copy.display()),
        );
    }

    /// Starts a daemon on the database again, and checks that it finds
    /// the copy ([`WentBack::started_over`]).
    fn started_again(&self) {
        let again = Daemon::start(
            &self.workspace,
            Some(&self.emulator.endpoint()),
            &self.url,
            "1s",
            &[],
        );
        self.started_over(&again);
    }

    /// Waits for `daemon` to find the copy and start the prefix over, then
    /// checks a restore against the database.
    fn started_over(&self, daemon: &Daemon) {
        let db = self.workspace.db();
        eventually(
            "the daemon to notice the older copy",
            Duration::from_secs(30),
            || {
                let log = daemon.log();
                log.contains("went back to an older copy").then_some(())
            },
        );
        assert_eq!(
            gauge(&daemon.scrape(), "jobvault_database_went_back_total"),
            Some(1.0),
            "the alert's counter"
        );
        let reader = StoreReader::connect(&self.url, Some(&self.emulator.endpoint()));
        eventually(
            "a full snapshot of the copy, to a fresh destination",
            Duration::from_secs(30),
            || {
                let started = snapshots(&reader)
                    .iter()
                    .filter(|name| name.contains("/new-destination-"))
                    .count();
                (started == 2).then_some(())
            },
        );
        let written = python(
            &db,
            "import json, sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1])\n\
             body = json.dumps({'id': 'job-5', 'name': 'after going back'})\n\
             db.execute('INSERT INTO jobs (id, body) VALUES (?, ?)', ('job-5', body))\n\
             db.commit()",
        );
        assert!(written.status.success(), "{}", stderr(&written));
        daemon.settled();
        caught_up(&db);
        let from_bucket = restored(self.emulator, &self.url, &self.workspace, "restored.db");
        assert_eq!(from_bucket, bodies(&db));
        assert!(from_bucket.contains_key("job-5"), "{from_bucket:?}");
        assert!(!from_bucket.contains_key("job-3"), "{from_bucket:?}");
    }
}

/// Two databases that take turns on one prefix: each adopted the other's
/// marker, so the first, back, went on uploading changes on top of the
/// second's full snapshot, and a restore gave both databases' jobs, exit 0.
/// Each now writes its own marker over the other's, and a daemon back on
/// the prefix takes its full snapshot again. (A directory bucket, so that
/// the turns can be dated an hour apart: a restore applies the job objects
/// from ten minutes before its snapshot, whichever database uploaded them.)
#[test]
fn databases_taking_turns_on_a_prefix_restore_as_the_last_one_only() {
    let first = Workspace::new();
    first.put_jobs(&jobs(0..3));
    let second = Workspace::new();
    second.put_jobs(
        &(0..6)
            .map(|n| json!({ "id": format!("other-{n}"), "name": "other" }))
            .collect::<Vec<_>>(),
    );
    let root = first.path().join("bucket");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}", root.display());
    for workspace in [&first, &second] {
        let daemon = Daemon::start(workspace, None, &url, "200ms", &[]);
        daemon.settled();
        assert!(daemon.stop().success());
    }
    let an_hour_ago = jobvault::clock::now().unix_seconds() - 3600;
    for folder in ["db-backup", "job-backup"] {
        let touched = std::process::Command::new("find")
            .arg(root.join(folder))
            .args(["-type", "f", "-exec", "touch", "-d"])
            .arg(format!("@{an_hour_ago}"))
            .args(["{}", "+"])
            .status()
            .unwrap();
        assert!(touched.success());
    }
    let daemon = Daemon::start(&first, None, &url, "200ms", &[]);
    daemon.settled();
    first.put_jobs(&[json!({ "id": "job-1", "name": "changed" })]);
    assert!(daemon.stop().success());
    let to = first.path().join("restored.db");
    let output = jobvault(None)
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&to)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        bodies(&to),
        bodies(&first.db()),
        "the first database, and only it"
    );
}
