//! `jobvault restore`: the job database rebuilt from a real store, job for job.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_core::object_name::{Framing, job_object, snapshot_object};
use jobvault_core::{Envelope, JobId, Timestamp};
use jobvault_tests::{
    Backend, Daemon, Emulator, StoreReader, Workspace, back_up_once, body, eventually, jobvault,
    runtime, stderr, stdout,
};

const PATIENCE: Duration = Duration::from_secs(180);

fn all_jobs(db: &std::path::Path) -> BTreeMap<String, Envelope> {
    JobDb::open(db)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.id.to_string(), e))
        .collect()
}

#[test]
fn restore_after_kill_9_equals_the_source_job_for_job_deletes_included_and_run_continues_from_it() {
    // The emulator's memory backend slows down as objects pile up; its
    // filesystem backend keeps a steady pace for these 11,000 uploads.
    let data = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(Backend::Filesystem(data.path().to_owned()));
    let emulator = &emulator;
    let bucket = emulator.new_bucket("restore");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
    let jobs: Vec<_> = (0..10_000)
        .map(|n| body(&format!("20161116T220425.{n:09}Z_{n:016x}"), "first"))
        .collect();
    db.put(&jobs).unwrap();

    workspace.trigger("before-changes", "");
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    eventually("the snapshot", PATIENCE, || {
        (!reader.names("db-backup/").is_empty()).then_some(())
    });

    // 1,000 later changes: 800 rewrites and 200 new jobs.
    let changes: Vec<_> = (0..800)
        .map(|n| n * 12)
        .map(|n| body(&format!("20161116T220425.{n:09}Z_{n:016x}"), "changed"))
        .chain((10_000..10_200).map(|n| body(&format!("new-{n}"), "added")))
        .collect();
    db.put(&changes).unwrap();
    // And 100 jobs the snapshot holds deleted: they must not come back.
    let deleted: Vec<JobId> = (0..100)
        .map(|n| n * 12 + 1)
        .map(|n| JobId::new(format!("20161116T220425.{n:09}Z_{n:016x}")).unwrap())
        .collect();
    assert_eq!(db.delete(&deleted).unwrap(), 100);
    let newest = db.newest_seq().unwrap();
    eventually("every change uploaded", PATIENCE, || {
        (db.cursor().unwrap().seq == newest).then_some(())
    });
    daemon.kill();
    drop(db);
    let source = all_jobs(&workspace.db());
    assert_eq!(source.len(), 10_100);

    let target = workspace.path().join("restored.db");
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    assert!(report.contains("total jobs    10100"), "{report}");
    assert!(report.contains("db-backup/"), "{report}");
    let restored = all_jobs(&target);
    assert_eq!(restored.len(), source.len());
    let differing: Vec<_> = source
        .iter()
        .filter(|(id, e)| restored.get(*id) != Some(e))
        .map(|(id, _)| id)
        .take(5)
        .collect();
    assert!(
        differing.is_empty(),
        "jobs differ after the restore: {differing:?}"
    );

    // The restored database is ready for `jobvault run`: its cursor covers
    // everything in it, and new changes continue after it.
    let restored_db = JobDb::open(&target).unwrap();
    let cursor = restored_db.cursor().unwrap();
    assert_eq!(cursor.seq, newest);
    assert_eq!(restored_db.integrity_check().unwrap(), Ok(()));
    drop(restored_db);
    fs::rename(&target, workspace.db()).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{side}", workspace.db().display()));
    }
    let _daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    workspace.put_jobs(&[serde_json::json!({ "id": "after-restore", "name": "next" })]);
    let object = format!("job-backup/{}/after-restore.job", jobvault_tests::today());
    let uploaded = eventually("the next job's upload", PATIENCE, || {
        reader
            .names("job-backup/")
            .contains(&object)
            .then(|| jobvault_core::job_object::decode_job_object(&reader.get(&object)).unwrap())
    });
    assert_eq!(
        uploaded.seq,
        newest + 1,
        "the sequence continues after the restore"
    );
}

#[test]
fn restore_refuses_an_existing_file() {
    let workspace = Workspace::new();
    let existing = workspace.path().join("precious.db");
    fs::write(&existing, "do not overwrite").unwrap();
    let output = jobvault(None)
        .args([
            "restore",
            "--bucket",
            &format!("file://{}", workspace.path().display()),
            "--to",
        ])
        .arg(&existing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("already exists; pass --force"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read_to_string(&existing).unwrap(), "do not overwrite");
    let leftovers: Vec<_> = fs::read_dir(workspace.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file is left: {leftovers:?}"
    );
}

#[test]
fn restore_with_force_replaces_the_file_and_drops_its_stale_wal() {
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let url = format!("file://{}", workspace.path().join("bucket").display());
    back_up_once(None, &url, &workspace.db());
    // An old database with a WAL SQLite would replay into whatever file
    // takes its name.
    let target = workspace.path().join("old.db");
    let wal = workspace.path().join("old.db-wal");
    fs::write(&target, "old").unwrap();
    fs::write(&wal, vec![0x37; 4096]).unwrap();

    let output = jobvault(None)
        .args(["restore", "--force", "--bucket", &url, "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !wal.exists() || fs::read(&wal).unwrap() != vec![0x37; 4096],
        "the stale WAL is gone"
    );
    let restored = all_jobs(&target);
    assert_eq!(restored.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(
        JobDb::open(&target).unwrap().integrity_check().unwrap(),
        Ok(())
    );
}

/// Backups the first release made: a snapshot in its schema and a job object
/// in envelope format 1. A restore brings them into the current schema, with
/// the body format 1 stands for, and the result tracks plain-SQL writes.
#[test]
fn a_first_release_snapshot_and_format_1_object_restore_into_the_current_schema() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("first-release"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let fixture = fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/first-release.db"
    ))
    .unwrap();
    let now = jobvault::clock::now();
    let snapshot = snapshot_object(now, "first-release").unwrap();
    // The first release stamped a snapshot with its cursor time.
    let mtime = Timestamp::from_unix_nanos(1_795_647_257_231_874_924);
    reader.put_snapshot(&snapshot, mtime, &fixture);
    let v1_object = include_bytes!("../../core/tests/frozen/job-object-v1.job").to_vec();
    let id = JobId::new("20161116T220425.634818978Z_0000000000001e88").unwrap();
    let job = job_object(now, &id);
    runtime()
        .block_on(
            reader
                .store()
                .put(&job, v1_object, &Framing::for_object(&job, mtime)),
        )
        .unwrap();

    let workspace = Workspace::new();
    let target = workspace.path().join("restored.db");
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let restored = JobDb::open(&target).unwrap();
    assert_eq!(
        restored.schema_version().unwrap(),
        jobvault::db::CURRENT_VERSION
    );
    let jobs = all_jobs(&target);
    assert_eq!(
        jobs.keys().map(String::as_str).collect::<Vec<_>>(),
        [id.as_str(), "job-2", "job-3", "job-4"]
    );
    let frozen_body = include_str!("../../core/tests/frozen/envelope-v1.body.json");
    assert_eq!(jobs[id.as_str()].body(), Some(frozen_body.trim_end()));
    assert_eq!(jobs[id.as_str()].seq, 7_822);
    let cursor = restored.cursor().unwrap();
    assert_eq!(cursor.seq, 7_822);
    drop(restored);
    jobvault_tests::writers::sqlite3(
        &target,
        "UPDATE jobs SET body = json_set(body, '$.status', 'failure') WHERE id = 'job-2';",
    );
    assert_eq!(all_jobs(&target)["job-2"].seq, 7_823);
}

/// SQLite 3.40 reads only a plainly written `"id"` key, 3.53 (jobvault's) an
/// escaped one too, so a body an older writer stored can break the rule as
/// jobvault reads it. The restore writes it as it was stored.
#[test]
fn a_body_that_sqlite_versions_read_differently_restores_as_stored() {
    let workspace = Workspace::new();
    let url = format!("file://{}", workspace.path().join("bucket").display());
    let reader = StoreReader::connect(&url, None);
    let id = JobId::new("esc").unwrap();
    let body = r#"{"\u0069d": "evil", "id": "esc"}"#;
    let now = jobvault::clock::now();
    reader.put_job(now, &Envelope::written(id.clone(), 3, now, body));

    let target = workspace.path().join("restored.db");
    let output = jobvault(None)
        .args(["restore", "--from-job-objects", "--bucket", &url, "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(all_jobs(&target)["esc"].body(), Some(body));
}

/// A database backed up to one prefix, then to another: the second's job
/// objects hold only what changed after its first snapshot. With that
/// snapshot damaged, or deleted, a restore refuses rather than give what the
/// job objects hold, and `--force` leaves a good database where it is;
/// `--from-job-objects` gives it, and warns that jobs may be missing.
#[test]
fn without_a_usable_snapshot_a_restore_refuses_the_job_objects_alone_unless_asked_for() {
    let emulator = Emulator::start(Backend::Memory);
    let endpoint = emulator.endpoint();
    let bucket = emulator.new_bucket("alone");
    let workspace = Workspace::new();
    let reader = |url: &str| StoreReader::connect(url, Some(&endpoint));
    let uploaded = |url: &str, id: &str| {
        eventually(&format!("{id} uploaded"), PATIENCE, || {
            let names = reader(url).names("job-backup/");
            names
                .iter()
                .any(|n| n.ends_with(&format!("/{id}.job")))
                .then_some(())
        })
    };
    let (first, second) = (
        format!("gs://{bucket}/first"),
        format!("gs://{bucket}/second"),
    );
    workspace.put_jobs(&[serde_json::json!({"id": "early", "name": "before the move"})]);
    let daemon = Daemon::start(&workspace, Some(&endpoint), &first, "200ms", &[]);
    uploaded(&first, "early");
    assert!(daemon.stop().success());
    let daemon = Daemon::start(&workspace, Some(&endpoint), &second, "200ms", &[]);
    daemon.settled();
    workspace.put_jobs(&[serde_json::json!({"id": "late", "name": "after the move"})]);
    uploaded(&second, "late");
    assert!(daemon.stop().success());
    let second_store = reader(&second);
    let snapshots = second_store.names("db-backup/");
    let [snapshot] = snapshots.as_slice() else {
        panic!("one snapshot, not {snapshots:?}");
    };
    let whole = second_store.get(snapshot);
    let framing = Framing::for_object(snapshot, Timestamp::UNIX_EPOCH);
    runtime()
        .block_on(
            second_store
                .store()
                .put(snapshot, whole[..whole.len() / 2].to_vec(), &framing),
        )
        .unwrap();

    let good = workspace.path().join("good.db");
    fs::copy(workspace.db(), &good).unwrap();
    let before = fs::read(&good).unwrap();
    let restore = |extra: &[&str]| {
        jobvault(Some(&endpoint))
            .args(["restore", "--bucket", &second, "--to"])
            .arg(&good)
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = restore(&["--force"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("1 in the bucket, each unusable: {snapshot}"))
            && stderr(&refused).contains("--from-job-objects")
            && stderr(&refused).contains("#GENERATION"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(fs::read(&good).unwrap(), before, "--force replaced it");
    let now = jobvault::clock::now().rfc3339();
    let refused = restore(&["--force", "--at", &now]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("1 unusable") && stderr(&refused).contains("--from-job-objects"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(fs::read(&good).unwrap(), before, "--force --at replaced it");

    let rebuilt = restore(&["--force", "--from-job-objects"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert_eq!(all_jobs(&good).into_keys().collect::<Vec<_>>(), ["late"]);
    assert!(
        stderr(&rebuilt).contains("no usable snapshot: rebuilt from job objects alone")
            && stderr(&rebuilt).contains("missing"),
        "{}",
        stderr(&rebuilt)
    );
    assert!(
        stdout(&rebuilt).contains("none usable (1 passed over)")
            && stdout(&rebuilt).contains("applied       1 change from job objects"),
        "{}",
        stdout(&rebuilt)
    );

    runtime()
        .block_on(second_store.store().delete(snapshot))
        .unwrap();
    let target = workspace.path().join("restored.db");
    let refused = jobvault(Some(&endpoint))
        .args(["restore", "--bucket", &second, "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("no snapshot in the bucket"),
        "{}",
        stderr(&refused)
    );
    assert!(!target.exists());
}

/// `restore --force` over the database of a running daemon would leave the
/// daemon backing up the file it replaced, which no one reads again, while
/// it reports itself caught up: refused, naming the daemon.
#[test]
fn restore_force_refuses_the_database_a_running_daemon_backs_up() {
    let emulator = Emulator::start(Backend::Memory);
    let endpoint = emulator.endpoint();
    let url = format!("gs://{}", emulator.new_bucket("swapped"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "a", "name": "kept"})]);
    let daemon = Daemon::start(&workspace, Some(&endpoint), &url, "200ms", &[]);
    daemon.settled();
    let inode = || std::os::unix::fs::MetadataExt::ino(&fs::metadata(workspace.db()).unwrap());
    let before = inode();
    let output = jobvault(Some(&endpoint))
        .args(["restore", "--force", "--bucket", &url, "--to"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is backed up by a running jobvault (pid"),
        "{}",
        stderr(&output)
    );
    assert_eq!(inode(), before, "the file was replaced");
    assert!(daemon.stop().success());

    let output = jobvault(Some(&endpoint))
        .args(["restore", "--force", "--bucket", &url, "--to"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_ne!(inode(), before, "replaced once the daemon stopped");
}
