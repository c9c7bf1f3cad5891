//! Taking a snapshot: a consistent copy of the job database, gzipped while it
//! streams to the store.
//!
//! The copy goes to a temporary file in `TMPDIR` (mode 0600, removed on every
//! path a running process takes; `leftovers.rs` for the others) because
//! SQLite's backup API writes a database file. From there a
//! blocking task gzips it on up to four cores (`parallel_gzip`) into chunks that the upload consumes as they come,
//! so compression and upload overlap and memory stays at a few chunks
//! whatever the size of the database.
//!
//! `TMPDIR` is checked for room for the copy first, and a failure there
//! names `TMPDIR`: on a 2 MB tmpfs the first release blamed the job
//! database's own disk (`jobs.db: database or disk is full`) and left a
//! `-journal` behind at every attempt. The copy's side files now go with
//! it, however the attempt ends.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::Compression;
use jobvault_core::Input;
use jobvault_core::machine::SnapshotOrder;
use jobvault_core::object_name::Framing;
use jobvault_core::object_name::ObjectName;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::db::{DbError, JobDb};
use crate::failure::ToFailure;
use crate::leftovers::Leftover;
use crate::parallel_gzip;
use crate::store::{Chunk, ChunkSink, Store, StoreError};

/// Compression threads at most. Each holds a few MiB in flight, so four
/// keep a snapshot well under 64 MiB on any machine, and leave the other
/// cores of a big host to the scheduler the database belongs to.
const MAX_COMPRESSION_THREADS: usize = 4;

/// Called with the number of database bytes compressed so far.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A snapshot that was uploaded.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub object: ObjectName,
    /// Size of the database copy.
    pub database_bytes: u64,
    /// Size of the object (gzip).
    pub object_bytes: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("snapshot task failed: {0}")]
    Task(String),
    #[error(
        "TMPDIR ({tmp}) has {free} bytes free, and a copy of {db} takes up to {needed}; \
         set TMPDIR to a folder with room"
    )]
    NoRoom {
        tmp: PathBuf,
        db: PathBuf,
        free: u64,
        needed: u64,
    },
    #[error("cannot copy the job database into TMPDIR ({tmp}): {source}")]
    Copy {
        tmp: PathBuf,
        #[source]
        source: DbError,
    },
}

/// The most a copy of the database at `db` takes: the file and its WAL.
pub fn copy_size(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(with_suffix(db, suffix)).ok())
        .map(|meta| meta.len())
        .sum()
}

/// Bytes free to this process in the folder `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Fails unless `tmp` has room for a copy of `db`; a folder whose room
/// cannot be read is left to the copy to find out.
fn room_for_copy(db: &Path, tmp: &Path) -> Result<(), SnapshotError> {
    let needed = copy_size(db);
    match free_bytes(tmp) {
        Ok(free) if free < needed => Err(SnapshotError::NoRoom {
            tmp: tmp.to_owned(),
            db: db.to_owned(),
            free,
            needed,
        }),
        _ => Ok(()),
    }
}

/// The side files SQLite may leave beside the copy (a failed copy leaves
/// its `-journal`), removed when dropped.
struct SideFiles(PathBuf);

impl Drop for SideFiles {
    fn drop(&mut self) {
        for suffix in ["-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(&self.0, suffix));
        }
    }
}

/// Carries out the core's snapshot order and reports how it went, as the
/// core takes it: the daemon and an in-process `backup` both come here.
pub async fn execute_order(
    db_path: &Path,
    store: &Store,
    order: SnapshotOrder,
    progress: Option<ProgressFn>,
) -> Input {
    let result = match take_snapshot(db_path, store, &order, progress).await {
        Ok(report) => {
            info!(
                object = %store.location(&report.object),
                bytes = report.object_bytes,
                database_bytes = report.database_bytes,
                seconds = (report.elapsed.as_secs_f64() * 100.0).round() / 100.0,
                "snapshot uploaded"
            );
            Ok(report.object_bytes)
        }
        Err(e) => Err(e.to_failure()),
    };
    Input::SnapshotTaken {
        object: order.object,
        result,
    }
}

/// Copies the database at `db_path`, gzips the copy with the order's framing
/// and uploads it as the order's object.
pub async fn take_snapshot(
    db_path: &Path,
    store: &Store,
    order: &SnapshotOrder,
    progress: Option<ProgressFn>,
) -> Result<SnapshotReport, SnapshotError> {
    let started = Instant::now();
    let tmp = std::env::temp_dir();
    room_for_copy(db_path, &tmp)?;
    let copy = tempfile::Builder::new()
        .prefix(&Leftover::SnapshotCopy.own_prefix())
        .tempfile()
        .map_err(|source| SnapshotError::Io {
            what: format!(
                "cannot create a temporary file in TMPDIR ({})",
                tmp.display()
            ),
            source,
        })?;
    let copy_path = copy.path().to_owned();
    let _side_files = SideFiles(copy_path.clone());
    let database_bytes = {
        let db_path = db_path.to_owned();
        let copy_path = copy_path.clone();
        // Cancelled when this future is dropped: at the snapshot's deadline.
        let cancel = CancellationToken::new();
        let _give_up_when_dropped = cancel.clone().drop_guard();
        run_blocking(move || {
            JobDb::open(&db_path)?
                .snapshot_to(&copy_path, &cancel)
                .map_err(|source| SnapshotError::Copy { tmp, source })?;
            std::fs::metadata(&copy_path)
                .map(|meta| meta.len())
                .map_err(|source| SnapshotError::Io {
                    what: format!("cannot read {}", copy_path.display()),
                    source,
                })
        })
        .await?
    };
    // Two chunks queued at most: compression stays just ahead of the upload.
    let (chunks, receiver) = mpsc::channel(2);
    let framing = order.framing.clone();
    // Spawned now, not when awaited: the upload below consumes its output.
    let compress = tokio::task::spawn_blocking(move || {
        gzip_into_chunks(&copy_path, &framing, progress, &chunks).map_err(|source| {
            // Tell the upload why no more chunks come.
            let _ = chunks.blocking_send(Err(io::Error::new(source.kind(), source.to_string())));
            SnapshotError::Io {
                what: format!("cannot compress {}", copy_path.display()),
                source,
            }
        })
    });
    let uploaded = store
        .put_chunks(&order.object, receiver, &order.framing)
        .await;
    let compressed = compress
        .await
        .map_err(|e| SnapshotError::Task(e.to_string()))?;
    drop(copy);
    let object_bytes = uploaded?;
    compressed?;
    Ok(SnapshotReport {
        object: order.object.clone(),
        database_bytes,
        object_bytes,
        elapsed: started.elapsed(),
    })
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, SnapshotError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SnapshotError::Task(e.to_string()))?
}

/// Gzips the file at `source` into chunks of [`crate::store::CHUNK_BYTES`], the last one
/// marked. Blocking: run it off the async runtime.
pub fn gzip_into_chunks(
    source: &Path,
    framing: &Framing,
    progress: Option<ProgressFn>,
    chunks: &mpsc::Sender<io::Result<Chunk>>,
) -> io::Result<u64> {
    let mut input = ProgressReader {
        inner: File::open(source)?,
        read: 0,
        progress,
    };
    let mut sink = ChunkSink::new(chunks);
    let header = parallel_gzip::Header {
        name: framing.gzip_name.as_bytes(),
        mtime: framing.gzip_mtime.gzip_mtime(),
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_COMPRESSION_THREADS);
    parallel_gzip::compress(
        &mut input,
        &header,
        Compression::default(),
        threads,
        &mut sink,
    )?;
    sink.finish()?;
    Ok(input.read)
}

struct ProgressReader {
    inner: File,
    read: u64,
    progress: Option<ProgressFn>,
}

impl Read for ProgressReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(progress) = &self.progress {
            progress(self.read);
        }
        Ok(n)
    }
}
