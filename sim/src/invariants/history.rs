//! Invariant 9: after any prune, a restore to an instant inside the window
//! equals the database as it was then, job for job, for every job whose
//! state then reached the bucket; the world keeps every change it ever
//! committed to know. A restore to an instant before the window either
//! equals the past too, or refuses, and then only for an instant before
//! where the history marker says the bucket's history starts. (A prune that
//! deleted before writing its marker would be caught where a restore then
//! came back short; the simulated day does not reach that case, DESIGN §6.)
//!
//! A version the bucket never held cannot come back: one replaced within
//! the second before its upload (one write per object per second), or while
//! the store was down. Such a job is left out of the comparison; every other
//! job must match, so a base holding changes after the instant, or a prune
//! deleting what a restore reads, is caught.

use std::collections::BTreeMap;

use jobvault_core::history::HistoryMarker;
use jobvault_core::restore_plan::PlanError;
use jobvault_core::{JobId, Timestamp};

use super::{Invariant, Observation, Verdicts};
use crate::restore::{Failed, Restored};
use crate::world::{Body, JobVersion, World};

pub struct PastRestores;

/// The result of a restore to the past, as the simulation reports it.
pub type PastResult = Result<Restored, Failed>;

impl Invariant for PastRestores {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        let Observation::PastRestored { at, kept, result } = seen else {
            return;
        };
        match result {
            Ok(restored) => equals_the_past(world, *at, restored, verdicts),
            // Given up by a prune, and said so: right, if the marker says so.
            Err(Failed::Plan(PlanError::NotRestorable(why))) if !kept => {
                let from =
                    world.store.marker.as_deref().and_then(|bytes| {
                        HistoryMarker::decode(bytes).ok().map(|m| m.restorable_from)
                    });
                verdicts.check(from.is_some_and(|from| *at < from), || {
                    format!(
                        "a restore to {at} refused ({why}), but the history marker says {from:?}"
                    )
                });
            }
            // Right only if the database then held nothing that reached
            // the bucket: judged as an empty restore.
            Err(Failed::Plan(PlanError::NothingToRestore(_))) => {
                equals_the_past(world, *at, &Restored::default(), verdicts)
            }
            Err(e) => verdicts.violation(format!(
                "a restore to {at} (inside the window kept: {kept}) failed: {e}"
            )),
        }
    }
}

fn equals_the_past(world: &World, at: Timestamp, restored: &Restored, verdicts: &mut Verdicts) {
    let then = world.db.versions_at(at);
    let base = base_versions(world, restored);
    let recorded = |id: &JobId, held: &JobVersion| {
        world.store.landed.contains(&(id.clone(), held.seq))
            || base.is_some_and(|b| b.get(id).is_some_and(|h| h.seq == held.seq))
    };
    let living = |held: Option<&JobVersion>| held.and_then(|h| h.body.clone());
    let ids = then.keys().chain(restored.versions.keys());
    let differences: Vec<String> = ids
        .filter(|id| then.get(*id).is_none_or(|held| recorded(id, held)))
        .filter_map(|id| {
            let (expected, got) = (living(then.get(id)), living(restored.versions.get(id)));
            (expected != got).then(|| format!("{id}: then {expected:?}, restored {got:?}"))
        })
        .take(5)
        .collect();
    verdicts.check(differences.is_empty(), || {
        format!(
            "a restore to {at} (from {:?}) differs from the database then: {}",
            restored.snapshot.as_ref().map(|s| &s.object),
            differences.join("; ")
        )
    });
}

/// The rows of the snapshot the restore started from: the generation it
/// read, which on a versioned bucket may be one overwritten since.
fn base_versions<'w>(
    world: &'w World,
    restored: &Restored,
) -> Option<&'w BTreeMap<JobId, JobVersion>> {
    let chosen = restored.snapshot.as_ref()?;
    let object = world.store.generation(&chosen.object, chosen.generation)?;
    match &object.body {
        Body::Snapshot { versions, .. } => Some(versions),
        Body::Job { .. } => None,
    }
}
