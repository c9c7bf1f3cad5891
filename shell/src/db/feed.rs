//! The daemon's side: the change feed, the cursor and what it records
//! beside it (the destination, the rows set aside), and the counter SQLite
//! moves on every commit.

use jobvault_core::destination::DestinationId;
use jobvault_core::envelope::MAX_BODY_BYTES;
use jobvault_core::machine::{ChangeBatch, RowId, Unreadable};
use jobvault_core::{Cursor, Envelope, Seq};
use rusqlite::{TransactionBehavior, params};

use super::meta::{
    COUNTER, CURSOR_DESTINATION, WENT_BACK_AT, count_set_aside, newest_seq, read_cursor, read_meta,
    write_cursor, write_meta,
};
use super::rows::{decode, text_ref};
use super::schema::NOW;
use super::{DbError, InDb, JobDb};

/// The change feed: bodies and tombstones after a sequence, in order, with
/// each body's size; a body over ?2 bytes is not read. `octet_length`
/// reads the size without a copy of the body (`length(CAST(...))` made
/// two).
///
/// It has no `LIMIT ?`: since 3.46 SQLite plans with a bound limit's value,
/// so binding a new one expires the statement and every read prepared it
/// again (16% of the daemon's CPU at 50 commits a second). The two index
/// scans are merged in order, so the reader stops after its limit instead.
pub(super) const CHANGES: &str = "
    SELECT id, seq, db_modified,
           CASE WHEN octet_length(body) <= ?2 THEN body END,
           octet_length(body)
        FROM jobs WHERE seq > ?1
    UNION ALL
    SELECT id, seq, db_modified, NULL, NULL FROM deleted_jobs WHERE seq > ?1
    ORDER BY seq";

/// Records a row as set aside if the database still holds that version of
/// it (a writer may have changed it since the daemon read it).
pub(super) const SET_ASIDE: &str = "
    INSERT OR REPLACE INTO set_aside_jobs (id, seq, why)
        SELECT CAST(?1 AS TEXT), ?2, ?3
        WHERE EXISTS (SELECT 1 FROM jobs WHERE id = CAST(?1 AS TEXT) AND seq = ?2)
           OR EXISTS (SELECT 1 FROM deleted_jobs WHERE id = CAST(?1 AS TEXT) AND seq = ?2)";

impl JobDb {
    /// The highest change sequence of any job; 0 when there is none.
    pub fn newest_seq(&self) -> Result<Seq, DbError> {
        newest_seq(&self.conn).in_db(&self.path)
    }

    /// SQLite's `data_version`: it moves when another connection commits.
    /// In WAL mode reading it touches only shared memory. The statement is
    /// kept: the watcher reads it at every commit, and preparing it each
    /// time cost more than the read.
    pub fn data_version(&self) -> Result<i64, DbError> {
        data_version(&self.conn).in_db(&self.path)
    }

    /// The change feed: the stored cursor and the changes (bodies and
    /// tombstones) after `after`, in sequence order, read in one
    /// transaction: up to `limit` of them, and bodies of up to `max_bytes`
    /// in all, but at least one change. A row no job object can hold is
    /// handed over as [`Unreadable`], not read as an error.
    pub fn changes(
        &mut self,
        after: Seq,
        limit: usize,
        max_bytes: u64,
    ) -> Result<ChangeBatch, DbError> {
        let tx = self.conn.transaction().in_db(&self.path)?;
        let feed = read_feed(&tx, after, limit, max_bytes).in_db(&self.path)?;
        tx.finish().in_db(&self.path)?;
        Ok(feed)
    }

    /// `data_version`, and if it is not `seen`, the change feed as
    /// [`Self::changes`] reads it for `read` (after, limit, max_bytes), in
    /// one read transaction: the look that finds a commit reads it without
    /// a second. Apart, the look's transaction was most of the watcher's
    /// time (its page cache emptied by the commit, read again), and the
    /// read's began another.
    pub fn look_and_read(
        &mut self,
        seen: i64,
        read: Option<(Seq, usize, u64)>,
    ) -> Result<(i64, Option<ChangeBatch>), DbError> {
        let tx = self.conn.transaction().in_db(&self.path)?;
        let version = data_version(&tx).in_db(&self.path)?;
        let feed = match read.filter(|_| version != seen) {
            Some((after, limit, max_bytes)) => {
                Some(read_feed(&tx, after, limit, max_bytes).in_db(&self.path)?)
            }
            None => None,
        };
        tx.finish().in_db(&self.path)?;
        Ok((version, feed))
    }

    /// The rows recorded as set aside: how many, and the first few.
    pub fn set_aside(&self) -> Result<(u64, Vec<Unreadable>), DbError> {
        let count = count_set_aside(&self.conn).in_db(&self.path)?;
        let mut statement = self
            .conn
            .prepare("SELECT CAST(id AS BLOB), seq, why FROM set_aside_jobs ORDER BY seq LIMIT 5")
            .in_db(&self.path)?;
        let first = statement
            .query_map([], |row| {
                Ok(Unreadable {
                    id: RowId(row.get(0)?),
                    seq: row.get(1)?,
                    why: row.get(2)?,
                    deleted: false,
                })
            })
            .in_db(&self.path)?
            .collect::<Result<_, _>>()
            .in_db(&self.path)?;
        Ok((count, first))
    }

    pub fn cursor(&self) -> Result<Cursor, DbError> {
        read_cursor(&self.conn).in_db(&self.path)
    }

    /// The change counter: the sequence the last change took.
    pub fn counter(&self) -> Result<Seq, DbError> {
        read_meta(&self.conn, COUNTER).in_db(&self.path)
    }

    /// The destination the cursor belongs to, if the database records one.
    pub fn recorded_destination(&self) -> Result<Option<DestinationId>, DbError> {
        read_meta(&self.conn, CURSOR_DESTINATION)
            .map(DestinationId::new)
            .in_db(&self.path)
    }

    /// Records that the cursor belongs to destination `id`.
    pub fn record_destination(&mut self, id: DestinationId) -> Result<(), DbError> {
        write_meta(&self.conn, CURSOR_DESTINATION, id.get()).in_db(&self.path)
    }

    /// Raises the change counter to `past` unless it is higher (the next
    /// change is numbered above it; writers' own bumps are kept), forgets
    /// the destination the cursor belongs to, and records when, in one
    /// transaction.
    pub fn raise_counter(&mut self, past: Seq) -> Result<(), DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&self.path)?;
        tx.execute(
            "UPDATE meta SET value = MAX(value, ?1) WHERE key = ?2",
            params![past as i64, COUNTER],
        )
        .in_db(&self.path)?;
        write_meta(&tx, CURSOR_DESTINATION, 0).in_db(&self.path)?;
        tx.execute(
            &format!(
                "INSERT INTO meta (key, value) VALUES (?1, {NOW})
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value"
            ),
            [WENT_BACK_AT],
        )
        .in_db(&self.path)?;
        tx.commit().in_db(&self.path)
    }

    /// Stores `new` as the cursor if the database still holds `expected`,
    /// and records each row of `set_aside` the database still holds at
    /// that change. Returns how many rows it then records as set aside.
    pub fn save_cursor(
        &mut self,
        expected: Cursor,
        new: Cursor,
        set_aside: &[Unreadable],
    ) -> Result<u64, DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&self.path)?;
        if read_cursor(&tx).in_db(&self.path)? != expected {
            return Err(DbError::CursorChanged {
                path: self.path.clone(),
            });
        }
        write_cursor(&tx, new).in_db(&self.path)?;
        for row in set_aside {
            tx.prepare_cached(SET_ASIDE)
                .and_then(|mut s| s.execute(params![row.id.0, row.seq, row.why]))
                .in_db(&self.path)?;
        }
        let recorded = count_set_aside(&tx).in_db(&self.path)?;
        tx.commit().in_db(&self.path)?;
        Ok(recorded)
    }
}

/// A row of the change feed ([`CHANGES`]) as a job version, or as the row
/// no job object can hold: one whose body the feed did not read for its
/// size, too.
pub(super) fn feed_row(
    row: &rusqlite::Row,
    size: Option<i64>,
) -> rusqlite::Result<Result<Envelope, Unreadable>> {
    let id = text_ref(row, 0)?.expect("ids are NOT NULL");
    let (seq, db_modified) = (row.get(1)?, row.get(2)?);
    let body = text_ref(row, 3)?;
    Ok(match (size, body) {
        (Some(size), None) => Err(Unreadable {
            seq,
            id: RowId(id.to_vec()),
            why: format!("its body is {size} bytes, over the limit of {MAX_BODY_BYTES}"),
            deleted: false,
        }),
        _ => decode(id, seq, db_modified, body),
    })
}

fn data_version(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |row| row.get(0))
}

/// The change feed after `after` in the transaction `tx`: see
/// [`JobDb::changes`].
fn read_feed(
    tx: &rusqlite::Transaction,
    after: Seq,
    limit: usize,
    max_bytes: u64,
) -> rusqlite::Result<ChangeBatch> {
    let mut feed = ChangeBatch {
        stored: read_cursor(tx)?,
        jobs: Vec::new(),
        unreadable: Vec::new(),
        set_aside: count_set_aside(tx)?,
        newest: read_meta(tx, COUNTER)?,
        complete: true,
    };
    let mut statement = tx.prepare_cached(CHANGES)?;
    let mut rows = statement.query(params![after, MAX_BODY_BYTES as i64])?;
    let (mut read, mut bytes) = (0, 0);
    while let Some(row) = rows.next()? {
        let size: Option<i64> = row.get(4)?;
        bytes += size.unwrap_or(0) as u64;
        if read == limit || (read > 0 && bytes > max_bytes) {
            feed.complete = false;
            break;
        }
        read += 1;
        // Decoded from SQLite's own buffer: one copy of the body.
        match feed_row(row, size)? {
            Ok(envelope) => feed.jobs.push(envelope),
            Err(unreadable) => feed.unreadable.push(unreadable),
        }
    }
    Ok(feed)
}

#[cfg(test)]
mod tests {
    use jobvault_core::JobId;
    use jobvault_core::timestamp::Timestamp;
    use rusqlite::StatementStatus;

    use super::*;

    fn database_with(jobs: usize) -> (tempfile::TempDir, JobDb) {
        let dir = tempfile::tempdir().unwrap();
        let (mut db, _) =
            JobDb::init(&dir.path().join("jobs.db"), Timestamp::from_unix_seconds(0)).unwrap();
        let rows: Vec<_> = (0..jobs)
            .map(|n| {
                let id = format!("job-{n}");
                let body = format!(r#"{{"id":"{id}"}}"#);
                (JobId::new(&id).unwrap(), body)
            })
            .collect();
        db.put(&rows).unwrap();
        (dir, db)
    }

    #[test]
    fn a_read_stops_at_its_limit_and_says_whether_more_are_left() {
        let (_dir, mut db) = database_with(5);
        let exact = db.changes(0, 5, u64::MAX).unwrap();
        assert_eq!(exact.jobs.len(), 5);
        assert!(exact.complete, "five changes read with a limit of five");
        let short = db.changes(0, 4, u64::MAX).unwrap();
        let seqs: Vec<Seq> = short.jobs.iter().map(|job| job.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert!(!short.complete, "a fifth change is left");
        let rest = db.changes(4, 4, u64::MAX).unwrap();
        assert_eq!(rest.jobs.len(), 1);
        assert!(rest.complete);
    }

    #[test]
    fn a_look_reads_the_feed_only_when_another_connection_committed() {
        let (dir, mut watcher) = database_with(2);
        let seen = watcher.data_version().unwrap();
        let read = Some((2, 10, u64::MAX));
        assert_eq!(
            watcher.look_and_read(seen, read).unwrap(),
            (seen, None),
            "nothing committed since"
        );
        // A writer of its own, as a service's would be.
        let writer = rusqlite::Connection::open(dir.path().join("jobs.db")).unwrap();
        writer
            .execute(
                "INSERT INTO jobs (id, body) VALUES ('late', '{\"id\":\"late\"}')",
                [],
            )
            .unwrap();
        let (version, batch) = watcher.look_and_read(seen, read).unwrap();
        assert_ne!(version, seen);
        let seqs: Vec<Seq> = batch.unwrap().jobs.iter().map(|job| job.seq).collect();
        assert_eq!(seqs, [3], "the commit the look found");
        assert_eq!(
            watcher.look_and_read(version, None).unwrap(),
            (version, None)
        );
    }

    #[test]
    fn reads_with_new_bounds_reuse_the_prepared_feed() {
        let (_dir, mut db) = database_with(20);
        // A writer's ANALYZE gives the planner samples to plan a bound
        // value with.
        db.conn.execute_batch("ANALYZE").unwrap();
        for (after, limit) in [(0, 3), (3, 7), (10, 1), (11, 100)] {
            db.changes(after, limit, u64::MAX).unwrap();
        }
        let statement = db.conn.prepare_cached(CHANGES).unwrap();
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
    }

    #[test]
    fn the_feed_merges_two_index_scans_in_order_and_sorts_nothing() {
        let (_dir, db) = database_with(3);
        let plan: Vec<String> = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {CHANGES}"))
            .unwrap()
            .query_map(params![0, MAX_BODY_BYTES as i64], |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("MERGE")), "{plan:?}");
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
    }
}
