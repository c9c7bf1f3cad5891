//! The invariants of DESIGN.md §6, each its own checker, all fed one stream
//! of observations.
//!
//! The simulation reports what happens as an [`Observation`]; every checker
//! sees every observation, with the [`World`] as it is at that moment, and
//! keeps what it needs. A checker sees what the core cannot: true time, every
//! job version ever committed, and every object in the bucket. Adding an
//! invariant is one checker and its line in [`Checkers::new`]; faults live
//! apart, in `faults.rs`, and never decide what counts as a violation.

mod bucket;
mod cursor;
mod history;
mod lease;
mod process;
mod recovery_point;
mod restore;
mod store;

pub use restore::MAX_CLOCK_ERROR;

use std::collections::BTreeSet;
use std::time::Duration;

use jobvault_core::commit_watch::Watch;
use jobvault_core::lease::Holder;
use jobvault_core::{Command, Config, Cursor, Seq, Stopped, Timestamp};

use crate::restore::Restored;
use crate::world::World;

/// Violations kept per seed; one is enough to fail, a few help to debug.
const MAX_VIOLATIONS: usize = 10;

/// Something that happened, as the checkers are told of it.
#[derive(Debug)]
pub enum Observation<'a> {
    /// The core started a snapshot attempt for a trigger: which process
    /// (node and its start), at what time of its clock.
    TriggerAttempt {
        trigger: &'a str,
        process: (usize, u64),
        local: Timestamp,
    },
    /// The core issued a feed read at this local and true time.
    FeedRead {
        local: Timestamp,
        true_time: Timestamp,
    },
    /// A core started, fresh: after a crash, or at the start of the day;
    /// with it, this many run on its host.
    CoreStarted { running_here: usize },
    /// A daemon issued a write to what daemons share (the bucket, the
    /// stored cursor, the trigger files).
    SharedWrite {
        writer: &'a Holder,
        command: &'a Command,
        true_time: Timestamp,
    },
    /// A daemon's snapshot or job object landed in the bucket.
    Landed { writer: &'a Holder, object: &'a str },
    /// The core started an upload; the counts include it. `held`: the
    /// versions it holds in memory, and their bodies' bytes.
    UploadStarted {
        node: usize,
        object: &'a str,
        true_time: Timestamp,
        in_flight: usize,
        held: (usize, u64),
    },
    /// A job object landed; `replaced` is the version it overwrote, if any.
    JobWritten {
        object: &'a str,
        seq: Seq,
        replaced: Option<Seq>,
    },
    /// A cursor save is about to land in the database.
    CursorSaving { expected: Cursor, new: Cursor },
    /// The core rescanned its change feed; `explained` if someone else had
    /// rewound the stored cursor.
    FeedReset { explained: bool },
    /// The core took a report; its count of reports that answered nothing.
    Reported { unexpected: u64 },
    /// A daemon's core took a report; what a renewal of its lease would say
    /// then (its cursor, and the highest change the bucket may hold);
    /// `lease_trouble` if the report was a lease read or write that failed.
    LeaseKept {
        writer: &'a Holder,
        progress: (Seq, Seq),
        lease_trouble: bool,
        true_time: Timestamp,
    },
    /// A daemon issued a write of the lease (a renewal, or giving it back)
    /// saying `progress`, as in [`Observation::LeaseKept`].
    LeaseWriteIssued {
        writer: &'a Holder,
        progress: (Seq, Seq),
        true_time: Timestamp,
    },
    /// The core answered immediate-backup request `id`; `waiting` if it was.
    ImmediateAnswered { id: u64, waiting: bool },
    /// The core exited after a graceful stop with these requests unanswered.
    Exited { unanswered: &'a BTreeSet<u64> },
    /// A stop asked for at true time `asked_at`, with the database's
    /// change counter at `counter`, ended so.
    Stopped {
        asked_at: Timestamp,
        counter: Seq,
        outcome: Stopped,
    },
    /// A restore of the bucket as it is now, faults or not.
    Restored(&'a Restored),
    /// A restore after the faults stopped and the system quiesced.
    Quiesced(&'a Restored),
    /// A daemon's watcher looked for commits, `waited` after the first it
    /// had not looked at, learning of commits by `watch`; `prompt` when it
    /// did not miss that one (its notice was not dropped).
    CommitLooked {
        waited: Duration,
        watch: Watch,
        prompt: bool,
    },
    /// The system quiesced; the holder's count of rows set aside.
    SetAsideCounted { counted: u64 },
    /// The system quiesced; as of when the holder says it is caught up
    /// (`jobvault_incremental_backup_timestamp_seconds`), and the time of
    /// the cursor its database stores, by its clock.
    QuietHolder {
        caught_up: Option<Timestamp>,
        stored: Timestamp,
    },
    /// A daemon's caught-up figure read `local` (its clock) after a call
    /// at `true_time`, when its clock read `local_now`.
    SaidCaughtUp {
        local: Timestamp,
        local_now: Timestamp,
        true_time: Timestamp,
    },
    /// A restore to local time `at`, in the bucket's history.
    PastRestored {
        at: Timestamp,
        /// Inside the window kept; before it, a prune may have given the
        /// instant up, and the restore must then refuse.
        kept: bool,
        result: &'a history::PastResult,
    },
}

/// One invariant.
pub trait Invariant {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts);
}

/// Checks made and violations found.
#[derive(Debug, Default)]
pub struct Verdicts {
    pub checks: u64,
    pub violations: Vec<String>,
}

impl Verdicts {
    /// Counts a check; records `what` if it failed.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.violation(what());
        }
    }

    pub fn violation(&mut self, what: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(what);
        }
    }
}

/// Every invariant, and what they found.
pub struct Checkers {
    invariants: Vec<Box<dyn Invariant>>,
    pub verdicts: Verdicts,
}

impl Checkers {
    /// The checkers for a day run with `config`; `calm` if it injects no
    /// fault at all.
    pub fn new(config: &Config, calm: bool) -> Self {
        let invariants: Vec<Box<dyn Invariant>> = vec![
            Box::new(restore::NoLostVersion),
            Box::new(cursor::HonestCursor::default()),
            Box::new(cursor::SetAsideCounted),
            Box::new(cursor::CaughtUpSaid),
            Box::new(cursor::CaughtUpHonest::new(config)),
            Box::new(cursor::DrainedStop),
            Box::new(process::TriggerAttempts::new(config)),
            Box::new(bucket::NewestWins),
            Box::new(process::Bounds::new(config)),
            Box::new(restore::OnePlanner),
            Box::new(process::ResetsExplained),
            Box::new(process::NothingSilent),
            Box::new(process::ImmediateAnswered),
            Box::new(store::ObjectWriteSpacing::default()),
            Box::new(store::RefusingStoreSpared::new(config)),
            Box::new(recovery_point::RecoveryPoint::new(calm)),
            Box::new(recovery_point::PromptLook),
            Box::new(history::PastRestores),
            Box::new(lease::OneWriter::new(config)),
            Box::new(lease::OneDaemonPerHost),
            Box::new(lease::LeaseFollowsCursor::new(config)),
        ];
        Checkers {
            invariants,
            verdicts: Verdicts::default(),
        }
    }

    pub fn observe(&mut self, seen: Observation, world: &World) {
        for invariant in &mut self.invariants {
            invariant.observe(&seen, world, &mut self.verdicts);
        }
    }
}
