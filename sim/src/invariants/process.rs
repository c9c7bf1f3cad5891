//! What the core does with its work: triggers, bounds, resets, reports and
//! immediate-backup requests.

use std::collections::BTreeMap;
use std::time::Duration;

use jobvault_core::machine::trigger_retry_wait;
use jobvault_core::trigger::RETRY_COUNT;
use jobvault_core::{Config, Timestamp};

use super::{Invariant, Observation, Verdicts};
use crate::world::World;

/// Invariant 3: a trigger is attempted at most `RETRY_COUNT` times, across
/// restarts; one process tries it again no sooner than
/// `trigger_retry_wait` by its clock (unless the clock stepped back).
pub struct TriggerAttempts {
    wait: Duration,
    attempts: BTreeMap<String, u32>,
    /// The last attempt of each trigger: by which process, when.
    last: BTreeMap<String, ((usize, u64), Timestamp)>,
}

impl TriggerAttempts {
    pub fn new(config: &Config) -> Self {
        TriggerAttempts {
            wait: trigger_retry_wait(config.interval),
            attempts: BTreeMap::new(),
            last: BTreeMap::new(),
        }
    }
}

impl Invariant for TriggerAttempts {
    fn observe(&mut self, seen: &Observation, _: &World, verdicts: &mut Verdicts) {
        if let Observation::TriggerAttempt {
            trigger,
            process,
            local,
        } = *seen
        {
            if let Some((by, at)) = self.last.insert(trigger.to_owned(), (process, local))
                && by == process
                && local >= at
            {
                let gap = local.duration_since(at);
                verdicts.check(gap >= self.wait, || {
                    format!("trigger {trigger} attempted again {gap:?} after a failed attempt")
                });
            }
            let attempts = self.attempts.entry((*trigger).to_owned()).or_default();
            *attempts += 1;
            let attempts = *attempts;
            verdicts.check(attempts <= RETRY_COUNT, || {
                format!("trigger {trigger} attempted {attempts} times, more than {RETRY_COUNT}")
            });
        }
    }
}

/// Invariant 5: uploads in flight, and jobs and bytes held, stay within
/// their bounds (bytes: the budget and one body more).
pub struct Bounds {
    concurrency: usize,
    max_pending: usize,
    max_bytes: u64,
}

/// The longest body and id the simulated writers write, as the window
/// weighs them.
const LONGEST_VERSION: u64 = 64;

impl Bounds {
    pub fn new(config: &Config) -> Self {
        Bounds {
            concurrency: config.concurrency,
            max_pending: config.max_pending,
            max_bytes: config.max_pending_bytes + LONGEST_VERSION,
        }
    }
}

impl Invariant for Bounds {
    fn observe(&mut self, seen: &Observation, _: &World, verdicts: &mut Verdicts) {
        if let Observation::UploadStarted {
            in_flight,
            held: (pending, bytes),
            ..
        } = *seen
        {
            verdicts.check(bytes <= self.max_bytes, || {
                format!(
                    "{bytes} bytes of bodies held in memory, more than the bound {}",
                    self.max_bytes
                )
            });
            verdicts.check(in_flight <= self.concurrency, || {
                format!(
                    "{in_flight} uploads in flight, more than the bound {}",
                    self.concurrency
                )
            });
            verdicts.check(pending <= self.max_pending, || {
                format!(
                    "{pending} jobs held in memory, more than the bound {}",
                    self.max_pending
                )
            });
        }
    }
}

/// The change feed is rescanned only when someone else changed the stored
/// cursor; a reset for any other reason re-uploads for nothing.
pub struct ResetsExplained;

impl Invariant for ResetsExplained {
    fn observe(&mut self, seen: &Observation, _: &World, verdicts: &mut Verdicts) {
        if let Observation::FeedReset { explained } = *seen {
            verdicts.check(explained, || {
                "the change feed was reset though nobody else changed the stored cursor".to_owned()
            });
        }
    }
}

/// Nothing silent: every report the core took answered something it had
/// asked for.
pub struct NothingSilent;

impl Invariant for NothingSilent {
    fn observe(&mut self, seen: &Observation, _: &World, verdicts: &mut Verdicts) {
        if let Observation::Reported { unexpected } = *seen {
            verdicts.check(unexpected == 0, || {
                format!("the core dropped {unexpected} reports that answered nothing outstanding")
            });
        }
    }
}

/// Every immediate-backup request is answered exactly once, and a core that
/// exits after a graceful stop has answered them all: nobody would after it.
pub struct ImmediateAnswered;

impl Invariant for ImmediateAnswered {
    fn observe(&mut self, seen: &Observation, _: &World, verdicts: &mut Verdicts) {
        match seen {
            Observation::ImmediateAnswered { id, waiting } => verdicts.check(*waiting, || {
                format!("immediate backup {id} was answered, but it was not waiting")
            }),
            Observation::Exited { unanswered } => verdicts.check(unanswered.is_empty(), || {
                format!("the core exited with immediate backups {unanswered:?} unanswered")
            }),
            _ => {}
        }
    }
}
