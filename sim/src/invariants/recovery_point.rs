//! Changes reach the bucket within a second, not at the next interval.
//!
//! The first release read its change feed every 10 s, so a committed job
//! waited 5 s on average before its upload even started. Now the driver
//! reports each commit it notices (`Input::DatabaseChanged`) and the core
//! reads the feed at once. On a calm day (no fault of any kind) the median
//! time from a commit to its version landing in the bucket must stay under
//! [`PROMPT`]: a watcher's look, a read and an upload, or a hot job's wait
//! for its one write a second. The median, because one store call in fifty
//! is slow on purpose, and a version superseded before its upload is not
//! counted (its job's newer version is).

use std::time::Duration;

use jobvault_core::commit_watch::Watch;

use super::{Invariant, Observation, Verdicts};
use crate::world::{Body, World};

/// The longest median time from commit to bucket on a calm day.
pub const PROMPT: Duration = Duration::from_secs(1);

pub struct RecoveryPoint {
    calm: bool,
    lags: Vec<Duration>,
}

impl RecoveryPoint {
    pub fn new(calm: bool) -> Self {
        RecoveryPoint {
            calm,
            lags: Vec::new(),
        }
    }
}

impl Invariant for RecoveryPoint {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        if !self.calm {
            return;
        }
        match seen {
            Observation::JobWritten { object, seq, .. } => {
                let stored = &world.store.objects[*object];
                let Body::Job { id, .. } = &stored.body else {
                    return;
                };
                if let Some(row) = world.db.rows.get(id)
                    && row.held.seq == *seq
                {
                    self.lags.push(stored.updated.duration_since(row.committed));
                }
            }
            Observation::Quiesced(_) if !self.lags.is_empty() => {
                self.lags.sort();
                let median = self.lags[self.lags.len() / 2];
                verdicts.check(median <= PROMPT, || {
                    format!(
                        "on a calm day the median time from a commit to the bucket was {median:?} \
                         over {} versions; at most {PROMPT:?}",
                        self.lags.len()
                    )
                });
            }
            _ => {}
        }
    }
}

/// The longest a running daemon may take to look at a commit.
pub const LOOK_BOUND: Duration = Duration::from_secs(1);

/// The longest it may take when it did not miss the commit: the look's
/// share of the recovery point's 0.1 s at p90, which the upload shares.
pub const PROMPT_LOOK_BOUND: Duration = Duration::from_millis(60);

/// A commit is looked at within [`LOOK_BOUND`], on any day: the first step
/// of the recovery point. With notices from the OS the look follows the
/// notice, or the rest after the last look that found a commit, within
/// [`PROMPT_LOOK_BOUND`] (a commit while a notice that found nothing is
/// rechecked, or still waiting on its `fsync`, is not modelled); when the
/// OS dropped it (the missed-commit fault),
/// the watcher's fallback look must still come in time, which a fallback as
/// long as the interval would not. A look that failed while polling is not
/// one: that commit waits for the interval's read, and is not reported.
pub struct PromptLook;

impl Invariant for PromptLook {
    fn observe(&mut self, seen: &Observation, _world: &World, verdicts: &mut Verdicts) {
        if let Observation::CommitLooked {
            waited,
            watch,
            prompt,
        } = seen
        {
            let bound = if *prompt {
                PROMPT_LOOK_BOUND
            } else {
                LOOK_BOUND
            };
            verdicts.check(*waited <= bound, || {
                let how = match (watch, prompt) {
                    (Watch::Notified, true) => "with its notice from the OS",
                    (Watch::Notified, false) => "with its notice from the OS dropped",
                    (Watch::Polled, _) => "polling",
                };
                format!("a commit was looked at {waited:?} after it, {how}; at most {bound:?}")
            });
        }
    }
}
