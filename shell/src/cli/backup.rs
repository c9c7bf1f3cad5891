//! `jobvault backup`: one snapshot, now.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use jobvault::clock;
use jobvault::db::JobDb;
use jobvault::progress;
use jobvault::snapshot::take_snapshot;
use jobvault::store::Store;
use jobvault_core::job_id::check_base_name;
use jobvault_core::machine::{SnapshotReason, immediate_base_name, plan_snapshot};
use tracing::warn;

use super::{BucketArg, DbArg};

/// Take a snapshot now and print its object name.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    bucket: BucketArg,
    /// The snapshot is named <NAME>-HH:MM:SS (UTC).
    #[arg(long, default_value = "task-scheduler", value_parser = parse_name)]
    name: String,
}

pub(super) fn parse_name(name: &str) -> Result<String, String> {
    check_base_name("name", name).map_err(|e| e.to_string())?;
    Ok(name.to_owned())
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let db_path = args.db.db;
    let incremental_time = match JobDb::open(&db_path)?.cursor() {
        Ok(cursor) => Some(cursor.time),
        Err(e) => {
            warn!(error = %e, "cannot read the incremental backup time; the snapshot's gzip mtime is now instead");
            None
        }
    };
    let store = Store::connect(args.bucket.bucket).await?;
    let now = clock::now();
    let order = plan_snapshot(
        &immediate_base_name(&args.name, now),
        SnapshotReason::Immediate,
        now,
        incremental_time,
    )?;
    let size = std::fs::metadata(&db_path).map(|m| m.len()).ok();
    let bar = progress::bytes("snapshot", size);
    let shown = bar.clone();
    let report = take_snapshot(
        &db_path,
        &store,
        &order,
        Some(Arc::new(move |n| shown.set_position(n))),
    )
    .await
    .with_context(|| format!("snapshot of {} failed", db_path.display()))?;
    bar.finish_and_clear();
    println!("{}", store.object_name(&report.object));
    Ok(ExitCode::SUCCESS)
}
