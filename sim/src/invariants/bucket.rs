//! Invariant 4: for each job, a newer version is never overwritten by an
//! older one.

use super::{Invariant, Observation, Verdicts};
use crate::world::World;

pub struct NewestWins;

impl Invariant for NewestWins {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        if let Observation::JobWritten {
            object,
            seq,
            replaced,
        } = seen
        {
            // A version a copy written back over the database left behind
            // is no longer the job's newest.
            let older = replaced.is_some_and(|replaced| {
                replaced > *seq && !world.abandoned.iter().any(|gone| gone.contains(&replaced))
            });
            verdicts.check(!older, || {
                format!(
                    "{object}: version {seq} overwrote the newer version {}",
                    replaced.unwrap_or_default()
                )
            });
        }
    }
}
