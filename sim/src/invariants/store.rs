//! How the core treats the store: no job object written more than once a
//! second (GCS's limit for one object name), and a store that refuses
//! jobvault is tried again slowly, not at every step.

use std::collections::BTreeMap;

use jobvault_core::machine::{OBJECT_WRITE_SPACING, REFUSED_RETRY};
use jobvault_core::{Config, Timestamp};

use super::{Invariant, Observation, Verdicts};
use crate::world::World;

/// No two uploads of one object from one host start within
/// `OBJECT_WRITE_SPACING` of true time, unless the local clock was stepped
/// between them: the core spaces them by its clock, and cannot know how far
/// a step moved it. Two hosts write one prefix only in the window a wiped
/// lease leaves open (`lease.rs`), and cannot space their writes then.
#[derive(Default)]
pub struct ObjectWriteSpacing {
    /// Host and object → true time of its last upload, and the clock error
    /// then.
    last: BTreeMap<(usize, String), (Timestamp, i64)>,
}

impl Invariant for ObjectWriteSpacing {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        let Observation::UploadStarted {
            node,
            object,
            true_time,
            ..
        } = *seen
        else {
            return;
        };
        let now = (true_time, world.clock_error);
        if let Some((then, error)) = self.last.insert((node, object.to_owned()), now)
            && error == world.clock_error
        {
            let gap = true_time.duration_since(then);
            verdicts.check(gap >= OBJECT_WRITE_SPACING, || {
                format!("{object} written twice within {gap:?}")
            });
        }
        self.last
            .retain(|_, (then, _)| true_time.duration_since(*then) < OBJECT_WRITE_SPACING);
    }
}

/// While the store refuses jobvault, a core starts at most a round of
/// uploads (its concurrency) every `REFUSED_RETRY`, plus the round in flight
/// when the refusals began.
pub struct RefusingStoreSpared {
    concurrency: u64,
    /// Since when uploads are counted (a refusal seen by a running core),
    /// and how many started since.
    counting: Option<(Timestamp, u64)>,
}

impl RefusingStoreSpared {
    pub fn new(config: &Config) -> Self {
        RefusingStoreSpared {
            concurrency: config.concurrency as u64,
            counting: None,
        }
    }
}

impl Invariant for RefusingStoreSpared {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        match *seen {
            Observation::CoreStarted { .. } => self.counting = None,
            Observation::UploadStarted { true_time, .. } => {
                if !world.refusing(true_time) {
                    self.counting = None;
                    return;
                }
                let (since, started) = self.counting.get_or_insert((true_time, 0));
                *started += 1;
                let rounds =
                    true_time.duration_since(*since).as_secs() / REFUSED_RETRY.as_secs() + 2;
                let (since, started) = (*since, *started);
                verdicts.check(started <= rounds * self.concurrency, || {
                    format!(
                        "{started} uploads started in the {:?} since the store began refusing jobvault \
                         (at {since}); a round every {REFUSED_RETRY:?} allows {}",
                        true_time.duration_since(since),
                        rounds * self.concurrency
                    )
                });
            }
            _ => {}
        }
    }
}
