//! Restoring a job database: the newest snapshot, then every job uploaded
//! since the snapshot's time applied on top where newer.
//!
//! Everything is written to a temporary file beside the target and renamed
//! into place only once it is complete and `PRAGMA integrity_check` passes,
//! so a failed restore leaves nothing half-written; the temporary file and
//! its SQLite side files are removed on every way out
//! ([`temp_database`]).

mod temp_database;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::read::GzDecoder;
use futures::StreamExt;
use jobvault_core::object_name::ObjectName;
use jobvault_core::read_retry::ReadAgain;
use jobvault_core::restore_plan::{OnCorrupt, PlanError, RestorePlanner, Skipped, WithoutSnapshot};
use jobvault_core::{Cursor, Seq, Timestamp};
use jobvault_crypt::{Keyring, OpenError, is_sealed};
use tracing::warn;

use crate::db::{DbError, JobDb};
use crate::drive::{DriveError, Driver};
use crate::nothing::{NothingFound, holds_backups};
use crate::progress;
use crate::reads::Reads;
use crate::store::{ByteStream, Store, StoreError, bridge, error_chain};
pub(crate) use temp_database::TempDatabase;

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("{0} is a directory; --to names the database file to write")]
    IsDirectory(PathBuf),
    #[error("{0} is {1}, not a database file: --force replaces only a regular file")]
    NotAFile(PathBuf, &'static str),
    #[error(
        "{} is backed up by a running jobvault ({holder}): stop it first; replaced under it, the \
         file it backs up is the old one, which no one reads again",
        path.display()
    )]
    DaemonRuns { path: PathBuf, holder: String },
    #[error(transparent)]
    NothingFound(#[from] NothingFound),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// Its text holds the I/O error's; it is not a `source`, which would
    /// print it twice in a chain.
    #[error("{what}: {error}")]
    Io { what: String, error: io::Error },
    #[error("the restored database fails PRAGMA integrity_check: {0}")]
    Integrity(String),
    #[error("restore task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl RestoreError {
    /// Whether this says the snapshot's bytes are not a sound gzip stream
    /// of a database (cut short, a bad CRC, neither gzip nor SQLite), as
    /// opposed to the store, the disk or the restore failing.
    pub fn is_unusable_snapshot(&self) -> bool {
        let RestoreError::Io { error: source, .. } = self else {
            return false;
        };
        let from_store = source
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<StoreError>().is_some());
        !from_store
            && matches!(
                source.kind(),
                io::ErrorKind::InvalidData
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::UnexpectedEof
            )
    }

    /// The reason an encrypted snapshot did not open, if that is what this
    /// says.
    /// Why, for a line that names the object already: an I/O error's
    /// own words, without the "X cannot be restored" it came wrapped in.
    pub fn why(&self) -> String {
        match self {
            RestoreError::Io { error, .. } => error_chain(error),
            other => error_chain(other),
        }
    }

    pub fn open_error(&self) -> Option<&OpenError> {
        let RestoreError::Io { error, .. } = self else {
            return None;
        };
        error.get_ref()?.downcast_ref::<OpenError>()
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> RestoreError {
    let what = what.into();
    move |error| RestoreError::Io { what, error }
}

/// The snapshot a restore started from.
#[derive(Debug, Clone)]
pub struct RestoredSnapshot {
    pub object: ObjectName,
    /// The generation read, where a restore of the past named one.
    pub generation: Option<i64>,
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
    /// Snapshots passed over as unusable (location: why), newest first.
    pub unusable: Vec<String>,
    pub elapsed: Duration,
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Replace a file at the target.
    pub force: bool,
    pub concurrency: usize,
    pub on_corrupt: OnCorrupt,
    /// With no usable snapshot: refuse, or rebuild from job objects alone.
    pub without_snapshot: WithoutSnapshot,
    pub from: RestoreFrom,
    pub reads: Reads,
}

/// Which state a restore gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// The newest the bucket holds.
    Newest,
    /// The state at an instant.
    Instant(Timestamp),
    /// The named snapshot and the job objects since it.
    Snapshot(ObjectName),
}

impl RestoreOptions {
    /// The newest state, failing on a corrupt object, reads retried with
    /// the default patience.
    pub fn newest(concurrency: usize) -> Self {
        RestoreOptions {
            force: false,
            concurrency,
            on_corrupt: OnCorrupt::Fail,
            without_snapshot: WithoutSnapshot::Refuse,
            from: RestoreFrom::Newest,
            reads: Reads::default(),
        }
    }
}

/// Restores the newest state in `store` (or the state at `options.at`) to
/// `to`, as the core's [`RestorePlanner`] decides: this only downloads and
/// writes SQLite. The file at `to` appears only complete and checked, by a
/// rename that replaces nothing unless `options.force`.
pub async fn restore(
    store: &Store,
    to: &Path,
    options: RestoreOptions,
    now: Timestamp,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    check_target(to, options.force)?;
    // A snapshot named in an empty prefix is nothing to restore (exit 3),
    // as the newest state of one is, not a name mistyped.
    if matches!(options.from, RestoreFrom::Snapshot(_))
        && !holds_backups(store, &options.reads).await?
    {
        let why = "no snapshot and no job object found (looked under db-backup/ and job-backup/)";
        return Err(
            NothingFound::in_store(store, &options.reads, why.to_owned())
                .await
                .into(),
        );
    }
    let temp = TempDatabase::beside(to)?;

    let mut planner = match &options.from {
        RestoreFrom::Newest => {
            RestorePlanner::new(now, options.on_corrupt).without_snapshot(options.without_snapshot)
        }
        RestoreFrom::Instant(at) => RestorePlanner::at(*at, now, options.on_corrupt)
            .without_snapshot(options.without_snapshot),
        RestoreFrom::Snapshot(object) => {
            RestorePlanner::from_snapshot(object.clone(), now, options.on_corrupt)
        }
    };
    let progress = progress::items("jobs", Some(0));
    let driver = Driver {
        snapshot_to: Some(temp.path()),
        progress: Some(&progress),
        ..Driver::new(store, options.concurrency, &options.reads)
    };
    driver.drive(&mut planner).await?;
    let plan = match planner.finish() {
        Ok(plan) => plan,
        Err(PlanError::NothingToRestore(why)) => {
            return Err(NothingFound::in_store(store, &options.reads, why)
                .await
                .into());
        }
        Err(e) => return Err(driver.plan_error(e).into()),
    };
    if plan.snapshot.is_none() {
        temp.discard_rejected_snapshot()?;
    }
    let snapshot = plan.snapshot.as_ref().map(|chosen| RestoredSnapshot {
        object: chosen.object.clone(),
        generation: chosen.generation,
        uploaded: chosen.uploaded,
        time: chosen.time,
        bytes: file_size(temp.path()),
    });

    let leased = match options.from {
        RestoreFrom::Newest => bucket_may_hold(store).await,
        RestoreFrom::Instant(_) | RestoreFrom::Snapshot(_) => None,
    };
    let named = |s: &Skipped| format!("{}: {}", store.location(&s.object), s.why);
    let skipped = plan.retrieved.skipped.iter().map(named).collect();
    let unusable = plan.unusable.iter().map(named).collect();
    let (applied, total_jobs, cursor, written_again) = {
        let path = temp.path().to_owned();
        tokio::task::spawn_blocking(move || -> Result<_, RestoreError> {
            let (mut db, _) = JobDb::init(&path, now)?;
            let applied = db.apply_versions(&plan.retrieved.jobs)?;
            let cursor =
                db.mark_backed_up(|newest, counter| plan.cursor(newest, counter, leased, now))?;
            let abandoned = plan.abandoned().map(|(id, seq)| (id.clone(), seq));
            let written_again = db.write_again(abandoned)?;
            db.integrity_check()?.map_err(RestoreError::Integrity)?;
            let total = db.count()?;
            Ok((applied, total, cursor, written_again))
        })
        .await??
    };

    // Given an identity, the file holds what was kept encrypted: with
    // nothing replaced, it is its owner's alone.
    let private = !options.reads.keyring().fingerprints().is_empty();
    temp.persist(to, options.force, private)?;
    Ok(RestoreReport {
        path: to.to_owned(),
        snapshot,
        applied,
        total_jobs,
        cursor,
        written_again,
        skipped,
        unusable,
        elapsed: started.elapsed(),
    })
}

/// What the prefix's lease says the bucket may hold, if it can be read
/// ([`jobvault_core::restore_plan::RestorePlan::cursor`]). One that cannot
/// only leaves the next start to take the restore for an older copy, at the
/// cost of a full snapshot.
async fn bucket_may_hold(store: &Store) -> Option<Seq> {
    match crate::lease::find(store).await {
        Ok(found) => found.lease.map(|(lease, _)| lease.state.bucket_may_hold()),
        Err(failure) => {
            warn!(
                lease = %store.location(jobvault_core::lease::LEASE_OBJECT),
                error = %failure,
                "cannot read the lease: the daemon's next start may take this restore for an older copy"
            );
            None
        }
    }
}

/// Refuses a target that cannot be written before anything is fetched: a
/// directory, or (without `force`) anything already there, a dangling
/// link included.
fn check_target(to: &Path, force: bool) -> Result<(), RestoreError> {
    let names_a_folder = to.as_os_str().to_string_lossy().ends_with('/');
    match std::fs::metadata(to) {
        Ok(meta) if meta.is_dir() => return Err(RestoreError::IsDirectory(to.to_owned())),
        Err(_) if names_a_folder => return Err(RestoreError::IsDirectory(to.to_owned())),
        _ => {}
    }
    let Ok(found) = std::fs::symlink_metadata(to) else {
        return Ok(());
    };
    if !force {
        return Err(RestoreError::Exists(to.to_owned()));
    }
    let kind = found.file_type();
    match () {
        () if kind.is_file() => match crate::db_lock::holder(to) {
            Ok(Some(holder)) => Err(RestoreError::DaemonRuns {
                path: to.to_owned(),
                holder,
            }),
            _ => Ok(()),
        },
        // A rename would replace the link, and leave the file it points
        // to, which whoever opens the path reads, as it was.
        () if kind.is_symlink() => Err(RestoreError::NotAFile(
            to.to_owned(),
            "a symbolic link (give the path it points to)",
        )),
        () => Err(RestoreError::NotAFile(
            to.to_owned(),
            "a device, socket or FIFO",
        )),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// What the download of a snapshot found out about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedSnapshot {
    /// The gzip header's file name and mtime; `None` when the store served
    /// the object decompressed (and no CRC could be checked).
    pub gzip: Option<(String, Option<Timestamp>)>,
    /// Bytes received from the store.
    pub received: u64,
    /// Whether it was an age file, opened and authenticated.
    pub sealed: bool,
}

/// Streams the snapshot into `dest`, gunzipping it (the CRC is checked at
/// the end) or copying it as is if the store served it decompressed. A body
/// cut part way is read on from the byte reached, at the generation first
/// served; if that generation is gone (the object was replaced), the
/// download starts over. A `generation` asked for is read or fails.
pub async fn download_snapshot(
    store: &Store,
    object: &str,
    generation: Option<i64>,
    dest: &Path,
    reads: &Reads,
) -> Result<DownloadedSnapshot, RestoreError> {
    loop {
        let replaced = AtomicBool::new(false);
        match download_once(store, object, generation, dest, reads, &replaced).await {
            Err(e) if replaced.load(Ordering::Relaxed) && generation.is_none() => {
                warn!(object = %store.location(object), error = %e, "the snapshot was replaced while it downloaded; downloading it again");
            }
            done => return done,
        }
    }
}

async fn download_once(
    store: &Store,
    object: &str,
    generation: Option<i64>,
    dest: &Path,
    reads: &Reads,
    replaced: &AtomicBool,
) -> Result<DownloadedSnapshot, RestoreError> {
    let progress = progress::bytes("snapshot", None);
    let received = Arc::new(AtomicU64::new(0));
    let pieces = {
        let (progress, received) = (progress.clone(), Arc::clone(&received));
        resumed(store, object, generation, reads, replaced).inspect(move |piece| {
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
    let reads = reads.clone();
    let writer = tokio::task::spawn_blocking(move || {
        decode_snapshot(source, out, reads.keyring())
            .map_err(io_error(format!("{location} cannot be restored")))
    });
    feed.await;
    progress.finish_and_clear();
    let Decoded { gzip, sealed } = writer.await??;
    Ok(DownloadedSnapshot {
        gzip,
        received: received.load(Ordering::Relaxed),
        sealed,
    })
}

/// Where a resumed download stands.
struct Resumed {
    body: Option<ByteStream>,
    /// The generation first served: every later read asks for it.
    generation: Option<i64>,
    offset: u64,
    /// Tries since bytes last came.
    attempt: u32,
    ended: bool,
}

/// The object's bytes, read on after each failure from the byte reached as
/// the core's read retry decides. Ends with an error once it gives up, or
/// once the generation is gone (`replaced` is then set).
fn resumed<'a>(
    store: &'a Store,
    object: &'a str,
    generation: Option<i64>,
    reads: &'a Reads,
    replaced: &'a AtomicBool,
) -> impl futures::Stream<Item = Result<Bytes, StoreError>> + Send + 'a {
    let start = Resumed {
        body: None,
        generation,
        offset: 0,
        attempt: 0,
        ended: false,
    };
    futures::stream::unfold(start, move |mut at| async move {
        while !at.ended {
            let piece = match &mut at.body {
                Some(body) => body.next().await,
                None => match store
                    .get_stream_from(object, at.generation, at.offset)
                    .await
                {
                    Ok((body, served)) => {
                        at.generation = at.generation.or(served);
                        at.body = Some(body);
                        continue;
                    }
                    Err(e) => Some(Err(e)),
                },
            };
            match piece {
                None => return None,
                Some(Ok(bytes)) => {
                    at.offset += bytes.len() as u64;
                    at.attempt = 0;
                    reads.progressed();
                    return Some((Ok(bytes), at));
                }
                Some(Err(error)) => {
                    at.body = None;
                    at.attempt += 1;
                    let pinned = at.generation.is_some();
                    match reads.after_failure(error, at.attempt, pinned).await {
                        Ok(ReadAgain::After(_)) => {}
                        Ok(ReadAgain::FromStart) => {
                            replaced.store(true, Ordering::Relaxed);
                            at.ended = true;
                            let gone = StoreError {
                                location: store.location(object),
                                message: format!(
                                    "generation {} is gone: the object was replaced",
                                    at.generation.unwrap_or_default()
                                ),
                                kind: jobvault_core::FailureKind::NotFound,
                            };
                            return Some((Err(gone), at));
                        }
                        Err(e) => {
                            at.ended = true;
                            return Some((Err(e), at));
                        }
                    }
                }
            }
        }
        None
    })
}

/// What decoding a snapshot's bytes found them to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The gzip header's name and mtime if it was gzip.
    pub gzip: Option<(String, Option<Timestamp>)>,
    /// Whether it was an age file (opened and authenticated).
    pub sealed: bool,
}

/// Writes the database held by `source` (gzip, or a plain SQLite file,
/// either maybe encrypted) to `dest`.
pub fn decode_snapshot(source: impl Read, dest: File, keyring: &Keyring) -> io::Result<Decoded> {
    let mut source = BufReader::with_capacity(1 << 20, source);
    if is_sealed(source.fill_buf()?) {
        let opened = Authenticating(keyring.open_reader(source).map_err(open_error)?);
        let gzip = decode_plain(BufReader::with_capacity(1 << 20, opened), dest)?;
        return Ok(Decoded { gzip, sealed: true });
    }
    let gzip = decode_plain(source, dest)?;
    Ok(Decoded {
        gzip,
        sealed: false,
    })
}

/// An encrypted snapshot that does not open: damaged, it is passed over as
/// any corrupt snapshot is ([`RestoreError::is_unusable_snapshot`]); with no
/// key to it, no other snapshot would open either.
fn open_error(error: OpenError) -> io::Error {
    let kind = match error {
        OpenError::Damaged(_) => io::ErrorKind::InvalidData,
        OpenError::NoMatchingIdentity { .. } | OpenError::NoIdentity { .. } => {
            io::ErrorKind::PermissionDenied
        }
    };
    io::Error::new(kind, error)
}

/// What an age file opens to. An error of the file's own (a chunk that
/// does not authenticate, the payload cut short) is said to be one, as the
/// header's are; one from the store beneath passes through as it came.
struct Authenticating<R>(R);

impl<R: Read> Read for Authenticating<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|error| {
            let from_store = error
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<StoreError>().is_some());
            if from_store {
                error
            } else {
                open_error(OpenError::damaged_by(&error))
            }
        })
    }
}

fn decode_plain(
    mut source: impl BufRead,
    dest: File,
) -> io::Result<Option<(String, Option<Timestamp>)>> {
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
