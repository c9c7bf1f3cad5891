//! The backup state machine.
//!
//! [`Backup`] takes no action itself. Its driver feeds it time
//! ([`Backup::handle_timeout`]) and reports ([`Backup::handle_input`]), and
//! executes the commands it emits ([`Backup::poll_command`]); it asks when it
//! next needs to be woken with [`Backup::poll_timeout`]. The same machine runs
//! in the daemon, against real files and stores, and in the simulator, against
//! a seeded world that fails on purpose.

mod backoff;
mod destination_check;
mod incremental;
mod io;
mod listing;
mod metrics;
mod owed;
mod pruning;
mod retention;
mod schedule;
mod set_aside;
mod snapshots;
mod went_back;

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{error, info, warn};

pub use backoff::{FIRST_RETRY, REFUSED_RETRY};
pub use incremental::{LEASED_MARGIN, OBJECT_WRITE_SPACING, SEQ_SAVE_SPACING};
pub use io::{
    COMMAND_DEADLINE, ChangeBatch, Command, Cursor, Failure, FailureKind, FoundDestination, Input,
    JobUpload, LEASE_DEADLINE, ListedObject, NEW_DESTINATION_BASE, Owed, ReadOrder,
    SNAPSHOT_DEADLINE, SnapshotOrder, SnapshotReason,
};
pub use metrics::{Metrics, PerKind};
pub use owed::AFTER_DELETION_SPACING;
pub use schedule::{NotATimeOfDay, Schedule, parse_time_of_day};
pub use set_aside::{RowId, Unreadable};
pub use snapshots::{immediate_base_name, plan_snapshot, trigger_retry_wait};

use crate::Seq;
use crate::cleartext::{SEALED_LOOKBACK, plain_writer_beside};
use crate::destination::{Destination, DestinationId, NewBecause};
use crate::lease::{Confirmation, FoundLease, LeaseEnded, LeaseMachine, LeaseState};
use crate::object_name::{ObjectKind, ObjectName};
use crate::retrieval::day_prefixes;
use crate::timestamp::Timestamp;
use destination_check::DestinationCheck;
use incremental::Incremental;
use listing::Listing;
use metrics::SnapshotLedger;
use retention::Retention;
use snapshots::{Snapshots, refused_for_stopping};

/// How the backup behaves; the defaults are the original's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How often the trigger directory and the change feed are checked.
    pub interval: Duration,
    /// Job uploads in flight at most.
    pub concurrency: usize,
    /// Jobs read from the change feed and held until uploaded, at most.
    pub max_pending: usize,
    /// Bytes of job bodies held until uploaded, at most, plus one body: a
    /// read asks for no more than the room left, and always gets at least
    /// one change.
    pub max_pending_bytes: u64,
    /// How often the snapshot metrics are refreshed from the bucket.
    pub listing_interval: Duration,
    /// Prune what no restore to this far back needs; `None`: never prune.
    pub keep: Option<Duration>,
    /// Snapshots taken with no trigger file; the default schedules none.
    pub schedule: Schedule,
    /// Whether what this daemon writes is encrypted (`--encrypt-to`).
    pub encrypts: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(10),
            concurrency: 32,
            max_pending: 4096,
            max_pending_bytes: 64 << 20,
            listing_interval: Duration::from_secs(600),
            keep: None,
            schedule: Schedule::default(),
            encrypts: false,
        }
    }
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every change committed before the stop is in the bucket, and the
    /// prefix holds the whole database. `saved`: the cursor passes them
    /// (if not, the next start uploads them again). `released`: the lease
    /// was given back (if not, the grace ran out on other work, a snapshot
    /// or a listing).
    Drained {
        changes: u64,
        saved: bool,
        released: bool,
    },
    /// Every change committed before the stop was uploaded, but the prefix
    /// cannot be vouched for: it may not restore the database.
    Unvouched { changes: u64, why: Unvouched },
    /// The grace ran out with `left` changes not in the bucket, or more if
    /// the feed was not read after the stop; the next start uploads them.
    GraceOver {
        changes: u64,
        left: u64,
        read_after_stop: bool,
    },
}

/// Why a drained stop cannot vouch for the bucket prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unvouched {
    /// The prefix is new to the database (new, wiped, another's) and the
    /// full snapshot owed to it has not landed.
    NewDestination,
    /// The lease was found gone (the prefix wiped) or replaced while held,
    /// or could not be given back, so it was not seen to be ours at the end.
    LeaseGone,
    /// `rows` rows of the database no job object can hold are set aside:
    /// a restore does not give them. The stop said "every change is in the
    /// bucket" and exited 0 over them, as did `status` after it.
    SetAside { rows: u64 },
    /// `rows` jobs no object name can carry were deleted, and the snapshot
    /// owed for them has not landed: a restore brings them back.
    DeletionsUnsnapshotted { rows: u64 },
}

/// The first listing looks this far back for the newest snapshot, and for
/// encrypted ones; later ones only need the last 24 hours (the day folders
/// of today and yesterday).
const FIRST_LISTING_LOOKBACK: Duration = SEALED_LOOKBACK;
const DAY: Duration = Duration::from_secs(86_400);

/// What a sub-machine needs to act: the time, where to put commands and
/// metrics, and the incremental time that frames snapshots.
pub(crate) struct Context<'a> {
    now: Timestamp,
    out: &'a mut VecDeque<Command>,
    metrics: &'a mut Metrics,
    ledger: &'a mut SnapshotLedger,
    incremental_time: Timestamp,
    /// What a snapshot started now holds of the deletions no job object can
    /// record ([`incremental::Incremental::deletions_read_through`]).
    deletions_through: Seq,
}

/// The whole backup: triggered and immediate snapshots, incremental job
/// backup, and the metrics about both.
#[derive(Debug)]
pub struct Backup {
    config: Config,
    snapshots: Snapshots,
    incremental: Incremental,
    retention: Retention,
    destination: DestinationCheck,
    metrics: Metrics,
    ledger: SnapshotLedger,
    out: VecDeque<Command>,
    next_tick: Timestamp,
    next_listing: Timestamp,
    /// When the outstanding snapshot listing was issued.
    listing: Option<Listing>,
    listed_once: bool,
    /// The first listing found no snapshot: a first one is owed once the
    /// destination is known.
    found_no_snapshot: bool,
    /// No new work: a stop drains, a lost lease halts.
    stopping: bool,
    /// A stop's drain ends by this time, done or not.
    grace_until: Option<Timestamp>,
    stopped: Option<Stopped>,
    /// The prefix's lease; `None` for a process that owns its store alone
    /// (the demo's directory, a `backup` with no daemon).
    lease: Option<LeaseMachine>,
    /// The database's path names another file now
    /// ([`Input::DatabaseReplaced`]).
    replaced: bool,
    /// The time of the latest call: commands the lease holds back are
    /// answered at it.
    now: Timestamp,
    /// A snapshot waiting for a renewal of the lease sent after it was
    /// asked for ([`LeaseMachine::confirm`]).
    confirming: Option<(Command, Confirmation)>,
    /// The job uploads under way were dropped ([`Command::AbandonUploads`]).
    uploads_abandoned: bool,
}

impl Context<'_> {
    /// A report that answers nothing outstanding: a driver bug, or a report
    /// delivered twice. It is dropped, and counted so that it is seen.
    fn unexpected(&mut self, what: std::fmt::Arguments) {
        warn!("unexpected report, ignored: {what}");
        self.metrics.unexpected_reports += 1;
    }
}

/// Builds a [`Context`] from disjoint fields of a [`Backup`], so a
/// sub-machine field can be borrowed at the same time.
macro_rules! context {
    ($self:ident, $now:expr) => {
        Context {
            now: $now,
            out: &mut $self.out,
            metrics: &mut $self.metrics,
            ledger: &mut $self.ledger,
            incremental_time: $self.incremental.framing_time(),
            deletions_through: $self.incremental.deletions_read_through(),
        }
    };
}

impl Backup {
    /// A backup that resumes from the cursor stored in the database. The first
    /// step is due at `now`.
    pub fn new(config: Config, stored: Cursor, now: Timestamp) -> Self {
        let incremental = Incremental::new(stored, &config);
        let snapshots = Snapshots::new(config.interval, config.schedule);
        Backup {
            retention: Retention::new(config.keep),
            destination: DestinationCheck::new(None),
            config,
            snapshots,
            incremental,
            metrics: Metrics {
                cursor: stored,
                ..Metrics::default()
            },
            ledger: SnapshotLedger::default(),
            out: VecDeque::new(),
            next_tick: now,
            next_listing: now,
            listing: None,
            listed_once: false,
            found_no_snapshot: false,
            stopping: false,
            grace_until: None,
            stopped: None,
            lease: None,
            replaced: false,
            now,
            confirming: None,
            uploads_abandoned: false,
        }
    }

    /// A backup that works only while it holds `lease`: until it is taken
    /// nothing but the lease runs, store writes, cursor saves and trigger
    /// changes wait for its gate ([`LeaseMachine::may_write`]), and a lease
    /// lost or refused stops the machine ([`Backup::lease_ended`]).
    #[must_use]
    pub fn leased(mut self, lease: LeaseMachine) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How the lease ended, if it did: refused or lost (the machine has
    /// stopped), or given back after a stop.
    pub fn lease_ended(&self) -> Option<&LeaseEnded> {
        self.lease.as_ref().and_then(LeaseMachine::ended)
    }

    /// Whether the machine does its work: it holds the lease, or needs none.
    fn working(&self) -> bool {
        self.lease.as_ref().is_none_or(LeaseMachine::is_writing)
    }

    /// The destination the database records its cursor for (`None`: none
    /// recorded); the first step checks the prefix's marker against it
    /// ([`crate::destination`]).
    #[must_use]
    pub fn recorded(mut self, destination: Option<DestinationId>) -> Self {
        self.destination = DestinationCheck::new(destination);
        self
    }

    /// How many rows the database records as set aside as the machine
    /// starts: counted from the first moment, not from the first read.
    pub fn set_aside(mut self, recorded: u64) -> Self {
        self.incremental.set_aside_recorded(recorded);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The read of the change feed to make in the look that finds the next
    /// commit, reported with it as [`Input::CommitRead`]; `None`: report
    /// [`Input::DatabaseChanged`]. It changes with every input and timeout.
    #[must_use]
    pub fn read_at_next_commit(&self) -> Option<ReadOrder> {
        self.working()
            .then(|| self.incremental.read_at_next_commit())
            .flatten()
    }

    /// When [`Backup::handle_timeout`] should next be called; `None` once
    /// stopped. A listing that is due while the last one is still out is
    /// not a reason to wake: the wake-up would find nothing to do, and come
    /// back at once, for as long as the listing takes. Never more than an
    /// interval after the latest call: a clock stepped back since a time
    /// was planned would put it off by the step (a renewal carrying the
    /// cursor waited four minutes in the simulator).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let lease_due = self.lease.as_ref().and_then(LeaseMachine::poll_timeout);
        let grace_due = self.grace_until.filter(|_| self.stopped.is_none());
        let ceiling = self.now + self.config.interval;
        if self.halted() || !self.working() {
            let due = [lease_due, grace_due].into_iter().flatten().min();
            return due.map(|due| due.min(ceiling));
        }
        let listing_due = (!self.stopping && self.listing.is_none()).then_some(self.next_listing);
        let uploads_due = self.incremental.next_wake();
        let due = [listing_due, uploads_due, lease_due, grace_due]
            .into_iter()
            .flatten()
            .fold(self.next_tick.min(ceiling), Timestamp::min);
        Some(due)
    }

    /// Every call says the time.
    fn clock_reads(&mut self, now: Timestamp) {
        self.now = now;
        self.incremental.clock_reads(now);
    }

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.clock_reads(now);
        let content = self.lease_content();
        if let Some(lease) = &mut self.lease {
            lease.handle_timeout(now, content, &mut self.out);
        }
        if self.grace_until.is_some_and(|until| now >= until) && self.stopped.is_none() {
            self.give_up();
        }
        self.abandon_if_barred();
        if self.halted() || !self.working() {
            return;
        }
        self.drain_once_held(now);
        // A clock that jumped back must not postpone the next step by the jump.
        self.next_tick = self.next_tick.min(now + self.config.interval);
        self.next_listing = self.next_listing.min(now + self.config.listing_interval);
        if now >= self.next_tick {
            self.next_tick = now + self.config.interval;
            let mut cx = context!(self, now);
            // A drain vouches for the prefix only once its marker is
            // checked: a stop before the first check still makes it.
            self.destination.tick(now, cx.out);
            if !self.stopping {
                self.snapshots.tick(&mut cx);
            }
            self.incremental.tick(&mut cx);
        }
        if !self.stopping && now >= self.next_listing && self.listing.is_none() {
            self.next_listing = now + self.config.listing_interval;
            self.list_snapshots(now);
            self.retention.tick();
            if self.listed_once {
                self.destination.recheck();
            }
        }
        if self.incremental.next_wake().is_some_and(|due| now >= due) {
            self.incremental.wake(&mut context!(self, now));
        }
        self.release_when_quiet();
    }

    /// Takes in a report from the driver.
    pub fn handle_input(&mut self, input: Input, now: Timestamp) {
        self.clock_reads(now);
        // No read of the feed before the lease is held: the first step then
        // reads it anyway, and a read before it left the cursor of the lease
        // found unchecked, so a copy put back while no daemon ran went
        // unnoticed (the simulator, with the store down at a start).
        if matches!(input, Input::DatabaseChanged | Input::CommitRead { .. }) && !self.working() {
            return;
        }
        let mut cx = context!(self, now);
        match input {
            Input::LeaseRead(_) | Input::LeaseWritten(_) | Input::LeaseReleased(_) => {
                return self.on_lease_input(input, now);
            }
            Input::TriggersScanned(result) => {
                if self.stopping {
                    self.snapshots.on_scanned(&mut cx, Ok(Vec::new()));
                } else {
                    self.snapshots.on_scanned(&mut cx, result);
                }
            }
            Input::TriggerAttemptsWritten { name, result } => {
                self.snapshots.on_attempts_written(&mut cx, &name, result);
            }
            Input::TriggerDeleted { name, result } => {
                self.snapshots.on_deleted(&mut cx, &name, result);
            }
            Input::TriggerQuarantined { name, result } => {
                self.snapshots.on_quarantined(&mut cx, &name, result);
            }
            Input::SnapshotTaken { object, result } => {
                if result.is_ok() {
                    self.retention.snapshot_landed();
                }
                // Taken while the counter of a copy gone back is still to
                // be raised, it holds the copy's old counter: it pays
                // nothing owed (a start owed for another reason included).
                if self.incremental.raising_past().is_some() {
                    self.snapshots.went_back();
                }
                let holds = self.snapshots.on_snapshot_taken(&mut cx, &object, result);
                if let Some(through) = holds {
                    self.incremental.deletions_snapshotted(&mut cx, through);
                }
            }
            Input::BucketRead { ask, result } => {
                if !self.retention.on_read(cx.metrics, &ask, result) {
                    cx.unexpected(format_args!("prune read with none outstanding: {ask:?}"));
                }
            }
            Input::HistoryWritten(result) => {
                if !self.retention.on_step(cx.metrics, None, result) {
                    cx.unexpected(format_args!("history marker written with none outstanding"));
                }
            }
            Input::ObjectDeleted { object, result } => {
                if !self.retention.on_step(cx.metrics, Some(&object), result) {
                    cx.unexpected(format_args!("deletion of {object} with none outstanding"));
                }
            }
            Input::ChangesRead(result) => self.incremental.on_changes_read(&mut cx, result),
            Input::JobUploaded { id, seq, result } => {
                self.incremental.on_job_uploaded(&mut cx, &id, seq, result);
            }
            Input::CursorSaved(result) => self.incremental.on_cursor_saved(&mut cx, result),
            Input::CounterRaised(result) => {
                if self.incremental.on_counter_raised(&mut cx, result) {
                    self.snapshots.went_back();
                    self.destination.start_over(NewBecause::WentBack);
                    // At once, not at the next step: until the owed snapshot
                    // lands the prefix restores another state (a hostile
                    // trial waited out a 60 s interval).
                    self.destination.tick(now, cx.out);
                }
            }
            Input::DestinationRecorded(result) => {
                self.snapshots.on_destination_recorded(&mut cx, result);
            }
            Input::DestinationChecked(result) => match self.destination.on_checked(now, result) {
                Err(()) => cx.unexpected(format_args!("destination check with none outstanding")),
                Ok(Some(Destination::New { id, why })) => {
                    if why == NewBecause::WentBack {
                        warn!(destination = %id, "the job database went back to an older copy, or is another database than the prefix held: taking a full snapshot of it to a fresh destination now");
                    } else if why == NewBecause::BackupsDeleted {
                        warn!(destination = %id, because = %why, "taking a full snapshot to a fresh destination now");
                    } else if self.destination.recorded().is_none() {
                        info!(destination = %id, because = %why, "first backup of this database to this bucket prefix: taking a full snapshot now");
                    } else {
                        warn!(destination = %id, because = %why, "this bucket prefix is not the one the database was backed up to: taking a full snapshot now");
                    }
                    // A prefix that held nothing has nothing older to fall
                    // back to: any snapshot pays, and a fresh install with a
                    // trigger waiting takes one, not two.
                    let holds_another = why != NewBecause::NoMarker;
                    self.snapshots.owed.owe_destination(id, holds_another);
                    // Its snapshot is the first: a listing that found none
                    // before this answer owes no other once a later check
                    // finds the marker known.
                    self.found_no_snapshot = false;
                    self.retention.destination_changed(cx.metrics);
                    self.snapshots.start_next(&mut cx);
                }
                Ok(Some(Destination::Known)) => self.owe_first_once_known(),
                Ok(None) => {}
            },
            Input::SnapshotsListed(result) => self.on_snapshots_listed(now, result),
            Input::ImmediateBackupRequested { id, name } => {
                if self.stopping {
                    self.out.push_back(refused_for_stopping(id));
                } else {
                    self.snapshots.request_immediate(&mut cx, id, name);
                }
            }
            Input::DatabaseChanged => self.incremental.on_database_changed(&mut cx),
            Input::CommitRead {
                order,
                began,
                batch,
            } => self
                .incremental
                .on_commit_read(&mut cx, &order, began, batch),
            Input::DatabaseReplaced => self.on_database_replaced(),
        }
        self.owe_for_nameless_deletions(now);
        self.release_when_quiet();
    }

    /// Deletions of jobs no object name can carry that no snapshot holds
    /// owe one: no job object can record them. Owed again after a snapshot
    /// that started before some of them paid what was owed.
    fn owe_for_nameless_deletions(&mut self, now: Timestamp) {
        if self.incremental.unsnapshotted() > 0 && !self.stopping {
            self.snapshots.owe_after_deletion(&mut context!(self, now));
        }
    }

    fn on_lease_input(&mut self, input: Input, now: Timestamp) {
        let was_halted = self.halted();
        let Some(lease) = &mut self.lease else {
            return context!(self, now).unexpected(format_args!("a lease report with no lease"));
        };
        if is_refusal(&input) {
            self.metrics.store_refusals += 1;
        }
        let expected = match input {
            Input::LeaseRead(result) => {
                if let Ok(FoundLease {
                    lease: Some((found, _)),
                    ..
                }) = &result
                {
                    self.incremental.bucket_holds(&found.state);
                }
                lease.on_read(now, result, &mut self.out)
            }
            Input::LeaseWritten(result) => lease.on_written(now, result, &mut self.out),
            Input::LeaseReleased(result) => lease.on_released(result),
            _ => unreachable!("only lease reports are passed here"),
        };
        if !expected {
            context!(self, now).unexpected(format_args!("a lease report with none outstanding"));
        }
        // Asking `halted()` after the report, which counts a lost lease,
        // never halted: requests that came after were left unanswered.
        if let Some(ended) = self.lease_ended().filter(|e| **e != LeaseEnded::Released)
            && !was_halted
        {
            error!(lease = %ended, "stopping");
            self.halt();
        }
        self.abandon_if_barred();
        self.drain_once_held(now);
        self.release_when_quiet();
    }

    /// Drops the snapshot and the job uploads under way once another daemon
    /// may write ([`LeaseMachine::lost_or_lapsed`],
    /// [`Snapshots::abandon_under_way`]); a snapshot still
    /// waiting for its renewal was never sent, and the gate answers it. An
    /// old holder's job upload in flight when it learned of a takeover
    /// landed after the new holder's version of the same job, and a restore
    /// lost the newer one, every command exiting 0 (a hostile trial, a
    /// 51 MB body on a slow link).
    fn abandon_if_barred(&mut self) {
        let in_flight = self.incremental.uploads_in_flight();
        if in_flight == 0 {
            self.uploads_abandoned = false;
        }
        if !self
            .lease
            .as_ref()
            .is_some_and(|lease| lease.lost_or_lapsed(self.now))
        {
            return;
        }
        if self.confirming.is_none() {
            self.snapshots.abandon_under_way(&mut self.out);
        }
        if in_flight > 0 && !self.uploads_abandoned {
            self.uploads_abandoned = true;
            warn!(
                uploads = in_flight,
                "dropping the job uploads under way: jobvault may not write to the bucket any more"
            );
            self.out.push_back(Command::AbandonUploads);
        }
    }

    /// The database file was replaced under the daemon. Everything it read
    /// from then on came from a file nobody writes, and the "caught up" it
    /// reported was about that file while the jobs committed to the new
    /// one went nowhere. It halts as when the lease is lost: the process
    /// exits 1 once its work in flight reports, and its restart (systemd's
    /// `Restart=`) opens the file now at the path and checks it like any
    /// other (a restored one records no destination: a full snapshot
    /// comes first).
    fn on_database_replaced(&mut self) {
        if self.replaced {
            return;
        }
        self.replaced = true;
        error!(
            "the job database's path names another file now (one was renamed over it, or it was \
             removed): stopping, so that the file at the path is backed up from the start"
        );
        self.halt();
    }

    /// Whether the database's path names another file than the one the
    /// machine read ([`Input::DatabaseReplaced`]): it has halted, and the
    /// driver exits with an error once [`Backup::is_quiet`].
    pub fn database_replaced(&self) -> bool {
        self.replaced
    }

    /// A daemon that writes in the clear to a prefix holding encrypted
    /// snapshots (see [`crate::cleartext`]) was most likely started without
    /// its `--encrypt-to`. The first listing, a week long, says it once, as
    /// an error, and raises `encryption_dropped` for the daemon's life
    /// (alert `JobvaultEncryptionDropped`). It writes on: refusing would
    /// stop the backup of a database for a setting that may be meant.
    fn say_if_encryption_dropped(&mut self, listed: &[ListedObject]) {
        if let Some(sealed) = plain_writer_beside(self.config.encrypts, listed) {
            self.metrics.encryption_dropped = true;
            error!(
                snapshot = %sealed.name,
                "the prefix holds encrypted snapshots but this daemon writes in the clear: is \
                 --encrypt-to (JOBVAULT_ENCRYPT_TO) missing? Every change from now on goes to the \
                 bucket unencrypted"
            );
        }
    }

    /// Owes a first snapshot when the first listing found none in the last
    /// week and the destination is known: a new one is owed its own, and
    /// two snapshots at start, each with its reason, only confused.
    fn owe_first_once_known(&mut self) {
        if self.found_no_snapshot && self.destination.is_done() {
            self.found_no_snapshot = false;
            self.snapshots.owed.owe_first();
        }
    }

    /// What a renewal of the lease says now: for `status`, and for the next
    /// start to compare its database with.
    #[must_use]
    pub fn lease_content(&self) -> LeaseState {
        // The cursor saved, which the next start compares the stored
        // cursor with, and what the bucket may hold beyond it (changes
        // read, a counter being raised past), which it compares the counter
        // with ([`went_back`]). While the counter is raised, the cursor says
        // at least what it is raised past, as releases before `highest_seq`
        // read it.
        let cursor_seq = self
            .metrics
            .cursor
            .seq
            .max(self.incremental.raising_past().unwrap_or(0));
        LeaseState {
            version: String::new(),
            cursor_seq,
            cursor_time: self.metrics.cursor.time,
            caught_up: self.metrics().incremental_alive,
            newest_snapshot: self.metrics.last_snapshot,
            jobs_set_aside: self.incremental.set_aside(),
            deletions_unsnapshotted: self.incremental.unsnapshotted(),
            highest_seq: self.incremental.bucket_may_hold().max(cursor_seq),
            fenced_until: None,
        }
    }

    /// Once stopping and quiet (a drain complete, or a halt's work in
    /// flight reported), gives the lease back; once it is back, a drain's
    /// stop is over.
    fn release_when_quiet(&mut self) {
        if !self.stopping || self.stopped.is_some() {
            return;
        }
        let drained = self.incremental.drained();
        let done = drained.map_or(self.halted(), |d| d.complete);
        if !done || !self.work_is_quiet() {
            return;
        }
        // What it leaves in the bucket: the next start compares the
        // database's counter and cursor with it ([`went_back`]). Caught up
        // only if the prefix then holds the whole database, as `status`
        // reads it: a stop before the snapshot owed to a new prefix landed
        // was shown as leaving every change in the bucket, exit 0.
        let mut left = self.lease_content();
        left.caught_up = (done
            && drained.is_some()
            && !self.prefix_new()
            && self.incremental.unsnapshotted() == 0)
            .then_some(self.now);
        if let Some(lease) = &mut self.lease {
            lease.release(self.now, left, &mut self.out);
        }
        if let Some(drained) = drained
            && self.is_quiet()
        {
            self.stopped = Some(self.drained_outcome(drained, true));
        }
    }

    /// A drain that uploaded every change committed before the stop: it
    /// says so only if the prefix holds the whole database, rows set aside
    /// included.
    fn drained_outcome(&self, drained: incremental::Drained, released: bool) -> Stopped {
        let why = if self.prefix_new() {
            Some(Unvouched::NewDestination)
        } else if self.lease.as_ref().is_some_and(LeaseMachine::found_gone) {
            Some(Unvouched::LeaseGone)
        } else {
            let (rows, deleted) = (
                self.incremental.set_aside(),
                self.incremental.unsnapshotted(),
            );
            (rows > 0)
                .then_some(Unvouched::SetAside { rows })
                .or((deleted > 0).then_some(Unvouched::DeletionsUnsnapshotted { rows: deleted }))
        };
        match why {
            Some(why) => Stopped::Unvouched {
                changes: drained.changes,
                why,
            },
            None => Stopped::Drained {
                changes: drained.changes,
                saved: drained.saved,
                released,
            },
        }
    }

    /// Whether the prefix does not hold the whole database yet: unchecked,
    /// or new to it with its full snapshot owed.
    fn prefix_new(&self) -> bool {
        self.snapshots.owed.is_new_destination() || !self.destination.is_done()
    }

    /// Whether the machine starts nothing more: the lease is gone, the
    /// database replaced, or the stop is over.
    fn halted(&self) -> bool {
        self.stopped.is_some()
            || self.replaced
            || self
                .lease_ended()
                .is_some_and(|e| *e != LeaseEnded::Released)
    }

    /// A stop asked for before the lease was held drains once it is.
    fn drain_once_held(&mut self, now: Timestamp) {
        if self.stopping && !self.halted() && self.working() {
            self.incremental.drain(&mut context!(self, now));
        }
    }

    /// The grace ran out: how far the drain got is the stop's outcome, and
    /// nothing more starts.
    fn give_up(&mut self) {
        let outcome = match self.incremental.drained() {
            // Covered, with a save or a later change's upload still out.
            Some(d) if d.covered => self.drained_outcome(d, false),
            Some(d) => Stopped::GraceOver {
                changes: d.changes,
                left: d.left,
                read_after_stop: d.read_after_stop,
            },
            None => Stopped::GraceOver {
                changes: 0,
                left: self.incremental.pending(),
                read_after_stop: false,
            },
        };
        self.stopped = Some(outcome);
        self.incremental.halt();
        self.snapshots.abandon(&mut self.out);
        self.confirming = None;
    }

    /// The next command to execute.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command> {
        loop {
            // A destination is pruned only once it is known to hold the
            // database: checked, and not new.
            let holds_the_database =
                self.destination.is_done() && !self.snapshots.owed.is_new_destination();
            if !self.stopping && self.working() && holds_the_database {
                self.retention
                    .poll(self.now, &mut self.metrics, &mut self.out);
            }
            let (command, released) = self.next_command()?;
            let held_back = self
                .lease
                .as_ref()
                .filter(|_| command.needs_lease())
                .and_then(|lease| lease.may_write(self.now).err())
                .or_else(|| {
                    (released && self.halted()).then(|| {
                        Failure::new(FailureKind::Rejected, "not taken: jobvault is stopping")
                    })
                });
            if let Some(failure) = held_back {
                let answer = command.failed(failure).expect("a write expects an answer");
                self.handle_input(answer, self.now);
            } else if released {
                return Some(command);
            } else if let Some(command) = self.unless_held_for_renewal(command) {
                return Some(command);
            }
        }
    }

    /// The snapshot waiting for a renewal of the lease, once one got
    /// through, the gate closed or the machine halted (`true`); else the
    /// next command out (`false`).
    fn next_command(&mut self) -> Option<(Command, bool)> {
        match self.confirming.take() {
            Some((command, asked)) if self.renewal_settled(asked) => Some((command, true)),
            waiting => {
                self.confirming = waiting;
                self.out.pop_front().map(|command| (command, false))
            }
        }
    }

    fn renewal_settled(&self, asked: Confirmation) -> bool {
        self.halted()
            || self
                .lease
                .as_ref()
                .is_none_or(|lease| lease.confirmed(asked) || lease.may_write(self.now).is_err())
    }

    /// `command`, unless it is a snapshot: that waits for a renewal of the
    /// lease sent after it was asked for, asked for now.
    fn unless_held_for_renewal(&mut self, command: Command) -> Option<Command> {
        let Some(lease) = self
            .lease
            .as_mut()
            .filter(|_| matches!(command, Command::TakeSnapshot(_)))
        else {
            return Some(command);
        };
        self.confirming = Some((command, lease.confirm(self.now)));
        None
    }

    /// Stops at `now`, with `grace` to drain: no new snapshot, listing or
    /// prune starts, and requests waiting are refused; the change feed is
    /// read once more, and every change committed before the stop is
    /// uploaded and the cursor saved past it. [`Backup::stopped`] says when
    /// it is over, and how it went.
    pub fn stop(&mut self, now: Timestamp, grace: Duration) {
        if self.stopping {
            return;
        }
        self.clock_reads(now);
        self.grace_until = Some(now + grace);
        self.no_new_work();
        self.drain_once_held(now);
        self.release_when_quiet();
    }

    /// The lease is gone: nothing more starts, work in flight reports.
    fn halt(&mut self) {
        self.no_new_work();
        self.incremental.halt();
        self.release_when_quiet();
    }

    fn no_new_work(&mut self) {
        self.stopping = true;
        self.snapshots.stop(&mut self.out);
        self.retention.stop();
    }

    /// How a stop ended, once it has: the driver logs it and exits.
    pub fn stopped(&self) -> Option<Stopped> {
        self.stopped
    }

    /// Nothing is in flight, and the lease is given back: after the lease
    /// is lost, the driver may exit.
    pub fn is_quiet(&self) -> bool {
        self.work_is_quiet() && self.lease.as_ref().is_none_or(LeaseMachine::is_quiet)
    }

    fn work_is_quiet(&self) -> bool {
        self.incremental.is_quiet()
            && self.snapshots.is_quiet()
            && self.destination.is_quiet()
            && self.listing.is_none()
            && self.retention.is_quiet()
    }

    pub fn metrics(&self) -> Metrics {
        // A copy found is new to the prefix from then, not from the check
        // that writes its marker a step later: a hostile trial's restore in
        // between gave mixed state while the gauge read 0.
        let new_destination = self.snapshots.owed.is_new_destination()
            || self.destination.is_starting_over()
            || self.incremental.raising_past().is_some();
        // Until then what the bucket holds is not known to match the cursor,
        // nor while a copy gone back has its counter raised.
        let vouched = self.destination.is_done()
            && !new_destination
            && self.incremental.raising_past().is_none();
        Metrics {
            pending_jobs: self.incremental.pending(),
            jobs_set_aside: self.incremental.set_aside(),
            keep: self.config.keep,
            new_destination,
            incremental_alive: self.incremental.caught_up_to(self.now).filter(|_| vouched),
            ..self.metrics.clone()
        }
    }

    /// Versions held in memory until uploaded, and their bodies' bytes.
    pub fn held(&self) -> (usize, u64) {
        self.incremental.held()
    }

    /// Job uploads issued and not yet reported.
    pub fn uploads_in_flight(&self) -> usize {
        self.incremental.uploads_in_flight()
    }

    /// The cursor the database holds, as far as the machine knows.
    pub fn stored_cursor(&self) -> Cursor {
        self.incremental.durable()
    }

    fn list_snapshots(&mut self, now: Timestamp) {
        let lookback = if self.listed_once {
            DAY
        } else {
            FIRST_LISTING_LOOKBACK
        };
        let listing = Listing::new(
            now,
            day_prefixes(ObjectKind::Snapshot, now - lookback, now),
            self.ledger.newest_name().cloned(),
        );
        self.out.push_back(Command::ListSnapshots {
            prefixes: listing.prefixes().to_vec(),
        });
        self.listing = Some(listing);
    }

    /// The newest snapshot known is gone from a folder a listing covered:
    /// the prefix's backups were deleted while its markers stayed
    /// ([`listing`]). It is checked again as new: a fresh marker, and a
    /// full snapshot owed.
    fn backups_deleted(&mut self, now: Timestamp, lost: &ObjectName) {
        if self.destination.is_starting_over() {
            return;
        }
        error!(snapshot = %lost, "the newest snapshot is gone from the bucket prefix, which no prune deletes: the prefix's backups were deleted; starting it over");
        self.destination.start_over(NewBecause::BackupsDeleted);
        self.destination.tick(now, &mut self.out);
    }

    fn on_snapshots_listed(&mut self, now: Timestamp, result: Result<Vec<ListedObject>, Failure>) {
        let Some(listing) = self.listing.take() else {
            context!(self, now).unexpected(format_args!("snapshot listing with none outstanding"));
            return;
        };
        match result {
            Ok(objects) => {
                let lost = listing.lost(&objects).cloned();
                self.ledger.refresh(&objects, listing.issued_at);
                if let Some(lost) = &lost {
                    self.backups_deleted(now, lost);
                }
                if !self.listed_once {
                    self.say_if_encryption_dropped(&objects);
                }
                if !self.listed_once && self.ledger.newest().is_none() {
                    self.found_no_snapshot = true;
                    self.owe_first_once_known();
                }
                self.listed_once = true;
                self.snapshots.listed();
                self.metrics.last_snapshot = match lost {
                    Some(_) => self.ledger.newest(),
                    None => self.metrics.last_snapshot.max(self.ledger.newest()),
                };
                self.metrics.snapshots_last_24h = self.ledger.count_last_24h(now);
            }
            Err(failure) => {
                warn!(error = %failure, "listing snapshots for the metrics failed; retrying later");
            }
        }
    }
}

/// A lease report the store refused (permission denied, no such bucket, a
/// certificate not trusted): counted with the refused uploads, since while
/// the lease is refused nothing is written at all.
fn is_refusal(input: &Input) -> bool {
    match input {
        Input::LeaseRead(Err(failure))
        | Input::LeaseWritten(Err(failure))
        | Input::LeaseReleased(Err(failure)) => failure.kind.is_refusal(),
        _ => false,
    }
}
