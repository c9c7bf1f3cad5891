//! The job database: a SQLite file shared with the service that owns the jobs.
//!
//! ```text
//! jobs(id PRIMARY KEY, seq indexed, db_modified, body)    body: the job as JSON
//! deleted_jobs(id PRIMARY KEY, seq indexed, db_modified)  tombstones
//! meta(key PRIMARY KEY, value)      schema_version, change_counter, cursor_seq, cursor_time
//! set_aside_jobs(id PRIMARY KEY, seq, why)  rows the daemon cannot back up
//! ```
//!
//! Every change takes its sequence from `meta.change_counter` inside the
//! writer's transaction, assigned by triggers (`schema.rs`), so any writer in
//! any language is tracked. SQLite serializes writers, so sequence order is
//! commit order, and "changes with seq > cursor" is a complete change feed
//! that survives restarts. The database runs in WAL mode, so the change feed
//! and snapshots read while the service keeps writing.

mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jobvault_core::destination::DestinationId;
use jobvault_core::envelope::{MAX_BODY_BYTES, check_body};
use jobvault_core::machine::{ChangeBatch, RowId, Unreadable};
use jobvault_core::restore_plan::{RestoreTarget, apply_versions, supersedes};
use jobvault_core::{Change, Cursor, Envelope, JobId, Seq, Timestamp};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

pub use schema::CURRENT_VERSION;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What every writer runs: the writer contract's upsert.
const UPSERT: &str = "INSERT INTO jobs (id, body) VALUES (?1, ?2)
    ON CONFLICT(id) DO UPDATE SET body = excluded.body";

/// Writes a backed-up version as it is, with its own sequence (restore only,
/// with tracking off).
const RESTORE_ROW: &str = "INSERT INTO jobs (id, seq, db_modified, body) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT(id) DO UPDATE SET
        seq = excluded.seq, db_modified = excluded.db_modified, body = excluded.body";

/// The change feed: bodies and tombstones after a sequence, in order, with
/// each body's size; a body over ?3 bytes is not read. `octet_length`
/// reads the size without a copy of the body (`length(CAST(...))` made
/// two).
const CHANGES: &str = "
    SELECT id, seq, db_modified,
           CASE WHEN octet_length(body) <= ?3 THEN body END,
           octet_length(body)
        FROM jobs WHERE seq > ?1
    UNION ALL
    SELECT id, seq, db_modified, NULL, NULL FROM deleted_jobs WHERE seq > ?1
    ORDER BY seq LIMIT ?2";

/// Records a row as set aside if the database still holds that version of
/// it (a writer may have changed it since the daemon read it).
const SET_ASIDE: &str = "
    INSERT OR REPLACE INTO set_aside_jobs (id, seq, why)
        SELECT CAST(?1 AS TEXT), ?2, ?3
        WHERE EXISTS (SELECT 1 FROM jobs WHERE id = CAST(?1 AS TEXT) AND seq = ?2)
           OR EXISTS (SELECT 1 FROM deleted_jobs WHERE id = CAST(?1 AS TEXT) AND seq = ?2)";

const COUNTER: &str = "change_counter";
const CURSOR_SEQ: &str = "cursor_seq";
const CURSOR_TIME: &str = "cursor_time";
/// The destination the cursor belongs to ([`DestinationId`]); 0 or absent:
/// none recorded.
const CURSOR_DESTINATION: &str = "cursor_destination";

/// What went wrong with the job database. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "job database {path} does not exist: `jobvault init --db {path}` creates one, \
         `jobvault restore --to {path}` brings one back from the bucket"
    )]
    Missing { path: PathBuf },
    #[error("job database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("job database {path}: job {id:?} refused: {rule}")]
    Refused {
        path: PathBuf,
        id: String,
        rule: String,
    },
    #[error(
        "job database {path} cannot be upgraded: a job breaks the rule \"{rule}\"; \
         fix or delete that row and run `jobvault init` again"
    )]
    UpgradeRefused { path: PathBuf, rule: String },
    #[error("job database {path}: job {id:?} cannot be read: {why}")]
    CorruptRow {
        path: PathBuf,
        id: String,
        why: String,
    },
    #[error("job database {path}: the stored cursor changed underneath jobvault")]
    CursorChanged { path: PathBuf },
    #[error(
        "job database {path} has schema version {version}, newer than this jobvault knows \
         (up to {CURRENT_VERSION}); use a newer jobvault"
    )]
    NewerSchema { path: PathBuf, version: u32 },
    #[error(
        "job database {path} has a `jobs` table that is not jobvault's (columns: {columns}; no \
         `meta` table): jobvault changes nothing in it; point --db at the scheduler's database or at \
         a new file"
    )]
    ForeignJobs { path: PathBuf, columns: String },
}

/// What [`JobDb::upgrade`] did: the schema version before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaChange {
    pub from: u32,
    pub to: u32,
}

impl SchemaChange {
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// An open job database.
#[derive(Debug)]
pub struct JobDb {
    path: PathBuf,
    conn: Connection,
}

impl JobDb {
    /// Opens an existing job database as it is, whatever its schema
    /// version: reading needs no upgrade.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        if !path.exists() {
            return Err(DbError::Missing {
                path: path.to_owned(),
            });
        }
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    /// Opens a job database, creating it if it does not exist, with the
    /// current schema ([`JobDb::upgrade`]).
    pub fn init(path: &Path, now: Timestamp) -> Result<(Self, SchemaChange), DbError> {
        let mut db = Self::open_with(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        let change = db.upgrade(now)?;
        Ok((db, change))
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<Self, DbError> {
        let sqlite = sqlite_error(path);
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(sqlite)?;
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

    /// Brings the schema to the current version in one transaction, keeping
    /// every job, the counter and the cursor; does nothing if it is current.
    /// A new database's cursor time is `now`: nothing was committed before
    /// it, so nothing before it can be missing from the bucket, and a restore
    /// from its first snapshot need not look further back.
    pub fn upgrade(&mut self, now: Timestamp) -> Result<SchemaChange, DbError> {
        let sqlite = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        if let Some(columns) = schema::foreign_jobs(&tx).map_err(sqlite)? {
            return Err(DbError::ForeignJobs {
                path: self.path.clone(),
                columns,
            });
        }
        let from = schema::version(&tx).map_err(sqlite)?;
        if from > CURRENT_VERSION {
            return Err(DbError::NewerSchema {
                path: self.path.clone(),
                version: from,
            });
        }
        if from < CURRENT_VERSION {
            schema::upgrade(&tx, from).map_err(|e| match refused_rule(&e) {
                Some(rule) => DbError::UpgradeRefused {
                    path: self.path.clone(),
                    rule,
                },
                None => sqlite(e),
            })?;
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                params![CURSOR_TIME, now.unix_nanos()],
            )
            .map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
        Ok(SchemaChange {
            from,
            to: CURRENT_VERSION,
        })
    }

    /// Takes the write lock and lets it go, writing nothing: whether a writer
    /// (the daemon saving its cursor) could write now.
    pub fn check_writable(&mut self) -> Result<(), DbError> {
        let sqlite = sqlite_error(&self.path);
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?
            .rollback()
            .map_err(sqlite)
    }

    /// The schema version: 0 for an empty file, 1 for the first release's.
    pub fn schema_version(&self) -> Result<u32, DbError> {
        schema::version(&self.conn).map_err(|e| self.sqlite(e))
    }

    /// Writes job bodies in one transaction, all of them or none, the way any
    /// writer does: the database assigns each change its sequence.
    pub fn put(&mut self, jobs: &[(JobId, String)]) -> Result<(), DbError> {
        let sqlite = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        {
            let mut upsert = tx.prepare_cached(UPSERT).map_err(sqlite)?;
            for (id, body) in jobs {
                upsert
                    .execute(params![id.as_str(), body])
                    .map_err(|e| refused_or(&self.path, id.as_str(), e))?;
            }
        }
        tx.commit().map_err(sqlite)
    }

    /// Deletes jobs in one transaction, the way any writer does: each delete
    /// takes a sequence and leaves a tombstone that is backed up. Returns how
    /// many existed.
    pub fn delete(&mut self, ids: &[JobId]) -> Result<usize, DbError> {
        let sqlite = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let mut deleted = 0;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")
                .map_err(sqlite)?;
            for id in ids {
                deleted += delete.execute([id.as_str()]).map_err(sqlite)?;
            }
        }
        tx.commit().map_err(sqlite)?;
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

    /// SQLite's `data_version`: it moves when another connection commits.
    /// In WAL mode reading it touches only shared memory.
    pub fn data_version(&self) -> Result<i64, DbError> {
        self.conn
            .pragma_query_value(None, "data_version", |row| row.get(0))
            .map_err(|e| self.sqlite(e))
    }

    pub fn count(&self) -> Result<usize, DbError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM jobs", [], |row| row.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.sqlite(e))
    }

    /// Reads every job, one row at a time, without holding them, checking
    /// each body as a restore would; returns how many there are, or the first
    /// that does not hold its job.
    pub fn check_every_job(&self) -> Result<usize, DbError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, seq, db_modified, body FROM jobs")
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement.query([]).map_err(|e| self.sqlite(e))?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            let raw = raw_row(row).map_err(|e| self.sqlite(e))?;
            let envelope = self.decode(raw)?;
            if let Change::Written(body) = &envelope.change {
                check_body(&envelope.id, body).map_err(|e| DbError::CorruptRow {
                    path: self.path.clone(),
                    id: envelope.id.to_string(),
                    why: e.to_string(),
                })?;
            }
            count += 1;
        }
        Ok(count)
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
        let sqlite = sqlite_error(&self.path);
        let tx = self.conn.transaction().map_err(sqlite)?;
        let cursor = read_cursor(&tx).map_err(sqlite)?;
        let newest = read_meta(&tx, COUNTER).map_err(sqlite)?;
        let set_aside = count_set_aside(&tx).map_err(sqlite)?;
        let mut feed = ChangeBatch {
            stored: cursor,
            jobs: Vec::new(),
            unreadable: Vec::new(),
            set_aside,
            newest,
            complete: true,
        };
        {
            let mut statement = tx.prepare_cached(CHANGES).map_err(sqlite)?;
            let mut rows = statement
                .query(params![after, limit as i64, MAX_BODY_BYTES as i64])
                .map_err(sqlite)?;
            let (mut read, mut bytes) = (0, 0);
            while let Some(row) = rows.next().map_err(sqlite)? {
                let size: Option<i64> = row.get(4).map_err(sqlite)?;
                bytes += size.unwrap_or(0) as u64;
                if read > 0 && bytes > max_bytes {
                    feed.complete = false;
                    break;
                }
                read += 1;
                // Decoded from SQLite's own buffer: one copy of the body.
                match feed_row(row, size).map_err(sqlite)? {
                    Ok(envelope) => feed.jobs.push(envelope),
                    Err(unreadable) => feed.unreadable.push(unreadable),
                }
            }
            feed.complete &= read < limit;
        }
        tx.finish().map_err(sqlite)?;
        Ok(feed)
    }

    /// The rows recorded as set aside: how many, and the first few.
    pub fn set_aside(&self) -> Result<(u64, Vec<Unreadable>), DbError> {
        let sqlite = sqlite_error(&self.path);
        let count = count_set_aside(&self.conn).map_err(sqlite)?;
        let mut statement = self
            .conn
            .prepare("SELECT CAST(id AS BLOB), seq, why FROM set_aside_jobs ORDER BY seq LIMIT 5")
            .map_err(sqlite)?;
        let first = statement
            .query_map([], |row| {
                Ok(Unreadable {
                    id: RowId(row.get(0)?),
                    seq: row.get(1)?,
                    why: row.get(2)?,
                    deleted: false,
                })
            })
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        Ok((count, first))
    }

    /// When the newest change the database holds (a row or, from schema 2
    /// on, a tombstone) was committed; `None` when it holds none.
    pub fn newest_change(&self) -> Result<Option<Timestamp>, DbError> {
        newest_change(&self.conn).map_err(|e| self.sqlite(e))
    }

    pub fn cursor(&self) -> Result<Cursor, DbError> {
        read_cursor(&self.conn).map_err(|e| self.sqlite(e))
    }

    /// The destination the cursor belongs to, if the database records one.
    pub fn recorded_destination(&self) -> Result<Option<DestinationId>, DbError> {
        read_meta(&self.conn, CURSOR_DESTINATION)
            .map(DestinationId::new)
            .map_err(|e| self.sqlite(e))
    }

    /// Records that the cursor belongs to destination `id`.
    pub fn record_destination(&mut self, id: DestinationId) -> Result<(), DbError> {
        write_meta(&self.conn, CURSOR_DESTINATION, id.get()).map_err(|e| self.sqlite(e))
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
        for row in set_aside {
            tx.prepare_cached(SET_ASIDE)
                .and_then(|mut s| s.execute(params![row.id.0, row.seq, row.why]))
                .map_err(sqlite)?;
        }
        let recorded = count_set_aside(&tx).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(recorded)
    }

    /// Makes the database whole after a restore: `decide` gets the newest
    /// sequence and the change counter and returns the cursor to store (the
    /// restore planner's decision); the counter continues after the cursor,
    /// and no destination is recorded.
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
        // The destination the snapshot recorded need not be the one it was
        // restored from: whatever prefix this database is backed up to next
        // gets a full snapshot first.
        write_meta(&tx, CURSOR_DESTINATION, 0).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
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
        let sqlite = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let mut written = 0;
        for (id, seq) in newest {
            if !supersedes(seq, held_seq(&tx, &id).map_err(sqlite)?) {
                continue;
            }
            let updated = tx
                .execute("UPDATE jobs SET body = body WHERE id = ?1", [id.as_str()])
                .map_err(sqlite)?;
            if updated == 0 {
                schema::tombstone_again(&tx, id.as_str()).map_err(sqlite)?;
            }
            written += 1;
        }
        tx.commit().map_err(sqlite)?;
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
            .map_err(sqlite_error(&path))?;
        let applied = schema::untracked(&tx, sqlite_error(&path), |tx| {
            apply_versions(&mut Building { tx, path: &path }, versions)
        })?;
        tx.commit().map_err(sqlite_error(&path))?;
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

    /// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite found. The
    /// file's soundness, not the rules: SQLite versions read some bodies
    /// differently (see [`JobDb::apply_versions`]), and
    /// [`JobDb::check_every_job`] checks bodies.
    pub fn integrity_check(&self) -> Result<Result<(), String>, DbError> {
        self.check("integrity_check")
    }

    /// `PRAGMA quick_check`: [`JobDb::integrity_check`] less the check that
    /// indexes match their tables, in time linear in the file's size.
    pub fn quick_check(&self) -> Result<Result<(), String>, DbError> {
        self.check("quick_check")
    }

    fn check(&self, pragma: &str) -> Result<Result<(), String>, DbError> {
        self.set_rules_checked(false)?;
        let lines = self.check_lines(pragma);
        self.set_rules_checked(true)?;
        let lines = lines?;
        Ok(if lines == ["ok"] {
            Ok(())
        } else {
            Err(lines.join("; "))
        })
    }

    fn check_lines(&self, pragma: &str) -> Result<Vec<String>, DbError> {
        let mut statement = self
            .conn
            .prepare(&format!("PRAGMA {pragma}"))
            .map_err(|e| self.sqlite(e))?;
        statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))
    }

    /// Whether this connection checks the schema's CHECK constraints.
    fn set_rules_checked(&self, checked: bool) -> Result<(), DbError> {
        self.conn
            .pragma_update(None, "ignore_check_constraints", !checked)
            .map_err(|e| self.sqlite(e))
    }

    fn decode(&self, raw: RawRow) -> Result<Envelope, DbError> {
        let body = raw.body.as_deref();
        decode(&raw.id, raw.seq, raw.db_modified, body).map_err(|row| DbError::CorruptRow {
            path: self.path.clone(),
            id: row.id.to_string(),
            why: format!("{} (change {})", row.why, row.seq),
        })
    }
}

/// A row as a job version (`body` `None`: a tombstone), or as the row no
/// job object can hold.
fn decode(
    id: &[u8],
    seq: Seq,
    db_modified: i64,
    body: Option<&[u8]>,
) -> Result<Envelope, Unreadable> {
    let unreadable = |why: String| Unreadable {
        seq,
        id: RowId(id.to_vec()),
        why,
        deleted: body.is_none(),
    };
    let Ok(text) = std::str::from_utf8(id) else {
        return Err(unreadable("its id is not UTF-8 text".to_owned()));
    };
    let job = JobId::new(text).map_err(|e| unreadable(e.to_string()))?;
    let modified = Timestamp::from_unix_nanos(db_modified);
    match body.map(std::str::from_utf8) {
        None => Ok(Envelope::deleted(job, seq, modified)),
        Some(Ok(body)) => Ok(Envelope::written(job, seq, modified, body)),
        Some(Err(_)) => Err(unreadable("its body is not UTF-8 text".to_owned())),
    }
}

/// A row of the change feed ([`CHANGES`]) as a job version, or as the row
/// no job object can hold: one whose body the feed did not read for its
/// size, too.
fn feed_row(
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

/// A refusal by the schema's rules, named with the job; any other error as
/// it is.
fn refused_or(path: &Path, id: &str, source: rusqlite::Error) -> DbError {
    match refused_rule(&source) {
        Some(rule) => DbError::Refused {
            path: path.to_owned(),
            id: id.to_owned(),
            rule,
        },
        None => sqlite_error(path)(source),
    }
}

/// The rule a constraint violation names, if it is one of the schema's: a
/// CHECK constraint's name or a trigger's message, both "jobvault: ...".
fn refused_rule(error: &rusqlite::Error) -> Option<String> {
    let rusqlite::Error::SqliteFailure(failure, Some(message)) = error else {
        return None;
    };
    if failure.code != rusqlite::ErrorCode::ConstraintViolation {
        return None;
    }
    let rule = message
        .strip_prefix("CHECK constraint failed: ")
        .unwrap_or(message);
    rule.strip_prefix("jobvault: ").map(str::to_owned)
}

/// The sequence of what the database holds for `id`: its row or its
/// tombstone.
fn held_seq(conn: &Connection, id: &JobId) -> rusqlite::Result<Option<Seq>> {
    conn.query_row(
        "SELECT MAX(seq) FROM (SELECT seq FROM jobs WHERE id = ?1
             UNION ALL SELECT seq FROM deleted_jobs WHERE id = ?1)",
        [id.as_str()],
        |row| row.get(0),
    )
}

/// The database restore builds, inside its transaction.
struct Building<'t> {
    tx: &'t Transaction<'t>,
    path: &'t Path,
}

impl RestoreTarget for Building<'_> {
    type Error = DbError;

    fn held(&mut self, id: &JobId) -> Result<Option<Seq>, DbError> {
        held_seq(self.tx, id).map_err(sqlite_error(self.path))
    }

    /// The row and no tombstone, or the reverse.
    fn write(&mut self, envelope: &Envelope) -> Result<(), DbError> {
        write_version(self.tx, envelope).map_err(|e| refused_or(self.path, envelope.id.as_str(), e))
    }
}

fn write_version(conn: &Connection, envelope: &Envelope) -> rusqlite::Result<()> {
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

/// Wraps a SQLite error with the database's path. A free function, so it can
/// borrow the path while a transaction borrows the connection.
fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> DbError + Copy + '_ {
    move |source| DbError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// A row as stored. Text is read as bytes: SQLite does not check that text
/// is UTF-8, so a writer can store any bytes, and such a row must be named,
/// not fail the read of the whole feed.
struct RawRow {
    id: Vec<u8>,
    seq: Seq,
    db_modified: i64,
    /// `None` for a tombstone.
    body: Option<Vec<u8>>,
}

fn raw_row(row: &rusqlite::Row) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: text_bytes(row, 0)?.expect("ids are NOT NULL"),
        seq: row.get(1)?,
        db_modified: row.get(2)?,
        body: text_bytes(row, 3)?,
    })
}

/// The bytes of a text column, `None` for NULL, without checking UTF-8.
fn text_bytes(row: &rusqlite::Row, column: usize) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(text_ref(row, column)?.map(<[u8]>::to_vec))
}

/// The bytes of a text column as SQLite holds them, `None` for NULL.
fn text_ref<'r>(row: &'r rusqlite::Row, column: usize) -> rusqlite::Result<Option<&'r [u8]>> {
    let value = row.get_ref(column)?;
    value
        .as_bytes_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, value.data_type(), e.into()))
}

/// The newest sequence of any row or tombstone; 0 when there is none.
fn newest_seq(conn: &Connection) -> rusqlite::Result<Seq> {
    conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM jobs), 0),
                    COALESCE((SELECT MAX(seq) FROM deleted_jobs), 0))",
        [],
        |row| row.get(0),
    )
}

fn newest_change(conn: &Connection) -> rusqlite::Result<Option<Timestamp>> {
    let has_tombstones: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deleted_jobs')",
        [],
        |row| row.get(0),
    )?;
    let sql = if has_tombstones {
        "SELECT MAX(m) FROM (SELECT MAX(db_modified) AS m FROM jobs
                             UNION ALL SELECT MAX(db_modified) FROM deleted_jobs)"
    } else {
        "SELECT MAX(db_modified) FROM jobs"
    };
    let nanos: Option<i64> = conn.query_row(sql, [], |row| row.get(0))?;
    Ok(nanos.map(Timestamp::from_unix_nanos))
}

/// Read and written with cached statements: the daemon reads the cursor on
/// every read of the change feed and writes it after every upload, and
/// preparing the statements each time was a tenth of its profile's samples
/// at 50 changes a second.
fn read_meta(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get::<_, i64>(0))
        .optional()
        .map(|value| value.unwrap_or(0) as u64)
}

fn write_meta(conn: &Connection, key: &str, value: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value as i64])
    .map(drop)
}

fn count_set_aside(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT COUNT(*) FROM set_aside_jobs")?
        .query_row([], |row| row.get::<_, i64>(0))
        .map(|n| n as u64)
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
