//! What a planner asks its driver, and the answers it takes.
//!
//! The driver executes every [`Ask`] (concurrently if it likes) and hands
//! back the matching [`Answer`]; answers name what they answer, so they may
//! come back in any order. Store and file errors never reach a planner: they
//! end the whole operation in the driver. What a planner decides is what the
//! objects it was shown mean.

use crate::Cursor;
use crate::envelope::Envelope;
use crate::machine::ListedObject;
use crate::object_name::ObjectName;
use crate::timestamp::Timestamp;

/// Something a planner needs from the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// List the folders directly under `folder` (a delimiter listing);
    /// answer with [`Answer::Folders`].
    ListFolders { folder: String, versions: bool },
    /// List the objects whose names start with `prefix`, with every
    /// generation of each (noncurrent ones too) when `versions`; answer with
    /// [`Answer::Objects`], a page at a time if the store pages.
    ListObjects { prefix: String, versions: bool },
    /// Download the snapshot (the live one, or the given generation) into
    /// the database being built; answer with [`Answer::SnapshotFetched`],
    /// or [`Answer::SnapshotUnusable`] if its bytes do not hold a sound
    /// database. `stored` is its size as the listing gave it (gzip): the
    /// least room the database will need.
    FetchSnapshot {
        object: ObjectName,
        stored: u64,
        generation: Option<i64>,
    },
    /// Read the gzip header of a snapshot (its first bytes only): the live
    /// one, or the given generation; answer with [`Answer::SnapshotTime`].
    SnapshotTime {
        object: ObjectName,
        generation: Option<i64>,
    },
    /// Download and decode one job object: the live one, or the given
    /// generation; answer with [`Answer::JobFetched`].
    FetchJob {
        object: ObjectName,
        generation: Option<i64>,
    },
    /// Whether the bucket keeps noncurrent generations; answer with
    /// [`Answer::Versioning`].
    Versioning,
    /// Read the history marker ([`crate::history::HISTORY_OBJECT`]); answer
    /// with [`Answer::History`].
    ReadHistory,
}

/// A listing: of the folders under a folder, or of the objects under a
/// prefix. The key by which a search matches a listing's answer to its ask.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Listing {
    Folders(String),
    Objects(String),
}

impl Ask {
    /// The listing this asks for; `None` for a fetch.
    pub(crate) fn listing(&self) -> Option<Listing> {
        match self {
            Ask::ListFolders { folder, .. } => Some(Listing::Folders(folder.clone())),
            Ask::ListObjects { prefix, .. } => Some(Listing::Objects(prefix.clone())),
            Ask::FetchSnapshot { .. }
            | Ask::SnapshotTime { .. }
            | Ask::FetchJob { .. }
            | Ask::Versioning
            | Ask::ReadHistory => None,
        }
    }
}

/// What the driver found out.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Folders {
        folder: String,
        folders: Vec<String>,
    },
    /// One page of a listing. Pages of one listing come in order; the
    /// listing is complete with the page whose `more` is false.
    Objects {
        prefix: String,
        objects: Vec<ListedObject>,
        /// Further pages of this listing follow.
        more: bool,
    },
    SnapshotFetched {
        object: ObjectName,
        /// The gzip header's mtime; `None` when the header has none or the
        /// store served the object decompressed.
        gzip_mtime: Option<Timestamp>,
        /// The cursor stored inside the snapshot's database.
        stored_cursor: Cursor,
        /// When the newest change the snapshot holds (a row or a tombstone)
        /// was committed; `None` when it holds none.
        newest_change: Option<Timestamp>,
    },
    SnapshotTime {
        object: ObjectName,
        generation: Option<i64>,
        /// As in [`Answer::SnapshotFetched`].
        gzip_mtime: Option<Timestamp>,
    },
    /// The snapshot downloaded, and is not a sound database: its gzip
    /// stream ends early or fails its CRC, or SQLite finds it damaged or
    /// without a cursor. (A store that would not serve it is the driver's
    /// failure, not this.)
    SnapshotUnusable {
        object: ObjectName,
        why: String,
    },
    /// The object's envelope, or why its bytes do not hold one.
    JobFetched {
        object: ObjectName,
        generation: Option<i64>,
        result: Result<Envelope, String>,
    },
    Versioning {
        enabled: bool,
    },
    /// The marker's bytes; `None` when the bucket has none.
    History {
        bytes: Option<Vec<u8>>,
    },
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A job object does not hold a job, and corrupt objects are not skipped.
    #[error("{object}: {why}")]
    Corrupt { object: ObjectName, why: String },
    /// The bucket cannot give what was asked for, and why, in one line.
    #[error("{0}")]
    NotRestorable(String),
    /// No snapshot is usable (none is in the bucket, or every one proved
    /// unusable) and the job objects alone were not asked for: they may
    /// lack every job that only a snapshot holds. What was found, in one
    /// line.
    #[error("{0}")]
    NoUsableSnapshot(String),
    /// The bucket holds no backup at all (of the instant asked for, if
    /// any): what was looked for, in one line. A restore that found nothing
    /// fails rather than write an empty database.
    #[error("{0}")]
    NothingToRestore(String),
    /// The driver answered something that was not asked: a driver bug.
    #[error("answer to nothing that was asked: {0}")]
    Unexpected(String),
}

/// A pure planner: it asks, the driver answers, until it is complete.
pub trait Planner {
    /// The next thing to fetch or list; `None` while waiting for answers.
    #[must_use]
    fn poll_ask(&mut self) -> Option<Ask>;
    /// Takes in one answer.
    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError>;
    /// Every ask was answered and nothing more will be asked.
    fn is_complete(&self) -> bool;
}

/// A snapshot chosen by a planner, with the time it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenSnapshot {
    pub object: ObjectName,
    /// The generation fetched, where the listing named one (a restore of
    /// the past on a versioned bucket, which may take a noncurrent one);
    /// `None`: the live object.
    pub generation: Option<i64>,
    /// When the store wrote it.
    pub uploaded: Timestamp,
    /// The incremental backup time it was taken at: every job version
    /// committed before it is in the snapshot or in a job object.
    pub time: Timestamp,
}

impl Answer {
    /// The listing this answers; `None` for a fetch.
    pub(crate) fn listing(&self) -> Option<Listing> {
        match self {
            Answer::Folders { folder, .. } => Some(Listing::Folders(folder.clone())),
            Answer::Objects { prefix, .. } => Some(Listing::Objects(prefix.clone())),
            Answer::SnapshotFetched { .. }
            | Answer::SnapshotTime { .. }
            | Answer::SnapshotUnusable { .. }
            | Answer::JobFetched { .. }
            | Answer::Versioning { .. }
            | Answer::History { .. } => None,
        }
    }
}

impl Answer {
    /// Whether this completes the listing it answers: the last page of an
    /// object listing, or a folder listing.
    pub(crate) fn ends_listing(&self) -> bool {
        !matches!(self, Answer::Objects { more: true, .. })
    }
}

pub(crate) fn unexpected(answer: &Answer) -> PlanError {
    PlanError::Unexpected(format!("{answer:?}"))
}
