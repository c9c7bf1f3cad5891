//! `bench writes`: what the change-tracking triggers cost a writer, against
//! the first release's writer and against this schema without them.

use std::path::Path;
use std::time::{Duration, Instant};

use jobvault::db::JobDb;
use jobvault_core::{JobId, Timestamp};
use jobvault_tests::Workspace;

use super::setup::realistic_job;
use super::targets::Figure;
use super::verdict::Measured;

/// 100,000 jobs written in batches of 1,000, twice (new jobs, then every job
/// rewritten): the way every writer writes now, through the schema's
/// triggers and constraints, and the first release's way, jobvault's writer
/// numbering rows in the first release's schema. Each into a fresh database,
/// the same bodies, in one run; the fastest of three rounds. "jobs put" also
/// does what each release's `jobs put` does with a line before it writes it
/// (this one checks it with the job model and stores it as given; the first
/// release filled in defaults and serialized the job again); "bare SQL" is
/// the writes alone, what an outside writer pays.
pub fn run() -> Measured {
    println!("== writes: 100,000 jobs put in batches of 1,000, with and without the triggers");
    let mut rng = fastrand::Rng::with_seed(7);
    let batches: Vec<Vec<(JobId, String)>> = (0..100)
        .map(|b| {
            (0..1000)
                .map(|i| realistic_job(b * 1000 + i, &mut rng))
                .collect()
        })
        .collect();
    let mut best = [[Duration::MAX; 2]; 5];
    for _ in 0..3 {
        let rounds = [
            timed_writes(&batches, true, put_tracked),
            timed_writes(&batches, false, put_tracked),
            timed_writes(&batches, true, put_first_release_way),
            timed_writes(&batches, false, put_first_release_way),
            timed_writes(&batches, true, put_self_numbered),
        ];
        for (kept, round) in best.iter_mut().zip(rounds) {
            for (kept, pass) in kept.iter_mut().zip(round) {
                *kept = (*kept).min(pass);
            }
        }
    }
    let [put_with, bare_with, put_without, bare_without, put_numbered] = best;
    for (pass, what) in ["insert", "rewrite"].iter().enumerate() {
        println!(
            "  {what:<8} jobs put  with triggers {:5.2} s   writer numbering rows itself {:5.2} s   {:.2}x",
            put_with[pass].as_secs_f64(),
            put_numbered[pass].as_secs_f64(),
            put_with[pass].as_secs_f64() / put_numbered[pass].as_secs_f64()
        );
        for (how, with, without) in [
            ("jobs put", put_with[pass], put_without[pass]),
            ("bare SQL", bare_with[pass], bare_without[pass]),
        ] {
            println!(
                "  {what:<8} {how:<9} with triggers {:5.2} s   first release {:5.2} s   {:.2}x",
                with.as_secs_f64(),
                without.as_secs_f64(),
                with.as_secs_f64() / without.as_secs_f64()
            );
        }
    }
    vec![
        (
            Figure::WritesVersusFirstRelease,
            put_with[0].as_secs_f64() / put_without[0].as_secs_f64(),
        ),
        (
            Figure::WritesVersusSelfNumbered,
            put_with[0].as_secs_f64() / put_numbered[0].as_secs_f64(),
        ),
    ]
}

type Writer = fn(&Path, &[Vec<(JobId, String)>], bool);

/// Times two passes of `put` over `batches` into a fresh database; with
/// `parse`, each body is read into the job model first, as `jobs put` does.
fn timed_writes(batches: &[Vec<(JobId, String)>], parse: bool, put: Writer) -> [Duration; 2] {
    let workspace = Workspace::new();
    let pass = || {
        let started = Instant::now();
        put(&workspace.db(), batches, parse);
        started.elapsed()
    };
    [pass(), pass()]
}

/// What this release's `jobs put` does with each line before it writes it.
fn check_with_job_model(batch: &[(JobId, String)], parse: bool) {
    if parse {
        for (_, body) in batch {
            std::hint::black_box(serde_json::from_str::<jobvault_core::Job>(body).unwrap());
        }
    }
}

/// What the first release's `jobs put` did with each line: defaults filled
/// in, the job model's serialization stored.
fn first_release_lines(batch: &[(JobId, String)], now: Timestamp) -> Vec<(JobId, String)> {
    batch
        .iter()
        .map(|(id, line)| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            value
                .as_object_mut()
                .unwrap()
                .entry("created")
                .or_insert_with(|| serde_json::Value::String(now.rfc3339()));
            let mut job: jobvault_core::Job = serde_json::from_value(value).unwrap();
            job.db_modified = now;
            (id.clone(), serde_json::to_string(&job).unwrap())
        })
        .collect()
}

/// What every writer does now: the writer contract's upsert; the database
/// numbers the rows.
fn put_tracked(path: &Path, batches: &[Vec<(JobId, String)>], parse: bool) {
    let (mut db, _) = JobDb::init(path, jobvault::clock::now()).unwrap();
    for batch in batches {
        check_with_job_model(batch, parse);
        db.put(batch).unwrap();
    }
}

/// This release's `jobs put` on this schema and its constraints, with the
/// triggers that track changes dropped and the writer numbering each row
/// itself in its statement, as the first release's did: the same tracking
/// without the triggers, so the ratio is what the triggers cost.
fn put_self_numbered(path: &Path, batches: &[Vec<(JobId, String)>], parse: bool) {
    drop(JobDb::init(path, jobvault::clock::now()).unwrap());
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS jobvault_track_insert;
         DROP TRIGGER IF EXISTS jobvault_track_update;
         DROP TRIGGER IF EXISTS jobvault_track_delete;",
    )
    .unwrap();
    for batch in batches {
        check_with_job_model(batch, parse);
        put_numbering_rows(&mut conn, batch, jobvault::clock::now().unix_nanos());
    }
}

/// One batch in one transaction, each row numbered from the counter by the
/// writer itself, as the first release's writer did.
fn put_numbering_rows(conn: &mut rusqlite::Connection, batch: &[(JobId, String)], now: i64) {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let mut counter: i64 = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'change_counter'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    {
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO jobs (id, seq, db_modified, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET
                     seq = excluded.seq, db_modified = excluded.db_modified, body = excluded.body",
            )
            .unwrap();
        for (id, body) in batch {
            counter += 1;
            upsert
                .execute(rusqlite::params![id.as_str(), counter, now, body])
                .unwrap();
        }
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'change_counter'",
        [counter],
    )
    .unwrap();
    tx.commit().unwrap();
}

/// The first release's writer in the first release's schema: no triggers or
/// constraints; it numbers the rows itself from the counter.
fn put_first_release_way(path: &Path, batches: &[Vec<(JobId, String)>], parse: bool) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL UNIQUE,
             db_modified INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
         INSERT OR IGNORE INTO meta (key, value) VALUES ('change_counter', 0);",
    )
    .unwrap();
    for batch in batches {
        let now = jobvault::clock::now();
        let lines;
        let batch = if parse {
            lines = first_release_lines(batch, now);
            &lines
        } else {
            batch
        };
        put_numbering_rows(&mut conn, batch, now.unix_nanos());
    }
}
