//! The snapshot the machine owes its destination, of its own accord.
//!
//! A daemon used to take snapshots only when a trigger file asked: a fresh
//! install, a new prefix or a wiped bucket had none until the nightly timer,
//! and `status` and the stale-snapshot alert were red for that long; a new
//! or wiped destination also lacked every job the cursor had already passed
//! ([`crate::destination`]). Now the machine owes a snapshot when the
//! destination is new to the database, or when the first listing finds none
//! in the last week. It is taken before any trigger or request and retried,
//! with a doubling wait, until one lands; any snapshot that lands pays it,
//! but one owed to a prefix that holds another state (a copy found, a
//! marker of another destination) only its own, named `new-destination-…`,
//! where a restore stops falling back past unusable snapshots
//! ([`crate::restore_plan`]). A scheduled snapshot that paid it left no such
//! name: after the database went back to a copy, a restore that found that
//! one unusable fell back to one of the state the copy abandoned, and left
//! out the copy's changes, exit 0 (the simulator). For a new destination the
//! database then records the destination's id, and only from then does the
//! cursor speak for this destination.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{error, info};

use super::io::{Command, Failure, Owed, SnapshotReason};
use crate::destination::DestinationId;
use crate::timestamp::Timestamp;

/// The wait after the first failed try; it doubles with each failure.
const FIRST_WAIT: Duration = Duration::from_secs(10);
/// The longest wait between tries.
const LONGEST_WAIT: Duration = Duration::from_secs(300);
/// The least time between the starts of two snapshots owed for deletions
/// ([`Owed::AfterDeletion`]). A writer deleting such jobs all the time had
/// one full snapshot taken after another (14 of a 248 MB database in 90 s,
/// a hostile trial); the cursor waits for the next instead, and
/// `pending_jobs` counts the deletions meanwhile.
pub const AFTER_DELETION_SPACING: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct OwedSnapshot {
    owed: Option<Owed>,
    /// No try before this.
    not_before: Option<Timestamp>,
    failures: u32,
    /// A new destination's id, until the database has recorded it.
    unrecorded: Option<DestinationId>,
    /// Its record is in flight.
    recording: bool,
    /// Only the owed snapshot itself pays it.
    only_its_own: bool,
    /// When the last snapshot owed for deletions started.
    last_after_deletion: Option<Timestamp>,
}

impl OwedSnapshot {
    /// Owes the snapshot of a new destination, in place of a first one;
    /// `only_its_own` when the prefix holds another state, which a restore
    /// must not fall back to.
    pub fn owe_destination(&mut self, id: DestinationId, only_its_own: bool) {
        self.only_its_own = only_its_own;
        self.owed = Some(Owed::NewDestination(id));
        self.unrecorded = Some(id);
    }

    /// Owes a first snapshot, unless one is owed already.
    pub fn owe_first(&mut self) {
        if self.owed.is_none() && self.unrecorded.is_none() {
            info!("the bucket prefix holds no snapshot from the last week; taking one now");
            self.owed = Some(Owed::NoSnapshot);
        }
    }

    /// Owes a snapshot for deletions of jobs no object name can carry,
    /// unless one is owed already ([`Owed::AfterDeletion`]), no sooner than
    /// [`AFTER_DELETION_SPACING`] after the last one started (a clock
    /// stepped back before that start does not hold it longer).
    pub fn owe_after_deletion(&mut self, now: Timestamp) {
        if self.owed.is_none() {
            self.owed = Some(Owed::AfterDeletion);
            self.not_before = self
                .last_after_deletion
                .map(|last| last + AFTER_DELETION_SPACING)
                .filter(|&at| now < at && at <= now + AFTER_DELETION_SPACING);
        }
    }

    /// The owed snapshot `owed` started now.
    pub fn started(&mut self, owed: Owed, now: Timestamp) {
        if owed == Owed::AfterDeletion {
            self.last_after_deletion = Some(now);
        }
    }

    /// The snapshot to take now, if one is owed and its wait is over.
    pub fn due(&self, now: Timestamp) -> Option<Owed> {
        self.owed
            .filter(|_| self.not_before.is_none_or(|at| now >= at))
    }

    /// Until the new destination's id is recorded, the cursor does not speak
    /// for the destination.
    pub fn is_new_destination(&self) -> bool {
        self.unrecorded.is_some()
    }

    pub fn is_quiet(&self) -> bool {
        !self.recording
    }

    /// A snapshot taken for `reason` landed: what was owed is paid, unless
    /// only its own may pay it.
    pub fn landed(&mut self, reason: &SnapshotReason, out: &mut VecDeque<Command>) {
        if self.only_its_own
            && matches!(self.owed, Some(Owed::NewDestination(_)))
            && !matches!(reason, SnapshotReason::Owed(_))
        {
            return;
        }
        if let Some(owed) = self.owed.take() {
            info!(
                snapshot = owed.base_name(),
                "the full snapshot owed to the bucket prefix landed: it holds the whole database"
            );
        }
        self.failures = 0;
        self.not_before = None;
        self.record(out);
    }

    /// The owed snapshot failed: try again after a doubling wait.
    pub fn failed(&mut self, now: Timestamp, failure: &Failure) {
        let Some(owed) = self.owed else {
            return;
        };
        self.failures += 1;
        let wait = FIRST_WAIT
            .saturating_mul(1 << (self.failures - 1).min(10))
            .min(LONGEST_WAIT);
        self.not_before = Some(now + wait);
        error!(snapshot = owed.base_name(), error = %failure, retry_in_seconds = wait.as_secs_f64(), "the snapshot owed to the bucket prefix failed; retrying");
    }

    /// At each step: a record that failed is made again.
    pub fn tick(&mut self, out: &mut VecDeque<Command>) {
        if self.owed.is_none() {
            self.record(out);
        }
    }

    /// Whether a record was outstanding; on success the id is recorded.
    pub fn on_recorded(&mut self, result: Result<(), Failure>) -> bool {
        if !std::mem::take(&mut self.recording) {
            return false;
        }
        match result {
            Ok(()) => {
                if let Some(id) = self.unrecorded.take() {
                    info!(destination = %id, "the database now records which bucket prefix its cursor belongs to");
                }
            }
            Err(failure) => {
                error!(error = %failure, "cannot record the destination in the database; retrying");
            }
        }
        true
    }

    fn record(&mut self, out: &mut VecDeque<Command>) {
        if let Some(id) = self.unrecorded
            && !self.recording
        {
            self.recording = true;
            out.push_back(Command::RecordDestination { id });
        }
    }
}
