//! One daemon per database, whatever bucket each names.
//!
//! The cursor lives in the database, so two daemons on one database share
//! it: each took the other's saves for a rewind and rescanned past versions
//! it never uploaded, and a trial lost 87 jobs in one bucket and 50 in the
//! other while both reported caught up. The bucket prefix's lease cannot
//! stop this (the buckets differ). So `run` holds an OS lock on
//! `<db>-jobvault.lock` for its whole life: the kernel drops it when the
//! process ends, however it ends, and a second `run` on the same database is
//! refused with the holder's name. The file itself is never removed: a
//! process that removed it could let a third lock a new file while the
//! first still held the old one. Backing one database up to several
//! destinations at once is not supported.

use std::fs::File;
use std::io::{Read, Seek, Write};
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
    #[error("cannot lock {path}: {source}")]
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
    _file: File,
}

impl DbLock {
    /// Takes the lock of `db` for `me`, or names who holds it.
    pub fn take(db: &Path, me: &LockHolder) -> Result<DbLock, DbLockError> {
        let path = lock_file(db);
        let io = |source| DbLockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e != rustix::io::Errno::WOULDBLOCK {
                return Err(io(e.into()));
            }
            return Err(DbLockError::Held {
                db: db.display().to_string(),
                holder: describe(&mut file),
            });
        }
        let written = serde_json::to_vec(me).expect("a lock holder serializes");
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(&written))
            .map_err(io)?;
        Ok(DbLock { _file: file })
    }
}

/// The holder as its file names it; the file may be mid-write.
fn describe(file: &mut File) -> String {
    let mut text = String::new();
    let read = file.read_to_string(&mut text);
    match read
        .ok()
        .and_then(|_| serde_json::from_str::<LockHolder>(&text).ok())
    {
        Some(h) => format!("pid {} on host {}, to {}", h.pid, h.host, h.destination),
        None => "another process (it is starting)".to_owned(),
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
        let first = DbLock::take(&db, &me("gs://b16")).unwrap();
        let refused = DbLock::take(&db, &me("gs://b17")).unwrap_err().to_string();
        assert!(
            refused.contains("pid 4242 on host vm, to gs://b16")
                && refused.contains("jobs.db")
                && refused.contains("several destinations"),
            "{refused}"
        );
        drop(first);
        assert!(DbLock::take(&db, &me("gs://b17")).is_ok());
        assert!(lock_file(&db).exists(), "the lock file is never removed");
    }
}
