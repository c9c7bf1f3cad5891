//! Incremental job backup: every changed job in the bucket within seconds.
//!
//! The change feed is durable: jobs carry a change sequence (`seq`) that the
//! database takes from a counter in the same transaction, so sequence order is
//! commit order. The stored [`Cursor`] says how far the bucket is known to be
//! complete. A restart, or a feed that has to be rescanned, starts again from
//! the cursor; uploading a version twice is harmless.
//!
//! In memory the backup keeps a *window*: the jobs read from the feed whose
//! upload has not yet been confirmed. The cursor only moves over a prefix of
//! the window in which every version is in the bucket, so a failed upload holds
//! the cursor back until a retry succeeds (the original dropped such a job).
//! The window is bounded in jobs and in bytes of bodies, which bounds memory
//! whatever the database's size or its bodies'. A row no job object can hold
//! is set aside ([`super::set_aside`]) rather than stalling the window.
//!
//! Per job id at most one upload is in flight, and a newer version waits for
//! it, so an older version never overwrites a newer one (the original could
//! race two versions of one job). No job object is written more than once a
//! second, as GCS allows for one object name: a hot job's next version waits
//! out the second. A failure that says the store is unwell or refusing holds
//! all new uploads back for a while ([`super::backoff`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::backoff::{Change, StoreBackoff};
use super::io::{ChangeBatch, Command, Cursor, Failure, JobUpload, ReadOrder};
use super::set_aside::{Named, SetAside, Unreadable};
use super::went_back::Raise;
use super::{Config, Context};
use crate::Seq;
use crate::envelope::Envelope;
use crate::job_id::JobId;
use crate::lease::LeaseState;
use crate::object_name::{Framing, ObjectKind, job_object};
use crate::timestamp::Timestamp;

/// What is known about one job id with entries in the window or an upload in
/// flight.
#[derive(Debug, Default)]
struct Slot {
    /// The newest version confirmed in the bucket during this run.
    uploaded: Option<Seq>,
    in_flight: Option<Envelope>,
    /// The in-flight upload was issued before a feed reset; its result says
    /// nothing about the database as it is now.
    in_flight_stale: bool,
    /// The newest version read and not yet uploaded.
    next: Option<Envelope>,
    /// The oldest version read and not yet sent, which `next` stands in
    /// for: the job's place in the upload queue. A job rewritten while it
    /// waits keeps its place; queued by its newest version, a hot job went
    /// to the back at every rewrite while its oldest version held the
    /// cursor back (15 changes covered in 905 uploads).
    since: Option<Seq>,
    /// Window entries that belong to this id.
    refs: usize,
}

/// One read of the change feed.
#[derive(Debug)]
struct Batch {
    /// When the read was issued: every commit before it is in this batch or an
    /// earlier one, unless the batch was cut short by its limit.
    read_at: Timestamp,
    /// [`Incremental::steps_back`] when it was issued: a step back of the
    /// clock since leaves `read_at` ahead of it.
    steps_back: u64,
    /// The highest sequence read so far when this batch arrived.
    last_seq: Seq,
    /// The batch held everything there was (it was not cut by the limit).
    complete: bool,
}

#[derive(Debug, Clone, Copy)]
struct Saving {
    cursor: Cursor,
    /// Issued before a feed reset: whatever it reports, it is not our cursor.
    stale: bool,
}

#[derive(Debug, Clone)]
struct ReadInFlight {
    read_at: Timestamp,
    steps_back: u64,
    /// Cursors the database may hold when the read runs: the one stored when
    /// it was issued, and any we saved while it was in flight. Its result may
    /// arrive after a save's even if it ran before the save committed.
    expected: Vec<Cursor>,
    /// Issued after a stop: it sees every change committed before it.
    draining: bool,
}

#[derive(Debug)]
pub(crate) struct Incremental {
    concurrency: usize,
    max_pending: usize,
    max_pending_bytes: u64,
    /// A cursor whose sequence has not moved is saved at most this often.
    time_only_saves: Duration,
    /// The cursor stored in the database, as far as we know.
    durable: Cursor,
    /// How far the bucket is complete in memory; saved when it moves.
    covered: Cursor,
    /// When the last read whose changes are all covered began, as the
    /// clock reads now: [`Self::caught_up_to`]. Not `covered.time`, which
    /// never goes back: after a clock stepped forward and back, that stays
    /// ahead of the clock, and said 4,000 rows not yet uploaded were safe.
    /// Nor the stored cursor's time before this process's first read: that
    /// may be dated by a clock since stepped back.
    caught_up: Timestamp,
    /// The clock's latest reading, and how many times it was seen to step
    /// back: reads issued before a step are not dated on the clock as it
    /// reads since.
    clock: Timestamp,
    steps_back: u64,
    /// The highest sequence read from the feed.
    frontier: Seq,
    /// Sequence → job id and size of every version read and not yet
    /// covered.
    window: BTreeMap<Seq, (JobId, u64)>,
    /// The sizes in `window`, summed: more than the bodies held, never less,
    /// since a version replaced by a newer one stays in the window.
    held_bytes: u64,
    /// The database's change counter, as of the last read.
    newest: Seq,
    set_aside: SetAside,
    /// The sequences of deletions of jobs no object name can carry that no
    /// snapshot holds yet: each owes a snapshot copied after it. The cursor
    /// stays below the first: only a snapshot copied after it puts it in
    /// the bucket, and a restart reads it again and owes the snapshot again
    /// (a cursor saved past it forgot it at a crash, and a restore brought
    /// the job back; the simulator).
    unsnapshotted: BTreeSet<Seq>,
    batches: VecDeque<Batch>,
    slots: BTreeMap<JobId, Slot>,
    /// Uploads to start, oldest version first so the cursor moves soonest.
    ready: BTreeSet<(Seq, JobId)>,
    /// Jobs whose last upload failed; they become ready at the next tick.
    waiting: BTreeSet<JobId>,
    uploads_in_flight: usize,
    read: Option<ReadInFlight>,
    saving: Option<Saving>,
    /// When the last save was issued: a cursor whose sequence moved is
    /// saved at most every [`SEQ_SAVE_SPACING`] while running.
    last_save: Option<Timestamp>,
    /// The last batch was cut by its limit, or a commit was noticed with no
    /// room to read it: read again as soon as there is room.
    more_to_read: bool,
    /// A commit was noticed while a read was in flight, which may have run
    /// before it: read again once it reports.
    changed_while_reading: bool,
    mode: Mode,
    /// Upload failures since the last step, and the first one's error: one
    /// warning per step, not one per job, while the store is down.
    failures_since_step: usize,
    first_failure: Option<String>,
    backoff: StoreBackoff,
    /// When each job's object was last written to, for the one write a
    /// second GCS allows per object.
    recent_starts: BTreeMap<JobId, Timestamp>,
    /// When `recent_starts` was last swept of the starts too old to matter.
    starts_swept_at: Option<Timestamp>,
    /// The earliest time a job held back by that limit may go.
    held_until: Option<Timestamp>,
    /// The database went back to an older copy: the feed waits until its
    /// counter is raised ([`super::went_back`]).
    raise: Option<Raise>,
    /// When the counter of a copy gone back was last raised.
    raised_at: Option<Timestamp>,
    /// The lease found at start: the highest change it says the bucket
    /// may hold, and its cursor ([`Self::bucket_holds`]).
    leased: Leased,
    /// The highest change a read has reached, over resets: the bucket may
    /// hold up to it whatever the cursor says.
    highest_read: Seq,
    /// A read of the feed has reported.
    read_once: bool,
}

/// The state a [`ReadOrder`] was made in: what a read's answer is checked
/// against ([`Incremental::on_changes_read`]). The order's own `after` is
/// the frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadBasis {
    durable: Cursor,
    newest: Seq,
    leased: Leased,
}

/// What the lease found at start says of the bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Leased {
    /// The highest change of the database it may hold: a counter below it
    /// went back.
    highest: Seq,
    /// Its holder's cursor: a stored cursor below it went back (a copy
    /// written to since brings its counter back up).
    cursor: Seq,
}

/// Whether the backup goes on, drains for a stop, or has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    Draining(Drain),
    /// Nothing new starts: the lease is gone, or the grace ran out.
    Halted,
}

/// A stop in progress: every change committed before it is to be covered
/// before the process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Drain {
    /// The versions covered since the stop: how many changes it drained.
    /// The sequences it passed counted them until a counter raised past a
    /// copy (by 2^32) was drained as 17,179,869,201 (a newcomer trial).
    passed: u64,
    /// The database's newest sequence as the first read issued after the
    /// stop found it: every change committed before the stop is at or
    /// below it. Changes committed after it are not waited for, so a
    /// writer that goes on does not hold the stop up, nor count as left.
    target: Option<Seq>,
}

/// How far a stop's drain got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Changes the cursor passed since the stop.
    pub changes: u64,
    /// Every change committed before the stop is in the bucket.
    pub covered: bool,
    /// And nothing is in flight.
    pub complete: bool,
    /// The saved cursor passes them too (if not, the next start uploads
    /// them again).
    pub saved: bool,
    /// Changes committed before the stop and not yet in the bucket, as far
    /// as known.
    pub left: u64,
    /// The feed was read after the stop; if not, `left` counts only what
    /// was known before it.
    pub read_after_stop: bool,
}

/// How far past the highest change a lease found at start says the bucket
/// may hold the counter is raised when the database went back while no
/// daemon read it: that is some seconds old, and its holder's gate stays
/// open 90 s after its last renewal got through, so it may have uploaded
/// changes numbered after it until it died, but never this many (over 40
/// million commits a second for those 90 s).
pub const LEASED_MARGIN: Seq = 1 << 32;

/// GCS allows about one write a second to one object name.
pub const OBJECT_WRITE_SPACING: Duration = Duration::from_secs(1);

/// How often, at most, a running daemon saves a cursor whose sequence
/// moved. Each save is a commit the watcher notices, which brings a read
/// of the feed, whose uploads move the cursor again: while uploads flowed
/// the daemon saved and read as fast as SQLite let it, a tenth of its CPU.
/// A crash now uploads up to a second of changes again; a stop's drain
/// saves at once.
pub const SEQ_SAVE_SPACING: Duration = Duration::from_secs(1);

impl Incremental {
    pub fn new(stored: Cursor, config: &Config) -> Self {
        Incremental {
            concurrency: config.concurrency.max(1),
            max_pending: config.max_pending.max(1),
            max_pending_bytes: config.max_pending_bytes.max(1),
            time_only_saves: config.interval,
            durable: stored,
            covered: stored,
            caught_up: Timestamp::UNIX_EPOCH,
            clock: Timestamp::UNIX_EPOCH,
            steps_back: 0,
            frontier: stored.seq,
            window: BTreeMap::new(),
            held_bytes: 0,
            newest: stored.seq,
            set_aside: SetAside::default(),
            unsnapshotted: BTreeSet::new(),
            batches: VecDeque::new(),
            slots: BTreeMap::new(),
            ready: BTreeSet::new(),
            waiting: BTreeSet::new(),
            uploads_in_flight: 0,
            read: None,
            saving: None,
            last_save: None,
            more_to_read: false,
            changed_while_reading: false,
            mode: Mode::Running,
            failures_since_step: 0,
            first_failure: None,
            backoff: StoreBackoff::default(),
            recent_starts: BTreeMap::new(),
            starts_swept_at: None,
            held_until: None,
            raise: None,
            raised_at: None,
            leased: Leased::default(),
            highest_read: stored.seq,
            read_once: false,
        }
    }

    pub fn durable(&self) -> Cursor {
        self.durable
    }

    /// The time that frames a snapshot: the stored cursor's, or when the
    /// counter of a copy gone back was raised if later. The copy's cursor
    /// may be days old; its start-over snapshot, framed so, sorted before
    /// the snapshots it replaces, and a prune could keep one of those as a
    /// base and delete it. Everything committed before the raise is in any
    /// snapshot taken after it.
    pub fn framing_time(&self) -> Timestamp {
        self.raised_at
            .map_or(self.durable.time, |at| self.durable.time.max(at))
    }

    /// Changes not yet covered: those held in memory, and those the
    /// database held past the last one read when last read. Not the span
    /// from the cursor to the counter: a counter raised past a copy gone
    /// back made that billions ([`super::went_back`]).
    pub fn pending(&self) -> u64 {
        self.window.len() as u64
            + self.unsnapshotted.len() as u64
            + self.newest.saturating_sub(self.frontier)
    }

    /// Versions held in memory, and the bytes of their bodies.
    pub fn held(&self) -> (usize, u64) {
        (self.window.len(), self.held_bytes)
    }

    /// What a lease `found` at start says of the bucket: a read whose
    /// counter is below the highest change it may hold, or whose stored
    /// cursor is below the lease's cursor, finds the database gone back to
    /// an older copy while no daemon read it ([`super::went_back`]): killed
    /// before its next read, or stopped and given back the lease.
    /// A database new to the prefix, below another's lease, is taken for
    /// such a copy: the raise and start-over it gets are what it needs,
    /// the error line's "older copy" is not. Only before the first read: a lease read later is this
    /// daemon's own, and after a copy went back it still holds what the
    /// daemon read before.
    pub fn bucket_holds(&mut self, found: &LeaseState) {
        if !self.read_once {
            self.leased.highest = self.leased.highest.max(found.bucket_may_hold());
            self.leased.cursor = self.leased.cursor.max(found.cursor_seq);
        }
    }

    /// The highest change of the database the bucket may hold, for the
    /// lease to say ([`LeaseState::highest_seq`]): the highest read, the
    /// counter being raised past, and before the first read the lease
    /// found at start, which a renewal must not replace with less.
    pub fn bucket_may_hold(&self) -> Seq {
        let leased = if self.read_once {
            0
        } else {
            self.leased.highest
        };
        self.highest_read
            .max(self.raising_past().unwrap_or(0))
            .max(leased)
    }

    pub fn set_aside(&self) -> u64 {
        self.set_aside.count()
    }

    /// Deletions of jobs no object name can carry that no snapshot holds
    /// yet: a snapshot is owed for them.
    pub fn unsnapshotted(&self) -> u64 {
        self.unsnapshotted.len() as u64
    }

    /// The last of those deletions: a snapshot started now is copied after
    /// it, and holds every one up to it.
    pub fn deletions_read_through(&self) -> Seq {
        self.unsnapshotted.last().copied().unwrap_or(0)
    }

    /// A snapshot started once the deletions up to `through` were read
    /// landed: the cursor may pass them. One started before a deletion pays
    /// nothing for it, so deletions that go on during snapshots are paid
    /// by the next snapshot each, not held for good.
    ///
    /// The cursor is saved past them at once: a stop waiting for the
    /// snapshot ended without the save, and the next start took the
    /// snapshot again (a hostile trial).
    pub fn deletions_snapshotted(&mut self, cx: &mut Context, through: Seq) {
        let held = self.unsnapshotted.len();
        self.unsnapshotted.retain(|&seq| seq > through);
        if self.unsnapshotted.len() < held {
            self.advance();
            self.save(cx);
        }
    }

    pub fn set_aside_recorded(&mut self, recorded: u64) {
        self.set_aside.found(Vec::new(), recorded);
    }

    pub fn uploads_in_flight(&self) -> usize {
        self.uploads_in_flight
    }

    /// Nothing in flight: the process may exit without losing work.
    pub fn is_quiet(&self) -> bool {
        self.uploads_in_flight == 0
            && self.read.is_none()
            && self.saving.is_none()
            && !self.raise.is_some_and(|raise| raise.in_flight())
    }

    /// Starts a stop's drain: the feed is read once more, and every change
    /// committed before the stop is uploaded and covered.
    pub fn drain(&mut self, cx: &mut Context) {
        if self.mode != Mode::Running {
            return;
        }
        self.mode = Mode::Draining(Drain {
            passed: 0,
            target: None,
        });
        if self.read.is_some() {
            // It may have run before the stop: read again once it reports.
            self.changed_while_reading = true;
        } else {
            self.read_changes(cx);
        }
    }

    /// Starts nothing more; work in flight still reports, and what it
    /// completes is saved.
    pub fn halt(&mut self) {
        self.mode = Mode::Halted;
    }

    /// How the drain goes: `Some` while draining.
    pub fn drained(&self) -> Option<Drained> {
        let Mode::Draining(drain) = self.mode else {
            return None;
        };
        let covered = drain
            .target
            .is_some_and(|target| self.uploaded_through(target));
        // Versions read and not in the bucket, and the changes not read yet
        // (as `pending` counts them), not the sequences between.
        let left = match drain.target {
            Some(target) => {
                self.window.range(..=target).count() as u64 + target.saturating_sub(self.frontier)
            }
            None => self.pending(),
        };
        Some(Drained {
            changes: drain.passed,
            covered,
            complete: covered && self.is_quiet(),
            saved: drain
                .target
                .is_some_and(|target| self.durable.seq >= target),
            left,
            read_after_stop: drain.target.is_some(),
        })
    }

    /// When uploads held back may go, or a save held back is due.
    pub fn next_wake(&self) -> Option<Timestamp> {
        [self.uploads_due(), self.save_due()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When uploads held back (by the store's backoff, or by the one write a
    /// second per object) may go, if any are and there is room for them.
    fn uploads_due(&self) -> Option<Timestamp> {
        if self.mode == Mode::Halted || self.uploads_in_flight >= self.concurrency {
            return None;
        }
        let gate = self
            .backoff
            .closed_until()
            .filter(|_| !self.waiting.is_empty() || !self.ready.is_empty());
        let held = self.held_until.filter(|_| !self.ready.is_empty());
        match (gate, held) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// When a save of a cursor whose sequence moved, held back by
    /// [`SEQ_SAVE_SPACING`], is due.
    fn save_due(&self) -> Option<Timestamp> {
        let owed = self.mode == Mode::Running
            && self.saving.is_none()
            && self.covered.seq != self.durable.seq;
        owed.then_some(self.last_save?.saturating_add(SEQ_SAVE_SPACING))
    }

    /// Saves the cursor if its save is due, and starts the uploads whose
    /// wait is over.
    pub fn wake(&mut self, cx: &mut Context) {
        self.save(cx);
        self.backoff.open_if_due(cx.now);
        if !self.backoff.is_open(cx.now) {
            return;
        }
        for id in std::mem::take(&mut self.waiting) {
            self.make_ready(&id);
        }
        self.start_uploads(cx);
    }

    /// The periodic step: retry failed uploads, read the feed, save progress.
    pub fn tick(&mut self, cx: &mut Context) {
        if let Some(error) = self.first_failure.take() {
            warn!(
                failed = std::mem::take(&mut self.failures_since_step),
                pending = self.window.len(),
                first_error = %error,
                "job uploads failed since the last step; the jobs stay pending and are retried"
            );
        }
        for id in std::mem::take(&mut self.waiting) {
            self.make_ready(&id);
        }
        self.raise_counter(cx);
        self.read_changes(cx);
        self.save(cx);
        self.start_uploads(cx);
    }

    /// A commit was noticed: read the feed now rather than at the next
    /// step. Reads stay one at a time; a commit noticed during one is read
    /// by the next, so a burst of commits costs a read per report, not per
    /// commit. Uploads still keep to one write a second per object, so a
    /// hot job is coalesced to its newest version.
    ///
    /// With no room for a read (the window full of versions or bytes) the
    /// commit is read as soon as uploads make room, and the daemon is not
    /// caught up until then. Dropped, it waited for the next notice (the
    /// cursor save's own commit, by luck) while the daemon said it was
    /// caught up as of a time after it (a hostile trial: 6 of 6 rounds,
    /// up to 2.5 s).
    pub fn on_database_changed(&mut self, cx: &mut Context) {
        if self.read.is_some() {
            self.changed_while_reading = true;
        } else if self.has_room_for_a_read() {
            self.read_changes(cx);
        } else {
            self.more_to_read = true;
        }
    }

    /// A commit was noticed and read in the same look as `order` said: the
    /// answer of the read this machine would ask for now if `order` still
    /// fits it (nothing answered since moved what the batch is checked
    /// against, and the window has room for it), dated when it began, not
    /// when it is taken: a commit in between is not in it. Otherwise only
    /// the notice counts, and the feed is read as for one.
    pub fn on_commit_read(
        &mut self,
        cx: &mut Context,
        order: &ReadOrder,
        began: Timestamp,
        batch: ChangeBatch,
    ) {
        if self
            .read_at_next_commit()
            .is_none_or(|current| !order.fits(&current))
        {
            return self.on_database_changed(cx);
        }
        self.read = Some(ReadInFlight {
            read_at: began,
            steps_back: self.steps_back,
            expected: self.expected(),
            draining: false,
        });
        self.on_changes_read(cx, Ok(batch));
    }

    pub fn on_changes_read(&mut self, cx: &mut Context, result: Result<ChangeBatch, Failure>) {
        let Some(read) = self.read.take() else {
            cx.unexpected(format_args!("change feed batch with no read outstanding"));
            return;
        };
        let changed_while_reading = std::mem::take(&mut self.changed_while_reading);
        let batch = match result {
            Ok(batch) => batch,
            Err(failure) => {
                warn!(error = %failure, "reading the change feed failed; retrying at the next step");
                return;
            }
        };
        self.read_once = true;
        let read_before = self.newest.max(self.frontier);
        let cursor_back =
            batch.stored.seq < self.durable.seq && !read.expected.contains(&batch.stored);
        let leased = self.leased;
        if batch.newest < leased.highest || batch.stored.seq < leased.cursor {
            return self.went_back(cx, batch, leased.highest.saturating_add(LEASED_MARGIN));
        }
        if batch.newest < read_before || cursor_back {
            return self.went_back(cx, batch, read_before);
        }
        // Any cursor but ours means someone else changed it.
        if !read.expected.contains(&batch.stored) {
            self.reset(cx, batch.stored);
            self.read_changes(cx);
            return;
        }
        let truncated = !batch.complete;
        let before = self.frontier;
        for envelope in batch.jobs {
            if envelope.seq <= self.frontier {
                continue;
            }
            self.frontier = envelope.seq;
            let id = envelope.id.clone();
            let bytes = weight(&envelope);
            self.window.insert(envelope.seq, (id.clone(), bytes));
            self.held_bytes += bytes;
            self.slots.entry(id).or_default().refs += 1;
            self.offer(envelope);
        }
        // A read not cut short saw every change up to the counter: none is
        // numbered between the last it gave and the counter, which passes
        // the newest change only once raised ([`super::went_back`]).
        if !truncated {
            self.frontier = self.frontier.max(batch.newest);
        }
        self.newest = batch.newest;
        self.set_aside_found(batch.unreadable, before, batch.set_aside);
        self.highest_read = self.highest_read.max(self.frontier);
        self.batches.push_back(Batch {
            read_at: read.read_at,
            steps_back: read.steps_back,
            last_seq: self.frontier,
            complete: !truncated,
        });
        self.more_to_read = truncated;
        if let Mode::Draining(drain) = &mut self.mode
            && read.draining
            && drain.target.is_none()
        {
            drain.target = Some(batch.newest);
        }
        self.advance();
        self.save(cx);
        self.start_uploads(cx);
        if (truncated || changed_while_reading) && self.has_room_for_a_read() {
            self.read_changes(cx);
        }
    }

    pub fn on_job_uploaded(
        &mut self,
        cx: &mut Context,
        id: &JobId,
        seq: Seq,
        result: Result<u64, Failure>,
    ) {
        let Some(slot) = self.slots.get_mut(id) else {
            cx.unexpected(format_args!(
                "job {id} version {seq}: uploaded with none in flight"
            ));
            return;
        };
        let Some(sent) = slot.in_flight.take_if(|sent| sent.seq == seq) else {
            cx.unexpected(format_args!(
                "job {id} version {seq}: uploaded but not in flight"
            ));
            return;
        };
        self.uploads_in_flight -= 1;
        let stale = std::mem::take(&mut slot.in_flight_stale);
        match result {
            Ok(bytes) => {
                if let Some(refusal) = self.backoff.on_success() {
                    info!(refused = %refusal, "the store accepts uploads again");
                }
                cx.metrics.jobs_backed_up += 1;
                cx.metrics.uploads.add(ObjectKind::Job, 1);
                cx.metrics.upload_bytes.add(ObjectKind::Job, bytes);
                if !stale {
                    slot.uploaded = slot.uploaded.max(Some(seq));
                    if slot.next.as_ref().is_some_and(|next| next.seq <= seq) {
                        slot.next = None;
                        slot.since = None;
                    }
                }
            }
            Err(failure) => {
                cx.metrics.upload_errors.add(ObjectKind::Job, 1);
                debug!(job = %id, seq, error = %failure, "job upload failed");
                if failure.kind.is_refusal() {
                    cx.metrics.store_refusals += 1;
                }
                match self.backoff.on_failure(&failure, cx.now) {
                    Change::Refused(until) => {
                        error!(
                            error = %failure,
                            retry_at = %until,
                            "the store refuses jobvault's uploads: check that the bucket exists and that the \
                             service account has roles/storage.objectAdmin on it; retrying every 5 minutes"
                        );
                    }
                    Change::Closed(until) => {
                        debug!(error = %failure, retry_at = %until, "uploads held back");
                    }
                    Change::None => {}
                }
                self.failures_since_step += 1;
                self.first_failure
                    .get_or_insert_with(|| format!("job {id} version {seq}: {failure}"));
                if !stale {
                    // The failed version's place, ahead of any newer one.
                    slot.since = Some(slot.since.map_or(sent.seq, |since| since.min(sent.seq)));
                    if slot.next.is_none() {
                        slot.next = Some(sent);
                        self.waiting.insert(id.clone());
                    }
                }
            }
        }
        if !self.waiting.contains(id) {
            self.make_ready(id);
        }
        self.forget_if_idle(id);
        self.advance();
        if self.window.is_empty() || (self.mode != Mode::Running && self.uploads_in_flight == 0) {
            self.save(cx);
        }
        self.start_uploads(cx);
        if self.more_to_read && self.has_room_for_a_read() {
            self.read_changes(cx);
        }
    }

    pub fn on_cursor_saved(&mut self, cx: &mut Context, result: Result<u64, Failure>) {
        let Some(Saving {
            cursor: saved,
            stale,
        }) = self.saving.take()
        else {
            cx.unexpected(format_args!("cursor saved with no save outstanding"));
            return;
        };
        match result {
            Ok(_) if stale => {}
            Ok(set_aside) => {
                self.durable = saved;
                self.set_aside.saved(saved.seq, set_aside);
                cx.metrics.cursor = saved;
                // A drain saves what its uploads covered since, at once.
                if matches!(self.mode, Mode::Draining(_)) {
                    self.save(cx);
                }
            }
            Err(failure) => {
                warn!(error = %failure, seq = saved.seq, "saving the incremental cursor failed; retrying at the next step");
            }
        }
        if self.more_to_read && self.has_room_for_a_read() {
            self.read_changes(cx);
        }
    }

    /// Offers a version read from the feed for upload.
    fn offer(&mut self, envelope: Envelope) {
        let id = envelope.id.clone();
        let slot = self.slots.get_mut(&id).expect("offered jobs have a slot");
        if slot.uploaded >= Some(envelope.seq) {
            return;
        }
        if let Some(next) = &slot.next {
            if next.seq >= envelope.seq {
                return;
            }
            self.ready
                .remove(&(slot.since.unwrap_or(next.seq), id.clone()));
        }
        slot.since = slot.since.or(Some(envelope.seq));
        slot.next = Some(envelope);
        self.waiting.remove(&id);
        self.make_ready(&id);
    }

    /// Queues the job's next version for upload unless one is in flight.
    fn make_ready(&mut self, id: &JobId) {
        if let Some(slot) = self.slots.get(id)
            && slot.in_flight.is_none()
            && let Some(next) = &slot.next
        {
            self.ready
                .insert((slot.since.unwrap_or(next.seq), id.clone()));
        }
    }

    fn start_uploads(&mut self, cx: &mut Context) {
        if self.mode == Mode::Halted || !self.backoff.is_open(cx.now) {
            return;
        }
        self.forget_old_starts(cx.now);
        self.held_until = None;
        let mut held = Vec::new();
        while self.uploads_in_flight < self.concurrency {
            let Some((seq, id)) = self.ready.pop_first() else {
                break;
            };
            if let Some(at) = self.written_too_recently(&id, cx.now) {
                self.held_until = Some(self.held_until.map_or(at, |held| held.min(at)));
                held.push((seq, id));
                continue;
            }
            self.recent_starts.insert(id.clone(), cx.now);
            let slot = self.slots.get_mut(&id).expect("ready jobs have a slot");
            let envelope = slot.next.take().expect("ready jobs have a version to send");
            slot.since = None;
            let object = job_object(cx.now, &id);
            let framing = Framing::for_object(&object, envelope.modified);
            cx.out.push_back(Command::UploadJob(JobUpload {
                object,
                framing,
                envelope: envelope.clone(),
            }));
            slot.in_flight = Some(envelope);
            self.uploads_in_flight += 1;
        }
        self.ready.extend(held);
    }

    /// When the job's object may next be written, if not yet at `now`. A
    /// clock that stepped back more than the spacing frees it: the time
    /// since the last write is then unknown, and a job must not wait for as
    /// long as the step.
    fn written_too_recently(&self, id: &JobId, now: Timestamp) -> Option<Timestamp> {
        let last = *self.recent_starts.get(id)?;
        let free_at = last + OBJECT_WRITE_SPACING;
        (now < free_at && now + OBJECT_WRITE_SPACING > last).then_some(free_at)
    }

    /// At most once a spacing: sweeping on every upload's start made the
    /// daemon's CPU grow with the square of its upload rate, and an old
    /// start left a little longer changes nothing, since
    /// [`Self::written_too_recently`] reads its time.
    fn forget_old_starts(&mut self, now: Timestamp) {
        if self
            .starts_swept_at
            .is_some_and(|at| now < at + OBJECT_WRITE_SPACING && now + OBJECT_WRITE_SPACING > at)
        {
            return;
        }
        self.starts_swept_at = Some(now);
        self.recent_starts.retain(|_, last| {
            now < *last + OBJECT_WRITE_SPACING && now + OBJECT_WRITE_SPACING > *last
        });
    }

    /// Rows past `before` that no job object can hold: the cursor passes
    /// them, its next save records them, and one line names them.
    fn set_aside_found(&mut self, rows: Vec<Unreadable>, before: Seq, recorded: u64) {
        let (gone, found): (Vec<Unreadable>, Vec<Unreadable>) = rows
            .into_iter()
            .filter(|row| row.seq > before)
            .partition(|row| row.deleted);
        let last = gone.iter().chain(&found).map(|row| row.seq).max();
        self.frontier = self.frontier.max(last.unwrap_or(0));
        if !gone.is_empty() {
            warn!(
                rows = gone.len(),
                found = %Named(&gone),
                "deletions of jobs no job object can name: the snapshots taken while they lived \
                 hold them, so a snapshot is owed"
            );
            self.unsnapshotted.extend(gone.iter().map(|row| row.seq));
        }
        if !found.is_empty() {
            warn!(
                rows = found.len(),
                found = %Named(&found),
                "job rows no job object can hold are set aside: the cursor passes them, the database \
                 records them, and jobvault_jobs_set_aside counts them until a writer fixes or deletes each"
            );
        }
        self.set_aside.found(found, recorded);
    }

    fn has_room_for_a_read(&self) -> bool {
        self.max_pending - self.window.len() >= self.max_pending.div_ceil(2)
            && self.held_bytes <= self.max_pending_bytes / 2
    }

    /// The read a commit noticed now would bring ([`Self::on_database_changed`]),
    /// while running: a drain asks for its reads itself.
    pub fn read_at_next_commit(&self) -> Option<ReadOrder> {
        if self.mode != Mode::Running || !self.has_room_for_a_read() {
            return None;
        }
        self.next_read()
    }

    /// The read to ask for now, if any.
    fn next_read(&self) -> Option<ReadOrder> {
        let done = match self.mode {
            Mode::Running => false,
            Mode::Draining(drain) => drain.target.is_some_and(|target| self.frontier >= target),
            Mode::Halted => true,
        };
        if done || self.read.is_some() || self.raise.is_some() {
            return None;
        }
        let limit = self.max_pending - self.window.len();
        let max_bytes = self.max_pending_bytes.saturating_sub(self.held_bytes);
        (limit > 0 && max_bytes > 0).then_some(ReadOrder {
            after: self.frontier,
            limit,
            max_bytes,
            basis: ReadBasis {
                durable: self.durable,
                newest: self.newest,
                leased: self.leased,
            },
        })
    }

    /// Cursors the database may hold when a read runs: the one stored, and
    /// the one being saved.
    fn expected(&self) -> Vec<Cursor> {
        let mut expected = vec![self.durable];
        expected.extend(self.saving.filter(|s| !s.stale).map(|s| s.cursor));
        expected
    }

    fn read_changes(&mut self, cx: &mut Context) {
        let Some(order) = self.next_read() else {
            return;
        };
        self.read = Some(ReadInFlight {
            read_at: cx.now,
            steps_back: self.steps_back,
            expected: self.expected(),
            draining: matches!(self.mode, Mode::Draining(_)),
        });
        cx.out.push_back(Command::ReadChanges {
            after: order.after,
            limit: order.limit,
            max_bytes: order.max_bytes,
        });
    }

    /// Saves the cursor if it moved: if its sequence did, at once while
    /// stopping and at most every [`SEQ_SAVE_SPACING`] while running, and
    /// once an interval if only its time did. A save is a commit the driver
    /// notices ([`super::Input::DatabaseChanged`]), and the read it brings
    /// moves the time again: saving every such move would go round for as
    /// long as the daemon runs. An older time is only more cautious (a
    /// restore looks further back).
    fn save(&mut self, cx: &mut Context) {
        let time_only = self.covered.seq == self.durable.seq;
        // A clock stepped back before the last save does not hold this one.
        let spaced = self.mode == Mode::Running
            && self.last_save.is_some_and(|last| {
                last <= cx.now && cx.now < last.saturating_add(SEQ_SAVE_SPACING)
            });
        if self.saving.is_some()
            || self.covered == self.durable
            || (time_only && self.covered.time < self.durable.time + self.time_only_saves)
            || (!time_only && spaced)
        {
            return;
        }
        self.last_save = Some(cx.now);
        self.saving = Some(Saving {
            cursor: self.covered,
            stale: false,
        });
        if let Some(read) = &mut self.read {
            read.expected.push(self.covered);
        }
        cx.out.push_back(Command::SaveCursor {
            expected: self.durable,
            new: self.covered,
            set_aside: self.set_aside.to_record(self.covered.seq),
        });
    }

    /// Every version up to `target` is uploaded: the cursor passes it, or
    /// only deletions no snapshot holds yet keep it below
    /// ([`Self::unsnapshotted`], which the machine reports at a stop).
    fn uploaded_through(&self, target: Seq) -> bool {
        self.covered.seq >= target
            || (!self.unsnapshotted.is_empty()
                && self.frontier >= target
                && self
                    .window
                    .range(..=target)
                    .all(|(&seq, (id, _))| self.uploaded(id, seq)))
    }

    /// Version `seq` of job `id` is in the bucket, as an upload answered it.
    fn uploaded(&self, id: &JobId, seq: Seq) -> bool {
        self.slots[id].uploaded >= Some(seq)
    }

    /// Moves `covered` over the window's prefix of versions in the bucket, and
    /// its time over the batches that prefix completes.
    fn advance(&mut self) {
        let held = self.unsnapshotted.first().map_or(Seq::MAX, |seq| seq - 1);
        while let Some((&seq, (id, _))) = self.window.first_key_value() {
            if seq > held || !self.uploaded(id, seq) {
                break;
            }
            let (_, (id, bytes)) = self.window.pop_first().expect("the first entry");
            self.held_bytes -= bytes;
            self.slots
                .get_mut(&id)
                .expect("window entries have a slot")
                .refs -= 1;
            self.forget_if_idle(&id);
            self.covered.seq = seq;
            if let Mode::Draining(drain) = &mut self.mode {
                drain.passed += 1;
            }
        }
        if self.window.is_empty() {
            self.covered.seq = self.frontier.min(held);
        }
        while let Some(batch) = self.batches.front() {
            if batch.last_seq > self.covered.seq {
                break;
            }
            if batch.complete {
                self.covered.time = self.covered.time.max(batch.read_at);
                if batch.steps_back == self.steps_back {
                    self.caught_up = batch.read_at;
                }
            }
            self.batches.pop_front();
        }
    }

    /// Every change committed before this time is in the bucket: when the
    /// last read whose changes are all covered began (`None` before this
    /// process's first such read or after a feed reset, and since the
    /// clock, reading `now`, stepped back before it). It moves with the
    /// cover, not only once the window is empty and the cursor saved: a
    /// job rewritten more often than its object may be written (once a
    /// second) keeps the window from ever emptying, and a hostile trial's
    /// daemon, uploading every change, said for 11 minutes that it had not
    /// caught up. Dated by the clock when an answer came instead, it
    /// promised the commits made since that read, which the watcher may
    /// not have noticed yet.
    pub fn caught_up_to(&self, now: Timestamp) -> Option<Timestamp> {
        (self.caught_up != Timestamp::UNIX_EPOCH && self.caught_up <= now).then_some(self.caught_up)
    }

    /// The clock reads `now`. One that reads before its last reading, or
    /// before the caught-up time, stepped back: a time it read before is
    /// ahead of it, so an alert on the figure's age cannot fire, and by the
    /// clock as it reads now the figure promises commits no read has seen.
    /// It says nothing until a read begun since is covered (the next step
    /// reads the feed). A step back shorter than the gap between two calls
    /// is not seen: the promise then reaches past the truth by at most that
    /// step.
    pub fn clock_reads(&mut self, now: Timestamp) {
        let stepped_back = now < self.clock;
        self.steps_back += u64::from(stepped_back);
        if stepped_back || self.caught_up > now {
            self.caught_up = Timestamp::UNIX_EPOCH;
        }
        self.clock = now;
    }

    fn forget_if_idle(&mut self, id: &JobId) {
        if let Some(slot) = self.slots.get(id)
            && slot.refs == 0
            && slot.in_flight.is_none()
            && slot.next.is_none()
        {
            self.slots.remove(id);
            self.waiting.remove(id);
        }
    }

    /// The database's cursor is not the one we stored: it was replaced or
    /// restored underneath us. Forget everything read and rescan from it.
    fn reset(&mut self, cx: &mut Context, stored: Cursor) {
        warn!(
            stored_seq = stored.seq,
            expected_seq = self.durable.seq,
            "the database's incremental cursor changed underneath jobvault; rescanning the change feed from it"
        );
        self.start_again(cx, stored);
    }

    /// The database went back to an older copy ([`super::went_back`]).
    /// Nothing more is read until the counter is raised past `past`, above
    /// every change of the database the bucket may hold.
    fn went_back(&mut self, cx: &mut Context, batch: ChangeBatch, past: Seq) {
        // Named for an operator reading the line: what the database says
        // now, against what jobvault had read and saved from it.
        error!(
            database_counter = batch.newest,
            database_cursor = batch.stored.seq,
            read_up_to = self.frontier,
            saved_cursor = self.durable.seq,
            lease_highest = self.leased.highest,
            lease_cursor = self.leased.cursor,
            numbering_after = past,
            "the job database went back to an older copy, or is another database than the one \
             the bucket prefix holds (its change counter or its cursor is behind what jobvault read \
             or the lease says the bucket holds: copied over in place, sqlite3 .restore, edited by \
             hand, or another database started on the prefix with --takeover); numbering its next \
             changes after what the bucket holds and taking a full snapshot to a fresh destination, \
             so that a restore gives this database; what it left behind stays in the bucket's \
             history (restore --at)"
        );
        cx.metrics.went_back += 1;
        self.leased = Leased::default();
        self.start_again(cx, batch.stored);
        self.raise = Some(Raise::new(past));
        self.raise_counter(cx);
    }

    fn raise_counter(&mut self, cx: &mut Context) {
        if self.mode == Mode::Halted {
            return;
        }
        if let Some(command) = self.raise.as_mut().and_then(Raise::command) {
            cx.out.push_back(command);
        }
    }

    /// Whether the counter is raised: the owner then makes the prefix new.
    #[must_use]
    pub fn on_counter_raised(&mut self, cx: &mut Context, result: Result<(), Failure>) -> bool {
        let Some(raise) = self.raise.as_mut().filter(|raise| raise.in_flight()) else {
            cx.unexpected(format_args!("counter raised with no raise outstanding"));
            return false;
        };
        if raise.on_raised(&result) {
            info!(
                past = raise.past,
                "the job database's change counter is raised; reading its changes again"
            );
            self.raise = None;
            self.raised_at = Some(cx.now);
            self.read_changes(cx);
            return true;
        }
        if let Err(failure) = result {
            warn!(error = %failure, "raising the job database's change counter failed; retrying at the next step");
        }
        false
    }

    /// What the counter is being raised past, while it is: the bucket may
    /// hold changes up to there, whatever the cursor says meanwhile.
    pub fn raising_past(&self) -> Option<Seq> {
        self.raise.map(|raise| raise.past)
    }

    /// Forgets the window and reads the feed again from `stored`.
    fn start_again(&mut self, cx: &mut Context, stored: Cursor) {
        cx.metrics.feed_resets_since_snapshot += 1;
        cx.metrics.cursor = stored;
        self.durable = stored;
        self.covered = stored;
        self.caught_up = Timestamp::UNIX_EPOCH;
        self.frontier = stored.seq;
        self.window.clear();
        self.unsnapshotted.clear();
        self.held_bytes = 0;
        self.set_aside.forget_unsaved();
        self.batches.clear();
        self.ready.clear();
        self.waiting.clear();
        self.held_until = None;
        self.more_to_read = false;
        // The target was the old feed's: the next read sets it again.
        if let Mode::Draining(drain) = &mut self.mode {
            drain.target = None;
        }
        if let Some(saving) = &mut self.saving {
            saving.stale = true;
        }
        self.slots.retain(|_, slot| slot.in_flight.is_some());
        for slot in self.slots.values_mut() {
            *slot = Slot {
                in_flight: slot.in_flight.take(),
                in_flight_stale: true,
                ..Slot::default()
            };
        }
        debug!(
            in_flight = self.slots.len(),
            "uploads still in flight across the reset"
        );
    }
}

/// What a version costs held in memory, as the window and the driver's
/// byte limit count it: its body (its id is at most 256 bytes).
fn weight(envelope: &Envelope) -> u64 {
    envelope.body().map_or(0, str::len) as u64
}
