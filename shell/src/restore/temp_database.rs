//! The database a restore builds, beside its target until it is done.
//!
//! It is a temporary file in the target's folder (so the last step is a
//! rename on one filesystem), removed with its SQLite side files (`-wal`,
//! `-shm`, `-journal`) on every way out: an error, a full disk, or the
//! restore being dropped when a signal ends it. It reaches the target only
//! by [`TempDatabase::persist`]: a rename that replaces nothing unless
//! asked to, so a file that appears at the target while the restore runs is
//! kept, and a replaced database's mode and owner carry over. It is readable
//! by its owner only until then (it may hold jobs decrypted from the
//! bucket), and a `kill -9` that leaves it is cleared by the next restore
//! into the same folder (`leftovers.rs`).

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};
use tempfile::NamedTempFile;
use tracing::warn;

use super::{RestoreError, io_error};
use crate::leftovers::{self, Leftover};

/// SQLite's files beside a database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// A temporary database beside the restore's target.
#[derive(Debug)]
pub struct TempDatabase {
    file: NamedTempFile,
}

impl TempDatabase {
    /// Creates it in `to`'s folder, after removing what restores killed
    /// there left: a folder that does not exist or cannot be written fails
    /// here, before anything is fetched.
    pub fn beside(to: &Path) -> Result<Self, RestoreError> {
        let folder = match to.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        if folder.is_dir() {
            leftovers::clear(Leftover::RestoreDatabase, &folder);
        }
        let file = tempfile::Builder::new()
            .prefix(&Leftover::RestoreDatabase.own_prefix())
            .tempfile_in(&folder)
            .map_err(io_error(format!(
                "cannot create a temporary file in {}",
                folder.display()
            )))?;
        Ok(TempDatabase { file })
    }

    /// Creates it in `TMPDIR`, after removing what killed `verify`s left
    /// there: for a copy that is only read and checked.
    pub fn in_tmpdir() -> io::Result<Self> {
        let kind = Leftover::VerifyDatabase;
        leftovers::clear(kind, &std::env::temp_dir());
        let file = tempfile::Builder::new()
            .prefix(&kind.own_prefix())
            .tempfile()?;
        Ok(TempDatabase { file })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Empties the file after a restore of the past fetched a snapshot into
    /// it and then chose none.
    pub fn discard_rejected_snapshot(&self) -> Result<(), RestoreError> {
        self.file
            .as_file()
            .set_len(0)
            .map_err(io_error(format!("cannot empty {}", self.path().display())))?;
        remove_side_files(self.path());
        Ok(())
    }

    /// Moves the finished database to `to`. Without `force`, a file there
    /// (one that appeared while the restore ran, too) is an error and is
    /// left alone. A database being replaced gives the new one its mode and
    /// owner, and loses its WAL and shared-memory files first (SQLite would
    /// replay the old WAL into the new file); with nothing to replace, the
    /// file gets the mode the umask allows, as any new file would, or, if
    /// `private` (decrypted from the bucket), 0600 at most.
    pub fn persist(self, to: &Path, force: bool, private: bool) -> Result<(), RestoreError> {
        let file = self.file.as_file();
        file.sync_all()
            .map_err(io_error(format!("cannot flush {}", self.path().display())))?;
        match fs::metadata(to) {
            Ok(replaced) if force => take_mode_and_owner(file, self.path(), &replaced)?,
            _ => file
                .set_permissions(Permissions::from_mode(
                    if private { 0o600 } else { 0o666 } & !umask(),
                ))
                .map_err(io_error(format!(
                    "cannot set the mode of {}",
                    self.path().display()
                )))?,
        }
        if force || fs::symlink_metadata(to).is_err() {
            remove_stale_side_files(to)?;
        }
        let moved = if force {
            fs::rename(self.path(), to)
        } else {
            rename_without_replacing(self.path(), to)
        };
        match moved {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(RestoreError::Exists(to.to_owned()))
            }
            Err(e) => Err(io_error(format!(
                "cannot move the restored database to {}",
                to.display()
            ))(e)),
            // Moved: the temporary name is gone, and dropping finds nothing
            // to remove.
            Ok(()) => Ok(()),
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        remove_side_files(self.path());
    }
}

/// Gives the new database the mode and owner of the one it replaces, so
/// the scheduler and the daemon can still open it after a restore run as
/// root. An owner that cannot be given (not root) is warned about.
fn take_mode_and_owner(
    file: &File,
    path: &Path,
    replaced: &fs::Metadata,
) -> Result<(), RestoreError> {
    if let Err(e) = std::os::unix::fs::fchown(file, Some(replaced.uid()), Some(replaced.gid())) {
        warn!(file = %path.display(), uid = replaced.uid(), gid = replaced.gid(), error = %e, "cannot give the restored database the owner of the one it replaces");
    }
    file.set_permissions(Permissions::from_mode(replaced.mode() & 0o7777))
        .map_err(io_error(format!(
            "cannot set the mode of {}",
            path.display()
        )))
}

/// Renames `from` to `to` only if nothing is at `to`: `renameat2` with
/// `RENAME_NOREPLACE`, or, on a filesystem without it, a hard link (which
/// refuses an existing name too) and an unlink.
fn rename_without_replacing(from: &Path, to: &Path) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// The `-wal`, `-shm` and `-journal` of a database about to be replaced,
/// or left behind by one that was deleted: SQLite would replay an old WAL,
/// or roll a hot journal of a crashed writer back, into the new file.
fn remove_stale_side_files(to: &Path) -> Result<(), RestoreError> {
    for suffix in SIDE_FILES {
        let side = with_suffix(to, suffix);
        match fs::remove_file(&side) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(format!("cannot remove {}", side.display()))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

fn remove_side_files(path: &Path) {
    for suffix in SIDE_FILES {
        let _ = fs::remove_file(with_suffix(path, suffix));
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut side = path.as_os_str().to_owned();
    side.push(suffix);
    PathBuf::from(side)
}

/// The process's umask. Reading it means setting it: it is set back at
/// once, and nothing else in a restore creates files meanwhile.
fn umask() -> u32 {
    let mask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(mask);
    mask.as_raw_mode()
}
