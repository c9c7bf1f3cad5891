//! The invariants of DESIGN.md §6, checked against the simulated world.
//!
//! The checker sees what the core cannot: true time, every job version ever
//! committed, and every object in the bucket. It is told about each relevant
//! step as it happens and records a violation, in words, when one breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use std::time::Duration;

use jobvault_core::{Config, Cursor, Seq, Timestamp};

use crate::restore::Restored;
use crate::world::{Db, Store};

/// The largest error of the local clock the world injects: half of the
/// restore's clock allowance, as the restore runbook documents.
pub const MAX_CLOCK_ERROR: Duration = Duration::from_secs(300);

/// Violations kept per seed; one is enough to fail, a few help to debug.
const MAX_VIOLATIONS: usize = 10;

#[derive(Debug, Default)]
pub struct Checker {
    pub checks: u64,
    pub violations: Vec<String>,
    /// Snapshot attempts per trigger name, across restarts.
    attempts: BTreeMap<String, u32>,
    /// Local time at which each feed read was issued → true time of issue.
    reads: BTreeMap<Timestamp, Timestamp>,
    /// Rows up to this sequence were found in the bucket when a saved cursor
    /// passed them; the bucket only grows, so they need no second look.
    checked_seq: Seq,
    /// Likewise for rows committed before this true time.
    checked_commit: Timestamp,
}

impl Checker {
    pub fn violation(&mut self, what: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(what);
        }
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.violation(what());
        }
    }

    /// Invariant 3: a trigger is attempted at most `max` times.
    pub fn count_attempt(&mut self, trigger: &str, max: u32) {
        let attempts = self.attempts.entry(trigger.to_owned()).or_default();
        *attempts += 1;
        let attempts = *attempts;
        self.check(attempts <= max, || {
            format!("trigger {trigger} attempted {attempts} times, more than {max}")
        });
    }

    pub fn note_read(&mut self, local: Timestamp, true_time: Timestamp) {
        self.reads.insert(local, true_time);
    }

    /// The change feed is rescanned only when someone else changed the
    /// stored cursor; a reset for any other reason re-uploads for nothing.
    pub fn check_reset_explained(&mut self, explained: bool) {
        self.check(explained, || {
            "the change feed was reset though nobody else changed the stored cursor".to_owned()
        });
    }

    /// Invariant 5: uploads in flight and jobs held stay within their bounds.
    pub fn check_bounds(&mut self, uploads_in_flight: usize, pending: usize, config: &Config) {
        self.check(uploads_in_flight <= config.concurrency, || {
            format!(
                "{uploads_in_flight} uploads in flight, more than the bound {}",
                config.concurrency
            )
        });
        self.check(pending <= config.max_pending, || {
            format!(
                "{pending} jobs held in memory, more than the bound {}",
                config.max_pending
            )
        });
    }

    /// Invariant 2, when a cursor save lands: the cursor never moves back,
    /// and never past a job version that is not in the bucket, by sequence or
    /// by time.
    pub fn check_save(&mut self, db: &Db, store: &Store, expected: Cursor, new: Cursor) {
        self.check(new.seq >= expected.seq && new.time >= expected.time, || {
            format!("cursor moved backwards from {expected:?} to {new:?}")
        });
        let unchecked = (self.checked_seq < new.seq).then(|| {
            db.by_seq
                .range((Bound::Excluded(self.checked_seq), Bound::Included(new.seq)))
        });
        let missing_by_seq = unchecked
            .into_iter()
            .flatten()
            .find(|(seq, id)| !store.covers(id, **seq))
            .map(|(seq, id)| (id.clone(), *seq));
        self.check(missing_by_seq.is_none(), || {
            let (id, seq) = missing_by_seq
                .clone()
                .expect("only called when something is missing");
            format!(
                "cursor saved at seq {} passes job {id} version {seq}, which is not in the bucket",
                new.seq
            )
        });
        self.checked_seq = self.checked_seq.max(new.seq);
        if new.time == expected.time {
            return;
        }
        let Some(&read_issued) = self.reads.get(&new.time) else {
            self.violation(format!(
                "cursor time {} is not the time at which any feed read was issued",
                new.time
            ));
            return;
        };
        let unchecked = (self.checked_commit < read_issued).then(|| {
            db.by_commit.range((
                Bound::Included((self.checked_commit, 0)),
                Bound::Excluded((read_issued, 0)),
            ))
        });
        let missing_by_time = unchecked
            .into_iter()
            .flatten()
            .find(|((_, seq), id)| !store.covers(id, *seq))
            .map(|((committed, seq), id)| (id.clone(), *seq, *committed));
        self.check(missing_by_time.is_none(), || {
            let (id, seq, committed) = missing_by_time.clone().expect("checked");
            format!(
                "cursor time {} (a read issued at true time {read_issued}) passes job {id} \
                 version {seq} committed at {committed}, which is not in the bucket",
                new.time
            )
        });
        self.checked_commit = self.checked_commit.max(read_issued);
        self.reads = self.reads.split_off(&new.time);
    }

    /// Invariant 1 while faults go on: a restore now holds every version the
    /// stored cursor says is safe.
    pub fn check_restore_covers_cursor(&mut self, db: &Db, store: &Store, restored: &Restored) {
        self.check_restore_reads_little(store, restored);
        let restored = &restored.versions;
        let stored = db.stored.seq;
        let missing = db
            .by_seq
            .range(..=stored)
            .find(|(seq, id)| restored.get(*id).is_none_or(|got| got < *seq))
            .map(|(seq, id)| (id.clone(), *seq));
        self.check(missing.is_none(), || {
            let (id, seq) = missing.clone().expect("only called when something is missing");
            format!(
                "a restore now lacks job {id} version {seq}, though the stored cursor is at {stored}"
            )
        });
    }

    /// Invariants 1 and 3 once the system has quiesced: a restore equals the
    /// database, job for job.
    pub fn check_final(&mut self, db: &Db, store: &Store, restored: &Restored) {
        self.check_restore_reads_little(store, restored);
        let restored = &restored.versions;
        let expected = db.versions();
        let differences: Vec<String> = expected
            .iter()
            .filter(|(id, seq)| restored.get(*id) != Some(*seq))
            .map(|(id, seq)| format!("{id}: database {seq}, restored {:?}", restored.get(id)))
            .chain(
                restored
                    .keys()
                    .filter(|id| !expected.contains_key(*id))
                    .map(|id| format!("{id}: restored but not in the database")),
            )
            .take(5)
            .collect();
        self.check(differences.is_empty(), || {
            format!(
                "after quiescing, a restore differs from the database: {}",
                differences.join("; ")
            )
        });
    }

    /// Invariant 7: a restore starts from the newest snapshot the store
    /// wrote, so it fetches only the job objects uploaded since (less the
    /// clock allowance), not every one since an older snapshot.
    fn check_restore_reads_little(&mut self, store: &Store, restored: &Restored) {
        let chosen = restored.snapshot.as_ref().map(|s| &s.object);
        self.check(chosen == store.newest_snapshot.as_ref(), || {
            format!(
                "a restore started from snapshot {chosen:?}, not from the newest one, {:?}",
                store.newest_snapshot
            )
        });
        let Some(newest) = restored.snapshot.as_ref() else {
            return;
        };
        let floor = newest.time - MAX_CLOCK_ERROR - MAX_CLOCK_ERROR;
        let early = restored
            .fetched_uploads
            .iter()
            .filter(|&&at| at < floor)
            .count();
        self.check(early == 0, || {
            format!(
                "a restore from {} (time {}) fetched {early} job objects uploaded before {floor}",
                newest.object, newest.time
            )
        });
    }

    /// Every immediate-backup request is answered exactly once.
    pub fn check_immediate_answered_once(&mut self, id: u64, asked: bool) {
        self.check(asked, || {
            format!("immediate backup {id} was answered, but it was not waiting")
        });
    }

    /// A core that exits after a graceful stop has answered every
    /// immediate-backup request: nobody would after it.
    pub fn check_immediate_all_answered(&mut self, unanswered: &BTreeSet<u64>) {
        self.check(unanswered.is_empty(), || {
            format!("the core exited with immediate backups {unanswered:?} unanswered")
        });
    }

    /// Nothing silent: every report the core got answered something it had
    /// asked for.
    pub fn check_no_unexpected_reports(&mut self, unexpected: u64) {
        self.check(unexpected == 0, || {
            format!("the core dropped {unexpected} reports that answered nothing outstanding")
        });
    }
}
