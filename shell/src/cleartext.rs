//! The listing [`jobvault_core::cleartext`] judges: the snapshots of the
//! last [`SEALED_LOOKBACK`], for `backup`, `check` and `status` to say
//! when a plain snapshot sits, or is about to sit, beside encrypted ones.

use std::time::Duration;

use jobvault_core::Timestamp;
use jobvault_core::cleartext::SEALED_LOOKBACK;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::ObjectKind;

use crate::drive::{DriveError, list_range};
use crate::reads::Reads;
use crate::store::Store;

/// Day folders listed at once.
const LISTINGS_AT_ONCE: usize = 8;

/// How long failed listings are retried: the look is a warning's, and must
/// not hold a backup up for the usual patience.
const PATIENCE: Duration = Duration::from_secs(10);

/// The snapshots uploaded in the last [`SEALED_LOOKBACK`].
pub async fn recent_snapshots(
    store: &Store,
    now: Timestamp,
) -> Result<Vec<ListedObject>, DriveError> {
    list_range(
        store,
        ObjectKind::Snapshot,
        now - SEALED_LOOKBACK,
        now,
        LISTINGS_AT_ONCE,
        &Reads::new(PATIENCE),
    )
    .await
}
