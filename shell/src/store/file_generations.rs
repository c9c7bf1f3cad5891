//! Generations for a directory store, so that a write can be made on the
//! condition that nobody wrote since, as GCS does with `ifGenerationMatch`:
//! the one-writer lease needs it. A file's generation is its modification
//! time in nanoseconds; checking it and writing happen under an exclusive
//! lock on the object's folder, so two processes on this host cannot both
//! win. The folder must exist: a missing bucket is not made by a write.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use jobvault_core::FailureKind;
use rustix::fs::{FlockOperation, flock};

use super::BackendError;

/// Holds the lock on an object's folder while alive.
struct Locked {
    _folder: File,
}

fn lock(path: &Path) -> io::Result<Locked> {
    let folder = File::open(path.parent().expect("object paths have a folder"))?;
    flock(&folder, FlockOperation::LockExclusive)?;
    Ok(Locked { _folder: folder })
}

/// The generation of the file at `path`; 0 if there is none.
fn generation(path: &Path) -> io::Result<i64> {
    match fs::metadata(path) {
        Ok(meta) => {
            let since = meta
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Ok(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX).max(1))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn io_error(error: io::Error) -> BackendError {
    BackendError::with_kind(super::io_kind(&error), error.to_string())
}

fn precondition_failed(found: i64, wanted: i64) -> BackendError {
    BackendError::with_kind(
        FailureKind::Conflict,
        format!("412 Precondition Failed: generation {found}, not {wanted}"),
    )
}

/// The bytes and generation of the file at `path`, if there is one.
pub(super) fn read(path: &Path) -> Result<Option<(Vec<u8>, i64)>, BackendError> {
    // A folder not made yet holds no object, and takes no lock file: the
    // first write makes it (`backup` reads the lease of a prefix before it).
    if path.parent().is_some_and(|folder| !folder.exists()) {
        return Ok(None);
    }
    let _locked = lock(path).map_err(io_error)?;
    match fs::read(path) {
        Ok(bytes) => Ok(Some((bytes, generation(path).map_err(io_error)?))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(e)),
    }
}

/// Writes `body` to `path` if its generation is `wanted` (when given);
/// returns the new generation.
pub(super) fn write(path: &Path, body: &[u8], wanted: Option<i64>) -> Result<i64, BackendError> {
    let _locked = lock(path).map_err(io_error)?;
    let found = generation(path).map_err(io_error)?;
    if let Some(wanted) = wanted.filter(|wanted| *wanted != found) {
        return Err(precondition_failed(found, wanted));
    }
    let name = path
        .file_name()
        .expect("object paths have a name")
        .to_string_lossy();
    let temp: PathBuf = path.with_file_name(format!(".{name}.upload"));
    let mut file = File::create(&temp).map_err(io_error)?;
    file.write_all(body).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    fs::rename(&temp, path).map_err(io_error)?;
    newer_than(path, found).map_err(io_error)
}

/// The file's generation, moved past `found` if the write kept it (a write
/// within the clock's or the file system's resolution of the last one), by
/// the smallest step the file system keeps.
fn newer_than(path: &Path, found: i64) -> io::Result<i64> {
    for step in [1, 1_000, 1_000_000, 1_000_000_000, 2_000_000_000] {
        let written = generation(path)?;
        if written > found {
            return Ok(written);
        }
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos((found + step) as u64);
        File::options().write(true).open(path)?.set_modified(at)?;
    }
    Err(io::Error::other(format!(
        "{}: the file system keeps no modification time that moves",
        path.display()
    )))
}
