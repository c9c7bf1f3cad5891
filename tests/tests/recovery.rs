//! Recovery: retrieve, restore, verify and status against real stores.

use std::collections::BTreeMap;
use std::fs;
use std::process::Output;
use std::time::{Duration, SystemTime};

use jobvault::db::JobDb;
use jobvault_core::job_object::encode_job_object;
use jobvault_core::object_name::{Framing, job_object, snapshot_object};
use jobvault_core::{Envelope, Job, JobId, Timestamp};
use jobvault_tests::{
    Backend, Daemon, Emulator, StoreReader, Workspace, eventually, jobvault, runtime,
};

const PATIENCE: Duration = Duration::from_secs(180);
const DAY: Duration = Duration::from_secs(86_400);

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn version(id: &str, seq: u64) -> Envelope {
    let mut job = Job::new(JobId::new(id).unwrap(), format!("{id} version {seq}"));
    job.db_modified = Timestamp::from_unix_seconds(1_700_000_000 + seq as i64);
    Envelope::new(seq, job.db_modified, job)
}

/// Writes a job object into the day folder of `day`, as an older jobvault
/// would have on that day.
fn put_version(reader: &StoreReader, day: Timestamp, envelope: &Envelope) {
    let name = job_object(day, &envelope.job.id);
    let framing = Framing::for_object(&name, envelope.modified);
    let body = encode_job_object(envelope, &framing);
    runtime()
        .block_on(reader.store().put(&name, body, &framing))
        .unwrap();
}

fn retrieve(endpoint: &str, url: &str, since: Timestamp, extra: &[&str]) -> Output {
    jobvault(Some(endpoint))
        .args(["retrieve", "--bucket", url, "--since", &since.rfc3339()])
        .args(extra)
        .output()
        .unwrap()
}

fn retrieved(output: &Output) -> Vec<(String, String)> {
    stdout(output)
        .lines()
        .map(|line| {
            let job: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                job["id"].as_str().unwrap().to_owned(),
                job["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn retrieve_returns_the_newest_version_of_each_job_across_day_folders() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("retrieve");
    let url = format!("gs://{bucket}");
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let now = jobvault::clock::now();
    let days_ago = |n: u32| now - DAY * n;
    put_version(&reader, days_ago(3), &version("a", 1));
    put_version(&reader, days_ago(1), &version("a", 5));
    put_version(&reader, now, &version("a", 9));
    put_version(&reader, days_ago(2), &version("b", 2));
    // An older folder may hold a newer version (a clock step): the version
    // inside the object decides, not the folder.
    put_version(&reader, now, &version("c", 3));
    put_version(&reader, days_ago(1), &version("c", 7));
    // Only in a folder before the day of `since`.
    put_version(&reader, days_ago(3), &version("e", 4));

    let output = retrieve(&emulator.endpoint(), &url, days_ago(2), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        retrieved(&output),
        [
            ("a".to_owned(), "a version 9".to_owned()),
            ("b".to_owned(), "b version 2".to_owned()),
            ("c".to_owned(), "c version 7".to_owned()),
        ]
    );
    let full: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    assert_eq!(
        full,
        serde_json::to_value(&version("a", 9).job).unwrap(),
        "the whole job comes back"
    );
}

#[test]
fn retrieve_skips_objects_uploaded_before_since() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("since");
    let url = format!("gs://{bucket}");
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let now = jobvault::clock::now();
    put_version(&reader, now, &version("early", 1));
    std::thread::sleep(Duration::from_millis(1100));
    let since = jobvault::clock::now();
    put_version(&reader, now, &version("late", 2));
    let output = retrieve(&emulator.endpoint(), &url, since, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        retrieved(&output),
        [("late".to_owned(), "late version 2".to_owned())]
    );
}

#[test]
fn a_corrupt_job_object_fails_retrieve_unless_skipped() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("corrupt");
    let url = format!("gs://{bucket}");
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let now = jobvault::clock::now();
    put_version(&reader, now, &version("good", 1));
    let bad = job_object(now, &JobId::new("bad").unwrap());
    let framing = Framing::for_object(&bad, now);
    runtime()
        .block_on(
            reader
                .store()
                .put(&bad, b"\x1f\x8bnot really gzip".to_vec(), &framing),
        )
        .unwrap();

    let output = retrieve(&emulator.endpoint(), &url, now - DAY, &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&format!("{url}/{bad}")),
        "the object is named: {text}"
    );
    assert!(
        stdout(&output).is_empty(),
        "nothing is printed when failing"
    );

    let output = retrieve(&emulator.endpoint(), &url, now - DAY, &["--skip-corrupt"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        retrieved(&output),
        [("good".to_owned(), "good version 1".to_owned())]
    );
    assert!(
        stderr(&output).contains("1 corrupt objects skipped"),
        "{}",
        stderr(&output)
    );
}

fn all_jobs(db: &std::path::Path) -> BTreeMap<String, Envelope> {
    JobDb::open(db)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.job.id.to_string(), e))
        .collect()
}

#[test]
fn restore_after_kill_9_equals_the_source_job_for_job_and_run_continues_from_it() {
    // The emulator's memory backend slows down as objects pile up; its
    // filesystem backend keeps a steady pace for these 11,000 uploads.
    let data = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(Backend::Filesystem(data.path().to_owned()));
    let emulator = &emulator;
    let bucket = emulator.new_bucket("restore");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    let mut db = JobDb::create(&workspace.db(), jobvault::clock::now()).unwrap();
    let jobs: Vec<Job> = (0..10_000)
        .map(|n| {
            Job::new(
                JobId::new(format!("20161116T220425.{n:09}Z_{n:016x}")).unwrap(),
                "first",
            )
        })
        .collect();
    db.put(jobs, jobvault::clock::now()).unwrap();

    workspace.trigger("before-changes", "");
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    eventually("the snapshot", PATIENCE, || {
        (!reader.names("db-backup/").is_empty()).then_some(())
    });

    // 1,000 later changes: 800 rewrites and 200 new jobs.
    let changes: Vec<Job> = (0..800)
        .map(|n| n * 12)
        .map(|n| {
            Job::new(
                JobId::new(format!("20161116T220425.{n:09}Z_{n:016x}")).unwrap(),
                "changed",
            )
        })
        .chain((10_000..10_200).map(|n| Job::new(JobId::new(format!("new-{n}")).unwrap(), "added")))
        .collect();
    db.put(changes, jobvault::clock::now()).unwrap();
    let newest = db.list().unwrap().iter().map(|e| e.seq).max().unwrap();
    eventually("every change uploaded", PATIENCE, || {
        (db.cursor().unwrap().seq == newest).then_some(())
    });
    daemon.kill();
    drop(db);
    let source = all_jobs(&workspace.db());
    assert_eq!(source.len(), 10_200);

    let target = workspace.path().join("restored.db");
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    assert!(report.contains("total jobs    10200"), "{report}");
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
    let backup = jobvault(None)
        .args(["backup", "--bucket", &url, "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(backup.status.success(), "{}", stderr(&backup));
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

/// A bucket holding one snapshot of a few jobs, made by `jobvault backup`.
fn bucket_with_a_snapshot(emulator: &Emulator, name: &str) -> (String, String) {
    let bucket = emulator.new_bucket(name);
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[
        serde_json::json!({ "id": "a", "name": "A" }),
        serde_json::json!({ "id": "b", "name": "B" }),
    ]);
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["backup", "--bucket", &url, "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    (url, stdout(&output).trim().to_owned())
}

fn verify(emulator: &Emulator, url: &str) -> Output {
    jobvault(Some(&emulator.endpoint()))
        .args(["verify", "--bucket", url])
        .output()
        .unwrap()
}

#[test]
fn verify_passes_a_sound_snapshot_and_fails_a_damaged_one() {
    let emulator = Emulator::shared();
    for damage in ["flip", "truncate"] {
        let (url, object) = bucket_with_a_snapshot(emulator, damage);
        let sound = verify(emulator, &url);
        assert!(
            sound.status.success(),
            "{}{}",
            stdout(&sound),
            stderr(&sound)
        );
        assert!(stdout(&sound).contains("CRC ok"), "{}", stdout(&sound));

        let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
        let mut bytes = reader.get(&object);
        match damage {
            "flip" => {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x55;
            }
            _ => bytes.truncate(bytes.len() / 2),
        }
        let framing = Framing::for_object(&object, Timestamp::from_unix_seconds(1_700_000_000));
        runtime()
            .block_on(reader.store().put(&object, bytes, &framing))
            .unwrap();

        let damaged = verify(emulator, &url);
        assert_eq!(
            damaged.status.code(),
            Some(1),
            "{damage}: {}",
            stdout(&damaged)
        );
        let failures = stderr(&damaged);
        assert!(
            !failures.is_empty() && failures.lines().all(|l| l.starts_with("FAIL  ")),
            "{failures}"
        );
        assert!(
            failures.contains(&format!("{url}/{object}")),
            "{damage}: {failures}"
        );
    }
}

/// Sets a file's modification time to `age` ago.
fn age_file(path: &std::path::Path, age: Duration) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

/// Replaces what changes from run to run (times, the dates in object
/// names, the temporary directory) so a report can be compared to a snapshot.
fn redact(text: &str, root: &std::path::Path) -> String {
    let text = text.replace(&root.display().to_string(), "[ROOT]");
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<String> = line
            .split(' ')
            .map(|word| {
                let bare = word.trim_end_matches(',');
                if Timestamp::parse_rfc3339(bare).is_ok() {
                    word.replace(bare, "[TIME]")
                } else if let Some(at) = word.find("-backup/") {
                    let (head, tail) = word.split_at(at + "-backup/".len());
                    format!("{head}[YYYY/MM/DD]{}", &tail[10.min(tail.len())..])
                } else {
                    word.to_owned()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

#[test]
fn status_of_an_empty_bucket_says_there_is_no_snapshot() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("empty");
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["status", "--bucket", &format!("gs://{bucket}")])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output).replace(&bucket, "[BUCKET]");
    insta::assert_snapshot!(text);
}

#[test]
fn status_of_a_stale_bucket_warns() {
    let dir = tempfile::tempdir().unwrap();
    let now = jobvault::clock::now();
    let snapshot = dir
        .path()
        .join(snapshot_object(now - Duration::from_secs(30 * 3600), "nightly").unwrap());
    let job = dir.path().join(job_object(
        now - Duration::from_secs(7200),
        &JobId::new("j").unwrap(),
    ));
    for (path, age) in [(&snapshot, 30 * 3600), (&job, 7200)] {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
        age_file(path, Duration::from_secs(age));
    }
    let url = format!("file://{}", dir.path().display());
    let output = jobvault(None)
        .args(["status", "--bucket", &url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!(redact(&stdout(&output), dir.path()));

    let json = jobvault(None)
        .args(["status", "--bucket", &url, "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["snapshots_last_24h"], 0);
    assert_eq!(json["warnings"].as_array().unwrap().len(), 2);
    assert!(json["newest_snapshot"]["age_seconds"].as_u64().unwrap() >= 30 * 3600);
}

#[test]
fn the_demo_restores_every_job() {
    let output = jobvault(None).arg("demo").output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let report = stdout(&output);
    let last = report.lines().last().unwrap();
    assert!(
        last.trim_start().starts_with("restored ") && last.ends_with(", 0 lost"),
        "{report}"
    );
}
