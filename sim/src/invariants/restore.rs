//! Invariants 1 and 7: a restore holds every version the cursor covers, and
//! equals the database once the system has quiesced; it is planned by the
//! planner that ships and starts from the newest snapshot.

use std::time::Duration;

use jobvault_core::{JobId, Timestamp};

use super::{Invariant, Observation, Verdicts};
use crate::restore::Restored;
use crate::world::{Body, World, living};

/// The largest error of the local clock the world injects: half of the
/// restore's clock allowance, as the restore runbook documents.
pub const MAX_CLOCK_ERROR: Duration = Duration::from_secs(300);

/// Invariant 1.
pub struct NoLostVersion;

impl Invariant for NoLostVersion {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        match seen {
            Observation::Restored(restored) => covers_cursor(world, restored, verdicts),
            Observation::Quiesced(restored) => equals_database(world, restored, verdicts),
            _ => {}
        }
    }
}

/// While faults go on: a restore now holds every version the stored cursor
/// says is safe, once the cursor speaks for the bucket (the database
/// records the bucket's destination). Of a job whose id no object can name,
/// the deletion is in the bucket only once the snapshot owed for it lands:
/// `equals_database` checks it.
fn covers_cursor(world: &World, restored: &Restored, verdicts: &mut Verdicts) {
    if world.vouched().is_none() {
        return;
    }
    let stored = world.db.stored.seq;
    let missing = world
        .db
        .by_seq
        .range(..=stored)
        .filter(|(_, id)| !world.db.rows[*id].held.bad && !world.db.nameless.contains(*id))
        .find(|(seq, id)| restored.versions.get(*id).is_none_or(|got| got.seq < **seq));
    verdicts.check(missing.is_none(), || {
        let (seq, id) = missing.expect("only called when something is missing");
        format!(
            "a restore now lacks job {id} version {seq}, though the stored cursor is at {stored}"
        )
    });
}

/// Once quiesced: a restore equals the database, job for job and body for
/// body, and holds no job the database deleted; a job whose row no job
/// object can hold is left out (its last good version, or its bad row from
/// a snapshot, may be restored).
fn equals_database(world: &World, restored: &Restored, verdicts: &mut Verdicts) {
    verdicts.check(world.vouched().is_some(), || {
        format!(
            "after quiescing, the database records destination {:?}, not the bucket's, {:?}",
            world.db.destination,
            world.store.destination.as_ref().map(|m| m.id)
        )
    });
    let bad = |id: &JobId| world.db.rows.get(id).is_some_and(|row| row.held.bad);
    let mut expected = world.db.living();
    expected.retain(|id, _| !bad(id));
    let mut got = living(restored.versions.iter());
    got.retain(|id, _| !bad(id));
    let differences: Vec<String> = expected
        .iter()
        .filter(|(id, body)| got.get(*id) != Some(*body))
        .map(|(id, body)| format!("{id}: database {body}, restored {:?}", got.get(id)))
        .chain(
            got.keys()
                .filter(|id| !expected.contains_key(*id))
                .map(|id| {
                    let why = if world.db.rows.contains_key(*id) {
                        "deleted from the database, brought back"
                    } else {
                        "never in the database"
                    };
                    format!("{id}: restored, but {why}")
                }),
        )
        .take(5)
        .collect();
    verdicts.check(differences.is_empty(), || {
        format!(
            "after quiescing, a restore differs from the database: {}",
            differences.join("; ")
        )
    });
}

/// Invariant 7: a restore starts from the newest snapshot the store wrote,
/// so it fetches only the job objects uploaded since (less the clock
/// allowance), not every one since an older snapshot; if it found that one
/// unusable, from the newest of the others.
pub struct OnePlanner;

impl Invariant for OnePlanner {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        let (Observation::Restored(restored) | Observation::Quiesced(restored)) = seen else {
            return;
        };
        let newest = world.store.newest_snapshot.as_ref();
        let chosen = restored.snapshot.as_ref().map(|s| &s.object);
        let Some(unusable) = restored.unusable.first() else {
            verdicts.check(chosen == newest, || {
                format!(
                    "a restore started from snapshot {chosen:?}, not from the newest one, {newest:?}"
                )
            });
            return self.fetched_since(world, restored, verdicts);
        };
        verdicts.check(Some(unusable) == newest, || {
            format!("a restore passed over {unusable} as unusable, not the newest, {newest:?}")
        });
        let next = world
            .store
            .objects
            .iter()
            .filter(|(name, o)| {
                matches!(o.body, Body::Snapshot { .. }) && !restored.unusable.contains(name)
            })
            .max_by_key(|(name, o)| (o.updated, *name))
            .map(|(name, _)| name);
        verdicts.check(chosen == next, || {
            format!(
                "a restore that passed over {unusable} started from {chosen:?}, not the next \
                 newest, {next:?}"
            )
        });
        self.fetched_since(world, restored, verdicts);
    }
}

impl OnePlanner {
    /// No job object uploaded before the chosen snapshot's time, less the
    /// allowances, was fetched; nor before that of a snapshot passed over
    /// as unusable, whose search ran while it downloaded (a newer upload
    /// may hold an older time: planned first, uploaded last).
    fn fetched_since(&self, world: &World, restored: &Restored, verdicts: &mut Verdicts) {
        let Some(snapshot) = restored.snapshot.as_ref() else {
            return;
        };
        let tried = restored.unusable.iter().filter_map(|name| {
            match &world.store.objects.get(name)?.body {
                Body::Snapshot {
                    gzip_mtime, stored, ..
                } => Some((*gzip_mtime).min(stored.time)),
                Body::Job { .. } => None,
            }
        });
        let earliest = tried.fold(snapshot.time, Timestamp::min);
        let floor = earliest - MAX_CLOCK_ERROR - MAX_CLOCK_ERROR;
        let early = restored
            .fetched_uploads
            .iter()
            .filter(|&&at| at < floor)
            .count();
        verdicts.check(early == 0, || {
            format!(
                "a restore from {} (time {}) fetched {early} job objects uploaded before {floor}",
                snapshot.object, snapshot.time
            )
        });
    }
}
