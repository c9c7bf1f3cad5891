//! Whether a restore with no usable snapshot may rebuild from the job
//! objects alone.
//!
//! Job objects hold every job only if the prefix has had the database's
//! backups since its first job. A daemon pointed at a prefix with a
//! database that was already backed up (restored from another prefix,
//! moved, or refilling a wiped bucket) snapshots it and then uploads only
//! what changes: a job unchanged since is in the snapshot alone. With that
//! snapshot damaged, the job objects gave a database missing those jobs,
//! with exit 0, and `--force` put it in place of a good one. Nothing in the
//! bucket says whether the job objects are whole, so the restore refuses
//! unless asked ([`WithoutSnapshot::FromJobObjects`], the CLI's
//! `--from-job-objects`), and the refusal says what it found. A restore of
//! the past that finds no snapshot to start from (none from by then, or
//! every one unusable) is refused alike: `--at` a moment ago was the same
//! loss by another door.

use crate::machine::NEW_DESTINATION_BASE;
use crate::object_name::ObjectName;
use crate::restore_plan::past::Past;
use crate::restore_plan::{PlanError, Skipped};

/// What a restore does when no snapshot is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WithoutSnapshot {
    /// Fail with [`PlanError::NoUsableSnapshot`].
    #[default]
    Refuse,
    /// Rebuild from the job objects alone, if no prune deleted any.
    FromJobObjects,
}

/// Why the job objects alone are not trusted, and the way round.
const ALONE: &str = "the job objects alone lack every job that only a snapshot holds (a database \
                     restored or moved here, or a wiped bucket refilled, is in the bucket whole \
                     only in snapshots). restore --from-job-objects rebuilds from the job objects \
                     anyway; ";

/// Where an overwritten snapshot may still be.
const VERSIONS: &str = "on a bucket with object versioning, `jobvault snapshots` lists earlier \
                        generations, and `gcloud storage cp 'gs://…/NAME#GENERATION' gs://…/NAME` \
                        makes one live again";

/// The names of the snapshots passed over, for a message.
pub(crate) fn named(unusable: &[Skipped]) -> String {
    let names: Vec<&str> = unusable.iter().map(|u| u.object.as_str()).collect();
    names.join(", ")
}

/// The refusal when every snapshot in the bucket proved unusable.
pub(crate) fn every_unusable(unusable: &[Skipped]) -> PlanError {
    PlanError::NoUsableSnapshot(format!(
        "no usable snapshot ({} in the bucket, each unusable: {}), and {ALONE}{VERSIONS}",
        unusable.len(),
        named(unusable)
    ))
}

/// Whether `object` is a snapshot a daemon took for a destination new to
/// its database: the backups start again there, from a database that may
/// have come from elsewhere (restored from another prefix, moved, swapped
/// under the daemon). An older snapshot and the job objects since it lack
/// whatever that database held and did not change since.
pub(crate) fn is_restart(object: &ObjectName) -> bool {
    let base = object.as_str().rsplit('/').next().unwrap_or_default();
    base.strip_prefix(NEW_DESTINATION_BASE)
        .is_some_and(|rest| rest.starts_with('-'))
}

/// The refusal when the snapshot passed over is where the backups started
/// again: falling back past it gives the database from before.
pub(crate) fn restart_unusable(unusable: &Skipped) -> PlanError {
    PlanError::NoUsableSnapshot(format!(
        "the snapshot {} is unusable ({}), and it is where this prefix's backups started again \
         from a database new to it (restored, moved, or swapped under the daemon): an older \
         snapshot and the job objects since it lack every job that database held and did not \
         change since. `restore --snapshot NAME` restores from an older one anyway; {VERSIONS}",
        unusable.object, unusable.why
    ))
}

/// The refusal when a restore of the past found no snapshot to start from
/// and `jobs` job versions from by then.
pub(crate) fn none_for_instant(past: &Past, unusable: &[Skipped], jobs: usize) -> PlanError {
    let unusable = match unusable.len() {
        0 => String::new(),
        n => format!(", {n} unusable: {}", named(unusable)),
    };
    PlanError::NoUsableSnapshot(format!(
        "no snapshot to restore {} from ({} tried hold later changes{unusable}), only {jobs} job \
         version{} from by then, and {ALONE}{VERSIONS}",
        past.at.rfc3339(),
        past.rejected,
        if jobs == 1 { "" } else { "s" }
    ))
}

/// The refusal when the bucket holds job objects and no snapshot.
pub(crate) fn none_in_bucket(jobs: usize) -> PlanError {
    PlanError::NoUsableSnapshot(format!(
        "no snapshot in the bucket (looked under db-backup/), only {jobs} job object{}, and \
         {ALONE}{VERSIONS}",
        if jobs == 1 { "" } else { "s" }
    ))
}
