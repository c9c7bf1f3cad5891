//! An immediate snapshot with no daemon running: `jobvault backup` plans it
//! as the daemon's core plans one ([`plan_snapshot`]: named
//! `<name>-HH:MM:SS`, framed with the database's incremental time) and
//! carries out that one order.

use std::path::Path;
use std::sync::Arc;

use jobvault_core::machine::{SnapshotReason, immediate_base_name, plan_snapshot};
use jobvault_core::{Cursor, Failure, FailureKind, Input};
use tracing::warn;

use crate::clock;
use crate::control::BackupTaken;
use crate::db::JobDb;
use crate::snapshot::execute_order;
use crate::store::Store;

/// Takes a snapshot of `db_path` named `<name>-HH:MM:SS`; `progress` hears
/// the bytes read from the database.
pub async fn snapshot_here(
    db_path: &Path,
    store: &Store,
    name: &str,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<BackupTaken, Failure> {
    let now = clock::now();
    let stored = JobDb::open(db_path)
        .and_then(|db| db.cursor())
        .unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the incremental backup time; the snapshot's header carries none, and a restore takes the cursor inside it");
            Cursor::UNREAD
        });
    let basename = immediate_base_name(name, now);
    let reason = SnapshotReason::Immediate { id: 1 };
    let order = plan_snapshot(&basename, reason, now, stored.time)
        .map_err(|invalid| Failure::new(FailureKind::Rejected, invalid.to_string()))?;
    match execute_order(db_path, store, order, Some(progress)).await {
        Input::SnapshotTaken { object, result } => {
            result.map(|bytes| BackupTaken { object, bytes })
        }
        other => unreachable!("a snapshot is answered as one: {other:?}"),
    }
}
