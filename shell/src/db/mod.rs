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
//!
//! One [`JobDb`], its methods kept by client around `schema.rs` (the
//! tables, triggers and upgrades): `writer.rs` (what `jobvault jobs` and
//! the tests write and read), `feed.rs` (the daemon's change feed, cursor
//! and what it records beside it), `restore.rs` (restore's writes),
//! `inspect.rs` (checks and the snapshot's copy), over `meta.rs` and
//! `rows.rs`. Every SQLite error is named with the file through one helper
//! (`InDb::in_db`), and every write takes the write lock up front
//! (IMMEDIATE), so a writer waits for the lock rather than failing with
//! SQLITE_BUSY_SNAPSHOT once it has read.

mod feed;
mod inspect;
mod meta;
mod restore;
mod rows;
mod schema;
mod writer;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jobvault_core::Timestamp;
use jobvault_core::locked_copy::BUSY_TIMEOUT;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use meta::CURSOR_TIME;

pub use schema::CURRENT_VERSION;

/// What went wrong with the job database. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "job database {path} does not exist: `jobvault init --db {path}` creates one, \
         `jobvault restore --to {path}` brings one back from the bucket"
    )]
    Missing { path: PathBuf },
    #[error(
        "job database {path} is one of {names} names (hard links) of one file: SQLite keeps a \
         WAL per name, so processes that use different names miss each other's changes and \
         corrupt the file; use one name, and remove the others"
    )]
    SecondName { path: PathBuf, names: u64 },
    #[error("job database {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
        // Not `exists()`: it says "no" for a directory that cannot be
        // searched too, and a hostile trial's database behind one was
        // reported missing.
        let present = path.try_exists().map_err(|source| DbError::Io {
            path: path.to_owned(),
            source,
        })?;
        if !present {
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

    /// A file with a second name (a hard link) is refused before SQLite
    /// opens it: a daemon on one name never saw what writers committed
    /// under the other (their WAL is the other name's), and reported itself
    /// caught up; a backup by a link replayed a stale page into the file.
    fn open_with(path: &Path, flags: OpenFlags) -> Result<Self, DbError> {
        if let Ok(meta) = std::fs::metadata(path)
            && meta.nlink() > 1
        {
            return Err(DbError::SecondName {
                path: path.to_owned(),
                names: meta.nlink(),
            });
        }
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .in_db(path)?;
        conn.busy_timeout(BUSY_TIMEOUT).in_db(path)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .in_db(path)?;
        // Plans that do not depend on bound values: after a writer's ANALYZE
        // SQLite would otherwise plan the feed with each new cursor, and
        // prepare it again at every read ([`feed::CHANGES`]).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .in_db(path)?;
        Ok(JobDb {
            path: path.to_owned(),
            conn,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the schema to the current version in one transaction, keeping
    /// every job, the counter and the cursor; does nothing if it is current.
    /// A new database's cursor time is `now`: nothing was committed before
    /// it, so nothing before it can be missing from the bucket, and a restore
    /// from its first snapshot need not look further back.
    pub fn upgrade(&mut self, now: Timestamp) -> Result<SchemaChange, DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&self.path)?;
        if let Some(columns) = schema::foreign_jobs(&tx).in_db(&self.path)? {
            return Err(DbError::ForeignJobs {
                path: self.path.clone(),
                columns,
            });
        }
        let from = schema::version(&tx).in_db(&self.path)?;
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
                None => DbError::sqlite(&self.path, e),
            })?;
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                params![CURSOR_TIME, now.unix_nanos()],
            )
            .in_db(&self.path)?;
        }
        tx.commit().in_db(&self.path)?;
        Ok(SchemaChange {
            from,
            to: CURRENT_VERSION,
        })
    }

    /// Takes the write lock and lets it go, writing nothing: whether a writer
    /// (the daemon saving its cursor) could write now.
    pub fn check_writable(&mut self) -> Result<(), DbError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .in_db(&self.path)?
            .rollback()
            .in_db(&self.path)
    }

    /// The schema version: 0 for an empty file, 1 for the first release's.
    pub fn schema_version(&self) -> Result<u32, DbError> {
        schema::version(&self.conn).in_db(&self.path)
    }
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
        None => DbError::sqlite(path, source),
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

impl DbError {
    /// A SQLite error, named with the database's path.
    fn sqlite(path: &Path, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: path.to_owned(),
            source,
        }
    }
}

/// The one way a SQLite error becomes a [`DbError`]: `.in_db(path)` names
/// the file. Taking the path, not the database, lets it borrow the path
/// while a transaction borrows the connection.
trait InDb<T> {
    fn in_db(self, path: &Path) -> Result<T, DbError>;
}

impl<T> InDb<T> for rusqlite::Result<T> {
    fn in_db(self, path: &Path) -> Result<T, DbError> {
        self.map_err(|source| DbError::sqlite(path, source))
    }
}
