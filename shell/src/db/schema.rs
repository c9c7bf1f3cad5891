//! The job database's schema, and the triggers that make the database itself
//! track every change, whoever writes it.
//!
//! The first release handed out change sequences in jobvault's own writer, so
//! a change made with the `sqlite3` CLI, Python or Go took no sequence and
//! never reached the bucket. Now triggers on `jobs` take the next value of
//! `meta.change_counter` for every INSERT, UPDATE and DELETE, inside the
//! writer's transaction: SQLite serializes writers, so sequence order stays
//! commit order. A delete leaves a tombstone in `deleted_jobs`, so it is
//! backed up like any other change. The same triggers refuse a body that is
//! not JSON, an id that could not be an object name, and a body that names
//! another job, so bad input fails the writer's statement instead of the
//! backup.
//!
//! The triggers run in the writer's SQLite, which may be much older than the
//! one jobvault bundles: they use nothing newer than SQLite 3.31 with its JSON
//! functions (no `unixepoch('subsec')`, no `RETURNING`), and a time with
//! millisecond precision from `julianday('now')`.

use rusqlite::{Connection, OptionalExtension, Transaction};

/// The schema this code writes. Version 1 is the first release's: no
/// `schema_version` in `meta`, no triggers.
pub const CURRENT_VERSION: u32 = 2;

pub(super) const SCHEMA_VERSION: &str = "schema_version";

/// `seq` and `db_modified` default to 0 only for the moment between a
/// writer's INSERT and the trigger that sets them.
const TABLES: &str = "
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL UNIQUE DEFAULT 0,
        db_modified INTEGER NOT NULL DEFAULT 0,
        body TEXT NOT NULL
    );
    CREATE TABLE deleted_jobs (
        id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL UNIQUE,
        db_modified INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    );
";

/// Now, in Unix nanoseconds, to the millisecond.
const NOW: &str = "(CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000000)";

/// The next change sequence, once the counter has been bumped.
const COUNTER: &str = "(SELECT value FROM meta WHERE key = 'change_counter')";

const BUMP: &str = "UPDATE meta SET value = value + 1 WHERE key = 'change_counter';";

/// The names of the triggers that assign sequences. Restore drops them while
/// it writes versions that keep the sequences they were backed up with.
const TRACKING: [&str; 3] = [
    "jobvault_track_insert",
    "jobvault_track_update",
    "jobvault_track_delete",
];

/// The triggers that assign sequences and keep tombstones.
fn tracking_sql() -> String {
    format!(
        "
        CREATE TRIGGER jobvault_track_insert AFTER INSERT ON jobs BEGIN
            {BUMP}
            UPDATE jobs SET seq = {COUNTER}, db_modified = {NOW} WHERE rowid = NEW.rowid;
            DELETE FROM deleted_jobs WHERE id = NEW.id;
        END;
        CREATE TRIGGER jobvault_track_update AFTER UPDATE OF id, body ON jobs BEGIN
            {BUMP}
            UPDATE jobs SET seq = {COUNTER}, db_modified = {NOW} WHERE rowid = NEW.rowid;
        END;
        CREATE TRIGGER jobvault_track_delete AFTER DELETE ON jobs BEGIN
            {BUMP}
            INSERT OR REPLACE INTO deleted_jobs (id, seq, db_modified)
                VALUES (OLD.id, {COUNTER}, {NOW});
        END;
        "
    )
}

/// The rules a row must keep, first broken first named. Each message names
/// the rule; SQLite adds nothing but the trigger's text.
fn rules(row: &str) -> String {
    // Control characters as Rust's `char::is_control` has them: C0, DEL, C1.
    let controls: Vec<String> = (1..=31).chain(127..=159).map(|c| c.to_string()).collect();
    let controls = controls.join(",");
    format!(
        "SELECT CASE
            WHEN typeof({row}.id) != 'text' OR {row}.id = ''
                THEN RAISE(ABORT, 'jobvault: a job id must be non-empty text')
            WHEN length(CAST({row}.id AS BLOB)) > 256
                THEN RAISE(ABORT, 'jobvault: a job id must be at most 256 bytes')
            WHEN instr({row}.id, '/') > 0
                THEN RAISE(ABORT, 'jobvault: a job id must not contain ''/''')
            WHEN instr({row}.id, '..') > 0
                THEN RAISE(ABORT, 'jobvault: a job id must not contain ''..''')
            WHEN instr(CAST({row}.id AS BLOB), X'00') > 0
                OR {row}.id GLOB '*[' || char({controls}) || ']*'
                THEN RAISE(ABORT, 'jobvault: a job id must not contain control characters')
            WHEN typeof({row}.body) != 'text' OR NOT json_valid({row}.body)
                THEN RAISE(ABORT, 'jobvault: a job body must be valid JSON text')
            WHEN json_type({row}.body, '$.id') IS NOT 'text'
                OR json_extract({row}.body, '$.id') != {row}.id
                THEN RAISE(ABORT, 'jobvault: a job body must be a JSON object whose \"id\" is the row''s id')
        END;"
    )
}

fn checks_sql() -> String {
    format!(
        "
        CREATE TRIGGER jobvault_check_insert BEFORE INSERT ON jobs BEGIN
            {}
        END;
        CREATE TRIGGER jobvault_check_update BEFORE UPDATE OF id, body ON jobs BEGIN
            SELECT RAISE(ABORT, 'jobvault: a job id cannot change; delete the job and insert it again')
                WHERE NEW.id IS NOT OLD.id;
            {}
        END;
        ",
        rules("NEW"),
        rules("NEW"),
    )
}

/// The version of the schema in `conn`: 0 for an empty database, 1 for the
/// first release's.
pub(super) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    let has_jobs: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs')",
        [],
        |row| row.get(0),
    )?;
    if !has_jobs {
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
        0 => tx.execute_batch(TABLES)?,
        1 => {
            tx.execute_batch("ALTER TABLE jobs RENAME TO jobs_first_release;")?;
            tx.execute_batch(TABLES)?;
            tx.execute_batch(
                "INSERT INTO jobs (id, seq, db_modified, body)
                     SELECT id, seq, db_modified, body FROM jobs_first_release;
                 DROP TABLE jobs_first_release;",
            )?;
        }
        _ => unreachable!("only older schemas are upgraded"),
    }
    tx.execute_batch(&checks_sql())?;
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

/// Runs `write` with change tracking off: for restore, which writes versions
/// with the sequences they were backed up with. Inside `tx`, so no other
/// writer ever sees the triggers gone.
pub(super) fn untracked<T>(
    tx: &Transaction,
    write: impl FnOnce(&Transaction) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    for trigger in TRACKING {
        tx.execute_batch(&format!("DROP TRIGGER {trigger};"))?;
    }
    let written = write(tx)?;
    tx.execute_batch(&tracking_sql())?;
    Ok(written)
}
