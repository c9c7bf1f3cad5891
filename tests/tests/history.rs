//! History: `jobvault restore --at` against a versioned bucket, on the
//! emulator's memory backend (the one that keeps noncurrent generations),
//! and `jobvault prune`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_core::object_name::snapshot_object;
use jobvault_core::{Change, Cursor, Envelope, JobId, Timestamp};
use jobvault_tests::{
    Daemon, Emulator, StoreReader, Workspace, back_up_once, bodies, body, eventually, gunzip,
    jobvault, stderr, stdout,
};

const PATIENCE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

fn restore(endpoint: &str, url: &str, to: &Path, at: Option<Timestamp>) -> Output {
    let mut command = jobvault(Some(endpoint));
    command.args(["restore", "--bucket", url, "--to"]).arg(to);
    if let Some(at) = at {
        command.args(["--at", &at.rfc3339()]);
    }
    command.output().unwrap()
}

/// Waits until the daemon's cursor has passed every change in the database.
fn all_uploaded(daemon: &Daemon, db: &Path) {
    let newest = JobDb::open(db).unwrap().newest_seq().unwrap();
    eventually("every change in the bucket", PATIENCE, || {
        let scrape = daemon.scrape();
        let line = scrape
            .lines()
            .find(|l| l.starts_with("jobvault_cursor_seq{"))?;
        let seq: f64 = line.rsplit(' ').next()?.parse().ok()?;
        (seq >= newest as f64).then_some(())
    });
}

#[test]
fn restore_at_each_instant_gives_the_jobs_as_they_were_then() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_versioned_bucket("history");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
    db.put(&[body("a", "a first"), body("b", "b first")])
        .unwrap();
    workspace.trigger("base", "");
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    eventually("the snapshot", PATIENCE, || {
        (!reader.names("db-backup/").is_empty()).then_some(())
    });

    // Each step changes jobs, waits until the bucket has the change, and
    // notes an instant at which the database was exactly so.
    let steps: [&dyn Fn(&mut JobDb); 3] = [
        &|db| {
            db.put(&[body("a", "a second"), body("c", "c first")])
                .unwrap()
        },
        &|db| {
            db.put(&[body("a", "a third")]).unwrap();
            db.delete(&[JobId::new("b").unwrap()]).unwrap();
        },
        &|db| {
            db.put(&[body("b", "b again"), body("c", "c second")])
                .unwrap()
        },
    ];
    let mut history = Vec::new();
    for step in steps {
        step(&mut db);
        all_uploaded(&daemon, &workspace.db());
        history.push((jobvault::clock::now(), bodies(&workspace.db())));
        // A job object is written at most once a second: the next step's
        // version must land as a generation of its own.
        std::thread::sleep(Duration::from_millis(1_200));
    }
    drop(daemon);

    for (n, (at, expected)) in history.iter().enumerate() {
        let to = workspace.path().join(format!("at-{n}.db"));
        let output = restore(&emulator.endpoint(), &url, &to, Some(*at));
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("as it was at"),
            "{}",
            stdout(&output)
        );
        assert_eq!(&bodies(&to), expected, "restored to step {n}, {at}");
    }
    assert_ne!(history[0].1, history[1].1, "the steps differ");
    // A database restored to the past numbers its next change after every
    // change the bucket holds, so no sequence is used twice.
    let to = workspace.path().join("at-0.db");
    let mut restored = JobDb::open(&to).unwrap();
    restored.put(&[body("d", "after")]).unwrap();
    let d = restored
        .list()
        .unwrap()
        .into_iter()
        .find(|e| e.id.as_str() == "d");
    assert!(d.unwrap().seq > db.newest_seq().unwrap());
    drop(restored);

    // The runbook: the restored database goes back into service. Once its
    // daemon has uploaded, a plain restore gives it, not the abandoned
    // later state (a third, b deleted then written again, c second).
    let mut expected = history[0].1.clone();
    expected.insert("d".to_owned(), body("d", "after").1);
    let service = Workspace::new();
    std::fs::copy(&to, service.db()).unwrap();
    let daemon = Daemon::start(
        &service,
        Some(&emulator.endpoint()),
        &url,
        "200ms",
        &["--takeover"],
    );
    all_uploaded(&daemon, &service.db());
    drop(daemon);
    let newest = workspace.path().join("after-the-restore.db");
    let output = restore(&emulator.endpoint(), &url, &newest, None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(bodies(&newest), expected, "{}", stdout(&output));
}

#[test]
fn jobs_written_again_after_a_restore_of_the_past_are_numbered_and_stamped_like_any_change() {
    let workspace = Workspace::new();
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
    db.put(&[body("a", "a then"), body("b", "b then")]).unwrap();
    db.delete(&[JobId::new("b").unwrap()]).unwrap();
    // The bucket holds later versions of both, from the abandoned future;
    // the cursor is marked past them, as restore marks it.
    let future = db.newest_seq().unwrap() + 5;
    db.mark_backed_up(|_, _| Cursor {
        seq: future,
        time: jobvault::clock::now(),
    })
    .unwrap();
    let abandoned = [("a", future - 1), ("b", future)];
    let before = jobvault::clock::now() - Duration::from_millis(1);
    let again = abandoned.map(|(id, seq)| (JobId::new(id).unwrap(), seq));
    assert_eq!(db.write_again(again.into_iter()).unwrap(), 2);
    let written = db.changes(future, 10, u64::MAX).unwrap().jobs;
    let ids: Vec<_> = written.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "each a change after the cursor");
    assert_eq!(written[1].change, Change::Deleted, "b again as a tombstone");
    for envelope in &written {
        // SQLite's clock, to the millisecond, as the triggers stamp: the
        // tombstone is not stamped by another clock.
        assert_eq!(
            envelope.modified.unix_nanos() % 1_000_000,
            0,
            "{envelope:?}"
        );
        assert!(envelope.modified >= before, "{envelope:?}");
    }
}

#[test]
fn without_versioning_a_past_instant_is_refused_in_one_line() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("no-history");
    let url = format!("gs://{bucket}");
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let now = jobvault::clock::now();
    reader.put_job(now, &version("a", 1, now - DAY));
    let workspace = Workspace::new();
    let to = workspace.path().join("past.db");
    let output = restore(&emulator.endpoint(), &url, &to, Some(now - DAY / 2));
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let error = stderr(&output);
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert!(
        error.contains(&bucket) && error.contains("--versioning"),
        "{error}"
    );
    assert!(!to.exists(), "nothing is half-written");
    // An instant after the newest upload needs no history; with no
    // snapshot, only the job objects, it needs --from-job-objects.
    let after = jobvault::clock::now();
    let output = restore(&emulator.endpoint(), &url, &to, Some(after));
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("--from-job-objects"),
        "{}",
        stderr(&output)
    );
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--from-job-objects", "--bucket", &url, "--to"])
        .arg(&to)
        .args(["--at", &after.rfc3339()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

fn version(id: &str, seq: u64, modified: Timestamp) -> Envelope {
    let (id, body) = body(id, &format!("v{seq}"));
    Envelope::written(id, seq, modified, body)
}

/// Writes `database` as a snapshot in the day folder of `mtime`, with
/// `mtime` in its gzip header, as a jobvault of that day would have.
fn put_snapshot(reader: &StoreReader, mtime: Timestamp, database: &[u8]) -> String {
    let name = snapshot_object(mtime, &format!("old-{}", mtime.unix_seconds())).unwrap();
    reader.put_snapshot(&name, mtime, database);
    name.into_string()
}

fn prune(endpoint: &str, url: &str, extra: &[&str]) -> Output {
    jobvault(Some(endpoint))
        .args(["prune", "--bucket", url, "--keep", "30d"])
        .args(extra)
        .output()
        .unwrap()
}

fn live(reader: &StoreReader) -> BTreeSet<String> {
    ["db-backup/", "job-backup/"]
        .iter()
        .flat_map(|prefix| reader.names(prefix))
        .collect()
}

/// Dates an object of a directory bucket as uploaded at `at`: a directory
/// store's upload time is the file's mtime. (A GCS bucket, or the emulator,
/// stamps every upload with the time it arrived: history written today is
/// uploaded today, and no restore of the past could start from it.)
fn uploaded_at(root: &Path, name: &str, at: Timestamp) {
    let touched = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("@{}", at.unix_seconds()))
        .arg(root.join(name))
        .status()
        .unwrap();
    assert!(touched.success());
}

/// A short window that would delete a snapshot taken today is more often a
/// typo than a wish: `prune` names it and deletes nothing without `--yes`.
#[test]
fn a_prune_that_would_delete_a_snapshot_under_a_day_old_asks_for_yes() {
    let emulator = Emulator::shared();
    let endpoint = emulator.endpoint();
    let root = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.path().display());
    let workspace = Workspace::new();
    drop(JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap());
    let database = std::fs::read(workspace.db()).unwrap();
    let reader = StoreReader::connect(&url, Some(&endpoint));
    let now = jobvault::clock::now();
    let hours = |h: u64| now - Duration::from_secs(3600 * h);
    let young = put_snapshot(&reader, hours(5), &database);
    uploaded_at(root.path(), &young, hours(5));
    let base = put_snapshot(&reader, hours(3), &database);
    uploaded_at(root.path(), &base, hours(3));
    let before = live(&reader);

    let refused = jobvault(Some(&endpoint))
        .args(["prune", "--bucket", &url, "--keep", "1h"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(
        text.contains("less than a day ago") && text.contains(&young) && text.contains("--yes"),
        "{text}"
    );
    assert_eq!(live(&reader), before, "nothing deleted without --yes");

    let agreed = jobvault(Some(&endpoint))
        .args(["prune", "--bucket", &url, "--keep", "1h", "--yes"])
        .output()
        .unwrap();
    assert!(agreed.status.success(), "{}", stderr(&agreed));
    let after = live(&reader);
    assert!(
        !after.contains(&young) && after.contains(&base),
        "{after:?}"
    );
}

#[test]
fn prune_deletes_exactly_what_no_restore_in_the_window_needs() {
    let emulator = Emulator::shared();
    // A directory, so that history can carry the upload times it had.
    let root = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.path().display());
    let endpoint = emulator.endpoint();
    let workspace = Workspace::new();
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
    db.put(&[body("a", "a now"), body("b", "b now")]).unwrap();
    workspace.trigger("today", "");
    let daemon = Daemon::start(&workspace, Some(&endpoint), &url, "200ms", &[]);
    let reader = StoreReader::connect(&url, Some(&endpoint));
    let today = eventually("the snapshot", PATIENCE, || {
        reader.names("db-backup/").into_iter().next()
    });
    all_uploaded(&daemon, &workspace.db());
    drop(daemon);

    // History written through the store into older day folders.
    let now = jobvault::clock::now();
    let (_, database) = gunzip(&reader.get(&today));
    let old = |days: u32| now - DAY * days;
    // Each written a minute after the time it holds.
    let written = |name: String, at: Timestamp| {
        uploaded_at(root.path(), &name, at + Duration::from_secs(60));
        name
    };
    let doomed: BTreeSet<String> = [
        written(put_snapshot(&reader, old(45), &database), old(45)),
        written(
            reader.put_job(old(45), &version("old", 1, old(45))),
            old(45),
        ),
        written(
            reader.put_job(old(42), &version("old", 2, old(42))),
            old(42),
        ),
    ]
    .into();
    let base = written(put_snapshot(&reader, old(40), &database), old(40));
    let kept = [
        written(
            reader.put_job(old(39), &version("old", 3, old(39))),
            old(39),
        ),
        written(put_snapshot(&reader, old(20), &database), old(20)),
        written(
            reader.put_job(old(10), &version("old", 4, old(10))),
            old(10),
        ),
    ];
    let before = live(&reader);
    // How far back `status` says the bucket restores.
    let restorable_from = |endpoint: &str| {
        let output = jobvault(Some(endpoint))
            .args(["status", "--json", "--bucket", &url])
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        status["history"]["restorable_from"].clone()
    };
    assert_eq!(restorable_from(&endpoint), serde_json::Value::Null);
    let newest_before = workspace.path().join("newest-before.db");
    assert!(
        restore(&endpoint, &url, &newest_before, None)
            .status
            .success()
    );

    let dry = prune(&endpoint, &url, &["--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let deleting = format!("would delete {url}/");
    let named: BTreeSet<String> = stdout(&dry)
        .lines()
        .filter_map(|l| l.strip_prefix(&deleting).map(str::to_owned))
        .collect();
    assert_eq!(named, doomed, "{}", stdout(&dry));
    assert_eq!(live(&reader), before, "a dry run deletes nothing");

    let real = prune(&endpoint, &url, &[]);
    assert!(real.status.success(), "{}", stderr(&real));
    let after = live(&reader);
    assert_eq!(
        before.difference(&after).cloned().collect::<BTreeSet<_>>(),
        doomed,
        "{}",
        stdout(&real)
    );
    assert!(after.contains(&base) && kept.iter().all(|k| after.contains(k)));
    assert!(stdout(&real).contains(&base), "{}", stdout(&real));

    let newest_after = workspace.path().join("newest-after.db");
    assert!(
        restore(&endpoint, &url, &newest_after, None)
            .status
            .success()
    );
    assert_eq!(bodies(&newest_after), bodies(&newest_before));
    assert_eq!(bodies(&newest_after)["a"], bodies(&workspace.db())["a"]);
    // Before the base, the bucket refuses rather than restore short.
    let output = restore(
        &endpoint,
        &url,
        &workspace.path().join("too-old.db"),
        Some(old(44)),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("before the bucket's history"),
        "{}",
        stderr(&output)
    );
    // The window's start when the prune ran: 30 days before it.
    let promised = &stdout(&real)
        .lines()
        .find_map(|l| l.strip_prefix("restorable from "))
        .and_then(|l| l.strip_suffix(" on"))
        .expect("the prune says from when")
        .to_owned();
    let promised_at = Timestamp::parse_rfc3339(promised).unwrap();
    assert!(promised_at > now - DAY * 30 && promised_at < jobvault::clock::now() - DAY * 30);
    assert_eq!(restorable_from(&endpoint), promised.as_str());
    // A second prune finds nothing more to delete.
    let again = prune(&endpoint, &url, &[]);
    assert!(
        stdout(&again).contains("deleted 0 objects"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn the_daemon_prunes_by_default_and_reports_how_far_back_the_bucket_restores() {
    let emulator = Emulator::shared();
    // A directory, so that history can carry the upload times it had.
    let root = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.path().display());
    let endpoint = emulator.endpoint();
    let workspace = Workspace::new();
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
    db.put(&[body("a", "a now")]).unwrap();
    drop(db);
    let reader = StoreReader::connect(&url, Some(&endpoint));
    let now = jobvault::clock::now();
    let old = |days: u32| now - DAY * days;
    let database = std::fs::read(workspace.db()).unwrap();
    let written = |name: String, at: Timestamp| {
        uploaded_at(root.path(), &name, at + Duration::from_secs(60));
        name
    };
    let doomed = [
        written(put_snapshot(&reader, old(45), &database), old(45)),
        written(
            reader.put_job(old(45), &version("old", 1, old(45))),
            old(45),
        ),
    ];
    let base = written(put_snapshot(&reader, old(40), &database), old(40));

    // No --keep: the default, 30 days.
    let daemon = Daemon::start(&workspace, Some(&endpoint), &url, "200ms", &[]);
    eventually("the prune at start", PATIENCE, || {
        let left = live(&reader);
        doomed.iter().all(|d| !left.contains(d)).then_some(())
    });
    assert!(live(&reader).contains(&base));
    let scrape = eventually("the prune's metrics", PATIENCE, || {
        let scrape = daemon.scrape();
        scrape
            .lines()
            .any(|l| l.starts_with("jobvault_pruned_objects_total{") && l.ends_with(" 2"))
            .then_some(scrape)
    });
    let value = |name: &str| -> f64 {
        let line = scrape
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("{name} in {scrape}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("jobvault_keep_seconds"), 30.0 * 86_400.0);
    // The window's start when the daemon pruned, 30 days before.
    let oldest = value("jobvault_oldest_restorable_timestamp_seconds");
    let window_start = |t: Timestamp| (t - DAY * 30).unix_seconds() as f64;
    assert!(oldest >= window_start(now) - 1.0, "{scrape}");
    assert!(
        oldest <= window_start(jobvault::clock::now()) + 1.0,
        "{scrape}"
    );
    assert!(daemon.log().contains("pruned"), "{}", daemon.log());
}

/// A snapshot overwritten since (here by damaged bytes) is still the base
/// of a restore to an instant when it was live: its noncurrent generation
/// is read, and the summary names it.
#[test]
fn restore_at_reads_a_snapshot_generation_overwritten_since() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_versioned_bucket("overwritten");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "a", "name": "kept"})]);
    let name = back_up_once(Some(&emulator.endpoint()), &url, &workspace.db());
    let at = jobvault::clock::now();
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let framing = jobvault_core::object_name::Framing::for_object(&name, at);
    jobvault_tests::runtime()
        .block_on(reader.store().put(&name, b"garbage".to_vec(), &framing))
        .unwrap();

    let to = workspace.path().join("past.db");
    let output = restore(&emulator.endpoint(), &url, &to, Some(at));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(bodies(&to).contains_key("a"));
    assert!(
        stdout(&output).contains(&format!("{name}#")),
        "names the generation: {}",
        stdout(&output)
    );
}

/// Every backup deleted from a versioned bucket: the runbook sends the
/// operator to `snapshots` for the generations kept, which found nothing
/// (the day folders hold no live object), and a restore said "nothing
/// found", with `--if-replica-exists` exiting 0 on an empty database.
#[test]
fn backups_deleted_from_a_versioned_bucket_are_listed_and_never_taken_for_none() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_versioned_bucket("deleted");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "a", "name": "kept"})]);
    back_up_once(Some(&emulator.endpoint()), &url, &workspace.db());
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let names = reader.names("db-backup/");
    for name in &names {
        jobvault_tests::runtime()
            .block_on(reader.store().delete(name))
            .unwrap();
    }
    assert!(reader.names("db-backup/").is_empty());

    let listed = jobvault(Some(&emulator.endpoint()))
        .args(["snapshots", "--bucket", &url])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        stdout(&listed).contains(&names[0]) && stdout(&listed).contains("noncurrent"),
        "{}",
        stdout(&listed)
    );

    let to = workspace.path().join("restored.db");
    let restored = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--if-replica-exists", "--to"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(restored.status.code(), Some(3), "{}", stdout(&restored));
    assert!(
        stderr(&restored).contains("only noncurrent generations are left"),
        "{}",
        stderr(&restored)
    );
    assert!(!to.exists());
}
