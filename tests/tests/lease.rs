//! One writer per bucket prefix: the lease object, taken and renewed with
//! generation preconditions, which the emulator honours on uploads.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_tests::{
    Daemon, Emulator, StoreReader, Workspace, bodies, eventually, gauge, gunzip, jobvault, runtime,
    stderr, stdout,
};
use serde_json::json;

const LEASE: &str = "jobvault-lease.json";

fn lease(reader: &StoreReader) -> Option<serde_json::Value> {
    reader
        .names("")
        .contains(&LEASE.to_owned())
        .then(|| serde_json::from_slice(&gunzip(&reader.get(LEASE)).1).unwrap())
}

#[test]
fn a_second_daemon_on_the_prefix_exits_naming_the_holder() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}/prod", emulator.new_bucket("lease-two"));
    let first_place = Workspace::new();
    first_place.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let first = Daemon::start(&first_place, Some(&emulator.endpoint()), &url, "200ms", &[]);

    // A restored copy brought up elsewhere, pointed at the same prefix.
    let second_place = Workspace::new();
    second_place.put_jobs(&[json!({ "id": "b", "name": "B" })]);
    let output = jobvault(Some(&emulator.endpoint()))
        .args([
            "run",
            "--bucket",
            &url,
            "--interval",
            "200ms",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--db")
        .arg(second_place.db())
        .arg("--workdir")
        .arg(second_place.workdir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    let last = said.lines().last().unwrap();
    assert!(
        last.starts_with("jobvault: error: ")
            && last.contains(&format!("{url}/{LEASE} is held by jobvault on host"))
            && last.contains(&format!("(pid {}", first.pid()))
            && last.contains("s ago"),
        "{said}"
    );
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    assert!(
        !reader
            .names("job-backup/")
            .iter()
            .any(|n| n.ends_with("/b.job")),
        "the second daemon wrote nothing"
    );
}

/// A stop gives the lease back by writing it so, with the cursor the
/// daemon leaves: the next start, from any host, takes it at once and
/// compares its database with that cursor (a copy put back while no
/// daemon ran is below it), and `status` names the last daemon.
#[test]
fn a_restart_after_kill_9_takes_the_lease_at_once_and_a_stop_gives_it_back() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("lease-restart"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let first = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let first_pid = first.pid();
    first.kill();
    assert_eq!(lease(&reader).unwrap()["holder"]["pid"], first_pid);
    // `status` on its host says so at once, not 90 s later when the lease
    // would have been renewed (a newcomer's trial read it as healthy).
    let status = jobvault(Some(&emulator.endpoint()))
        .args(["status", "--bucket", &url])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1), "{}", stdout(&status));
    assert!(
        stdout(&status).contains(&format!("pid {first_pid}) is not running on this host")),
        "{}",
        stdout(&status)
    );

    let second = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    assert!(
        second
            .log()
            .contains("its holder ran on this host and no longer runs"),
        "{}",
        second.log()
    );
    let held = lease(&reader).unwrap();
    assert_eq!(held["holder"]["pid"], second.pid());
    let second_pid = second.pid();
    assert!(second.stop().success());
    let given_back = lease(&reader).expect("a graceful stop leaves the lease, given back");
    assert!(given_back["released"].is_string(), "{given_back}");
    assert_eq!(given_back["holder"]["pid"], second_pid);
    assert_eq!(given_back["state"]["cursor_seq"], 1, "{given_back}");
    let status = jobvault(Some(&emulator.endpoint()))
        .args(["status", "--bucket", &url])
        .output()
        .unwrap();
    let said = stdout(&status);
    assert!(
        said.contains("last daemon")
            && said.contains(&format!("pid {second_pid}"))
            && said.contains("every change up to 1 in the bucket"),
        "{said}"
    );

    let third = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    assert!(
        third.log().contains("its holder gave it back"),
        "{}",
        third.log()
    );
    assert!(third.stop().success());
}

#[test]
fn the_lease_carries_the_daemons_state_and_a_takeover_stops_the_old_holder() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("lease-state"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let first = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let db = JobDb::open(&workspace.db()).unwrap();
    eventually("the job in the bucket", Duration::from_secs(30), || {
        (db.cursor().unwrap().seq == 1).then_some(())
    });
    // Renewed every 5 s at the shortest, and once caught up: a renewal
    // may carry the cursor before the first read is covered.
    eventually(
        "a renewal with the cursor, caught up",
        Duration::from_secs(15),
        || {
            lease(&reader)
                .filter(|l| l["state"]["cursor_seq"] == 1 && l["state"]["caught_up"].is_string())
        },
    );

    let other = Workspace::new();
    other.put_jobs(&[json!({ "id": "b", "name": "B" })]);
    let second = Daemon::start(
        &other,
        Some(&emulator.endpoint()),
        &url,
        "200ms",
        &["--takeover"],
    );
    let status = first.exited(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert_eq!(lease(&reader).unwrap()["holder"]["pid"], second.pid());
}

/// A daemon whose lease was taken over learns it only at its next renewal.
/// A snapshot asked of it meanwhile was uploaded, the newest a restore
/// found: the restore gave the old database, dropping the new holder's,
/// while `status` said caught up (a hostile trial). The new holder now
/// waits out the old one's gate before it writes, and the snapshot waits
/// for a renewal, which is refused: nothing of the old database is written,
/// `backup` fails, and a restore gives the new holder's database.
#[test]
fn a_snapshot_asked_of_a_holder_taken_over_is_refused_and_the_restore_is_the_new_holders() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("taken-over"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let old = Workspace::new();
    old.put_jobs(&[json!({ "id": "old", "name": "Old" })]);
    // Renewed every 12 s: the window in which it does not know yet.
    let first = Daemon::start(&old, Some(&emulator.endpoint()), &url, "2s", &[]);
    first.settled();
    let new = Workspace::new();
    new.put_jobs(&[json!({ "id": "new", "name": "New" })]);
    let second = Daemon::start(
        &new,
        Some(&emulator.endpoint()),
        &url,
        "200ms",
        &["--takeover"],
    );
    // It waits out the first's gate before it writes anything, and status
    // says so.
    let waiting = eventually("status naming the wait", Duration::from_secs(20), || {
        let output = jobvault(Some(&emulator.endpoint()))
            .args(["status", "--bucket", &url, "--json"])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        (json["daemon"]["pid"] == second.pid() && json["daemon"]["writes_from"].is_string())
            .then_some((output.status.code(), json))
    });
    assert_eq!(waiting.0, Some(1), "{}", waiting.1);
    assert!(
        waiting.1["warnings"]
            .to_string()
            .contains("took the lease over"),
        "{}",
        waiting.1
    );
    second.settled();
    assert!(
        second
            .log()
            .contains("writing nothing to the store until then"),
        "{}",
        second.log()
    );
    let snapshots_before = reader.names("db-backup/");

    let backup = jobvault(Some(&emulator.endpoint()))
        .args(["backup", "--bucket", &url, "--db"])
        .arg(old.db())
        .output()
        .unwrap();
    assert_eq!(backup.status.code(), Some(1), "{}", stdout(&backup));
    let log = first.log();
    assert_eq!(
        first.exited(Duration::from_secs(30)).code(),
        Some(1),
        "{log}"
    );
    assert_eq!(
        reader.names("db-backup/"),
        snapshots_before,
        "no snapshot of the old database after the takeover: {log}"
    );
    let restored = Workspace::new();
    let restore = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--force", "--to"])
        .arg(restored.db())
        .output()
        .unwrap();
    assert_eq!(restore.status.code(), Some(0), "{}", stderr(&restore));
    assert_eq!(bodies(&restored.db()), bodies(&new.db()));
    assert!(second.stop().success());
}

/// `run` with the database and workdir of `workspace`, writing to `url`,
/// with `extra` flags; waits for it to exit.
fn run_once(
    emulator: &Emulator,
    workspace: &Workspace,
    url: &str,
    extra: &[&str],
) -> std::process::Output {
    jobvault(Some(&emulator.endpoint()))
        .args(["run", "--bucket", url, "--interval", "200ms"])
        .args(extra)
        .arg("--db")
        .arg(workspace.db())
        .arg("--workdir")
        .arg(workspace.workdir())
        .output()
        .unwrap()
}

/// The cursor lives in the database: two daemons on one database, each to
/// its own bucket, took each other's saves for rewinds and lost jobs in
/// both. The second is refused, naming the first, and touches nothing of
/// the first's.
#[test]
fn a_second_daemon_on_one_database_is_refused_whatever_bucket_it_names() {
    let emulator = Emulator::shared();
    let first_url = format!("gs://{}", emulator.new_bucket("one-db-first"));
    let other = tempfile::tempdir().unwrap();
    let other_url = format!("file://{}", other.path().display());
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let first = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        &first_url,
        "200ms",
        &[],
    );
    let socket = jobvault::control::socket_path(&std::fs::canonicalize(workspace.db()).unwrap());
    let socket_before = std::fs::metadata(&socket).unwrap().ino();

    for url in [&other_url, &first_url] {
        let output = run_once(
            emulator,
            &workspace,
            url,
            &["--metrics-addr", "127.0.0.1:0"],
        );
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let said = stderr(&output);
        let last = said.lines().last().unwrap();
        assert!(
            last.starts_with("jobvault: error: job database ")
                && last.contains(&format!("pid {}", first.pid()))
                && last.contains(&format!("to {first_url}"))
                && last.contains("several destinations"),
            "{said}"
        );
    }
    assert_eq!(
        std::fs::metadata(&socket).unwrap().ino(),
        socket_before,
        "the first daemon's socket is untouched"
    );
    assert!(
        std::fs::read_dir(other.path()).unwrap().next().is_none(),
        "nothing was written to the second destination"
    );
    // The first still serves `backup` through its socket.
    let backup = jobvault(Some(&emulator.endpoint()))
        .args(["backup", "--bucket", &first_url, "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(backup.status.success(), "{}", stderr(&backup));
    assert!(
        first.log().contains("immediate snapshot done"),
        "{}",
        first.log()
    );
}

/// A start that fails after the bucket was reached (here: the metrics port
/// is taken) leaves no lease behind for `status` to show as a live holder.
#[test]
fn a_failed_start_leaves_no_lease() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("lease-failed-start"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let output = run_once(emulator, &workspace, &url, &["--metrics-addr", &port]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot serve metrics on"),
        "{}",
        stderr(&output)
    );
    assert_eq!(lease(&reader), None);
    assert!(
        reader.names("").is_empty(),
        "nothing written: {:?}",
        reader.names("")
    );
}

/// A lease object that is not a lease (tampered, or cut by hand) blocks
/// `run`, names the way out, and `--takeover` replaces it; `status` says so.
#[test]
fn a_lease_object_that_is_not_a_lease_is_replaced_with_takeover() {
    let emulator = Emulator::shared();
    let root = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.path().display());
    std::fs::write(root.path().join(LEASE), b"garbage{").unwrap();
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "A" })]);

    let refused = run_once(
        emulator,
        &workspace,
        &url,
        &["--metrics-addr", "127.0.0.1:0"],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let said = stderr(&refused);
    let last = said.lines().last().unwrap();
    assert!(
        last.contains("not a jobvault lease") && last.contains("--takeover"),
        "{said}"
    );
    let status = jobvault(None)
        .args(["status", "--bucket", &url])
        .output()
        .unwrap();
    assert!(
        stdout(&status).contains("not a jobvault lease"),
        "{}",
        stdout(&status)
    );
    // With no daemon, `backup` refuses it too: it cannot check the database
    // against what the bucket holds (a hostile trial's copy, behind a lease
    // edited by hand, was snapshotted, and a restore gave jobs it never had).
    let backup = jobvault(None)
        .args(["backup", "--bucket", &url, "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert_eq!(backup.status.code(), Some(1), "{}", stderr(&backup));
    let said = stderr(&backup);
    let last = said.lines().last().unwrap();
    assert!(
        last.contains("not a jobvault lease") && last.contains("not taking a snapshot"),
        "{said}"
    );
    assert!(!root.path().join("db-backup").exists(), "no snapshot");

    let daemon = Daemon::start(&workspace, None, &url, "200ms", &["--takeover"]);
    daemon.settled();
    let reader = StoreReader::connect(&url, None);
    assert_eq!(lease(&reader).unwrap()["holder"]["pid"], daemon.pid());
}

/// A daemon killed while its uploads were behind its reads leaves a lease
/// saying the bucket may hold changes it never uploaded (`highest_seq`). A
/// restore of the newest state, the runbook's step after a crash, continues
/// the counter past them, so the next start does not take the restored
/// database for an older copy put back (a review found that false alarm:
/// the alert, and a full snapshot).
#[test]
fn a_restore_after_a_crash_with_uploads_behind_is_not_taken_for_an_older_copy() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("lease-restore"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let workspace = Workspace::new();
    workspace.put_jobs(&[
        json!({ "id": "a", "name": "A" }),
        json!({ "id": "b", "name": "B" }),
    ]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    daemon.settled();
    assert!(daemon.stop().success());
    let before = bodies(&workspace.db());
    // What a kill leaves when 50 changes were read and never uploaded: no
    // upload can make the emulator's bucket lag this way on cue.
    let (mut left, generation) = runtime()
        .block_on(jobvault::lease::read(reader.store()))
        .unwrap()
        .expect("given back");
    let read_past = left.state.cursor_seq + 50;
    left.state.highest_seq = read_past;
    left.released = None;
    runtime()
        .block_on(jobvault::lease::write(reader.store(), &left, generation))
        .unwrap();

    let restore = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--force", "--to"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert_eq!(restore.status.code(), Some(0), "{}", stderr(&restore));
    let restored = JobDb::open(&workspace.db()).unwrap();
    assert_eq!(restored.cursor().unwrap().seq, read_past);
    assert_eq!(bodies(&workspace.db()), before);

    let again = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    again.settled();
    assert!(
        !again.log().contains("went back to an older copy"),
        "{}",
        again.log()
    );
    assert_eq!(
        gauge(&again.scrape(), "jobvault_database_went_back_total"),
        Some(0.0)
    );
    assert!(again.stop().success());
}

/// A stop before the full snapshot owed to a prefix new to the database
/// landed (a copy found, then SIGTERM) gives the lease back not caught up.
/// `status` said the stop left every change up to the raised cursor in the
/// bucket, exit 0, while a restore gave another state (a hostile trial).
#[test]
fn status_after_a_stop_that_never_caught_up_says_so_and_exits_1() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("lease-uncaught"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    daemon.settled();
    assert!(daemon.stop().success());
    let status = |expected: i32| {
        let output = jobvault(Some(&emulator.endpoint()))
            .args(["status", "--bucket", &url])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(expected), "{}", stdout(&output));
        stdout(&output)
    };
    assert!(status(0).contains("with every change up to"));
    // What such a stop gives back: no daemon can be stopped on cue between
    // finding a copy and its full snapshot landing.
    let (mut left, generation) = runtime()
        .block_on(jobvault::lease::read(reader.store()))
        .unwrap()
        .expect("given back");
    left.state.caught_up = None;
    runtime()
        .block_on(jobvault::lease::write(reader.store(), &left, generation))
        .unwrap();
    let said = status(1);
    assert!(
        said.contains("stopped") && said.contains("before it had every change in the bucket"),
        "{said}"
    );
    assert!(!said.contains("with every change up to"), "{said}");
    assert!(said.contains("WARNING: the last daemon"), "{said}");
}
