//! A row the daemon cannot back up never stalls the others: a writer that
//! dropped the database's rules (as one from before them would) stores text
//! that is not UTF-8, or a body over the limit, among good rows. The daemon
//! sets it aside, names it, counts it, and every later change still reaches
//! the bucket; a writer's fix clears it.

use jobvault::db::JobDb;
use jobvault_tests::writers::{caught_up, init, sqlite3};
use jobvault_tests::{Daemon, Emulator, StoreReader, Workspace, gauge};

/// The body `{"id":"u1","x":"<FF>"}`: a byte that is never UTF-8.
const NOT_UTF8: &str = "CAST(X'7B226964223A227531222C2278223A22FF227D' AS TEXT)";

/// A daemon on a fresh database whose insert rules a writer has dropped,
/// as one from before them would: its workspace, bucket URL and itself.
fn daemon_without_rules(name: &str) -> (Workspace, String, Daemon) {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket(name));
    let workspace = Workspace::new();
    init(&workspace.db());
    sqlite3(&workspace.db(), "DROP TRIGGER jobvault_rules_insert;");
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    (workspace, url, daemon)
}

fn set_aside(db: &std::path::Path) -> String {
    sqlite3(db, "SELECT id, seq, why FROM set_aside_jobs ORDER BY seq;")
}

/// Inserts, past the checks, a job whose id is an age secret key (no
/// object name may carry one); returns the id.
fn insert_key_id(db: &std::path::Path) -> String {
    let key = format!("AGE-SECRET-KEY-1{}", "Q".repeat(58));
    sqlite3(
        db,
        &format!(r#"INSERT INTO jobs (id, body) VALUES ('{key}', '{{"id":"{key}"}}');"#),
    );
    key
}

/// Restores `url` beside `workspace`'s database; the restored file.
fn restore(workspace: &Workspace, emulator: &Emulator, url: &str) -> std::path::PathBuf {
    let restored = workspace.path().join("restored.db");
    let output = jobvault_tests::jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", url, "--to"])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        jobvault_tests::stderr(&output)
    );
    restored
}

#[test]
fn a_row_that_is_not_utf8_is_set_aside_and_later_changes_still_reach_the_bucket() {
    let emulator = Emulator::shared();
    let (workspace, url, daemon) = daemon_without_rules("bad-row");
    let db = workspace.db();
    sqlite3(
        &db,
        &format!("INSERT INTO jobs (id, body) VALUES ('u1', {NOT_UTF8});"),
    );
    workspace.put_jobs(&[serde_json::json!({"id": "after", "name": "after"})]);
    caught_up(&db);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let names = reader.names("job-backup/");
    assert!(names.iter().any(|n| n.ends_with("/after.job")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("/u1.job")), "{names:?}");
    assert_eq!(set_aside(&db).trim(), "u1|1|its body is not UTF-8 text");
    daemon.settled();
    let metrics = daemon.scrape();
    assert_eq!(gauge(&metrics, "jobvault_jobs_set_aside"), Some(1.0));
    assert_eq!(gauge(&metrics, "jobvault_pending_jobs"), Some(0.0));
    let log = daemon.log();
    assert!(
        log.contains(r#"found=job "u1" change 1: its body is not UTF-8 text"#),
        "{log}"
    );

    let status = || {
        let output = jobvault_tests::jobvault(Some(&emulator.endpoint()))
            .args(["status", "--bucket", &url])
            .output()
            .unwrap();
        jobvault_tests::stdout(&output)
    };
    jobvault_tests::eventually(
        "status to name the row set aside",
        std::time::Duration::from_secs(30),
        || status().contains("WARNING: 1 row of").then_some(()),
    );

    // The writer mends the row: its record goes, and the job is backed up.
    sqlite3(
        &db,
        r#"UPDATE jobs SET body = '{"id":"u1"}' WHERE id = 'u1';"#,
    );
    caught_up(&db);
    assert_eq!(set_aside(&db).trim(), "");
    jobvault_tests::eventually(
        "the count back at 0",
        std::time::Duration::from_secs(30),
        || (gauge(&daemon.scrape(), "jobvault_jobs_set_aside") == Some(0.0)).then_some(()),
    );
    assert!(
        reader
            .names("job-backup/")
            .iter()
            .any(|n| n.ends_with("/u1.job"))
    );
}

#[test]
fn a_body_over_the_limit_is_set_aside_without_being_read_whole() {
    let emulator = Emulator::shared();
    let (workspace, url, daemon) = daemon_without_rules("big-row");
    let db = workspace.db();
    // 64 MiB and 19 bytes of JSON: over the limit.
    sqlite3(
        &db,
        r#"INSERT INTO jobs (id, body) VALUES ('big',
               '{"id":"big","x":"' || replace(hex(zeroblob(33554432)), '0', 'x') || '"}');"#,
    );
    workspace.put_jobs(&[serde_json::json!({"id": "after", "name": "after"})]);
    caught_up(&db);
    assert_eq!(
        set_aside(&db).trim(),
        "big|1|its body is 67108883 bytes, over the limit of 67108864"
    );
    let names = StoreReader::connect(&url, Some(&emulator.endpoint())).names("job-backup/");
    assert!(names.iter().any(|n| n.ends_with("/after.job")), "{names:?}");
    daemon.settled();
    assert_eq!(
        gauge(&daemon.scrape(), "jobvault_jobs_set_aside"),
        Some(1.0)
    );
    assert_eq!(JobDb::open(&db).unwrap().set_aside().unwrap().0, 1);
}

/// A body SQLite's JSON reader accepts (it stops at a NUL byte) but a
/// restore would refuse is set aside, not uploaded: one such object in the
/// bucket failed every restore and retrieve of its prefix.
#[test]
fn a_body_with_a_trailing_nul_is_set_aside_and_the_prefix_still_restores() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("nul-body"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "good", "name": "good"})]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    // The first snapshot before the row: one taken after it holds the row
    // as it is, which a restore gives back (DESIGN §4.5), and the check
    // below is of the job objects.
    daemon.settled();
    let db = workspace.db();
    sqlite3(
        &db,
        r#"INSERT INTO jobs (id, body) VALUES ('nul', '{"id":"nul"}' || char(0));"#,
    );
    caught_up(&db);
    let set_aside = set_aside(&db);
    assert!(
        set_aside.starts_with("nul|2|its body cannot be restored"),
        "{set_aside}"
    );
    daemon.stop();
    let restored = restore(&workspace, emulator, &url);
    let jobs = JobDb::open(&restored).unwrap().list().unwrap();
    let ids: Vec<_> = jobs.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, ["good"]);
}

/// A SHA-256 digest in hex, a scheduler's usual job id, is a run of
/// bech32's alphabet as long as a key's payload once in about 1,350: such a
/// job was set aside as "looks like an age secret key" and never backed up,
/// with every signal green. Only a key's checksum makes a run a key.
#[test]
fn a_hex_digest_id_of_a_keys_length_and_alphabet_is_backed_up() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("digest-id"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "good", "name": "good"})]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let db = workspace.db();
    let digest = "9f86d08c8ea3f45c2d6a7e0f3c5d4e6f7a8c9d0e2f3a4c5d6e7f8a9c0d2e3f4a";
    sqlite3(
        &db,
        &format!(r#"INSERT INTO jobs (id, body) VALUES ('{digest}', '{{"id":"{digest}"}}');"#),
    );
    caught_up(&db);
    assert_eq!(set_aside(&db).trim(), "", "nothing is set aside");
    let names = StoreReader::connect(&url, Some(&emulator.endpoint())).names("job-backup/");
    assert!(names.iter().any(|n| n.contains(digest)), "{names:?}");
    assert!(daemon.stop().success());
}

/// A job id holding an age secret key would name the job's object in the
/// bucket, readable in any listing, encrypted or not: a hostile trial's key
/// became `job-backup/…/AGE-SECRET-KEY-1….job`. The row is set aside.
#[test]
fn a_row_whose_id_is_a_secret_key_is_set_aside_and_names_no_object() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("key-id"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "good", "name": "good"})]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let db = workspace.db();
    insert_key_id(&db);
    caught_up(&db);
    let set_aside = set_aside(&db);
    assert!(
        set_aside.contains("its id looks like an age secret key"),
        "{set_aside}"
    );
    let names = StoreReader::connect(&url, Some(&emulator.endpoint())).names("job-backup/");
    assert!(names.iter().all(|n| !n.contains("QQQQ")), "{names:?}");
    stop_and_status_say_the_row_is_not_in_the_bucket(daemon, &url);
}

/// A stop, and `status` after it, with a row set aside: neither says the
/// database is safe. Both exited 0 ("every change committed before the stop
/// is in the bucket") over a row no restore gives back.
fn stop_and_status_say_the_row_is_not_in_the_bucket(daemon: Daemon, url: &str) {
    let (exit, log) = daemon.stop_and_log();
    let last = log.lines().last().unwrap_or_default();
    assert_eq!(exit.code(), Some(1), "{log}");
    assert!(
        last.contains("but 1 row of") && last.contains("set_aside_jobs"),
        "{last}"
    );
    assert!(!log.contains("QQQQ"), "the log repeats the key: {log}");
    let output = jobvault_tests::jobvault(Some(&Emulator::shared().endpoint()))
        .args(["status", "--bucket", url])
        .output()
        .unwrap();
    let said = jobvault_tests::stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("WARNING: 1 row of"), "{said}");
}

/// A job whose id no object name can carry, deleted after a snapshot held
/// it: no job object can record the deletion, so the daemon takes a
/// snapshot for it (`after-deletion-…`) and keeps its cursor below the
/// deletion until that lands. Before, the stop exited 0 and a restore
/// brought the deleted job back (a hostile trial).
#[test]
fn a_deleted_job_whose_id_names_no_object_is_not_restored() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("nameless-deleted"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "good", "name": "good"})]);
    let db = workspace.db();
    let key = insert_key_id(&db);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    // Its first snapshot holds the row.
    daemon.settled();
    sqlite3(&db, &format!("DELETE FROM jobs WHERE id = '{key}';"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    jobvault_tests::eventually(
        "a snapshot taken for the deletion",
        std::time::Duration::from_secs(60),
        || {
            let names = reader.names("db-backup/");
            names
                .iter()
                .any(|n| n.contains("/after-deletion-"))
                .then_some(())
        },
    );
    caught_up(&db);
    let (exit, log) = daemon.stop_and_log();
    assert_eq!(exit.code(), Some(0), "{log}");
    let restored = restore(&workspace, emulator, &url);
    let ids = sqlite3(&restored, "SELECT id FROM jobs ORDER BY id;");
    assert_eq!(ids.trim(), "good", "the deleted job came back");
}

/// `verify` names a row of the snapshot that does not decode, and cuts an
/// age secret key from its id as the daemon's log does: it printed the key
/// whole (a hostile trial).
#[test]
fn verify_names_a_row_whose_id_is_a_secret_key_without_the_key() {
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "good", "name": "good"})]);
    insert_key_id(&workspace.db());
    let url = format!("file://{}/bucket", workspace.path().display());
    let output = jobvault_tests::jobvault(None)
        .args(["backup", "--bucket", &url, "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        jobvault_tests::stderr(&output)
    );
    let output = jobvault_tests::jobvault(None)
        .args(["verify", "--bucket", &url])
        .output()
        .unwrap();
    let said = jobvault_tests::stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("job \"AGE-SECRET-KEY-1…\""), "{said}");
    assert!(!said.contains("QQQQ"), "{said}");
}
