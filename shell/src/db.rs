//! The job database: a SQLite file shared with the service that owns the jobs.
//!
//! ```text
//! jobs(id PRIMARY KEY, seq UNIQUE, db_modified, body)   body: the job as JSON
//! meta(key PRIMARY KEY, value)                          change_counter, cursor_seq, cursor_time
//! ```
//!
//! Every write takes its change sequence from `meta.change_counter` inside the
//! same write transaction. SQLite serializes writers, so sequence order is
//! commit order, and "jobs with seq > cursor" is a complete change feed that
//! survives restarts. The database runs in WAL mode, so the change feed and
//! snapshots read while the service keeps writing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jobvault_core::restore_plan::supersedes;
use jobvault_core::{Cursor, Envelope, Job, JobId, Seq, Timestamp};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL UNIQUE,
        db_modified INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    );
";

/// Writes a job's row, replacing the one of the same id.
const UPSERT: &str = "INSERT INTO jobs (id, seq, db_modified, body) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT(id) DO UPDATE SET
        seq = excluded.seq, db_modified = excluded.db_modified, body = excluded.body";

const COUNTER: &str = "change_counter";
const CURSOR_SEQ: &str = "cursor_seq";
const CURSOR_TIME: &str = "cursor_time";

/// What went wrong with the job database. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("job database {path} does not exist")]
    Missing { path: PathBuf },
    #[error("job database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("job database {path}: job {id:?} cannot be read: {why}")]
    CorruptRow {
        path: PathBuf,
        id: String,
        why: String,
    },
    #[error("job database {path}: the stored cursor changed underneath jobvault")]
    CursorChanged { path: PathBuf },
}

/// An open job database.
#[derive(Debug)]
pub struct JobDb {
    path: PathBuf,
    conn: Connection,
}

impl JobDb {
    /// Opens an existing job database.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        if !path.exists() {
            return Err(DbError::Missing {
                path: path.to_owned(),
            });
        }
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    /// Opens a job database, creating it if it does not exist. A new
    /// database's cursor time is `now`: nothing was committed before it, so
    /// nothing before it can be missing from the bucket, and a restore from
    /// its first snapshot need not look further back.
    pub fn create(path: &Path, now: Timestamp) -> Result<Self, DbError> {
        let db = Self::open_with(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        db.conn
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                params![CURSOR_TIME, now.unix_nanos()],
            )
            .map_err(|e| db.sqlite(e))?;
        Ok(db)
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<Self, DbError> {
        let sqlite = sqlite_error(path);
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        Ok(JobDb {
            path: path.to_owned(),
            conn,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> DbError {
        sqlite_error(&self.path)(source)
    }

    /// Writes jobs in one transaction: all of them or none. Each gets the
    /// next change sequence and `db_modified = now`. Returns the jobs as
    /// written.
    pub fn put(&mut self, jobs: Vec<Job>, now: Timestamp) -> Result<Vec<Job>, DbError> {
        let sqlite = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let mut counter = read_meta(&tx, COUNTER).map_err(sqlite)?;
        let mut written = Vec::with_capacity(jobs.len());
        {
            let mut upsert = tx.prepare_cached(UPSERT).map_err(sqlite)?;
            for mut job in jobs {
                counter += 1;
                job.db_modified = now;
                let body = serde_json::to_string(&job).expect("a job always serializes");
                upsert
                    .execute(params![job.id.as_str(), counter, now.unix_nanos(), body])
                    .map_err(sqlite)?;
                written.push(job);
            }
        }
        write_meta(&tx, COUNTER, counter).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(written)
    }

    pub fn get(&self, id: &JobId) -> Result<Option<Envelope>, DbError> {
        self.conn
            .query_row(
                "SELECT id, seq, db_modified, body FROM jobs WHERE id = ?1",
                [id.as_str()],
                raw_row,
            )
            .optional()
            .map_err(|e| self.sqlite(e))?
            .map(|raw| self.decode(raw))
            .transpose()
    }

    /// Every job, sorted by id.
    pub fn list(&self) -> Result<Vec<Envelope>, DbError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, seq, db_modified, body FROM jobs ORDER BY id")
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], raw_row)
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter().map(|raw| self.decode(raw)).collect()
    }

    /// The highest change sequence of any job; 0 when there is none.
    pub fn newest_seq(&self) -> Result<Seq, DbError> {
        newest_seq(&self.conn).map_err(|e| self.sqlite(e))
    }

    pub fn count(&self) -> Result<usize, DbError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM jobs", [], |row| row.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.sqlite(e))
    }

    /// Decodes every job, one row at a time, without holding them; returns
    /// how many there are, or the first that does not decode.
    pub fn check_every_job(&self) -> Result<usize, DbError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, seq, db_modified, body FROM jobs")
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement.query([]).map_err(|e| self.sqlite(e))?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            let raw = raw_row(row).map_err(|e| self.sqlite(e))?;
            self.decode(raw)?;
            count += 1;
        }
        Ok(count)
    }

    /// The change feed: the stored cursor and up to `limit` jobs changed
    /// after `after`, in sequence order, read in one transaction.
    pub fn changes(
        &mut self,
        after: Seq,
        limit: usize,
    ) -> Result<(Cursor, Vec<Envelope>), DbError> {
        let sqlite = sqlite_error(&self.path);
        let tx = self.conn.transaction().map_err(sqlite)?;
        let cursor = read_cursor(&tx).map_err(sqlite)?;
        let raw = {
            let mut statement = tx
                .prepare_cached(
                    "SELECT id, seq, db_modified, body FROM jobs WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(sqlite)?;
            statement
                .query_map(params![after, limit as i64], raw_row)
                .map_err(sqlite)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sqlite)?
        };
        tx.finish().map_err(sqlite)?;
        let jobs = raw
            .into_iter()
            .map(|raw| self.decode(raw))
            .collect::<Result<_, _>>()?;
        Ok((cursor, jobs))
    }

    pub fn cursor(&self) -> Result<Cursor, DbError> {
        read_cursor(&self.conn).map_err(|e| self.sqlite(e))
    }

    /// Stores `new` as the cursor if the database still holds `expected`.
    pub fn save_cursor(&mut self, expected: Cursor, new: Cursor) -> Result<(), DbError> {
        let sqlite = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        if read_cursor(&tx).map_err(sqlite)? != expected {
            return Err(DbError::CursorChanged {
                path: self.path.clone(),
            });
        }
        write_cursor(&tx, new).map_err(sqlite)?;
        tx.commit().map_err(sqlite)
    }

    /// Makes the database whole after a restore: `decide` gets the newest
    /// sequence and the change counter and returns the cursor to store (the
    /// restore planner's decision); the counter continues after the cursor.
    pub fn mark_backed_up(
        &mut self,
        decide: impl FnOnce(Seq, Seq) -> Cursor,
    ) -> Result<Cursor, DbError> {
        let sqlite = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let newest = newest_seq(&tx).map_err(sqlite)?;
        let counter = read_meta(&tx, COUNTER).map_err(sqlite)?;
        let cursor = decide(newest, counter);
        write_meta(&tx, COUNTER, cursor.seq.max(counter)).map_err(sqlite)?;
        write_cursor(&tx, cursor).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(cursor)
    }

    /// Writes job versions as they are, keeping their change sequence, where
    /// the core says they supersede the version held. Used by restore.
    pub fn apply_versions(&mut self, versions: &[Envelope]) -> Result<usize, DbError> {
        let sqlite = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let mut applied = 0;
        {
            let mut held = tx
                .prepare_cached("SELECT seq FROM jobs WHERE id = ?1")
                .map_err(sqlite)?;
            let mut upsert = tx.prepare_cached(UPSERT).map_err(sqlite)?;
            for envelope in versions {
                let id = envelope.job.id.as_str();
                let current: Option<Seq> = held
                    .query_row([id], |row| row.get(0))
                    .optional()
                    .map_err(sqlite)?;
                if !supersedes(envelope.seq, current) {
                    continue;
                }
                let body = serde_json::to_string(&envelope.job).expect("a job always serializes");
                upsert
                    .execute(params![
                        id,
                        envelope.seq,
                        envelope.modified.unix_nanos(),
                        body
                    ])
                    .map_err(sqlite)?;
                applied += 1;
            }
        }
        tx.commit().map_err(sqlite)?;
        Ok(applied)
    }

    /// Writes a consistent copy of the database to `dest` with SQLite's
    /// online backup API, in one step: one read transaction, so in WAL mode
    /// writers carry on while it runs.
    pub fn snapshot_to(&self, dest: &Path) -> Result<(), DbError> {
        let mut target = Connection::open(dest).map_err(|e| self.sqlite(e))?;
        let backup =
            rusqlite::backup::Backup::new(&self.conn, &mut target).map_err(|e| self.sqlite(e))?;
        loop {
            match backup.step(-1).map_err(|e| self.sqlite(e))? {
                rusqlite::backup::StepResult::Done => break,
                // Busy or locked: another connection holds a lock; wait and retry.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        drop(backup);
        // The copy is a standalone file: no WAL beside it.
        target
            .pragma_update(None, "journal_mode", "delete")
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite found.
    pub fn integrity_check(&self) -> Result<Result<(), String>, DbError> {
        let mut statement = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.sqlite(e))?;
        let lines = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))?;
        Ok(if lines == ["ok"] {
            Ok(())
        } else {
            Err(lines.join("; "))
        })
    }

    fn decode(&self, raw: RawRow) -> Result<Envelope, DbError> {
        let corrupt = |why: String| DbError::CorruptRow {
            path: self.path.clone(),
            id: raw.id.clone(),
            why,
        };
        let job: Job = serde_json::from_str(&raw.body).map_err(|e| corrupt(e.to_string()))?;
        if job.id.as_str() != raw.id {
            return Err(corrupt(format!("its body holds job {:?}", job.id.as_str())));
        }
        Ok(Envelope::new(
            raw.seq,
            Timestamp::from_unix_nanos(raw.db_modified),
            job,
        ))
    }
}

/// Wraps a SQLite error with the database's path. A free function, so it can
/// borrow the path while a transaction borrows the connection.
fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> DbError + Copy + '_ {
    move |source| DbError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

struct RawRow {
    id: String,
    seq: Seq,
    db_modified: i64,
    body: String,
}

fn raw_row(row: &rusqlite::Row) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        seq: row.get(1)?,
        db_modified: row.get(2)?,
        body: row.get(3)?,
    })
}

fn newest_seq(conn: &Connection) -> rusqlite::Result<Seq> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM jobs", [], |row| {
        row.get(0)
    })
}

fn read_meta(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get::<_, i64>(0)
    })
    .optional()
    .map(|value| value.unwrap_or(0) as u64)
}

fn write_meta(conn: &Connection, key: &str, value: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value as i64],
    )
    .map(drop)
}

fn read_cursor(conn: &Connection) -> rusqlite::Result<Cursor> {
    Ok(Cursor {
        seq: read_meta(conn, CURSOR_SEQ)?,
        time: Timestamp::from_unix_nanos(read_meta(conn, CURSOR_TIME)? as i64),
    })
}

fn write_cursor(conn: &Connection, cursor: Cursor) -> rusqlite::Result<()> {
    write_meta(conn, CURSOR_SEQ, cursor.seq)?;
    write_meta(conn, CURSOR_TIME, cursor.time.unix_nanos() as u64)
}
