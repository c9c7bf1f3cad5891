//! Every snapshot in the bucket, as the core's [`SnapshotInventory`]
//! finds them: what `jobvault snapshots` prints.

use jobvault_core::Timestamp;
use jobvault_core::restore_plan::{InventoryEntry, SnapshotInventory};

use crate::drive::{DriveError, Driver};
use crate::reads::Reads;
use crate::store::Store;

/// Every snapshot generation, newest upload first.
pub async fn inventory(
    store: &Store,
    now: Timestamp,
    concurrency: usize,
    reads: &Reads,
) -> Result<Vec<InventoryEntry>, DriveError> {
    let mut inventory = SnapshotInventory::new(now);
    Driver::new(store, concurrency, reads)
        .drive(&mut inventory)
        .await?;
    Ok(inventory.finish())
}
