//! A local directory as a store: the embedded default, for trying jobvault
//! without a cloud account and for backups to a mounted volume.
//!
//! Objects are files under the root; names map to paths. Every write goes to
//! a hidden temporary file in the target folder and is renamed into place,
//! so a reader never sees half an object. Hidden files are never listed.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use futures::stream::StreamExt;
use jobvault_core::Timestamp;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::{Framing, ObjectName};
use tempfile::NamedTempFile;
use time::OffsetDateTime;

use super::backend::{Backend, BackendError, BackendStream};
use super::{ChunkReceiver, file_generations};
use jobvault_core::FailureKind;

/// Streamed reads hand out pieces of this size.
const READ_PIECE: usize = 1 << 20;

#[derive(Debug)]
pub(super) struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(root: PathBuf) -> Self {
        FileStore { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

#[async_trait::async_trait]
impl Backend for FileStore {
    async fn check(&self) -> Result<(), BackendError> {
        let root = self.root.clone();
        blocking(move || match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(BackendError::with_kind(
                FailureKind::Rejected,
                "is not a directory",
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BackendError::not_found("directory does not exist"))
            }
            Err(e) => Err(io_error(e)),
        })
        .await
    }

    async fn put(&self, name: &str, body: Vec<u8>, _framing: &Framing) -> Result<(), BackendError> {
        let path = self.path(name);
        blocking(move || {
            let mut file = create_temp_beside(&path)?;
            file.write_all(&body).map_err(io_error)?;
            persist(file, &path)
        })
        .await
    }

    async fn put_chunks(
        &self,
        name: &str,
        mut chunks: ChunkReceiver,
        _framing: &Framing,
    ) -> Result<u64, BackendError> {
        let path = self.path(name);
        let mut file = {
            let path = path.clone();
            blocking(move || create_temp_beside(&path)).await?
        };
        let mut size = 0;
        loop {
            let chunk = match chunks.recv().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    return Err(BackendError::transient(format!(
                        "reading the data to write failed: {e}"
                    )));
                }
                None => return Err(BackendError::transient("the data to write ended early")),
            };
            size += chunk.bytes.len() as u64;
            file = blocking(move || {
                file.write_all(&chunk.bytes).map_err(io_error)?;
                Ok(file)
            })
            .await?;
            if chunk.last {
                break;
            }
        }
        blocking(move || persist(file, &path)).await?;
        Ok(size)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, BackendError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            // Walk only the deepest folder the prefix names.
            let folder = prefix.rsplit_once('/').map_or("", |(folder, _)| folder);
            let start = root.join(folder);
            if !start.is_dir() {
                return Ok(Vec::new());
            }
            let mut objects = Vec::new();
            for entry in walkdir::WalkDir::new(&start)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()))
            {
                let entry = entry.map_err(walk_error)?;
                if !entry.file_type().is_file() {
                    continue;
                }
                let name = object_name(&root, entry.path());
                if !name.starts_with(&prefix) {
                    continue;
                }
                let meta = entry.metadata().map_err(walk_error)?;
                let updated = meta.modified().map_or(Timestamp::UNIX_EPOCH, |t| {
                    Timestamp::from_offset_date_time(OffsetDateTime::from(t))
                });
                let sealed = is_sealed_snapshot(&name, entry.path());
                objects.push(ListedObject {
                    name: ObjectName::listed(name),
                    updated,
                    size: meta.len(),
                    generation: None,
                    sealed,
                });
            }
            Ok(objects)
        })
        .await
    }

    /// A directory keeps no noncurrent generation.
    async fn list_folders(
        &self,
        prefix: &str,
        _versions: bool,
    ) -> Result<Vec<String>, BackendError> {
        subfolders(self.root.join(prefix), prefix.to_owned()).await
    }

    /// The directories in the directory `folder` (an absolute path ending in
    /// `/`), as absolute paths ending in `/`.
    async fn folders_of(&self, folder: &str) -> Result<Vec<String>, BackendError> {
        subfolders(PathBuf::from(folder), folder.to_owned()).await
    }

    /// The object's bytes (a directory keeps only the live one); with
    /// `first`, only that many from the start.
    async fn get(
        &self,
        name: &str,
        _generation: Option<i64>,
        first: Option<u64>,
    ) -> Result<Vec<u8>, BackendError> {
        let path = self.path(name);
        blocking(move || {
            let mut bytes = Vec::new();
            let file = fs::File::open(&path).map_err(io_error)?;
            file.take(first.unwrap_or(u64::MAX))
                .read_to_end(&mut bytes)
                .map_err(io_error)?;
            Ok(bytes)
        })
        .await
    }

    async fn get_versioned(&self, name: &str) -> Result<Option<(Vec<u8>, i64)>, BackendError> {
        let path = self.path(name);
        blocking(move || file_generations::read(&path)).await
    }

    async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        _framing: &Framing,
        if_generation: i64,
    ) -> Result<i64, BackendError> {
        let path = self.path(name);
        blocking(move || file_generations::write(&path, &body, Some(if_generation))).await
    }

    /// Deletes an object, and the folders it leaves empty, as a bucket has
    /// no folders of its own.
    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        let (root, path) = (self.root.clone(), self.path(name));
        blocking(move || {
            fs::remove_file(&path).map_err(io_error)?;
            for folder in path.ancestors().skip(1).take_while(|f| *f != root) {
                if fs::remove_dir(folder).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .await
    }

    /// The object's bytes from byte `from` on; a directory keeps no
    /// generations, so none is served.
    async fn get_stream_from(
        &self,
        name: &str,
        _generation: Option<i64>,
        from: u64,
    ) -> Result<(BackendStream, Option<i64>), BackendError> {
        use tokio::io::AsyncSeekExt;
        let mut file = tokio::fs::File::open(self.path(name))
            .await
            .map_err(io_error)?;
        file.seek(std::io::SeekFrom::Start(from))
            .await
            .map_err(io_error)?;
        let pieces = tokio_util::io::ReaderStream::with_capacity(file, READ_PIECE);
        Ok((pieces.map_err(io_error).boxed(), None))
    }

    async fn versioning(&self) -> Result<Option<bool>, BackendError> {
        Ok(None)
    }

    fn own_prefix(&self) -> String {
        format!("{}/", self.root.display())
    }

    fn credentials(&self) -> String {
        "none needed: a local directory".to_owned()
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BackendError::transient(format!("file store task failed: {e}")))?
}

fn create_temp_beside(path: &Path) -> Result<NamedTempFile, BackendError> {
    let folder = path.parent().expect("object paths have a folder");
    fs::create_dir_all(folder).map_err(io_error)?;
    tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(folder)
        .map_err(io_error)
}

fn persist(file: NamedTempFile, path: &Path) -> Result<(), BackendError> {
    file.as_file().sync_all().map_err(io_error)?;
    file.persist(path).map_err(|e| io_error(e.error))?;
    Ok(())
}

fn object_name(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// The directories in `dir` that are not hidden, sorted, each named
/// `<prefix><name>/`; none if `dir` does not exist.
async fn subfolders(dir: PathBuf, prefix: String) -> Result<Vec<String>, BackendError> {
    blocking(move || {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(e)),
        };
        let mut folders = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error)?;
            let name = entry.file_name();
            if entry.file_type().map_err(io_error)?.is_dir() && !is_hidden(&name) {
                folders.push(format!("{prefix}{}/", name.to_string_lossy()));
            }
        }
        folders.sort();
        Ok(folders)
    })
    .await
}

fn io_error(error: io::Error) -> BackendError {
    BackendError::with_kind(io_kind(&error), error.to_string())
}

fn walk_error(error: walkdir::Error) -> BackendError {
    let kind = error.io_error().map_or(FailureKind::Transient, io_kind);
    BackendError::with_kind(kind, error.to_string())
}

/// What a local I/O error means to the core.
pub(crate) fn io_kind(error: &io::Error) -> FailureKind {
    match error.kind() {
        io::ErrorKind::NotFound => FailureKind::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            FailureKind::Permission
        }
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => FailureKind::Corrupt,
        io::ErrorKind::AlreadyExists => FailureKind::Conflict,
        _ => FailureKind::Transient,
    }
}

/// Whether the object `name` at `path` is an encrypted snapshot. The file
/// store keeps no content type, so a snapshot's first bytes say, for the
/// warnings about snapshots written in the clear beside encrypted ones
/// (one small read per snapshot listed). Other objects say `false`: a
/// restore finds out from their bytes.
fn is_sealed_snapshot(name: &str, path: &Path) -> bool {
    let is_snapshot = jobvault_core::object_name::parse_object_name(name)
        .is_ok_and(|parsed| parsed.kind == jobvault_core::object_name::ObjectKind::Snapshot);
    let mut head = [0; jobvault_crypt::AGE_MAGIC.len()];
    is_snapshot
        && fs::File::open(path)
            .and_then(|mut file| file.read_exact(&mut head))
            .is_ok()
        && jobvault_crypt::is_sealed(&head)
}
