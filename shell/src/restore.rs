//! Restoring a job database: the newest snapshot, then every job uploaded
//! since the snapshot's time applied on top where newer.
//!
//! Everything is written to a temporary file beside the target and renamed
//! into place only once it is complete and `PRAGMA integrity_check` passes,
//! so a failed restore leaves nothing half-written.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use futures::StreamExt;
use jobvault_core::restore_plan::{OnCorrupt, RestorePlanner};
use jobvault_core::{Cursor, Timestamp};

use crate::db::{DbError, JobDb};
use crate::drive::{DriveError, Driver};
use crate::progress;
use crate::store::{Store, StoreError, bridge};

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error("restore plan: {0}")]
    Plan(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the restored database fails PRAGMA integrity_check: {0}")]
    Integrity(String),
    #[error("restore task failed: {0}")]
    Task(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Io { what, source }
}

/// The snapshot a restore started from.
#[derive(Debug, Clone)]
pub struct RestoredSnapshot {
    pub object: String,
    pub uploaded: Timestamp,
    /// The incremental backup time it was taken at: the gzip mtime, or the
    /// cursor stored inside it when the store served it decompressed.
    pub time: Timestamp,
    /// The size of the database file it holds.
    pub bytes: u64,
}

#[derive(Debug)]
pub struct RestoreReport {
    pub path: PathBuf,
    /// `None` when the bucket holds no snapshot: the database was rebuilt
    /// from job objects alone.
    pub snapshot: Option<RestoredSnapshot>,
    /// Changes from the bucket (bodies and deletions) newer than the
    /// snapshot's.
    pub applied: usize,
    pub total_jobs: usize,
    /// The cursor of the restored database: `jobvault run` continues from it.
    pub cursor: Cursor,
    /// Restoring the past: jobs written again as new changes, which `run`
    /// uploads, so that what came after the instant does not come back.
    pub written_again: usize,
    pub skipped: Vec<String>,
    pub elapsed: Duration,
}

/// Restores the newest state in `store` to `to`, as the core's
/// [`RestorePlanner`] decides: this only downloads and writes SQLite.
pub async fn restore(
    store: &Store,
    to: &Path,
    force: bool,
    concurrency: usize,
    on_corrupt: OnCorrupt,
    at: Option<Timestamp>,
    now: Timestamp,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    if to.exists() && !force {
        return Err(RestoreError::Exists(to.to_owned()));
    }
    let folder = match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".jobvault-restore-")
        .tempfile_in(&folder)
        .map_err(io_error(format!(
            "cannot create a temporary file in {}",
            folder.display()
        )))?;
    let temp_path = temp.path().to_owned();

    let mut planner = match at {
        Some(at) => RestorePlanner::at(at, now, on_corrupt),
        None => RestorePlanner::new(now, on_corrupt),
    };
    let progress = progress::items("jobs", Some(0));
    let driver = Driver {
        snapshot_to: Some(&temp_path),
        progress: Some(&progress),
        ..Driver::new(store, concurrency)
    };
    driver.drive(&mut planner).await?;
    let plan = planner
        .finish()
        .map_err(|e| RestoreError::Plan(e.to_string()))?;
    if plan.snapshot.is_none() {
        discard_rejected_snapshot(temp.as_file(), &temp_path)?;
    }
    let snapshot = plan.snapshot.as_ref().map(|chosen| RestoredSnapshot {
        object: chosen.object.clone(),
        uploaded: chosen.uploaded,
        time: chosen.time,
        bytes: file_size(&temp_path),
    });

    let skipped = plan
        .retrieved
        .skipped
        .iter()
        .map(|s| format!("{}: {}", store.location(&s.object), s.why))
        .collect();
    let (applied, total_jobs, cursor, written_again) = {
        let path = temp_path.clone();
        tokio::task::spawn_blocking(move || -> Result<_, RestoreError> {
            let (mut db, _) = JobDb::init(&path, now)?;
            let applied = db.apply_versions(&plan.retrieved.jobs)?;
            let cursor = db.mark_backed_up(|newest, counter| plan.cursor(newest, counter, now))?;
            let abandoned = plan.abandoned().map(|(id, seq)| (id.clone(), seq));
            let written_again = db.write_again(abandoned, now)?;
            db.integrity_check()?.map_err(RestoreError::Integrity)?;
            let total = db.count()?;
            Ok((applied, total, cursor, written_again))
        })
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))??
    };

    replace(temp, to)?;
    Ok(RestoreReport {
        path: to.to_owned(),
        snapshot,
        applied,
        total_jobs,
        cursor,
        written_again,
        skipped,
        elapsed: started.elapsed(),
    })
}

/// Empties the file a restore of the past fetched a snapshot into before
/// the planner found it held changes after the instant and chose none.
fn discard_rejected_snapshot(file: &File, path: &Path) -> Result<(), RestoreError> {
    file.set_len(0)
        .map_err(io_error(format!("cannot empty {}", path.display())))?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(&side);
    }
    Ok(())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Moves the finished database into place. A database being replaced loses
/// its WAL and shared-memory files first: SQLite would otherwise replay the
/// old WAL into the new file.
fn replace(temp: tempfile::NamedTempFile, to: &Path) -> Result<(), RestoreError> {
    temp.as_file()
        .sync_all()
        .map_err(io_error(format!("cannot flush {}", temp.path().display())))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = to.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(&side) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(format!(
                    "cannot remove {}",
                    PathBuf::from(&side).display()
                ))(e));
            }
            _ => {}
        }
    }
    temp.persist(to).map_err(|e| {
        io_error(format!(
            "cannot move the restored database to {}",
            to.display()
        ))(e.error)
    })?;
    Ok(())
}

/// What the download of a snapshot found out about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedSnapshot {
    /// The gzip header's file name and mtime; `None` when the store served
    /// the object decompressed (and no CRC could be checked).
    pub gzip: Option<(String, Option<Timestamp>)>,
    /// Bytes received from the store.
    pub received: u64,
}

/// Streams the snapshot into `dest`, gunzipping it (the CRC is checked at
/// the end) or copying it as is if the store served it decompressed.
pub async fn download_snapshot(
    store: &Store,
    object: &str,
    dest: &Path,
) -> Result<DownloadedSnapshot, RestoreError> {
    let progress = progress::bytes("snapshot", None);
    let received = Arc::new(AtomicU64::new(0));
    let pieces = {
        let (progress, received) = (progress.clone(), Arc::clone(&received));
        store.get_stream(object).await?.inspect(move |piece| {
            if let Ok(bytes) = piece {
                let total = received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                progress.set_position(total + bytes.len() as u64);
            }
        })
    };
    let (feed, source) = bridge(pieces);
    let location = store.location(object);
    // Opened here, not on the thread: a restore that fails while the
    // download runs removes the file, and must not find it made again.
    let out = File::create(dest).map_err(io_error(format!("cannot create {}", dest.display())))?;
    let writer = tokio::task::spawn_blocking(move || {
        decode_snapshot(source, out).map_err(io_error(format!("{location} cannot be restored")))
    });
    feed.await;
    progress.finish_and_clear();
    let gzip = writer
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))??;
    Ok(DownloadedSnapshot {
        gzip,
        received: received.load(Ordering::Relaxed),
    })
}

/// Writes the database held by `source` (gzip, or a plain SQLite file) to
/// `dest`; returns the gzip header's name and mtime if it was gzip.
pub fn decode_snapshot(
    source: impl Read,
    dest: File,
) -> io::Result<Option<(String, Option<Timestamp>)>> {
    let mut source = BufReader::with_capacity(1 << 20, source);
    let start = source.fill_buf()?;
    let mut out = io::BufWriter::with_capacity(1 << 20, dest);
    let gzip = if start.starts_with(&[0x1f, 0x8b]) {
        let mut gzip = GzDecoder::new(source);
        io::copy(&mut gzip, &mut out)?;
        let header = gzip
            .header()
            .expect("a gzip stream read to its end has a header");
        let name = String::from_utf8_lossy(header.filename().unwrap_or_default()).into_owned();
        // A gzip mtime of 0 means "none".
        let mtime = Some(header.mtime())
            .filter(|&mtime| mtime != 0)
            .map(|mtime| Timestamp::from_unix_seconds(i64::from(mtime)));
        Some((name, mtime))
    } else if start.starts_with(SQLITE_MAGIC) {
        io::copy(&mut source, &mut out)?;
        None
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is neither gzip nor a SQLite database",
        ));
    };
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(gzip)
}
