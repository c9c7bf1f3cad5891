//! An immediate snapshot with no daemon running: `jobvault backup` drives
//! the same core the daemon does, in-process, for that one request. The core
//! names the snapshot and frames it with the database's incremental time;
//! this only carries out its one command.

use std::path::Path;
use std::sync::Arc;

use jobvault_core::{Backup, Command, Config, Cursor, Failure, FailureKind, Input};
use tracing::warn;

use crate::clock;
use crate::control::Taken;
use crate::db::JobDb;
use crate::snapshot::carry_out;
use crate::store::Store;

/// Takes a snapshot of `db_path` named `<name>-HH:MM:SS`; `progress` hears
/// the bytes read from the database.
pub async fn snapshot_here(
    db_path: &Path,
    store: &Store,
    name: &str,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<Taken, Failure> {
    let now = clock::now();
    let stored = JobDb::open(db_path)
        .and_then(|db| db.cursor())
        .unwrap_or_else(|e| {
            // The copy holds everything committed before it is taken, so it
            // stands for now at the least.
            warn!(error = %e, "cannot read the incremental backup time; the snapshot's gzip mtime is now instead");
            Cursor { seq: 0, time: now }
        });
    let mut core = Backup::new(Config::default(), stored, now);
    let request = Input::ImmediateBackupRequested {
        id: 1,
        name: name.to_owned(),
    };
    core.handle_input(request, now);
    loop {
        match core.poll_command() {
            Some(Command::TakeSnapshot(order)) => {
                let taken = carry_out(db_path, store, order, Some(progress.clone())).await;
                core.handle_input(taken, clock::now());
            }
            Some(Command::ImmediateBackupDone { object, result, .. }) => {
                return result.map(|bytes| Taken { object, bytes });
            }
            other => {
                return Err(Failure::new(
                    FailureKind::Internal,
                    format!("an immediate backup asked for {other:?}"),
                ));
            }
        }
    }
}
