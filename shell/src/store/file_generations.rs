//! Generations for a directory store, so that a write can be made on the
//! condition that nobody wrote since, as GCS does with `ifGenerationMatch`:
//! the one-writer lease needs it. A file's generation is its modification
//! time in nanoseconds; checking it and writing happen under an exclusive
//! lock on a hidden file beside the object, so two processes on this host
//! cannot both win.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use jobvault_core::FailureKind;
use rustix::fs::{FlockOperation, flock};

use super::BackendError;

/// Holds the object's lock while alive.
struct Locked {
    _file: File,
}

fn lock(path: &Path) -> io::Result<Locked> {
    let folder = path.parent().expect("object paths have a folder");
    fs::create_dir_all(folder)?;
    let name = path
        .file_name()
        .expect("object paths have a name")
        .to_string_lossy();
    let file = File::create(folder.join(format!(".{name}.lock")))?;
    flock(&file, FlockOperation::LockExclusive)?;
    Ok(Locked { _file: file })
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
    // A write within the clock's resolution of the last keeps the old time.
    let mut written = generation(path).map_err(io_error)?;
    if written <= found {
        written = found + 1;
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(written as u64);
        File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(at))
            .map_err(io_error)?;
    }
    Ok(written)
}

/// Deletes the file at `path` if its generation is `wanted` (when given).
pub(super) fn delete(path: &Path, wanted: Option<i64>) -> Result<(), BackendError> {
    let _locked = lock(path).map_err(io_error)?;
    let found = generation(path).map_err(io_error)?;
    if let Some(wanted) = wanted.filter(|wanted| *wanted != found) {
        return Err(precondition_failed(found, wanted));
    }
    fs::remove_file(path).map_err(io_error)
}
