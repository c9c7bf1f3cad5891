//! Driving the core's planners against a store.
//!
//! A planner ([`jobvault_core::restore_plan`]) decides what to list and fetch
//! and what it means; this module only carries out its asks, up to
//! `concurrency` at a time, and hands back what the store said. A read that
//! fails is made again as the core's read retry decides ([`Reads`]); a
//! listing page cut part way is read again and goes on after the last object
//! handed over. A store error the retry gives up on ends the drive; what the
//! objects mean is the planner's business.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::ProgressBar;
use jobvault_core::job_object::decode_job_object;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::ObjectKind;
use jobvault_core::object_name::ObjectName;
use jobvault_core::restore_plan::{Answer, Ask, NewestSearch, PlanError, Planner, RangeListing};
use jobvault_core::{Cursor, FailureKind, Timestamp};

use jobvault_core::history::HISTORY_OBJECT;

use crate::db::{DbError, JobDb};
use crate::failure::ToFailure;
use crate::reads::Reads;
use crate::restore::{RestoreError, download_snapshot};
use crate::small_object;
use crate::store::{ListPage, PagePart, Store, StoreError};
use jobvault_crypt::{AGE_MAGIC, Keyring, OpenError};

/// Why a drive stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A job object does not hold a job; `object` is its full location.
    #[error("{object}: {why} (--skip-corrupt leaves it out, with a warning naming it)")]
    Corrupt { object: String, why: String },
    /// An encrypted object that none of the identities given opens: no
    /// other object would do better, so the command ends.
    #[error("{object}: {error}")]
    NoKey { object: String, error: OpenError },
    /// The bucket does not hold what was asked for.
    #[error("{bucket}: {why}")]
    NotRestorable { bucket: String, why: String },
    /// The driver answered something not asked: a driver bug.
    #[error("planner")]
    Planner(#[source] PlanError),
    /// The planner waits for answers to nothing: a planner bug.
    #[error("the planner stalled with nothing to ask")]
    Stalled,
    #[error("asked to fetch {object} with nowhere to put it")]
    NowhereToPut { object: ObjectName },
    /// The snapshot could not be downloaded (the store, or this machine).
    #[error("downloading the snapshot")]
    Download(#[source] Box<RestoreError>),
    #[error("checking the snapshot failed")]
    CheckTask(#[source] tokio::task::JoinError),
    /// This machine cannot open what it downloaded (a full disk, an I/O
    /// error), which says nothing about the snapshot.
    #[error("{location} cannot be checked here")]
    CheckHere {
        location: String,
        #[source]
        source: DbError,
    },
    #[error("{} has {free} bytes free, and {location} takes {stored} bytes even compressed", folder.display())]
    NoRoom {
        folder: PathBuf,
        free: u64,
        location: String,
        stored: u64,
    },
}

/// What the driver does next: carry out a planner's ask, or go on with a
/// listing it asked for.
enum Request {
    Ask(Ask),
    /// Read on in a listing.
    Listing(ListingAt),
}

/// A listing being read, and how far it got.
struct ListingAt {
    prefix: String,
    versions: bool,
    /// The page being read (`None`: the first), for reading it again.
    token: Option<String>,
    /// The page being read; `None` to ask the store for it.
    page: Option<ListPage>,
    /// The objects of this page handed over so far, by name and
    /// generation: a page read again after a failure hands over only the
    /// others.
    handed: BTreeSet<(ObjectName, Option<i64>)>,
}

impl ListingAt {
    fn new(prefix: String, versions: bool, token: Option<String>) -> Self {
        ListingAt {
            prefix,
            versions,
            token,
            page: None,
            handed: BTreeSet::new(),
        }
    }
}

/// Where and how to carry out asks.
pub struct Driver<'a> {
    pub store: &'a Store,
    pub concurrency: usize,
    /// Where a fetched snapshot is written.
    pub snapshot_to: Option<&'a Path>,
    /// Counts job objects asked for and fetched.
    pub progress: Option<&'a ProgressBar>,
    /// When to read again after a failure, and when to give up.
    pub reads: Reads,
}

impl<'a> Driver<'a> {
    /// Carries out asks against `store`, `concurrency` at a time, reads
    /// retried as `reads` decides.
    pub fn new(store: &'a Store, concurrency: usize, reads: &Reads) -> Self {
        Driver {
            store,
            concurrency,
            snapshot_to: None,
            progress: None,
            reads: reads.clone(),
        }
    }

    /// Answers `planner`'s asks until it is complete.
    pub async fn drive(&self, planner: &mut impl Planner) -> Result<(), DriveError> {
        let driven = self.answer_all(planner).await;
        if let Some(bar) = self.progress {
            bar.finish_and_clear();
        }
        driven
    }

    async fn answer_all(&self, planner: &mut impl Planner) -> Result<(), DriveError> {
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < self.concurrency.max(1) {
                let Some(ask) = planner.poll_ask() else { break };
                if let (Some(bar), Ask::FetchJob { .. }) = (self.progress, &ask) {
                    bar.inc_length(1);
                }
                running.push(self.request(Request::Ask(ask)));
            }
            let Some(done) = running.next().await else {
                break;
            };
            let (answer, next_page) = done?;
            if let Some(next_page) = next_page {
                running.push(self.request(next_page));
            }
            planner
                .handle_answer(answer)
                .map_err(|e| self.plan_error(e))?;
        }
        if planner.is_complete() {
            Ok(())
        } else {
            Err(DriveError::Stalled)
        }
    }

    /// Carries out an ask, or goes on with a listing; returns the answer,
    /// and the request that goes on with the listing, if any.
    async fn request(&self, request: Request) -> Result<(Answer, Option<Request>), DriveError> {
        match request {
            Request::Ask(ask) => self.answer(ask).await,
            Request::Listing(listing) => self.read_on(listing).await,
        }
    }

    /// Hands over the next part of a listing page as it is read, so that
    /// fetches of what it lists start while the rest is listed.
    async fn read_on(&self, mut at: ListingAt) -> Result<(Answer, Option<Request>), DriveError> {
        let part = self.next_part(&mut at).await?;
        let prefix = at.prefix.clone();
        let (objects, next) = match part {
            PagePart::Objects(objects) => {
                let objects: Vec<ListedObject> = objects
                    .into_iter()
                    .filter(|o| at.handed.insert((o.name.clone(), o.generation)))
                    .collect();
                (objects, Some(Request::Listing(at)))
            }
            PagePart::End { next_page } => {
                let next = next_page.map(|token| {
                    Request::Listing(ListingAt::new(prefix.clone(), at.versions, Some(token)))
                });
                (Vec::new(), next)
            }
        };
        let answer = Answer::Objects {
            prefix,
            objects,
            more: next.is_some(),
        };
        Ok((answer, next))
    }

    /// The next part of the listing's page, the page read again from its
    /// start after each failure the read retry allows.
    async fn next_part(&self, at: &mut ListingAt) -> Result<PagePart, DriveError> {
        let mut attempt = 0;
        loop {
            let page = match &mut at.page {
                Some(page) => page,
                None => {
                    let (prefix, versions, token) = (&at.prefix, at.versions, &at.token);
                    let page = self
                        .reads
                        .read(|| self.store.list_page(prefix, versions, token.clone()))
                        .await?;
                    at.page.insert(page)
                }
            };
            match page.next().await {
                Ok(part) => {
                    self.reads.progressed();
                    return Ok(part);
                }
                Err(error) => {
                    at.page = None;
                    attempt += 1;
                    let _ = self.reads.after_failure(error, attempt, false).await?;
                }
            }
        }
    }

    async fn answer(&self, ask: Ask) -> Result<(Answer, Option<Request>), DriveError> {
        let (store, reads) = (self.store, &self.reads);
        let answer = match ask {
            Ask::ListFolders { folder, versions } => {
                let folders = reads.read(|| store.list_folders(&folder, versions)).await?;
                Answer::Folders { folder, folders }
            }
            Ask::ListObjects { prefix, versions } => {
                return self.read_on(ListingAt::new(prefix, versions, None)).await;
            }
            Ask::FetchSnapshot {
                object,
                stored,
                generation,
            } => self.fetch_snapshot(object, stored, generation).await?,
            Ask::SnapshotTime { object, generation } => {
                let mut head = reads
                    .read(|| store.get_part(&object, generation, Some(GZIP_HEADER_BYTES)))
                    .await?;
                if is_sealed_start(&head) {
                    head = reads
                        .read(|| store.get_part(&object, generation, Some(SEALED_HEAD_BYTES)))
                        .await?;
                    head = opened_start(reads.keyring(), &head);
                }
                Answer::SnapshotTime {
                    gzip_mtime: gzip_mtime(&head),
                    object,
                    generation,
                }
            }
            Ask::FetchJob { object, generation } => {
                let bytes = reads
                    .read(|| store.get_part(&object, generation, None))
                    .await?;
                if let Some(bar) = self.progress {
                    bar.inc(1);
                }
                let result = match reads.opened(&bytes) {
                    Ok(plain) => decode_job_object(&plain).map_err(|e| e.to_string()),
                    Err(damaged @ OpenError::Damaged(_)) => Err(damaged.to_string()),
                    Err(error) => {
                        let object = store.location(&object);
                        return Err(DriveError::NoKey { object, error });
                    }
                };
                Answer::JobFetched {
                    object,
                    generation,
                    result,
                }
            }
            Ask::Versioning => Answer::Versioning {
                enabled: reads.read(|| store.versioning()).await? == Some(true),
            },
            Ask::ReadHistory => Answer::History {
                bytes: reads
                    .read(|| small_object::read(store, HISTORY_OBJECT))
                    .await?,
            },
        };
        Ok((answer, None))
    }

    async fn fetch_snapshot(
        &self,
        object: ObjectName,
        stored: u64,
        generation: Option<i64>,
    ) -> Result<Answer, DriveError> {
        let Some(dest) = self.snapshot_to else {
            return Err(DriveError::NowhereToPut { object });
        };
        room_for(dest, stored, &self.store.location(&object))?;
        let downloaded =
            match download_snapshot(self.store, &object, generation, dest, &self.reads).await {
                Ok(downloaded) => downloaded,
                Err(e) if e.is_unusable_snapshot() => {
                    // The object is named beside the answer.
                    return Ok(Answer::SnapshotUnusable {
                        object,
                        why: e.why(),
                    });
                }
                Err(e) => return Err(DriveError::Download(Box::new(e))),
            };
        let path = dest.to_owned();
        let checked = tokio::task::spawn_blocking(move || open_snapshot(&path))
            .await
            .map_err(DriveError::CheckTask)?;
        let location = self.store.location(&object);
        Ok(match checked {
            Ok(Ok((stored_cursor, newest_change))) => Answer::SnapshotFetched {
                object,
                gzip_mtime: downloaded.gzip.and_then(|(_, mtime)| mtime),
                stored_cursor,
                newest_change,
            },
            Ok(Err(why)) => Answer::SnapshotUnusable { object, why },
            Err(source) => return Err(DriveError::CheckHere { location, source }),
        })
    }

    /// The planner's refusal, named after the bucket it was made of.
    pub(crate) fn plan_error(&self, error: PlanError) -> DriveError {
        match error {
            PlanError::Corrupt { object, why } => DriveError::Corrupt {
                object: self.store.location(&object),
                why,
            },
            PlanError::NotRestorable(why)
            | PlanError::NoUsableSnapshot(why)
            | PlanError::NothingToRestore(why) => DriveError::NotRestorable {
                bucket: self.store.url().to_string(),
                why,
            },
            unexpected @ PlanError::Unexpected(_) => DriveError::Planner(unexpected),
        }
    }
}

/// Fails before the first byte if the folder of `dest` has less room than
/// the snapshot takes stored (gzip): the database it holds is larger still.
fn room_for(dest: &Path, stored: u64, location: &str) -> Result<(), DriveError> {
    let folder = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Ok(stats) = rustix::fs::statvfs(folder) else {
        return Ok(());
    };
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if free < stored {
        return Err(DriveError::NoRoom {
            folder: folder.to_owned(),
            free,
            location: location.to_owned(),
            stored,
        });
    }
    Ok(())
}

/// The cursor stored in a downloaded snapshot and its newest change, once
/// `PRAGMA quick_check` finds it sound; or why it is not a usable job
/// database. The outer error is this machine's (a full disk, an I/O
/// error), which says nothing about the snapshot.
type Opened = Result<(Cursor, Option<Timestamp>), String>;

fn open_snapshot(path: &Path) -> Result<Opened, DbError> {
    let opened = JobDb::open(path).and_then(|db| {
        let sound = db.quick_check()?;
        Ok(sound.map(|()| (db.cursor(), db.newest_change())))
    });
    let (cursor, newest) = match opened {
        Ok(Ok(read)) => read,
        Ok(Err(problems)) => {
            return Ok(Err(format!(
                "SQLite's quick_check finds it damaged: {problems}"
            )));
        }
        Err(e) => return about_the_file(e),
    };
    match (cursor, newest) {
        (Ok(cursor), Ok(newest)) => Ok(Ok((cursor, newest))),
        (Err(e), _) | (_, Err(e)) => about_the_file(e),
    }
}

/// An error opening or reading a downloaded snapshot: the snapshot's fault
/// (not a database, damaged, not a job database: a foreign SQLite file
/// fails with "no such table"), or this machine's.
fn about_the_file(error: DbError) -> Result<Opened, DbError> {
    if is_this_machines(&error) {
        Err(error)
    } else {
        Ok(Err(format!("it does not open as a job database: {error}")))
    }
}

/// Whether SQLite's error says nothing of the file: the disk, memory,
/// permissions, a lock.
fn is_this_machines(error: &DbError) -> bool {
    use rusqlite::ErrorCode;
    match error {
        DbError::Sqlite { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(
                ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::OutOfMemory
                    | ErrorCode::PermissionDenied
                    | ErrorCode::ReadOnly
                    | ErrorCode::CannotOpen
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
            )
        ),
        _ => matches!(
            error.kind(),
            FailureKind::Transient | FailureKind::Permission | FailureKind::Timeout
        ),
    }
}

/// A gzip header's fixed part: magic, method, flags, then the mtime.
const GZIP_HEADER_BYTES: u64 = 10;

/// Enough of an encrypted snapshot to hold its age header (a few hundred
/// bytes a recipient) and the first 64 KiB chunk of its payload, which
/// holds the gzip header.
const SEALED_HEAD_BYTES: u64 = 16 * 1024 + 64 * 1024 + 16;

/// Whether the first bytes of an object are the start of an age file.
fn is_sealed_start(head: &[u8]) -> bool {
    let n = head.len().min(AGE_MAGIC.len());
    n > 0 && head[..n] == AGE_MAGIC[..n]
}

/// The first plain bytes of the encrypted object that `head` starts; empty
/// if no identity given opens it. Without an identity (the daemon's
/// retention never has one) the snapshot's time is unknown, and the planner
/// takes its day folder's and a margin, as for a header the store served
/// decompressed.
fn opened_start(keyring: &Keyring, head: &[u8]) -> Vec<u8> {
    let mut start = Vec::new();
    if let Ok(reader) = keyring.open_reader(head) {
        let _ = std::io::Read::read_to_end(
            &mut std::io::Read::take(reader, GZIP_HEADER_BYTES),
            &mut start,
        );
    }
    start
}

/// The mtime in a gzip header; `None` if `head` is not gzip (the store
/// served the object decompressed) or the header has none (0).
fn gzip_mtime(head: &[u8]) -> Option<Timestamp> {
    let mtime = head
        .strip_prefix(&[0x1f, 0x8b])
        .and_then(|rest| rest.get(2..6))?;
    let seconds = u32::from_le_bytes(mtime.try_into().expect("four bytes"));
    (seconds != 0).then(|| Timestamp::from_unix_seconds(i64::from(seconds)))
}

/// Every object of `kind` in the day folders between `since` and `now`.
pub async fn list_range(
    store: &Store,
    kind: ObjectKind,
    since: Timestamp,
    now: Timestamp,
    concurrency: usize,
    reads: &Reads,
) -> Result<Vec<ListedObject>, DriveError> {
    let mut listing = RangeListing::new(kind, since, now);
    Driver::new(store, concurrency, reads)
        .drive(&mut listing)
        .await?;
    Ok(listing.into_objects())
}

/// The newest object of `kind` in the bucket.
pub async fn find_newest(
    store: &Store,
    kind: ObjectKind,
    reads: &Reads,
) -> Result<Option<ListedObject>, DriveError> {
    let mut search = NewestSearch::new(kind);
    Driver::new(store, 1, reads).drive(&mut search).await?;
    Ok(search.into_newest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_larger_than_the_free_room_is_refused_before_its_first_byte() {
        let folder = tempfile::tempdir().unwrap();
        let dest = folder.path().join(".jobvault-restore-x");
        let location = "gs://b/db-backup/2026/12/04/nightly.bdb";
        let refused = room_for(&dest, u64::MAX, location).unwrap_err().to_string();
        assert!(
            refused.contains(location) && refused.contains(&folder.path().display().to_string()),
            "{refused}"
        );
        assert!(room_for(&dest, 1, location).is_ok());
    }
}
