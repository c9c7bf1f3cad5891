//! What crosses the boundary between the core and whoever drives it.
//!
//! The driver executes every [`Command`] and reports back with the matching
//! [`Input`], so commands may complete in any order. A report names what it
//! answers (a trigger, an object, a job version, a prune's read) where the
//! machine may have several such commands out at once; where it has at most
//! one out at a time (a read of the change feed, a cursor save, a lease or
//! destination-marker operation, a listing, a history marker write), the
//! report's kind alone says what it answers.

use std::fmt;
use std::time::Duration;

use super::incremental::ReadBasis;
use super::set_aside::Unreadable;
use crate::Seq;
use crate::destination::{DestinationId, DestinationMarker};
use crate::envelope::Envelope;
use crate::history::HistoryMarker;
use crate::job_id::JobId;
use crate::lease::{FoundLease, Lease};
use crate::object_name::{Framing, ObjectName};
use crate::restore_plan::{Answer, Ask};
use crate::timestamp::Timestamp;
use crate::trigger::{MalformedTrigger, TriggerFile, TriggerName};

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

impl Cursor {
    /// What the daemon and `jobvault backup` go on from when the stored
    /// cursor cannot be read: it claims nothing. The feed is read from its
    /// start, and the machine takes up the stored cursor from the first read
    /// that brings it ([`ChangeBatch::stored`]). A snapshot framed with it
    /// has no time in its header, so a restore takes the time from the
    /// cursor stored inside the snapshot's database, as SQLite holds it.
    pub const UNREAD: Cursor = Cursor {
        seq: 0,
        time: Timestamp::UNIX_EPOCH,
    };
}

/// What kind of failure a driver reports: what the core can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// Worth retrying soon: a 5xx, 408 or 429, a reset connection, a busy
    /// database.
    Transient,
    /// The command had no answer before its deadline
    /// ([`Command::deadline`]); the driver answered for it.
    Timeout,
    /// The bucket, object, file or directory does not exist.
    NotFound,
    /// Refused for want of credentials or permission (401, 403, EACCES).
    Permission,
    /// Someone else changed what the command expected (409, 412, a cursor
    /// changed underneath).
    Conflict,
    /// Data that does not read back as written: a bad checksum, a database
    /// that fails its checks, a malformed name.
    Corrupt,
    /// Refused as invalid for another reason (another 4xx): retrying the same
    /// request will not help.
    Rejected,
    /// The driver itself failed: the task carrying out the command panicked.
    Internal,
}

impl FailureKind {
    /// The store refused jobvault itself (permission, no bucket): someone
    /// has to act, so it is said loudly, counted (`store_refusals`) and
    /// retried slowly.
    pub fn is_refusal(self) -> bool {
        matches!(self, FailureKind::Permission | FailureKind::NotFound)
    }

    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Timeout => "timeout",
            FailureKind::NotFound => "not_found",
            FailureKind::Permission => "permission",
            FailureKind::Conflict => "conflict",
            FailureKind::Corrupt => "corrupt",
            FailureKind::Rejected => "rejected",
            FailureKind::Internal => "internal",
        }
    }
}

/// Why a command failed: a kind to act on and the driver's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.label())
    }
}

/// Why a snapshot is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotReason {
    /// Attempt number `attempt` (from 1) at serving the trigger file `name`.
    Trigger { name: TriggerName, attempt: u32 },
    /// Someone asked for a backup now: request `id`.
    Immediate { id: u64 },
    /// Attempt number `attempt` (from 1) at the snapshot the schedule made
    /// due at `due` ([`super::Schedule`]).
    Scheduled { due: Timestamp, attempt: u32 },
    /// The machine owes the destination a snapshot ([`Owed`]).
    Owed(Owed),
}

/// A snapshot the machine takes of its own accord, before any trigger or
/// request, retried until one lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// The destination is new to the database
    /// ([`crate::destination::Destination::New`]): nothing it holds can be
    /// counted on. Once a snapshot lands, the database records `id`.
    NewDestination(DestinationId),
    /// The destination holds no snapshot from the last week: `status` and
    /// the stale-snapshot alert would stay red until the first trigger.
    NoSnapshot,
    /// A job whose id no object name can carry was deleted: no job object
    /// records the deletion, so the snapshots taken while it lived hold it,
    /// and a restore from one would bring it back
    /// ([`super::set_aside::Unreadable::deleted`]).
    AfterDeletion,
}

/// The base name of the snapshot a destination new to the database is
/// owed: where the prefix's backups start again from a database that came
/// from elsewhere (see `restore_plan/without_snapshot.rs`).
pub const NEW_DESTINATION_BASE: &str = "new-destination";

impl Owed {
    /// The base name of the snapshot, before its `-HH:MM:SS`.
    pub fn base_name(self) -> &'static str {
        match self {
            Owed::NewDestination(_) => NEW_DESTINATION_BASE,
            Owed::NoSnapshot => "first",
            Owed::AfterDeletion => "after-deletion",
        }
    }
}

/// Take a consistent copy of the database, gzip it and upload it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOrder {
    pub object: ObjectName,
    pub framing: Framing,
    pub reason: SnapshotReason,
}

/// Upload one job version.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpload {
    pub object: ObjectName,
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
    WriteTriggerAttempts { name: TriggerName, attempts: u32 },
    /// Remove the trigger file; answer with [`Input::TriggerDeleted`].
    DeleteTrigger { name: TriggerName },
    /// Move the trigger file to the quarantine directory; answer with
    /// [`Input::TriggerQuarantined`].
    QuarantineTrigger {
        name: TriggerName,
        reason: MalformedTrigger,
    },
    /// Answer with [`Input::SnapshotTaken`].
    TakeSnapshot(SnapshotOrder),
    /// Drop the snapshot `object` under way, before its upload is
    /// committed; its [`Input::SnapshotTaken`] comes as a failure (or as
    /// done, if it was committed first). No answer of its own.
    AbandonSnapshot { object: ObjectName },
    /// Drop every job upload under way, before it is committed; each
    /// [`Input::JobUploaded`] comes as a failure (or as done, if it was
    /// committed first). No answer of its own.
    AbandonUploads,
    /// Read the changes whose sequence is above `after`, in sequence
    /// order, together with the stored cursor, in one read transaction: up
    /// to `limit` of them, and bodies of up to `max_bytes` in all (always at
    /// least one change, whatever its size); answer with
    /// [`Input::ChangesRead`].
    ReadChanges {
        after: Seq,
        limit: usize,
        max_bytes: u64,
    },
    /// Answer with [`Input::JobUploaded`].
    UploadJob(JobUpload),
    /// Store `new` as the cursor in the database if it still holds
    /// `expected`, and fail otherwise (someone else changed it); in the same
    /// transaction, record as set aside each row of `set_aside` whose job
    /// the database still holds at that change. Answer with
    /// [`Input::CursorSaved`].
    SaveCursor {
        expected: Cursor,
        new: Cursor,
        set_aside: Vec<Unreadable>,
    },
    /// List the snapshot objects under these day folders; answer with
    /// [`Input::SnapshotsListed`].
    ListSnapshots { prefixes: Vec<String> },
    /// Read the bucket prefix's lease, and whether its holder's process
    /// runs on this machine; answer with [`Input::LeaseRead`].
    ReadLease,
    /// Write `lease` only if the lease object is at `if_generation` (0:
    /// only if there is none); answer with [`Input::LeaseWritten`] and the
    /// generation written, or a conflict.
    WriteLease { lease: Lease, if_generation: i64 },
    /// Give the lease back: write `lease` (saying it was released) only if
    /// the lease object is at `if_generation`; answer with
    /// [`Input::LeaseReleased`].
    ReleaseLease { lease: Lease, if_generation: i64 },
    /// Read the prefix's destination marker and make it this database's:
    /// unless it names `keep`, write one with a fresh random id in its
    /// place (only at the generation read, or only if there is still none
    /// where it is missing: of two racing, one writes and both read what it
    /// wrote); answer with [`Input::DestinationChecked`].
    CheckDestination { keep: Option<DestinationId> },
    /// Record in the database, beside the cursor, that the cursor belongs
    /// to destination `id`; answer with [`Input::DestinationRecorded`].
    RecordDestination { id: DestinationId },
    /// Raise the database's change counter to `past` unless it is there
    /// already, so that its next change is numbered above it, and forget
    /// the destination it records (its cursor no longer speaks for the
    /// prefix), in one transaction; answer with [`Input::CounterRaised`].
    RaiseCounter { past: Seq },
    /// Carry out one read of a prune's plan ([`crate::prune::PrunePlanner`]'s
    /// ask), a listing read whole, each read made again as the core's read
    /// retry ([`crate::read_retry`]) decides; answer with
    /// [`Input::BucketRead`].
    ReadBucket(Ask),
    /// Write the bucket's history marker ([`crate::history`]); answer with
    /// [`Input::HistoryWritten`].
    WriteHistory(HistoryMarker),
    /// Delete the live object `object`; answer with [`Input::ObjectDeleted`].
    DeleteObject { object: ObjectName },
    /// Tell whoever made immediate-backup request `id` how it went. Every
    /// request gets exactly one.
    ImmediateBackupDone {
        id: u64,
        /// The snapshot taken or tried; `None` when there is none to name:
        /// the request was refused before one was planned, its name was
        /// invalid, or the grace ran out while it was taken.
        object: Option<ObjectName>,
        result: Result<u64, Failure>,
    },
}

/// The prefix's destination marker, as the driver found it or wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDestination {
    pub marker: DestinationMarker,
    /// The driver wrote it: there was none, or it named another id.
    pub created: bool,
    /// The id of the marker it wrote over, if it wrote over one.
    pub replaced: Option<DestinationId>,
}

/// A batch of the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    /// The cursor stored in the database when the batch was read.
    pub stored: Cursor,
    /// The current version of each job changed after the requested sequence,
    /// in sequence order.
    pub jobs: Vec<Envelope>,
    /// The rows among them no job object can hold, in sequence order.
    pub unreadable: Vec<Unreadable>,
    /// How many rows the database records as set aside.
    pub set_aside: u64,
    /// The database's change counter: no change is numbered above it, and
    /// a read not cut short gave every change numbered up to it.
    pub newest: Seq,
    /// The read took every change there was: it stopped at neither of its
    /// limits.
    pub complete: bool,
}

/// The read of the change feed the core would ask for at a commit, for the
/// driver to make in the look that finds one and report as
/// [`Input::CommitRead`]: the look and the read then cost one wake-up of
/// the driver instead of two, and no hand-off to another thread.
///
/// It names the state it was made in as well as the read: a batch read
/// while a save, a read or a raise was being answered may hold a cursor or
/// a counter the core has moved past, and taken as an answer it would look
/// like a copy gone back. The core takes it only while that state holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOrder {
    pub after: Seq,
    pub limit: usize,
    pub max_bytes: u64,
    pub(crate) basis: ReadBasis,
}

impl ReadOrder {
    /// Whether this order's answer may stand for `current`'s: the same read
    /// made in the same state. Its limits may be lower than `current`'s
    /// (uploads answered since left the window more room; rejecting the
    /// read for that cost a second read at every such commit), never
    /// higher: only a read fills the window, and a read that adds to it
    /// moves the frontier, which is `after`.
    pub(crate) fn fits(&self, current: &ReadOrder) -> bool {
        self.after == current.after && self.basis == current.basis
    }
}

/// One object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub name: ObjectName,
    /// When the store last wrote the object.
    pub updated: Timestamp,
    pub size: u64,
    /// Which generation of the object this is, when the listing asked for
    /// every generation; `None` otherwise.
    pub generation: Option<i64>,
    /// Its content type says it is encrypted (an age file); `false` where
    /// the store keeps no content type (`file://`).
    pub sealed: bool,
}

/// A report from the driver: the result of a command, or a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    TriggersScanned(Result<Vec<TriggerFile>, Failure>),
    TriggerAttemptsWritten {
        name: TriggerName,
        result: Result<(), Failure>,
    },
    TriggerDeleted {
        name: TriggerName,
        result: Result<(), Failure>,
    },
    TriggerQuarantined {
        name: TriggerName,
        result: Result<(), Failure>,
    },
    /// The snapshot `object` was uploaded (its size in bytes) or failed.
    SnapshotTaken {
        object: ObjectName,
        result: Result<u64, Failure>,
    },
    ChangesRead(Result<ChangeBatch, Failure>),
    /// Version `seq` of job `id` was uploaded (object size in bytes) or failed.
    JobUploaded {
        id: JobId,
        seq: Seq,
        result: Result<u64, Failure>,
    },
    /// The cursor was saved; the database now records this many rows as
    /// set aside.
    CursorSaved(Result<u64, Failure>),
    DestinationRecorded(Result<(), Failure>),
    CounterRaised(Result<(), Failure>),
    DestinationChecked(Result<FoundDestination, Failure>),
    LeaseRead(Result<FoundLease, Failure>),
    LeaseWritten(Result<i64, Failure>),
    LeaseReleased(Result<(), Failure>),
    SnapshotsListed(Result<Vec<ListedObject>, Failure>),
    /// Take a snapshot now, named `<name>-HH:MM:SS`; `id` (the driver's
    /// choice, unique among requests outstanding) names the request in the
    /// [`Command::ImmediateBackupDone`] that answers it.
    ImmediateBackupRequested {
        id: u64,
        name: String,
    },
    /// The answer to [`Command::ReadBucket`] `ask`.
    BucketRead {
        ask: Ask,
        result: Result<Answer, Failure>,
    },
    HistoryWritten(Result<(), Failure>),
    ObjectDeleted {
        object: ObjectName,
        result: Result<(), Failure>,
    },
    /// Something committed to the job database since the driver last said
    /// so: a writer, or jobvault's own cursor save (the driver cannot tell
    /// them apart; a read that finds nothing costs one indexed query). The
    /// driver looks when [`crate::commit_watch`] says and says so at most
    /// once a look.
    /// It answers nothing and asks for a read of the change feed now, so a
    /// change reaches the bucket without waiting for the next interval.
    DatabaseChanged,
    /// A commit was noticed, and the change feed read in the same look as
    /// `order` said ([`crate::Backup::read_at_next_commit`]), the read
    /// beginning at `began`. It answers nothing: the core takes the batch as
    /// the answer of the read it would ask for now if that read is still
    /// `order`, and otherwise as [`Input::DatabaseChanged`]. A look whose
    /// read failed reports that instead.
    CommitRead {
        order: ReadOrder,
        began: Timestamp,
        batch: ChangeBatch,
    },
    /// The database's path no longer names the file the daemon opened: a
    /// file was renamed over it (a restore or a copy moved into place by
    /// hand) or it was removed. Writers that open the path from now on
    /// write a file the daemon does not read. It answers nothing; the
    /// machine halts ([`crate::machine::Backup::database_replaced`]).
    DatabaseReplaced,
}

/// How long a snapshot may take: a 1 GiB database takes about 15 s, so an
/// hour is room for a hundred times that. Triggered and immediate snapshots
/// wait for a hung one, so a longer deadline stalls them longer.
pub const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(3600);
/// How long a lease command may take: under half the shortest expiry, so
/// a hung renewal is given up while the gate (open for half the expiry
/// since the last renewal that got through) still holds.
pub const LEASE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a prune's read may take: longer than the read retry's patience
/// ([`crate::read_retry::DEFAULT_READ_PATIENCE`]), so that the retry, not the
/// deadline, decides when a store that answers nothing is given up.
pub const BUCKET_READ_DEADLINE: Duration =
    Duration::from_secs(crate::read_retry::DEFAULT_READ_PATIENCE.as_secs() + 5 * 60);
/// How long any other command may take. The driver makes a store request
/// once (a snapshot's resumable upload sends a failed chunk again, up to 5
/// times; a prune's reads are made again as the read retry decides); SQLite
/// waits ten seconds for a lock.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(5 * 60);

impl Command {
    /// How long the driver waits for this command before answering it with
    /// a [`FailureKind::Timeout`] failure itself ([`Command::failed`]). A
    /// command with no answer has no deadline.
    pub fn deadline(&self) -> Option<Duration> {
        match self {
            Command::TakeSnapshot(_) => Some(SNAPSHOT_DEADLINE),
            Command::ReadBucket(_) => Some(BUCKET_READ_DEADLINE),
            Command::ImmediateBackupDone { .. }
            | Command::AbandonSnapshot { .. }
            | Command::AbandonUploads => None,
            Command::ReadLease | Command::WriteLease { .. } | Command::ReleaseLease { .. } => {
                Some(LEASE_DEADLINE)
            }
            _ => Some(COMMAND_DEADLINE),
        }
    }

    /// Whether the command changes what the daemon shares with others (the
    /// bucket, the stored cursor, the trigger files): held back unless the
    /// lease is held ([`crate::lease::LeaseMachine::may_write`]).
    pub fn needs_lease(&self) -> bool {
        matches!(
            self,
            Command::UploadJob(_)
                | Command::TakeSnapshot(_)
                | Command::WriteHistory(_)
                | Command::DeleteObject { .. }
                | Command::SaveCursor { .. }
                | Command::CheckDestination { .. }
                | Command::RecordDestination { .. }
                | Command::RaiseCounter { .. }
                | Command::WriteTriggerAttempts { .. }
                | Command::DeleteTrigger { .. }
                | Command::QuarantineTrigger { .. }
        )
    }

    /// The report that answers this command with `failure`: what the driver
    /// sends when the command's task panicked or missed its deadline. `None`
    /// for a command that expects no answer.
    pub fn failed(&self, failure: Failure) -> Option<Input> {
        Some(match self {
            Command::ScanTriggers => Input::TriggersScanned(Err(failure)),
            Command::WriteTriggerAttempts { name, .. } => Input::TriggerAttemptsWritten {
                name: name.clone(),
                result: Err(failure),
            },
            Command::DeleteTrigger { name } => Input::TriggerDeleted {
                name: name.clone(),
                result: Err(failure),
            },
            Command::QuarantineTrigger { name, .. } => Input::TriggerQuarantined {
                name: name.clone(),
                result: Err(failure),
            },
            Command::TakeSnapshot(order) => Input::SnapshotTaken {
                object: order.object.clone(),
                result: Err(failure),
            },
            Command::ReadChanges { .. } => Input::ChangesRead(Err(failure)),
            Command::UploadJob(upload) => Input::JobUploaded {
                id: upload.envelope.id.clone(),
                seq: upload.envelope.seq,
                result: Err(failure),
            },
            Command::SaveCursor { .. } => Input::CursorSaved(Err(failure)),
            Command::RecordDestination { .. } => Input::DestinationRecorded(Err(failure)),
            Command::RaiseCounter { .. } => Input::CounterRaised(Err(failure)),
            Command::CheckDestination { .. } => Input::DestinationChecked(Err(failure)),
            Command::ReadLease => Input::LeaseRead(Err(failure)),
            Command::WriteLease { .. } => Input::LeaseWritten(Err(failure)),
            Command::ReleaseLease { .. } => Input::LeaseReleased(Err(failure)),
            Command::ListSnapshots { .. } => Input::SnapshotsListed(Err(failure)),
            Command::ReadBucket(ask) => Input::BucketRead {
                ask: ask.clone(),
                result: Err(failure),
            },
            Command::WriteHistory(_) => Input::HistoryWritten(Err(failure)),
            Command::DeleteObject { object } => Input::ObjectDeleted {
                object: object.clone(),
                result: Err(failure),
            },
            Command::ImmediateBackupDone { .. }
            | Command::AbandonSnapshot { .. }
            | Command::AbandonUploads => return None,
        })
    }
}
