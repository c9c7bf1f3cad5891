//! Any writer in any language is captured: plain SQL from the `sqlite3` CLI,
//! Python and Go, written while the daemon runs, reaches the bucket, deletes
//! included, and a restore brings back every body byte for byte. The
//! database itself refuses bad rows, and `init` upgrades a database of the
//! first release in place.

use std::fs;

use jobvault::db::JobDb;
use jobvault_tests::writers::{
    caught_up, go, init, python, readme_example, rows, sqlite3, sqlite3_output,
};
use jobvault_tests::{Daemon, Emulator, Workspace, jobvault, stderr, stdout};

#[test]
fn changes_from_sqlite3_python_and_go_reach_the_bucket_and_restore_byte_for_byte() {
    let test = "changes_from_sqlite3_python_and_go_reach_the_bucket_and_restore_byte_for_byte";
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("writers"));
    let workspace = Workspace::new();
    let db = workspace.db();
    init(&db);
    let _daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);

    sqlite3(&db, &readme_example("sql"));
    let output = python(&db, &readme_example("python"));
    assert!(output.status.success(), "python: {}", stderr(&output));
    let go_wrote = go(test, &db, &readme_example("go")).map(|output| {
        assert!(output.status.success(), "go: {}", stderr(&output));
    });
    // A body with a line break, spacing and fields of its own; a job deleted
    // and inserted again; an INSERT OR REPLACE.
    let output = python(
        &db,
        "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1], timeout=10)\n\
         with db:\n\
         \x20   db.execute(\"INSERT INTO jobs (id, body) VALUES ('job-5', ?)\",\n\
         \x20              ('{\"id\": \"job-5\",\\n  \"name\": \"Pretty\", \"unknown\": {\"n\": 1.50, \"s\": \"\\\\u00e9\"}}',))\n\
         with db:\n\
         \x20   db.execute(\"INSERT INTO jobs (id, body) VALUES ('job-2', '{\\\"id\\\":\\\"job-2\\\",\\\"name\\\":\\\"back\\\"}')\")\n\
         \x20   db.execute(\"INSERT OR REPLACE INTO jobs (id, body) VALUES ('job-3', '{\\\"id\\\":\\\"job-3\\\",\\\"v\\\":2}')\")\n",
    );
    assert!(output.status.success(), "python: {}", stderr(&output));
    caught_up(&db);
    // A plain UPDATE of a job already in the bucket.
    sqlite3(
        &db,
        "UPDATE jobs SET body = json_set(body, '$.status', 'done') WHERE id = 'job-3';",
    );
    caught_up(&db);

    let source = rows(&db);
    let ids: Vec<&str> = source.iter().map(|(id, _)| id.as_str()).collect();
    let mut expected = vec!["job-2", "job-3", "job-5"];
    if go_wrote.is_some() {
        expected.insert(2, "job-4");
    }
    assert_eq!(
        ids, expected,
        "job-1 was deleted; job-2 deleted and written again"
    );

    let output = jobvault(Some(&emulator.endpoint()))
        .args([
            "retrieve",
            "--bucket",
            &url,
            "--since",
            "2020-01-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "retrieve: {}", stderr(&output));
    let printed: Vec<String> = source
        .iter()
        .map(|(_, body)| body.replace('\n', " "))
        .collect();
    assert_eq!(stdout(&output).lines().collect::<Vec<_>>(), printed);

    let restored = workspace.path().join("restored.db");
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(output.status.success(), "restore: {}", stderr(&output));
    assert_eq!(
        rows(&restored),
        source,
        "the restore equals the source, byte for byte"
    );

    // The restored database keeps tracking: a plain-SQL write takes a
    // sequence past the restored cursor.
    let cursor = JobDb::open(&restored).unwrap().cursor().unwrap();
    sqlite3(
        &restored,
        "INSERT INTO jobs (id, body) VALUES ('after', '{\"id\":\"after\"}');",
    );
    let seq: u64 = sqlite3(&restored, "SELECT seq FROM jobs WHERE id = 'after';")
        .trim()
        .parse()
        .unwrap();
    assert!(
        seq > cursor.seq,
        "seq {seq} is not past the cursor {cursor:?}"
    );
}

#[test]
fn one_plain_sql_transaction_of_10000_writes_takes_10000_sequences_in_order() {
    let workspace = Workspace::new();
    let db = workspace.db();
    init(&db);
    sqlite3(
        &db,
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO jobs (id, body) SELECT 'bulk-' || i, json_object('id', 'bulk-' || i) FROM n;
         UPDATE jobs SET body = json_set(body, '$.status', 'success');
         COMMIT;",
    );
    let counts = sqlite3(
        &db,
        "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq),
                (SELECT value FROM meta WHERE key = 'change_counter'),
                SUM(body LIKE '%success%'), SUM(db_modified > 0)
         FROM jobs;",
    );
    assert_eq!(counts.trim(), "5000|5000|5001|10000|10000|5000|5000");
    // The feed gives the updates in commit order.
    let feed = JobDb::open(&db)
        .unwrap()
        .changes(0, 20_000, u64::MAX)
        .unwrap();
    assert!(feed.complete && feed.unreadable.is_empty());
    let seqs: Vec<u64> = feed.jobs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (5001..=10_000).collect::<Vec<_>>());
}

#[test]
fn bad_rows_are_refused_by_the_database_with_the_rule_and_nothing_is_written() {
    let workspace = Workspace::new();
    let db = workspace.db();
    init(&db);
    sqlite3(
        &db,
        "INSERT INTO jobs (id, body) VALUES ('ok', '{\"id\":\"ok\"}');",
    );
    let before = sqlite3(&db, ".dump");
    let long = "x".repeat(257);
    let cases = [
        ("'c'", "'not json'", "a job body must be valid JSON text"),
        (
            "'c'",
            "'{\"id\":\"d\"}'",
            "a job body must be a JSON object whose id is the row's id",
        ),
        (
            "'c'",
            "'[1]'",
            "a job body must be a JSON object whose id is the row's id",
        ),
        (
            "'a/b'",
            "'{\"id\":\"a/b\"}'",
            "a job id must not contain '/'",
        ),
        (
            "'a..b'",
            "'{\"id\":\"a..b\"}'",
            "a job id must not contain '..'",
        ),
        (
            "'t' || char(9)",
            "'{}'",
            "a job id must not contain control characters",
        ),
        ("''", "'{}'", "a job id must be non-empty text"),
        (
            &format!("'{long}'"),
            "'{}'",
            "a job id must be at most 256 bytes",
        ),
        (
            "'.hidden'",
            "'{\"id\":\".hidden\"}'",
            "a job id must not start with '.'",
        ),
        // The body `{"id":"c","x":"<bytes>"}` with bytes that are not UTF-8:
        // a byte never in UTF-8, Latin-1's é, a stray continuation byte.
        (
            "'c'",
            "CAST(X'7B226964223A2263222C2278223A22FF227D' AS TEXT)",
            "a job body must be UTF-8 text",
        ),
        (
            "'c'",
            "CAST(X'7B226964223A2263222C2278223A22636166E9227D' AS TEXT)",
            "a job body must be UTF-8 text",
        ),
        (
            "'c'",
            "CAST(X'7B226964223A2263222C2278223A22B0227D' AS TEXT)",
            "a job body must be UTF-8 text",
        ),
        (
            "CAST(X'63E9' AS TEXT)",
            "'{}'",
            "a job id must be UTF-8 text",
        ),
        (
            "'c'",
            "'{\"id\":\"c\",\"x\":\"' || replace(hex(zeroblob(33554432)), '0', 'x') || '\"}'",
            "a job body must be at most 67108864 bytes",
        ),
    ];
    for (id, body, rule) in cases {
        // In a transaction with a good write first: the writer's failure
        // leaves nothing behind.
        let sql = format!(
            "BEGIN;
             INSERT INTO jobs (id, body) VALUES ('good', '{{\"id\":\"good\"}}');
             INSERT INTO jobs (id, body) VALUES ({id}, {body});
             COMMIT;"
        );
        let output = sqlite3_output(&db, &sql);
        assert!(!output.status.success(), "{id} {body} was accepted");
        let said = stderr(&output);
        assert!(
            said.contains(&format!("jobvault: {rule}")),
            "{id} {body}: {said}"
        );
    }
    for (sql, rule) in [
        (
            "UPDATE jobs SET id = 'other' WHERE id = 'ok';",
            "a job id cannot change",
        ),
        (
            "UPDATE jobs SET body = '{\"name\":\"no id\"}' WHERE id = 'ok';",
            "whose id is the row's id",
        ),
    ] {
        let output = sqlite3_output(&db, sql);
        assert!(!output.status.success(), "{sql} was accepted");
        assert!(stderr(&output).contains(rule), "{sql}: {}", stderr(&output));
    }
    assert_eq!(
        sqlite3(&db, ".dump"),
        before,
        "a refused write changed the database"
    );
    // Text the UTF-8 rule must not take for bad bytes: characters whose
    // encoding holds a C2 lead byte or continuation bytes, and a real U+FFFD.
    sqlite3(
        &db,
        "INSERT INTO jobs (id, body) VALUES ('°€😀�', '{\"id\":\"°€😀�\",\"x\":\"£ µ ¿ é\"}');",
    );

    // Python sees the same rule as an IntegrityError.
    let output = python(
        &db,
        "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         try:\n\
         \x20   with db:\n\
         \x20       db.execute(\"INSERT INTO jobs (id, body) VALUES ('p', '{\\\"id\\\": \\\"q\\\"}')\")\n\
         except sqlite3.IntegrityError as e:\n\
         \x20   print(e)\n",
    );
    assert!(
        stdout(&output)
            .contains("jobvault: a job body must be a JSON object whose id is the row's id"),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
}

#[test]
fn init_upgrades_a_first_release_database_in_place_keeping_everything() {
    let workspace = Workspace::new();
    let db = workspace.db();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/first-release.db");
    fs::copy(fixture, &db).unwrap();
    // What the service built on the table: an index, a trigger, a view.
    sqlite3(
        &db,
        "CREATE INDEX jobs_by_modified ON jobs (db_modified);
         CREATE TABLE audit (id TEXT);
         CREATE TRIGGER audit_status AFTER UPDATE OF body ON jobs BEGIN
             INSERT INTO audit VALUES (NEW.id);
         END;
         CREATE VIEW recent AS SELECT id FROM jobs WHERE seq > 2;",
    );
    let jobs_and_meta = "SELECT id, seq, db_modified, body FROM jobs ORDER BY id;
                         SELECT key, value FROM meta WHERE key != 'schema_version' ORDER BY key;";
    let before = sqlite3(&db, jobs_and_meta);
    assert!(before.contains("job-4|5|"), "the fixture changed: {before}");

    assert!(init(&db).contains("upgraded the schema from version 1 to 3"));
    assert_eq!(
        sqlite3(&db, jobs_and_meta),
        before,
        "a job, the counter or the cursor changed"
    );
    let upgraded = sqlite3(&db, ".dump");
    assert!(init(&db).contains("schema version 3 is current; nothing to do"));
    assert_eq!(
        sqlite3(&db, ".dump"),
        upgraded,
        "a second init changed the database"
    );

    sqlite3(
        &db,
        "UPDATE jobs SET body = json_set(body, '$.status', 'canceled') WHERE id = 'job-3';",
    );
    let seq = sqlite3(&db, "SELECT seq FROM jobs WHERE id = 'job-3';");
    assert_eq!(
        seq.trim(),
        "6",
        "the upgraded database tracks changes after the old counter"
    );
    let theirs = sqlite3(
        &db,
        "SELECT name FROM sqlite_master WHERE name IN ('jobs_by_modified', 'audit_status') ORDER BY name;
         SELECT id FROM audit;
         SELECT id FROM recent ORDER BY id;",
    );
    assert_eq!(
        theirs.lines().collect::<Vec<_>>(),
        [
            "audit_status",
            "jobs_by_modified",
            "job-3",
            "job-2",
            "job-3",
            "job-4"
        ],
        "the service's index, trigger and view survive the upgrade and read the new table"
    );
}

#[test]
fn init_refuses_to_upgrade_a_database_with_a_bad_row_and_leaves_it_as_it_was() {
    let workspace = Workspace::new();
    let db = workspace.db();
    fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/first-release.db"),
        &db,
    )
    .unwrap();
    sqlite3(&db, "UPDATE jobs SET body = 'not json' WHERE id = 'job-3';");
    let before = sqlite3(&db, ".dump");
    let output = jobvault(None)
        .args(["init", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains(
            "cannot be upgraded: a job breaks the rule \"a job body must be valid JSON text\""
        ),
        "{said}"
    );
    assert_eq!(sqlite3(&db, ".dump"), before);
}

#[test]
fn a_row_that_is_not_utf8_is_named_not_skipped() {
    let workspace = Workspace::new();
    let db = workspace.db();
    init(&db);
    // SQLite does not check that text is UTF-8; a writer that dropped the
    // database's rules can store any bytes.
    sqlite3(
        &db,
        "DROP TRIGGER jobvault_rules_insert;
         INSERT INTO jobs (id, body)
             VALUES (CAST(X'61C0' AS TEXT), CAST(X'7B226964223A2261C0227D' AS TEXT));",
    );
    let output = jobvault(None)
        .args(["jobs", "list", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("its id is not UTF-8 text (change 1)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn run_upgrades_a_first_release_database_and_backs_up_what_the_cursor_lacks() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("upgrade"));
    let workspace = Workspace::new();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/first-release.db");
    fs::copy(fixture, workspace.db()).unwrap();
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    caught_up(&workspace.db());
    assert!(
        daemon.log().contains("upgraded the job database's schema"),
        "{}",
        daemon.log()
    );
    let reader = jobvault_tests::StoreReader::connect(&url, Some(&emulator.endpoint()));
    let names = reader.names("job-backup/");
    assert_eq!(names.len(), 1, "only job-4 was past the cursor: {names:?}");
    assert!(names[0].ends_with("/job-4.job"), "{names:?}");
}
