//! What crosses the boundary between the core and whoever drives it.
//!
//! The driver executes every [`Command`] and reports back with the matching
//! [`Input`]. Reports carry enough to identify the command they answer, so
//! commands may complete in any order.

use std::fmt;

use crate::Seq;
use crate::envelope::Envelope;
use crate::job_id::JobId;
use crate::object_name::Framing;
use crate::timestamp::Timestamp;
use crate::trigger::TriggerFile;

/// The durable incremental state, kept in the job database.
///
/// Every job version with a change sequence up to `seq`, and every version
/// committed before `time`, is in the bucket (that version or a newer one of
/// the same job). `time` is the gzip mtime of the next snapshot, from which a
/// restore retrieves the jobs the snapshot may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub seq: Seq,
    pub time: Timestamp,
}

/// Why a command failed, as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure(err.to_string())
    }
}

/// Why a snapshot is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotReason {
    /// Attempt number `attempt` (from 1) at serving the trigger file `name`.
    Trigger { name: String, attempt: u32 },
    /// Someone asked for a backup now.
    Immediate,
}

/// Take a consistent copy of the database, gzip it and upload it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOrder {
    pub object: String,
    pub framing: Framing,
    pub reason: SnapshotReason,
}

/// Upload one job version.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpload {
    pub object: String,
    pub framing: Framing,
    pub envelope: Envelope,
}

/// Something the core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// List the trigger directory; answer with [`Input::TriggersScanned`].
    ScanTriggers,
    /// Write `attempts` into the trigger file; answer with
    /// [`Input::TriggerAttemptsWritten`].
    WriteTriggerAttempts { name: String, attempts: u32 },
    /// Remove the trigger file; answer with [`Input::TriggerDeleted`].
    DeleteTrigger { name: String },
    /// Move the trigger file to the quarantine directory; answer with
    /// [`Input::TriggerQuarantined`].
    QuarantineTrigger { name: String, reason: String },
    /// Answer with [`Input::SnapshotTaken`].
    TakeSnapshot(SnapshotOrder),
    /// Read up to `limit` jobs whose change sequence is above `after`, in
    /// sequence order, together with the stored cursor, in one read
    /// transaction; answer with [`Input::ChangesRead`].
    ReadChanges { after: Seq, limit: usize },
    /// Answer with [`Input::JobUploaded`].
    UploadJob(JobUpload),
    /// Store `new` as the cursor in the database if it still holds
    /// `expected`, and fail otherwise (someone else changed it); answer with
    /// [`Input::CursorSaved`].
    SaveCursor { expected: Cursor, new: Cursor },
    /// List the snapshot objects under these day folders; answer with
    /// [`Input::SnapshotsListed`].
    ListSnapshots { prefixes: Vec<String> },
    /// Tell whoever asked for an immediate backup how it went.
    ImmediateBackupDone {
        object: String,
        result: Result<u64, Failure>,
    },
}

/// A batch of the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    /// The cursor stored in the database when the batch was read.
    pub stored: Cursor,
    /// The current version of each job changed after the requested sequence,
    /// in sequence order.
    pub jobs: Vec<Envelope>,
}

/// One object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub name: String,
    /// When the store last wrote the object.
    pub updated: Timestamp,
    pub size: u64,
}

/// A report from the driver: the result of a command, or a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    TriggersScanned(Result<Vec<TriggerFile>, Failure>),
    TriggerAttemptsWritten {
        name: String,
        result: Result<(), Failure>,
    },
    TriggerDeleted {
        name: String,
        result: Result<(), Failure>,
    },
    TriggerQuarantined {
        name: String,
        result: Result<(), Failure>,
    },
    /// The snapshot `object` was uploaded (its size in bytes) or failed.
    SnapshotTaken {
        object: String,
        result: Result<u64, Failure>,
    },
    ChangesRead(Result<ChangeBatch, Failure>),
    /// Version `seq` of job `id` was uploaded (object size in bytes) or failed.
    JobUploaded {
        id: JobId,
        seq: Seq,
        result: Result<u64, Failure>,
    },
    CursorSaved(Result<(), Failure>),
    SnapshotsListed(Result<Vec<ListedObject>, Failure>),
    /// Take a snapshot now, named after the configured name and the time.
    ImmediateBackupRequested,
}
