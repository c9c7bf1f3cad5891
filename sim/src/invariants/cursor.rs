//! Invariant 2: the incremental cursor never moves back, and never past a
//! job version that is not in the bucket, by sequence or by time, unless
//! the database records that version as set aside. Once quiet, the count of
//! rows set aside is the count of rows no job object can hold. A stop that
//! says it drained left no change committed before it out of the bucket.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use jobvault_core::destination::DestinationId;
use jobvault_core::{Config, Cursor, JobId, Seq, Stopped, Timestamp};

use super::{Invariant, Observation, Verdicts};
use crate::world::{Db, JobVersion, Store, World};

#[derive(Default)]
pub struct HonestCursor {
    /// Local time at which each feed read was issued → true time of issue.
    reads: BTreeMap<Timestamp, Timestamp>,
    /// Rows up to this sequence were found in the bucket when a saved cursor
    /// passed them; the bucket only grows, so they need no second look.
    checked_seq: Seq,
    /// Likewise for rows committed before this true time.
    checked_commit: Timestamp,
    /// The destination the checks so far were made against: when the
    /// cursor starts speaking for another (a wiped bucket refilled), every
    /// row is looked at again.
    vouched: Option<DestinationId>,
}

impl Invariant for HonestCursor {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        match *seen {
            Observation::FeedRead { local, true_time } => {
                self.reads.insert(local, true_time);
            }
            Observation::CursorSaving { expected, new } => {
                verdicts.check(new.seq >= expected.seq && new.time >= expected.time, || {
                    format!("cursor moved backwards from {expected:?} to {new:?}")
                });
                // Until the database records the bucket's destination, the
                // cursor claims nothing about this bucket.
                let vouched = world.vouched();
                if vouched.is_none() {
                    return;
                }
                if vouched != self.vouched {
                    self.vouched = vouched;
                    self.checked_seq = 0;
                    self.checked_commit = Timestamp::UNIX_EPOCH;
                }
                self.check_seq(&world.db, &world.store, new, verdicts);
                if new.time != expected.time {
                    self.check_time(&world.db, &world.store, new, verdicts);
                }
            }
            _ => {}
        }
    }
}

/// Version `seq` of job `id` is in the bucket, or recorded as set aside, or
/// of a job whose id no object can name: the cursor passes its deletion,
/// which reaches the bucket with the snapshot owed for it (`DrainedStop`
/// and a restore once quiesced check that).
fn accounted(db: &Db, store: &Store, id: &JobId, seq: Seq) -> bool {
    store.covers(id, seq) || db.set_aside.get(id) == Some(&seq) || db.nameless.contains(id)
}

/// A stop that ends [`Stopped::Drained`] (exit 0) has every job as the
/// database held it when the stop was asked for in the bucket (or a newer
/// version); one that ends otherwise says so by its exit. A version no job
/// object can hold is not in the bucket, so a stop over one is not drained
/// (it exited 0 over rows set aside, and a restore lacked them).
/// A bucket wiped before or during the drain makes it say so: its first
/// snapshot has not landed, or the lease is found gone (while held, or as
/// it is given back), or giving it back fails, so it is not seen at the end.
pub struct DrainedStop;

impl Invariant for DrainedStop {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        let Observation::Stopped {
            asked_at,
            counter,
            outcome: Stopped::Drained { changes, .. },
        } = *seen
        else {
            return;
        };
        // Each job as the database held it at the stop: its newest change.
        let at_stop: BTreeMap<&JobId, &JobVersion> = world
            .db
            .history
            .iter()
            .take_while(|(_, held)| held.seq <= counter)
            .map(|(id, held)| (id, held))
            .collect();
        let missing = at_stop
            .into_iter()
            .find(|(id, held)| !world.store.covers(id, held.seq));
        verdicts.check(missing.is_none(), || {
            let (id, held) = missing.expect("checked");
            format!(
                "a stop asked for at {asked_at} ended drained ({changes} changes), but job {id} \
                 version {} (the counter stood at {counter}) is not in the bucket",
                held.seq
            )
        });
    }
}

/// Once quiet, a holder that says it is caught up says so as of its stored
/// cursor's time or later: everything that cursor passes is in the bucket.
/// (One that has not checked the prefix's destination yet, its check
/// failing, says nothing.) The alert on that figure pages when it stops
/// moving; a daemon caught up that did not say so until its next save of
/// the cursor's time alone (an interval, an hour for some) pages for
/// nothing, and teaches its operator to ignore it.
pub struct CaughtUpSaid;

impl Invariant for CaughtUpSaid {
    fn observe(&mut self, seen: &Observation, _world: &World, verdicts: &mut Verdicts) {
        let Observation::QuietHolder { caught_up, stored } = *seen else {
            return;
        };
        verdicts.check(caught_up.is_none_or(|at| at >= stored), || {
            format!(
                "once quiet, the holder says it is caught up as of {caught_up:?}, before the \
                 time of the cursor its database stores, {stored}"
            )
        });
    }
}

/// A daemon that says it is caught up as of a time
/// (`jobvault_incremental_backup_timestamp_seconds`) has every job version
/// committed before that time in the bucket, but for rows no job object can
/// hold: those are set aside as they are read, counted at once
/// (`jobvault_jobs_set_aside`) and recorded at the next save of the cursor
/// (`SetAsideCounted` checks the record). An operator
/// reads that figure as "everything before this is safe"; one dated by the
/// clock when the last upload was answered claimed the commits its watcher
/// had not noticed yet. Checked after every call of the core, against the
/// later of two true times: the issue of the feed read it names, and the
/// figure by the clock's offset now, as the operator's alert reads it (a
/// clock stepped forward and back left the figure ahead of the clock, and
/// said 4,000 rows not uploaded were safe; a hostile trial). A step back
/// shorter than the gap between two calls (an interval at most) cannot be
/// told from time passing, so the second reading is allowed that much.
pub struct CaughtUpHonest {
    /// The longest a clock may step back unseen: the longest gap between
    /// two calls of the core.
    unseen_step: Duration,
    /// Local time at which each feed read was issued → true time of issue.
    reads: BTreeMap<Timestamp, Timestamp>,
    /// Versions committed before this true time were found in the bucket
    /// (of the destination below); the bucket only grows.
    checked_commit: Timestamp,
    vouched: Option<DestinationId>,
}

impl CaughtUpHonest {
    pub fn new(config: &Config) -> Self {
        CaughtUpHonest {
            unseen_step: config.interval,
            reads: BTreeMap::new(),
            checked_commit: Timestamp::UNIX_EPOCH,
            vouched: None,
        }
    }
}

impl Invariant for CaughtUpHonest {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        match *seen {
            Observation::FeedRead { local, true_time } => {
                self.reads.insert(local, true_time);
            }
            Observation::SaidCaughtUp {
                local,
                local_now,
                true_time,
            } => {
                let vouched = world.vouched();
                if vouched.is_none() {
                    return;
                }
                if vouched != self.vouched {
                    self.vouched = vouched;
                    self.checked_commit = Timestamp::UNIX_EPOCH;
                }
                let by_offset = Timestamp::from_unix_nanos(
                    true_time.unix_nanos() - (local_now.unix_nanos() - local.unix_nanos()).max(0),
                );
                let as_of = self.reads.get(&local).map_or(by_offset, |&read| {
                    read.max(by_offset - self.unseen_step).min(true_time)
                });
                if as_of <= self.checked_commit {
                    return;
                }
                let (db, store) = (&world.db, &world.store);
                let missing = first_committed_between(db, self.checked_commit, as_of, |id, seq| {
                    !store.covers(id, seq) && !is_bad(db, id, seq)
                });
                verdicts.check(missing.is_none(), || {
                    let ((committed, seq), id) = missing.expect("checked");
                    format!(
                        "a daemon said it was caught up as of {local} (true time {as_of}), but \
                         job {id} version {seq}, committed at {committed}, is not in the bucket"
                    )
                });
                self.checked_commit = as_of;
            }
            _ => {}
        }
    }
}

/// The first version committed in `[from, until)` (true times) for which
/// `missing` holds.
fn first_committed_between(
    db: &Db,
    from: Timestamp,
    until: Timestamp,
    mut missing: impl FnMut(&JobId, Seq) -> bool,
) -> Option<((Timestamp, Seq), JobId)> {
    // `range` panics on a start past its end.
    (from < until)
        .then(|| {
            db.by_commit
                .range((Bound::Included((from, 0)), Bound::Excluded((until, 0))))
        })
        .into_iter()
        .flatten()
        .find(|((_, seq), id)| missing(id, *seq))
        .map(|(at, id)| (*at, id.clone()))
}

/// Version `seq` of job `id` is a row no job object can hold, or of a job
/// whose id no object can name (its deletion is in the bucket only once the
/// snapshot owed for it lands).
fn is_bad(db: &Db, id: &JobId, seq: Seq) -> bool {
    db.nameless.contains(id)
        || db
            .rows
            .get(id)
            .is_some_and(|row| row.held.seq == seq && row.held.bad)
}

/// Once quiet, the holder counts every row no job object can hold, and the
/// database records each.
pub struct SetAsideCounted;

impl Invariant for SetAsideCounted {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        let Observation::SetAsideCounted { counted } = *seen else {
            return;
        };
        let bad: BTreeMap<&JobId, Seq> = world.db.bad_rows().collect();
        let recorded: BTreeMap<&JobId, Seq> = world
            .db
            .set_aside
            .iter()
            .map(|(id, seq)| (id, *seq))
            .collect();
        verdicts.check(recorded == bad, || {
            format!("once quiet, the database records {recorded:?} as set aside, not the bad rows {bad:?}")
        });
        verdicts.check(counted == bad.len() as u64, || {
            format!(
                "once quiet, jobvault_jobs_set_aside reads {counted}, not the {} bad rows",
                bad.len()
            )
        });
    }
}

impl HonestCursor {
    /// Every version up to the new sequence is in the bucket.
    fn check_seq(&mut self, db: &Db, store: &Store, new: Cursor, verdicts: &mut Verdicts) {
        let unchecked = (self.checked_seq < new.seq).then(|| {
            db.by_seq
                .range((Bound::Excluded(self.checked_seq), Bound::Included(new.seq)))
        });
        let missing = unchecked
            .into_iter()
            .flatten()
            .find(|(seq, id)| !accounted(db, store, id, **seq));
        verdicts.check(missing.is_none(), || {
            let (seq, id) = missing.expect("only called when something is missing");
            format!(
                "cursor saved at seq {} passes job {id} version {seq}, which is not in the bucket",
                new.seq
            )
        });
        self.checked_seq = self.checked_seq.max(new.seq);
    }

    /// The new time is that of a feed read, and every version committed
    /// before that read was issued is in the bucket.
    fn check_time(&mut self, db: &Db, store: &Store, new: Cursor, verdicts: &mut Verdicts) {
        let Some(&read_issued) = self.reads.get(&new.time) else {
            verdicts.violation(format!(
                "cursor time {} is not the time at which any feed read was issued",
                new.time
            ));
            return;
        };
        let missing = first_committed_between(db, self.checked_commit, read_issued, |id, seq| {
            !accounted(db, store, id, seq)
        });
        verdicts.check(missing.is_none(), || {
            let ((committed, seq), id) = missing.expect("checked");
            format!(
                "cursor time {} (a read issued at true time {read_issued}) passes job {id} \
                 version {seq} committed at {committed}, which is not in the bucket",
                new.time
            )
        });
        self.checked_commit = self.checked_commit.max(read_issued);
        self.reads = self.reads.split_off(&new.time);
    }
}
