//! History in the simulated day: whether the bucket keeps versions, whether
//! and how far back retention prunes, and the restores to past instants
//! that check both.
//!
//! A seed draws its own: versioning on in three seeds of four, retention in
//! one of two, with a window of 2 to 8 hours so that prunes delete within
//! the day. Every hour a retention seed prunes, now and then cut short as by
//! a crash; then a versioned seed restores to an instant drawn from the
//! window and the checkers compare it with the database as it was then.

use std::time::Duration;

use jobvault_core::Timestamp;

use crate::invariants::{Checkers, MAX_CLOCK_ERROR, Observation};
use crate::restore::{ReadFaults, restore_at};
use crate::world::World;

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct History {
    pub versioned: bool,
    /// `run --keep`: `None` when the seed does not prune.
    pub keep: Option<Duration>,
    /// Local time from which the bucket holds history: the start of the
    /// day, or when the database recorded a wiped bucket's new destination;
    /// `None` between the wipe and then.
    start: Option<Timestamp>,
    rng: fastrand::Rng,
}

impl History {
    pub fn draw(mut rng: fastrand::Rng, start: Timestamp) -> Self {
        let versioned = rng.u8(0..4) != 0;
        let keep = rng
            .bool()
            .then(|| HOUR * 2 + Duration::from_secs(rng.u64(0..6 * 3600)));
        History {
            versioned,
            keep,
            start: Some(start),
            rng,
        }
    }

    /// The hourly check: with versioning, a restore to a past instant.
    pub fn check(
        &mut self,
        world: &World,
        now: Timestamp,
        faults: ReadFaults,
        checkers: &mut Checkers,
    ) {
        // A restore of the past reads every generation since its base: one
        // check in three keeps the seeds quick.
        if self.rng.u8(0..3) != 0 {
            return;
        }
        if let Some((at, kept)) = self.past_instant(world, now) {
            let result = restore_at(&world.store, at, now, faults, &mut self.rng);
            checkers.observe(
                Observation::PastRestored {
                    at,
                    kept,
                    result: &result,
                },
                world,
            );
        }
    }

    /// The bucket's history starts again at `since` (`None`: not yet).
    pub fn restart(&mut self, since: Option<Timestamp>) {
        self.start = since;
    }

    /// An instant whose every change is in the bucket: before the stored
    /// cursor's time, less twice the clock's error; inside the window kept
    /// (`true`), or, one time in three, from before it.
    fn past_instant(&mut self, world: &World, now: Timestamp) -> Option<(Timestamp, bool)> {
        let start = self.start.filter(|_| self.versioned)?;
        let window = self.keep.map(|keep| now - keep).filter(|w| *w > start);
        let newest = world.db.stored.time - MAX_CLOCK_ERROR * 2;
        let (oldest, newest, kept) = match window {
            Some(window) if self.rng.u8(0..3) == 0 => (start, window.min(newest), false),
            Some(window) => (window, newest, true),
            None => (start, newest, true),
        };
        let span = newest.unix_nanos().checked_sub(oldest.unix_nanos())?;
        let at = Timestamp::from_unix_nanos(oldest.unix_nanos() + self.rng.i64(0..span.max(1)));
        (span > 0).then_some((at, kept))
    }
}
