//! The `meta` table: the change counter, the cursor and the destination it
//! belongs to; and the newest sequence of the rows and tombstones.

use jobvault_core::{Cursor, Seq, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

pub(super) const COUNTER: &str = "change_counter";

pub(super) const CURSOR_SEQ: &str = "cursor_seq";

pub(super) const CURSOR_TIME: &str = "cursor_time";

/// The destination the cursor belongs to ([`DestinationId`]); 0 or absent:
/// none recorded.
pub(super) const CURSOR_DESTINATION: &str = "cursor_destination";

/// When the daemon found the database gone back to an older copy, on the
/// clock that stamps `db_modified`: the copy is the database from then on,
/// so a snapshot of it stands for no instant before ([`super::inspect`]).
pub(super) const WENT_BACK_AT: &str = "went_back_at";

/// The newest sequence of any row or tombstone; 0 when there is none.
pub(super) fn newest_seq(conn: &Connection) -> rusqlite::Result<Seq> {
    conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM jobs), 0),
                    COALESCE((SELECT MAX(seq) FROM deleted_jobs), 0))",
        [],
        |row| row.get(0),
    )
}

/// Read and written with cached statements: the daemon reads the cursor on
/// every read of the change feed and writes it after every upload, and
/// preparing the statements each time was a tenth of its profile's samples
/// at 50 changes a second.
pub(super) fn read_meta(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get::<_, i64>(0))
        .optional()
        .map(|value| value.unwrap_or(0) as u64)
}

pub(super) fn write_meta(conn: &Connection, key: &str, value: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value as i64])
    .map(drop)
}

pub(super) fn count_set_aside(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT COUNT(*) FROM set_aside_jobs")?
        .query_row([], |row| row.get::<_, i64>(0))
        .map(|n| n as u64)
}

pub(super) fn read_cursor(conn: &Connection) -> rusqlite::Result<Cursor> {
    Ok(Cursor {
        seq: read_meta(conn, CURSOR_SEQ)?,
        time: Timestamp::from_unix_nanos(read_meta(conn, CURSOR_TIME)? as i64),
    })
}

pub(super) fn write_cursor(conn: &Connection, cursor: Cursor) -> rusqlite::Result<()> {
    write_meta(conn, CURSOR_SEQ, cursor.seq)?;
    write_meta(conn, CURSOR_TIME, cursor.time.unix_nanos() as u64)
}
