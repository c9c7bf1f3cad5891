//! Carrying out a prune the core planned ([`PrunePlanner`]): the history
//! marker first, then each deletion, oldest first. A deletion that finds
//! the object gone counts as done, so a prune cut short is simply run again.

use std::time::Duration;

use jobvault_core::history::HISTORY_OBJECT;
use jobvault_core::prune::{PrunePlan, PrunePlanner};
use jobvault_core::{FailureKind, Timestamp};

use crate::drive::{DriveError, Driver};
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
    Plan(String),
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
    planner
        .finish()
        .map_err(|e| PruneError::Plan(e.to_string()))
}

/// Writes the plan's marker, then deletes what it names; `deleted` is told
/// each object as it goes. Returns how many were deleted.
pub async fn carry_out(
    store: &Store,
    plan: &PrunePlan,
    mut deleted: impl FnMut(&str),
) -> Result<usize, PruneError> {
    if let Some(marker) = &plan.marker {
        small_object::write(store, HISTORY_OBJECT, &marker.encode(), marker.pruned_at).await?;
    }
    for object in &plan.delete {
        match store.delete(object).await {
            Err(e) if e.kind != FailureKind::NotFound => return Err(e.into()),
            _ => deleted(object),
        }
    }
    Ok(plan.delete.len())
}
