//! Invariant 4: for each job, a newer version is never overwritten by an
//! older one.

use super::{Invariant, Observation, Verdicts};
use crate::world::World;

pub struct NewestWins;

impl Invariant for NewestWins {
    fn observe(&mut self, seen: &Observation, _: &World, verdicts: &mut Verdicts) {
        if let Observation::JobWritten {
            object,
            seq,
            replaced,
        } = seen
        {
            let older = replaced.is_some_and(|replaced| replaced > *seq);
            verdicts.check(!older, || {
                format!(
                    "{object}: version {seq} overwrote the newer version {}",
                    replaced.unwrap_or_default()
                )
            });
        }
    }
}
