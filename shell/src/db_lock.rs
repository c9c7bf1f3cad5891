//! One daemon per database, whatever bucket each names.
//!
//! The cursor lives in the database, so two daemons on one database share
//! it: each took the other's saves for a rewind and rescanned past versions
//! it never uploaded, and a trial lost 87 jobs in one bucket and 50 in the
//! other while both reported caught up. The bucket prefix's lease cannot
//! stop this (the buckets differ). So `run` holds an OS lock (`flock`) on
//! the database file itself for its whole life: the kernel drops it when the
//! process ends, however it ends, and a second `run` on the same database,
//! by any path or hard link, is refused. A lock on a file of its own beside
//! the database was tried first: deleting that file, or a hard link to the
//! database, let a second daemon in. `flock` locks are apart from SQLite's
//! `fcntl` locks on Linux, and the descriptor stays open for the process's
//! life (closing any descriptor of the file would drop SQLite's locks).
//! The holder's host, pid and destination go into `<db>-jobvault.lock` for
//! the refusal to name; that file only informs. Backing one database up to
//! several destinations at once is not supported.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

/// Who holds the lock, as written into the file for the next one to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub host: String,
    pub pid: u32,
    /// The bucket URL the holder backs up to.
    pub destination: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DbLockError {
    #[error(
        "job database {db} is already backed up by jobvault {holder}; one database has one daemon \
         (backing it up to several destinations at once is not supported): stop that one first"
    )]
    Held { db: String, holder: String },
    #[error("cannot lock {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock file of the database at `db`.
pub fn lock_file(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-jobvault.lock");
    PathBuf::from(name)
}

/// Held for the daemon's life; the kernel releases it when the process ends.
#[derive(Debug)]
pub struct DbLock {
    _database: File,
}

impl DbLock {
    /// Takes the lock of the database at `db` for `me`, or names who holds
    /// it.
    pub fn take(db: &Path, me: &LockHolder) -> Result<DbLock, DbLockError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DbLockError::Io { path, source }
        };
        let database = File::open(db).map_err(io(db))?;
        if let Err(e) = flock(&database, FlockOperation::NonBlockingLockExclusive) {
            if e != rustix::io::Errno::WOULDBLOCK {
                return Err(io(db)(e.into()));
            }
            return Err(DbLockError::Held {
                db: db.display().to_string(),
                holder: describe(&lock_file(db)),
            });
        }
        let info = lock_file(db);
        let written = serde_json::to_vec(me).expect("a lock holder serializes");
        std::fs::write(&info, written).map_err(io(&info))?;
        Ok(DbLock {
            _database: database,
        })
    }
}

/// Who holds the lock of the database at `db`, if a daemon does: a file
/// replaced under a running daemon leaves it backing up the old one, which
/// no one reads again, while it reports itself caught up.
pub fn holder(db: &Path) -> Result<Option<String>, DbLockError> {
    let io = |source: std::io::Error| DbLockError::Io {
        path: db.to_owned(),
        source,
    };
    let database = File::open(db).map_err(io)?;
    // Shared, and released as the file closes: a daemon's exclusive lock
    // refuses it; this process holds no SQLite lock on the file to lose.
    match flock(&database, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(None),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(Some(describe(&lock_file(db)))),
        Err(e) => Err(io(e.into())),
    }
}

/// The holder as its file names it; the file may be mid-write, gone, or
/// written for another path of the same database (a hard link).
fn describe(info: &Path) -> String {
    let text = std::fs::read_to_string(info).unwrap_or_default();
    match serde_json::from_str::<LockHolder>(&text) {
        Ok(h) => format!("pid {} on host {}, to {}", h.pid, h.host, h.destination),
        Err(_) => "in another process (one that opened the database by another path, or is still starting)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(destination: &str) -> LockHolder {
        LockHolder {
            host: "vm".to_owned(),
            pid: 4242,
            destination: destination.to_owned(),
        }
    }

    // Both takers are in this process: flock locks belong to the open file,
    // so a second open is refused as a second process would be.
    #[test]
    fn a_second_taker_is_refused_with_the_holder_named_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jobs.db");
        std::fs::write(&db, b"").unwrap();
        let first = DbLock::take(&db, &me("gs://b16")).unwrap();
        let refused = DbLock::take(&db, &me("gs://b17")).unwrap_err().to_string();
        assert!(
            refused.contains("pid 4242 on host vm, to gs://b16")
                && refused.contains("jobs.db")
                && refused.contains("several destinations"),
            "{refused}"
        );
        // Neither removing the file that names the holder nor a hard link
        // lets a second one in: the lock is on the database's inode.
        std::fs::remove_file(lock_file(&db)).unwrap();
        let linked = dir.path().join("linked.db");
        std::fs::hard_link(&db, &linked).unwrap();
        for path in [&db, &linked] {
            let refused = DbLock::take(path, &me("gs://b18")).unwrap_err().to_string();
            assert!(
                refused.contains("by another path, or is still starting"),
                "{refused}"
            );
        }
        drop(first);
        assert!(DbLock::take(&linked, &me("gs://b17")).is_ok());
    }
}
