//! `jobvault prune`: delete what no restore within the window needs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use jobvault::clock;
use jobvault::prune::{carry_out, plan_prune};
use jobvault::store::Store;

use super::{BucketArg, ReadArgs};

/// Delete the snapshots and job objects that no restore to an instant in the
/// last DURATION needs. Kept always: the newest snapshot, the snapshot a
/// restore to the window's oldest instant starts from, the job objects a
/// restore to any instant in the window reads, and every job object while no
/// snapshot is old enough. Noncurrent generations are left to the bucket's
/// lifecycle rule (see the README).
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// How far back restores must keep working, e.g. 30d.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    keep: Duration,
    /// Print each object that would be deleted, and delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    reads: ReadArgs,
}

pub async fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket).await?;
    let reads = args.reads.reads();
    reads.read(|| store.check()).await?;
    let plan = plan_prune(
        &store,
        args.keep,
        args.reads.concurrency(),
        &reads,
        clock::now(),
    )
    .await
    .context("prune failed")?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    if args.dry_run {
        for object in &plan.delete {
            println!("{verb} {}", store.location(object));
        }
    } else {
        carry_out(&store, &plan, |object| {
            println!("{verb} {}", store.location(object))
        })
        .await
        .context("prune failed")?;
    }
    match &plan.base {
        Some(base) => println!(
            "{verb} {} objects; kept {} (taken {}) as the base for {}",
            plan.delete.len(),
            store.location(&base.object),
            base.time,
            plan.window_start
        ),
        None => println!(
            "{verb} nothing: no snapshot was taken before {} to restore the window from",
            plan.window_start
        ),
    }
    if let Some(from) = plan.restorable_from {
        println!("restorable from {from} on");
    }
    Ok(ExitCode::SUCCESS)
}
