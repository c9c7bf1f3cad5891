//! `jobvault restore`: the bucket back into a working job database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jobvault::clock;
use jobvault::restore::restore as restore_database;
use jobvault::store::Store;
use jobvault_core::Timestamp;

use super::{BucketArg, ConcurrencyArg, on_corrupt};

/// Rebuild the job database from the bucket: the newest snapshot, then every
/// job uploaded since it, applied where newer. `jobvault run` can continue
/// from the result.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// Where to write the database.
    #[arg(long, value_name = "PATH")]
    to: PathBuf,
    /// Replace PATH if it exists (stop whatever uses it first).
    #[arg(long)]
    force: bool,
    /// Warn about corrupt job objects and go on, instead of failing.
    #[arg(long)]
    skip_corrupt: bool,
    /// Restore the database as it was at this instant (RFC 3339, e.g.
    /// 2026-11-30T13:59:00Z) rather than its newest state. Needs object
    /// versioning on the bucket for any instant before the newest upload.
    #[arg(long, value_name = "RFC3339")]
    at: Option<Timestamp>,
    #[command(flatten)]
    concurrency: ConcurrencyArg,
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket).await?;
    store.check().await?;
    let report = restore_database(
        &store,
        &args.to,
        args.force,
        args.concurrency.get(),
        on_corrupt(args.skip_corrupt),
        args.at,
        clock::now(),
    )
    .await
    .with_context(|| format!("restore to {} failed", args.to.display()))?;
    for skipped in &report.skipped {
        eprintln!("jobvault: warning: skipped corrupt object {skipped}");
    }
    match args.at {
        Some(at) => println!("restored {} as it was at {at}", report.path.display()),
        None => println!("restored {}", report.path.display()),
    }
    match &report.snapshot {
        Some(snapshot) => {
            println!(
                "  snapshot      {} ({} bytes)",
                store.location(&snapshot.object),
                snapshot.bytes
            );
            println!(
                "  taken at      {} (uploaded {})",
                snapshot.time, snapshot.uploaded
            );
        }
        None => println!("  snapshot      none in the bucket; rebuilt from job objects alone"),
    }
    println!(
        "  applied       {} changes newer than the snapshot, deletions included",
        report.applied
    );
    println!("  total jobs    {}", report.total_jobs);
    if args.at.is_some() {
        println!(
            "  written again {} jobs changed since, as new changes: start `jobvault run` on it \
             so that a later restore gives this state, not what came after",
            report.written_again
        );
    }
    println!("  took          {:.2} s", report.elapsed.as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
