//! Planning and carrying out `jobvault prune`: the core's
//! [`PrunePlanner`] driven against the store, then the plan's steps as the
//! core's [`Deletion`] orders them (the marker first, a deletion that finds
//! nothing counting as done). The daemon's prunes take the same steps as
//! commands of its core.

use std::time::Duration;

use jobvault_core::Timestamp;
use jobvault_core::history::{HISTORY_OBJECT, HistoryMarker};
use jobvault_core::prune::{Deletion, PrunePlan, PrunePlanner, PruneStep};

use crate::drive::{DriveError, Driver};
use crate::failure::ToFailure;
use crate::reads::Reads;
use crate::small_object;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("prune plan: {0}")]
    Plan(#[from] jobvault_core::restore_plan::PlanError),
}

/// Plans the prune of what no restore to the last `keep` needs.
pub async fn plan_prune(
    store: &Store,
    keep: Duration,
    concurrency: usize,
    reads: &Reads,
    now: Timestamp,
) -> Result<PrunePlan, PruneError> {
    let mut planner = PrunePlanner::new(now, keep);
    Driver::new(store, concurrency, reads)
        .drive(&mut planner)
        .await?;
    Ok(planner.finish()?)
}

/// Writes the history marker.
pub async fn write_marker(store: &Store, marker: &HistoryMarker) -> Result<(), StoreError> {
    small_object::write(store, HISTORY_OBJECT, &marker.encode(), marker.pruned_at).await
}

/// Takes the plan's steps; `deleted` is told each object as it goes.
/// Returns how many were deleted.
pub async fn take_steps(
    store: &Store,
    plan: &PrunePlan,
    mut deleted: impl FnMut(&str),
) -> Result<u64, PruneError> {
    let mut deletion = Deletion::new(plan);
    while let Some(step) = deletion.poll_step() {
        let result = match &step {
            PruneStep::WriteMarker(marker) => write_marker(store, marker).await,
            PruneStep::Delete(object) => store.delete(object).await,
        };
        let failure = result.as_ref().err().map(ToFailure::to_failure);
        if deletion.step_done(&step, failure).is_some() {
            return Err(result.expect_err("only a failed step fails").into());
        }
        if let PruneStep::Delete(object) = &step {
            deleted(object);
        }
    }
    match deletion.outcome() {
        Some(Ok(count)) => Ok(count),
        outcome => unreachable!("the steps ran out with {outcome:?}"),
    }
}

#[cfg(test)]
mod tests {
    use jobvault_core::prune::PrunePlan;

    use super::*;

    /// The steps against a store held in memory (their order is the core's
    /// `Deletion`'s, tested there): the marker is written, an object
    /// already gone counts as deleted, and the objects the plan keeps stay.
    #[tokio::test]
    async fn the_marker_is_written_and_an_object_already_gone_counts_as_deleted() {
        let store = Store::in_memory("prune");
        let framing = jobvault_core::object_name::Framing::for_object("x", Timestamp::UNIX_EPOCH);
        for name in [
            "db-backup/2026/01/01/old.bdb",
            "db-backup/2026/02/01/base.bdb",
        ] {
            store.put(name, b"bytes".to_vec(), &framing).await.unwrap();
        }
        let at = Timestamp::from_unix_seconds(1_780_000_000);
        let plan = PrunePlan {
            window_start: at,
            base: None,
            restorable_from: Some(at),
            marker: Some(HistoryMarker::new(at, at)),
            oldest_snapshot: None,
            delete: [
                "db-backup/2026/01/01/old.bdb",
                "job-backup/2026/01/02/gone.job",
            ]
            .map(jobvault_core::object_name::ObjectName::listed)
            .to_vec(),
            young_snapshots: Vec::new(),
        };
        let mut told = Vec::new();
        let deleted = take_steps(&store, &plan, |object| told.push(object.to_owned()))
            .await
            .unwrap();
        assert_eq!(deleted, 2, "the one already gone counts");
        assert_eq!(told.len(), 2);
        let left: Vec<_> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(left, ["db-backup/2026/02/01/base.bdb", HISTORY_OBJECT]);
    }
}
