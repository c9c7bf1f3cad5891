//! The job database's schema: the database itself tracks every change and
//! refuses bad rows, whoever writes them.
//!
//! The first release handed out change sequences in jobvault's own writer, so
//! a change made with the `sqlite3` CLI, Python or Go took no sequence and
//! never reached the bucket. Now triggers on `jobs` take the next value of
//! `meta.change_counter` for every INSERT, UPDATE and DELETE, inside the
//! writer's transaction: SQLite serializes writers, so sequence order stays
//! commit order. A delete leaves a tombstone in `deleted_jobs`, so it is
//! backed up like any other change. CHECK constraints, named for the rule
//! they keep, refuse a body that is not JSON, an id that could not be an
//! object name, and a body that names another job, so bad input fails the
//! writer's statement instead of the backup. (Constraints rather than
//! triggers: they cost less per row, and a row they refuse is never written.)
//!
//! Version 3 adds the rules a row once passed and the daemon could not back
//! up: text that is not UTF-8 (SQLite does not check), a body over
//! [`MAX_BODY_BYTES`], an id starting with `.` (which a file store hides).
//! They are triggers, not constraints: an upgrade then needs no copy of the
//! table, and a row already there that breaks them is left to the daemon,
//! which sets it aside (recorded in `set_aside_jobs`) instead of stalling on
//! it. SQL has no UTF-8 check of its own, so the rule decodes the text as
//! SQLite's GLOB does: it catches a lead byte, or a byte never in UTF-8,
//! with no continuation byte after it (Latin-1 text, the common case), an
//! overlong form, a surrogate, and a stray continuation byte after ASCII.
//! A byte followed by the wrong number of continuation bytes (`F5 80 80 80`,
//! `E2 82 AC B0`) passes it, and the daemon sets that row aside.
//!
//! All of it runs in the writer's SQLite, which may be much older than the
//! one jobvault bundles: nothing newer than SQLite 3.31 with its JSON
//! functions (no `unixepoch('subsec')`, no `RETURNING`, no `->>`), and a time
//! with millisecond precision from `julianday('now')`.

use jobvault_core::envelope::MAX_BODY_BYTES;
use rusqlite::{Connection, OptionalExtension, Transaction};

/// The schema this code writes. Version 1 is the first release's: no
/// `schema_version` in `meta`, no triggers.
pub const CURRENT_VERSION: u32 = 3;

pub(super) const SCHEMA_VERSION: &str = "schema_version";

/// The jobs table, named `NAME` (an upgrade builds it beside the old one).
/// A CHECK passes when its expression is NULL, so the rules compare with
/// `IS`. `seq` and `db_modified` default to 0 only for the moment between a
/// writer's INSERT and the trigger that sets them. `seq` is not UNIQUE: the
/// counter keeps it unique, and a writer's `INSERT OR REPLACE` naming a
/// `seq` would otherwise delete another job with no tombstone. `CONTROLS`
/// stands for the control characters of Rust's `char::is_control`: C0, DEL
/// and C1.
const JOBS_TABLE: &str = r#"
    CREATE TABLE NAME (
        id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL DEFAULT 0,
        db_modified INTEGER NOT NULL DEFAULT 0,
        body TEXT NOT NULL,
        CONSTRAINT "jobvault: a job id must be non-empty text"
            CHECK (typeof(id) = 'text' AND id != ''),
        CONSTRAINT "jobvault: a job id must be at most 256 bytes"
            CHECK (length(CAST(id AS BLOB)) <= 256),
        CONSTRAINT "jobvault: a job id must not contain '/'"
            CHECK (instr(id, '/') = 0),
        CONSTRAINT "jobvault: a job id must not contain '..'"
            CHECK (instr(id, '..') = 0),
        CONSTRAINT "jobvault: a job id must not contain control characters"
            CHECK (instr(CAST(id AS BLOB), X'00') = 0 AND id NOT GLOB '*[CONTROLS]*'),
        CONSTRAINT "jobvault: a job body must be valid JSON text"
            CHECK (typeof(body) = 'text' AND json_valid(body)),
        CONSTRAINT "jobvault: a job body must be a JSON object whose id is the row's id"
            CHECK (json_type(body, '$.id') IS 'text' AND json_extract(body, '$.id') IS id)
    );
"#;

/// Everything else the schema holds, once the jobs table exists.
const OTHER_TABLES: &str = "
    CREATE INDEX jobs_seq ON jobs (seq);
    CREATE TABLE deleted_jobs (
        id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL,
        db_modified INTEGER NOT NULL
    );
    CREATE INDEX deleted_jobs_seq ON deleted_jobs (seq);
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    );
";

/// Now, in Unix nanoseconds, to the millisecond.
pub(super) const NOW: &str =
    "(CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000000)";

/// The next change sequence, once the counter has been bumped.
const COUNTER: &str = "(SELECT value FROM meta WHERE key = 'change_counter')";

const BUMP: &str = "UPDATE meta SET value = value + 1 WHERE key = 'change_counter';";

/// Records the deletion of job `id` again, as the next change, as the
/// delete trigger records one: its sequence from the same counter, its time
/// from SQLite's clock. For a job that has no row to delete: after a restore
/// of the past, a tombstone the bucket holds a newer version of.
pub(super) fn tombstone_again(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    conn.execute(BUMP, [])?;
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO deleted_jobs (id, seq, db_modified) VALUES (?1, {COUNTER}, {NOW})"
        ),
        [id],
    )?;
    Ok(())
}

/// The triggers restore drops while it writes versions as they were backed
/// up, with their own sequences: those that assign sequences, and the rules
/// of version 3 (a version in the bucket is restored as it was stored).
const UNTRACKED: [&str; 5] = [
    "jobvault_track_insert",
    "jobvault_track_update",
    "jobvault_track_delete",
    "jobvault_rules_insert",
    "jobvault_rules_update",
];

/// Rows the daemon set aside: passed by the cursor, never in the bucket,
/// until a writer's next change to the job (which deletes its record).
const SET_ASIDE_TABLE: &str = "
    CREATE TABLE IF NOT EXISTS set_aside_jobs (
        id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL,
        why TEXT NOT NULL
    );
";

/// Whether the text `{V}` is not UTF-8, as far as SQL can tell: with the real
/// U+FFFD taken out, SQLite's decoder still reads a U+FFFD (a lead byte,
/// or a byte never in UTF-8, with no continuation byte after it, an
/// overlong form, a surrogate); or with each lead byte C2 made C3, it still reads a
/// character in U+0080..U+00BF (a continuation byte after ASCII).
const NOT_UTF8: &str = "(
    replace({V}, char(65533), '') GLOB ('*' || char(65533) || '*')
    OR replace({V}, CAST(X'C2' AS TEXT), CAST(X'C3' AS TEXT))
        GLOB ('*[' || char(128) || '-' || char(191) || ']*')
)";

/// The rules of version 3, as a trigger `NAME` on `EVENT`.
const RULES: &str = "
    CREATE TRIGGER NAME BEFORE EVENT ON jobs BEGIN
        SELECT RAISE(ABORT, 'jobvault: a job id must not start with ''.''')
            WHERE substr(NEW.id, 1, 1) = '.';
        SELECT RAISE(ABORT, 'jobvault: a job id must be UTF-8 text')
            WHERE typeof(NEW.id) = 'text' AND ID_NOT_UTF8;
        SELECT RAISE(ABORT, 'jobvault: a job body must be UTF-8 text')
            WHERE typeof(NEW.body) = 'text' AND BODY_NOT_UTF8;
        SELECT RAISE(ABORT, 'jobvault: a job body must be at most MAX bytes')
            WHERE length(CAST(NEW.body AS BLOB)) > MAX;
    END;
";

fn rules_sql() -> String {
    let rules = RULES
        .replace("ID_NOT_UTF8", &NOT_UTF8.replace("{V}", "NEW.id"))
        .replace("BODY_NOT_UTF8", &NOT_UTF8.replace("{V}", "NEW.body"))
        .replace("MAX", &MAX_BODY_BYTES.to_string());
    rules
        .replace("NAME", "jobvault_rules_insert")
        .replace("EVENT", "INSERT")
        + &rules
            .replace("NAME", "jobvault_rules_update")
            .replace("EVENT", "UPDATE OF id, body")
}

/// The triggers that assign sequences and keep tombstones. No statement in
/// them can meet a conflict, so the writer's conflict clause (`INSERT OR
/// IGNORE`, which SQLite applies inside triggers too) cannot skip one.
fn tracking_sql() -> String {
    format!(
        "
        CREATE TRIGGER jobvault_track_insert AFTER INSERT ON jobs BEGIN
            {BUMP}
            UPDATE jobs SET seq = {COUNTER}, db_modified = {NOW} WHERE rowid = NEW.rowid;
            DELETE FROM deleted_jobs WHERE id = NEW.id;
            DELETE FROM set_aside_jobs WHERE id = NEW.id;
        END;
        CREATE TRIGGER jobvault_track_update AFTER UPDATE OF id, body ON jobs BEGIN
            {BUMP}
            UPDATE jobs SET seq = {COUNTER}, db_modified = {NOW} WHERE rowid = NEW.rowid;
            DELETE FROM set_aside_jobs WHERE id = NEW.id;
        END;
        CREATE TRIGGER jobvault_track_delete AFTER DELETE ON jobs BEGIN
            {BUMP}
            DELETE FROM deleted_jobs WHERE id = OLD.id;
            INSERT INTO deleted_jobs (id, seq, db_modified) VALUES (OLD.id, {COUNTER}, {NOW});
            DELETE FROM set_aside_jobs WHERE id = OLD.id;
        END;
        "
    )
}

/// The jobs table named `name`, with the control characters written into
/// the id rule as two ranges (NUL is checked on its own: no SQL text can
/// hold it).
fn jobs_table(name: &str) -> String {
    JOBS_TABLE
        .replace("NAME", name)
        .replace("CONTROLS", "\u{1}-\u{1f}\u{7f}-\u{9f}")
}

/// A CHECK constraint cannot see the old row.
const ID_CANNOT_CHANGE: &str = "
    CREATE TRIGGER jobvault_id_cannot_change BEFORE UPDATE OF id ON jobs
        WHEN NEW.id IS NOT OLD.id BEGIN
        SELECT RAISE(ABORT, 'jobvault: a job id cannot change; delete the job and insert it again');
    END;
";

/// The columns of a `jobs` table that is not jobvault's: every release of
/// jobvault has kept a `meta` table beside its `jobs`.
pub(super) fn foreign_jobs(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('jobs', 'meta')",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if tables != ["jobs"] {
        return Ok(None);
    }
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('jobs')")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(columns.join(", ")))
}

/// Whether `conn` holds a table `name`: a database of an older schema may
/// lack one (the first release had no `deleted_jobs`).
pub(super) fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |row| row.get(0),
    )
}

/// The version of the schema in `conn`: 0 for an empty database, 1 for the
/// first release's.
pub(super) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    if !has_table(conn, "jobs")? {
        return Ok(0);
    }
    let stored: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [SCHEMA_VERSION],
            |row| row.get(0),
        )
        .optional()?;
    Ok(stored.map_or(1, |v| v as u32))
}

/// Brings the schema from `from` to the current version inside `tx`,
/// keeping every job, the counter and the cursor.
pub(super) fn upgrade(tx: &Transaction, from: u32) -> rusqlite::Result<()> {
    match from {
        0 => tx.execute_batch(&jobs_table("jobs"))?,
        1 => rebuild_jobs(tx)?,
        2 => drop_triggers(tx, &UNTRACKED[..3])?,
        _ => unreachable!("only older schemas are upgraded"),
    }
    if from < 2 {
        tx.execute_batch(OTHER_TABLES)?;
        tx.execute_batch(ID_CANNOT_CHANGE)?;
    }
    tx.execute_batch(SET_ASIDE_TABLE)?;
    tx.execute_batch(&rules_sql())?;
    tx.execute_batch(&tracking_sql())?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('change_counter', 0)",
        [],
    )?;
    // The counter must be past every sequence, whatever wrote them.
    tx.execute(
        "UPDATE meta SET value = MAX(value, (SELECT COALESCE(MAX(seq), 0) FROM jobs))
             WHERE key = 'change_counter'",
        [],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        rusqlite::params![SCHEMA_VERSION, CURRENT_VERSION],
    )?;
    Ok(())
}

/// Rebuilds the first release's jobs table with the rules, keeping its rows
/// and what the service built on it: SQLite's steps for changing a table
/// (create the new one, copy, drop the old, rename), with the service's own
/// indexes and triggers on `jobs` made again and its views left to read the
/// new table. A rename in place would repoint those at the old table.
fn rebuild_jobs(tx: &Transaction) -> rusqlite::Result<()> {
    let theirs: Vec<String> = tx
        .prepare(
            "SELECT sql FROM sqlite_master
             WHERE tbl_name = 'jobs' AND type IN ('index', 'trigger') AND sql IS NOT NULL",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    tx.execute_batch(&jobs_table("jobs_next"))?;
    tx.execute_batch(
        "INSERT INTO jobs_next (id, seq, db_modified, body)
             SELECT id, seq, db_modified, body FROM jobs;
         DROP TABLE jobs;
         PRAGMA legacy_alter_table = ON;
         ALTER TABLE jobs_next RENAME TO jobs;
         PRAGMA legacy_alter_table = OFF;",
    )?;
    for sql in theirs {
        tx.execute_batch(&sql)?;
    }
    Ok(())
}

fn drop_triggers(tx: &Transaction, names: &[&str]) -> rusqlite::Result<()> {
    for trigger in names {
        tx.execute_batch(&format!("DROP TRIGGER {trigger};"))?;
    }
    Ok(())
}

/// Runs `write` with change tracking and the version 3 rules off: for
/// restore, which writes versions as they were backed up, with their own
/// sequences. Inside `tx`, so no other writer ever sees the triggers gone.
/// `sqlite` maps the errors of dropping and making the triggers.
pub(super) fn untracked<T, E>(
    tx: &Transaction,
    sqlite: impl Fn(rusqlite::Error) -> E,
    write: impl FnOnce(&Transaction) -> Result<T, E>,
) -> Result<T, E> {
    drop_triggers(tx, &UNTRACKED).map_err(&sqlite)?;
    let written = write(tx)?;
    tx.execute_batch(&rules_sql()).map_err(&sqlite)?;
    tx.execute_batch(&tracking_sql()).map_err(sqlite)?;
    Ok(written)
}
