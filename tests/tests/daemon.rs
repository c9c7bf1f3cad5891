//! `jobvault run` against the GCS emulator and real SQLite files.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_core::job_object::decode_job_object;
use jobvault_core::{Envelope, JobId};
use jobvault_tests::{
    Backend, Daemon, Emulator, Proxy, StoreReader, Workspace, database_versions, eventually,
    free_port, gcloud, gunzip, skip_without_gcloud, today,
};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(30);

fn job(id: &str, name: &str) -> serde_json::Value {
    json!({ "id": id, "name": name })
}

/// The newest version of every job in the bucket, by the sequence inside
/// each object.
fn backed_up(reader: &StoreReader) -> BTreeMap<String, Envelope> {
    let mut newest: BTreeMap<String, Envelope> = BTreeMap::new();
    for object in reader.list("job-backup/") {
        let envelope = decode_job_object(&reader.get(&object.name)).expect("a job object decodes");
        let id = envelope.id.to_string();
        if newest.get(&id).is_none_or(|held| held.seq < envelope.seq) {
            newest.insert(id, envelope);
        }
    }
    newest
}

#[test]
fn a_trigger_yields_a_framed_snapshot_that_opens_and_holds_the_jobs() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("snapshot");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("a", "A"), job("b.with.dots", "B"), job("c", "C")]);
    let trigger = workspace.trigger("nightly", "");
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "300ms", &[]);

    let object = format!("db-backup/{}/nightly.bdb", today());
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    eventually("the snapshot object", PATIENCE, || {
        reader.names("db-backup/").contains(&object).then_some(())
    });
    eventually("the trigger to be removed", PATIENCE, || {
        (!trigger.exists()).then_some(())
    });

    let (header, database) = gunzip(&reader.get(&object));
    assert_eq!(header.filename(), Some(&b"nightly.bdb"[..]));
    let cursor_time = JobDb::open(&workspace.db()).unwrap().cursor().unwrap().time;
    assert!(
        i64::from(header.mtime()) <= cursor_time.unix_seconds(),
        "the gzip mtime is an incremental backup time, not later than the cursor's"
    );
    assert!(
        header.mtime() > 1_700_000_000,
        "mtime {} is not a real time",
        header.mtime()
    );

    let copy = workspace.path().join("snapshot.db");
    fs::write(&copy, database).unwrap();
    let restored = JobDb::open(&copy).unwrap();
    assert_eq!(restored.integrity_check().unwrap(), Ok(()));
    let ids: Vec<String> = restored
        .list()
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(ids, ["a", "b.with.dots", "c"]);

    let metrics = eventually("the snapshot in the metrics", PATIENCE, || {
        let text = daemon.scrape();
        text.contains("jobvault_uploads_total{database=\"task-scheduler\",kind=\"snapshot\"} 1")
            .then_some(text)
    });
    let last = metrics
        .lines()
        .find(|l| l.starts_with("jobvault_last_snapshot_timestamp_seconds"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("a last snapshot time");
    assert!(last > 1_700_000_000.0, "{metrics}");

    if skip_without_gcloud("a_trigger_yields_a_framed_snapshot_that_opens_and_holds_the_jobs") {
        return;
    }
    let described = gcloud(
        &emulator.endpoint(),
        &[
            "storage",
            "objects",
            "describe",
            &format!("{url}/{object}"),
            "--format=json",
        ],
    );
    assert!(
        described.status.success(),
        "{}",
        String::from_utf8_lossy(&described.stderr)
    );
    let described: serde_json::Value = serde_json::from_slice(&described.stdout).unwrap();
    assert_eq!(described["content_type"], "application/octet-stream");
    assert_eq!(described["content_encoding"], "gzip");
    assert_eq!(
        described["content_disposition"],
        "attachment; filename=\"nightly.bdb\""
    );
}

#[test]
fn a_trigger_whose_snapshot_keeps_failing_is_tried_three_times_then_removed() {
    // The store answers every upload but the lease's with a 503: the
    // daemon holds the lease, and each snapshot fails.
    let proxy_port = free_port();
    let emulator = Emulator::start_on(free_port(), proxy_port, Backend::Memory);
    let proxy = Proxy::start(proxy_port, emulator.address(), Duration::ZERO);
    proxy.refuse_uploads(Some(503));
    let bucket = format!("gs://{}", emulator.new_bucket("failing-snapshots"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("a", "A")]);
    let trigger = workspace.trigger("doomed", "");
    let daemon = Daemon::start(&workspace, Some(&proxy.endpoint()), &bucket, "200ms", &[]);
    // The count is written before each attempt; watch it go up until the
    // trigger disappears.
    let mut seen: Vec<String> = Vec::new();
    eventually(
        "the trigger to be given up",
        PATIENCE,
        || match fs::read_to_string(&trigger) {
            Ok(content) => {
                if seen.last() != Some(&content) {
                    seen.push(content);
                }
                None
            }
            Err(_) => Some(()),
        },
    );
    assert!(
        seen.starts_with(&["1".to_owned(), "2".to_owned()])
            || seen.starts_with(&["".to_owned(), "1".to_owned(), "2".to_owned()]),
        "attempt counts seen: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|c| ["", "1", "2", "3"].contains(&c.as_str())),
        "{seen:?}"
    );
    let log = daemon.log();
    assert!(log.contains("retries exhausted"), "{log}");
    assert_eq!(
        log.matches("retrying automatic snapshot").count(),
        2,
        "{log}"
    );
    assert!(
        daemon
            .scrape()
            .contains("jobvault_triggers_exhausted_total{database=\"task-scheduler\"} 1")
    );
}

/// A bucket that does not exist yet: the daemon cannot take the lease, so
/// it serves no trigger, and none is used up before the bucket is there.
#[test]
fn with_a_missing_bucket_no_trigger_is_used_up() {
    let emulator = Emulator::shared();
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("a", "A")]);
    let trigger = workspace.trigger("kept", "");
    let daemon = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        "gs://no-such-bucket-anywhere",
        "200ms",
        &[],
    );
    eventually("the refusal to be said", PATIENCE, || {
        daemon
            .log()
            .contains("the store refuses jobvault's lease")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fs::read_to_string(&trigger).unwrap(), "", "not attempted");
    assert!(
        !daemon.log().contains("automatic snapshot"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_malformed_trigger_is_quarantined_while_a_good_one_is_served() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("quarantine");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("a", "A")]);
    workspace.trigger("broken", "three attempts");
    workspace.trigger("good", "");
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);

    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let good = format!("db-backup/{}/good.bdb", today());
    eventually("the good trigger's snapshot", PATIENCE, || {
        reader.names("db-backup/").contains(&good).then_some(())
    });
    let quarantined = workspace.workdir().join("trigger-backup-invalid/broken");
    eventually("the malformed trigger to be moved", PATIENCE, || {
        quarantined.exists().then_some(())
    });
    assert_eq!(fs::read_to_string(&quarantined).unwrap(), "three attempts");
    eventually("an empty trigger directory", PATIENCE, || {
        (fs::read_dir(workspace.triggers()).unwrap().count() == 0).then_some(())
    });
    let log = daemon.log();
    assert!(
        log.contains("malformed trigger file") && log.contains("trigger=broken"),
        "{log}"
    );
    assert!(
        log.contains("\\\"three attempts\\\"") || log.contains("\"three attempts\""),
        "{log}"
    );
    assert!(
        daemon
            .scrape()
            .contains("jobvault_triggers_quarantined_total{database=\"task-scheduler\"} 1")
    );
}

#[test]
fn changed_jobs_land_within_two_intervals_and_again_when_changed() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("jobs");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("seed", "S")]);
    let _daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1s", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));

    workspace.put_jobs(&[
        json!({ "id": "20161116T220425.634818978Z_0000000000001e88", "name": "Build", "status": "in-progress" }),
    ]);
    let id = JobId::new("20161116T220425.634818978Z_0000000000001e88").unwrap();
    let object = format!("job-backup/{}/{id}.job", today());
    // Two intervals, plus slack for a loaded machine; the latency itself is
    // measured by the benchmark, not here.
    let first = eventually("the job object", Duration::from_secs(2 + 8), || {
        reader
            .names("job-backup/")
            .contains(&object)
            .then(|| decode_job_object(&reader.get(&object)).unwrap())
    });
    let in_db = JobDb::open(&workspace.db())
        .unwrap()
        .get(&id)
        .unwrap()
        .unwrap();
    assert_eq!(first, in_db, "the object holds exactly the job as stored");

    workspace.put_jobs(&[json!({ "id": id.as_str(), "name": "Build", "status": "success" })]);
    let second = eventually(
        "the changed job's upload",
        Duration::from_secs(2 + 8),
        || {
            let envelope = decode_job_object(&reader.get(&object)).unwrap();
            (envelope.seq > first.seq).then_some(envelope)
        },
    );
    assert!(second.body().unwrap().contains(r#""status":"success""#));
    assert_eq!(
        second,
        JobDb::open(&workspace.db())
            .unwrap()
            .get(&id)
            .unwrap()
            .unwrap()
    );
}

#[test]
fn a_second_process_writing_while_the_daemon_runs_loses_nothing() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("concurrent");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("first", "F")]);
    let daemon = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        &url,
        "200ms",
        &["--concurrency", "8"],
    );

    // Another process (the CLI) and this one (the library) write at once,
    // rewriting the same jobs again and again.
    let writer = std::thread::spawn({
        let db = workspace.db();
        move || {
            let mut db = JobDb::open(&db).unwrap();
            for round in 0..40 {
                let jobs: Vec<_> = (0..10)
                    .map(|i| jobvault_tests::body(&format!("lib-{i}"), &format!("round {round}")))
                    .collect();
                db.put(&jobs).unwrap();
                std::thread::sleep(Duration::from_millis(15));
            }
        }
    });
    for round in 0..20 {
        let jobs: Vec<_> = (0..10)
            .map(|i| {
                job(
                    &format!("cli-{}", (round * 3 + i) % 25),
                    &format!("round {round}"),
                )
            })
            .collect();
        workspace.put_jobs(&jobs);
    }
    writer.join().unwrap();

    let expected = database_versions(&workspace);
    assert_eq!(expected.len(), 1 + 10 + 25);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    eventually("every job version in the bucket", PATIENCE, || {
        let got: BTreeMap<String, u64> = backed_up(&reader)
            .into_iter()
            .map(|(id, e)| (id, e.seq))
            .collect();
        (got == expected).then_some(())
    });
    eventually("no pending jobs", PATIENCE, || {
        daemon
            .scrape()
            .contains("jobvault_pending_jobs{database=\"task-scheduler\"} 0")
            .then_some(())
    });
}

#[test]
fn sigterm_finishes_work_in_flight_and_exits_zero() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("sigterm");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("a", "A")]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    eventually("the first job", PATIENCE, || {
        (!reader.names("job-backup/").is_empty()).then_some(())
    });
    let status = daemon.stop();
    assert!(status.success(), "exit status {status}");
    let cursor = JobDb::open(&workspace.db()).unwrap().cursor().unwrap();
    assert_eq!(cursor.seq, 1, "the cursor covers the uploaded job");
}

/// A commit wakes the daemon: with an interval of an hour, a job written by
/// an outside writer after the first step still reaches the bucket, because
/// the daemon notices the commit instead of waiting for the next step. On
/// Linux the OS says when the database changes (inotify), so an idle daemon
/// does not poll.
#[test]
fn a_commit_is_noticed_without_waiting_for_the_interval() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("noticed"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("first", "F")]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1h", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let day = today();
    eventually("the first step's upload", PATIENCE, || {
        reader
            .names("job-backup/")
            .contains(&format!("job-backup/{day}/first.job"))
            .then_some(())
    });
    jobvault_tests::writers::sqlite3(
        &workspace.db(),
        r#"INSERT INTO jobs (id, body) VALUES ('later', '{"id": "later", "name": "L"}');"#,
    );
    let object = format!("job-backup/{day}/later.job");
    let landed = eventually(
        "the later job, an hour before the next step",
        PATIENCE,
        || {
            reader
                .names("job-backup/")
                .contains(&object)
                .then(|| decode_job_object(&reader.get(&object)).unwrap())
        },
    );
    assert_eq!(landed.body(), Some(r#"{"id": "later", "name": "L"}"#));
    let (_, log) = daemon.stop_and_log();
    assert!(
        log.contains("watching the job database for commits: told by the OS"),
        "{log}"
    );
}

/// A job of megabytes is compressed off the daemon's one thread; it still
/// lands whole, and a small job committed after it lands too.
#[test]
fn a_job_of_megabytes_lands_whole_beside_small_ones() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("big-job");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[job("seed", "S")]);
    let _daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1s", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let log: String = (0..200_000).map(|n| format!("{n:x} ")).collect();
    assert!(log.len() > 1 << 20, "the body is over a MiB");
    workspace.put_jobs(&[json!({ "id": "big", "name": "Big", "log": log })]);
    workspace.put_jobs(&[job("small", "after the big one")]);
    let in_db = |id: &str| {
        JobDb::open(&workspace.db())
            .unwrap()
            .get(&JobId::new(id).unwrap())
            .unwrap()
            .unwrap()
    };
    let landed = eventually("both jobs in the bucket", PATIENCE, || {
        let newest = backed_up(&reader);
        (newest.contains_key("big") && newest.contains_key("small")).then_some(newest)
    });
    assert_eq!(
        landed["big"],
        in_db("big"),
        "the big job lands byte for byte"
    );
    assert_eq!(landed["small"], in_db("small"));
}
