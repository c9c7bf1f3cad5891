//! Restore's side: writing backed-up versions as they were (tracking off),
//! marking the database backed up, and writing an abandoned past again as
//! new changes.

use std::path::Path;

use jobvault_core::restore_plan::{RestoreTarget, apply_versions, supersedes};
use jobvault_core::{Change, Cursor, Envelope, JobId, Seq};
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::meta::{COUNTER, CURSOR_DESTINATION, newest_seq, read_meta, write_cursor, write_meta};
use super::{DbError, InDb, JobDb, refused_or, schema};

/// Writes a backed-up version as it is, with its own sequence (restore only,
/// with tracking off).
pub(super) const RESTORE_ROW: &str =
    "INSERT INTO jobs (id, seq, db_modified, body) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT(id) DO UPDATE SET
        seq = excluded.seq, db_modified = excluded.db_modified, body = excluded.body";

impl JobDb {
    /// Makes the database whole after a restore: `decide` gets the newest
    /// sequence and the change counter and returns the cursor to store (the
    /// restore planner's decision); the counter continues after the cursor,
    /// and no destination is recorded.
    pub fn mark_backed_up(
        &mut self,
        decide: impl FnOnce(Seq, Seq) -> Cursor,
    ) -> Result<Cursor, DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&self.path)?;
        let newest = newest_seq(&tx).in_db(&self.path)?;
        let counter = read_meta(&tx, COUNTER).in_db(&self.path)?;
        let cursor = decide(newest, counter);
        write_meta(&tx, COUNTER, cursor.seq.max(counter)).in_db(&self.path)?;
        write_cursor(&tx, cursor).in_db(&self.path)?;
        // The destination the snapshot recorded need not be the one it was
        // restored from: whatever prefix this database is backed up to next
        // gets a full snapshot first.
        write_meta(&tx, CURSOR_DESTINATION, 0).in_db(&self.path)?;
        tx.commit().in_db(&self.path)?;
        Ok(cursor)
    }

    /// Writes again, as new changes, each job whose version in the bucket
    /// (`newest`, its sequence) would win over what the database holds
    /// ([`supersedes`]): its row as it is, or a tombstone where it has none.
    /// The tracking triggers, or [`schema::tombstone_again`] where there is
    /// no row to touch, give each its sequence and SQLite's time, as for any
    /// other change. Returns how many. Used after a restore of the past,
    /// with tracking on, after the cursor is marked.
    pub fn write_again(
        &mut self,
        newest: impl Iterator<Item = (JobId, Seq)>,
    ) -> Result<usize, DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&self.path)?;
        let mut written = 0;
        for (id, seq) in newest {
            if !supersedes(seq, held_seq(&tx, &id).in_db(&self.path)?) {
                continue;
            }
            let updated = tx
                .execute("UPDATE jobs SET body = body WHERE id = ?1", [id.as_str()])
                .in_db(&self.path)?;
            if updated == 0 {
                schema::tombstone_again(&tx, id.as_str()).in_db(&self.path)?;
            }
            written += 1;
        }
        tx.commit().in_db(&self.path)?;
        Ok(written)
    }

    /// Writes changes as they are, keeping their sequences, where the core
    /// says they supersede what the database holds for the job (a row or a
    /// tombstone). Used by restore, on a database with the current schema.
    /// The rules are not checked again: each body passed them in the
    /// writer's SQLite, and SQLite versions read some bodies differently (a
    /// key spelt `"\u0069d"` is an `id` to 3.53's `json_extract`, not to
    /// 3.40's), so the body is restored as it was stored.
    pub fn apply_versions(&mut self, versions: &[Envelope]) -> Result<usize, DbError> {
        self.set_rules_checked(false)?;
        let applied = self.apply_unchecked(versions);
        self.set_rules_checked(true)?;
        applied
    }

    fn apply_unchecked(&mut self, versions: &[Envelope]) -> Result<usize, DbError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&path)?;
        let applied = schema::untracked(
            &tx,
            |e| DbError::sqlite(&path, e),
            |tx| apply_versions(&mut Building { tx, path: &path }, versions),
        )?;
        tx.commit().in_db(&path)?;
        Ok(applied)
    }
}

/// The sequence of what the database holds for `id`: its row or its
/// tombstone.
pub(super) fn held_seq(conn: &Connection, id: &JobId) -> rusqlite::Result<Option<Seq>> {
    conn.query_row(
        "SELECT MAX(seq) FROM (SELECT seq FROM jobs WHERE id = ?1
             UNION ALL SELECT seq FROM deleted_jobs WHERE id = ?1)",
        [id.as_str()],
        |row| row.get(0),
    )
}

/// The database restore builds, inside its transaction.
pub(super) struct Building<'t> {
    tx: &'t Transaction<'t>,
    path: &'t Path,
}

impl RestoreTarget for Building<'_> {
    type Error = DbError;

    fn counter(&mut self) -> Result<Seq, DbError> {
        read_meta(self.tx, COUNTER).in_db(self.path)
    }

    fn held(&mut self, id: &JobId) -> Result<Option<Seq>, DbError> {
        held_seq(self.tx, id).in_db(self.path)
    }

    /// The row and no tombstone, or the reverse.
    fn write(&mut self, envelope: &Envelope) -> Result<(), DbError> {
        write_version(self.tx, envelope).map_err(|e| refused_or(self.path, envelope.id.as_str(), e))
    }
}

pub(super) fn write_version(conn: &Connection, envelope: &Envelope) -> rusqlite::Result<()> {
    let (id, seq, modified) = (
        envelope.id.as_str(),
        envelope.seq,
        envelope.modified.unix_nanos(),
    );
    // A version from the bucket is good: any record of the job set aside
    // goes, as the tracking triggers (off while restoring) would drop it.
    conn.execute("DELETE FROM set_aside_jobs WHERE id = ?1", [id])?;
    match &envelope.change {
        Change::Written(body) => {
            conn.execute("DELETE FROM deleted_jobs WHERE id = ?1", [id])?;
            conn.prepare_cached(RESTORE_ROW)?
                .execute(params![id, seq, modified, body])?;
        }
        Change::Deleted => {
            conn.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
            conn.execute(
                "INSERT OR REPLACE INTO deleted_jobs (id, seq, db_modified) VALUES (?1, ?2, ?3)",
                params![id, seq, modified],
            )?;
        }
    }
    Ok(())
}
