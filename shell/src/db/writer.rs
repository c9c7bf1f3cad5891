//! The writer API: what `jobvault jobs` and the tests write and read, the
//! way any writer of the scheduler's does.

use jobvault_core::{Envelope, JobId};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::rows::raw_row;
use super::{DbError, InDb, JobDb, refused_or};

/// What every writer runs: the writer contract's upsert.
pub(super) const UPSERT: &str = "INSERT INTO jobs (id, body) VALUES (?1, ?2)
    ON CONFLICT(id) DO UPDATE SET body = excluded.body";

impl JobDb {
    /// Writes job bodies in one transaction, all of them or none, the way any
    /// writer does: the database assigns each change its sequence.
    pub fn put(&mut self, jobs: &[(JobId, String)]) -> Result<(), DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&self.path)?;
        {
            let mut upsert = tx.prepare_cached(UPSERT).in_db(&self.path)?;
            for (id, body) in jobs {
                upsert
                    .execute(params![id.as_str(), body])
                    .map_err(|e| refused_or(&self.path, id.as_str(), e))?;
            }
        }
        tx.commit().in_db(&self.path)
    }

    /// Deletes jobs in one transaction, the way any writer does: each delete
    /// takes a sequence and leaves a tombstone that is backed up. Returns how
    /// many existed.
    pub fn delete(&mut self, ids: &[JobId]) -> Result<usize, DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&self.path)?;
        let mut deleted = 0;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")
                .in_db(&self.path)?;
            for id in ids {
                deleted += delete.execute([id.as_str()]).in_db(&self.path)?;
            }
        }
        tx.commit().in_db(&self.path)?;
        Ok(deleted)
    }

    pub fn get(&self, id: &JobId) -> Result<Option<Envelope>, DbError> {
        self.conn
            .query_row(
                "SELECT id, seq, db_modified, body FROM jobs WHERE id = ?1",
                [id.as_str()],
                raw_row,
            )
            .optional()
            .in_db(&self.path)?
            .map(|raw| self.decode_row(raw))
            .transpose()
    }

    /// The UNIQUE indexes of the user's own on `jobs` (its id's is not
    /// one): beside `INSERT OR REPLACE` they remove rows without the delete
    /// triggers, and they can refuse a restore (the writer contract).
    pub fn unique_indexes(&self) -> Result<Vec<String>, DbError> {
        let mut statement = self
            .conn
            .prepare(
                r#"SELECT name FROM pragma_index_list('jobs') WHERE "unique" AND origin <> 'pk'
                   ORDER BY name"#,
            )
            .in_db(&self.path)?;
        statement
            .query_map([], |row| row.get(0))
            .in_db(&self.path)?
            .collect::<Result<Vec<String>, _>>()
            .in_db(&self.path)
    }

    /// Every job, sorted by id.
    pub fn list(&self) -> Result<Vec<Envelope>, DbError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, seq, db_modified, body FROM jobs ORDER BY id")
            .in_db(&self.path)?;
        let rows = statement
            .query_map([], raw_row)
            .in_db(&self.path)?
            .collect::<Result<Vec<_>, _>>()
            .in_db(&self.path)?;
        rows.into_iter().map(|raw| self.decode_row(raw)).collect()
    }

    pub fn count(&self) -> Result<usize, DbError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM jobs", [], |row| row.get::<_, i64>(0))
            .map(|n| n as usize)
            .in_db(&self.path)
    }
}
