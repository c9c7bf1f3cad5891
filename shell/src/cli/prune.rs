//! `jobvault prune`: delete what no restore within the window needs.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jobvault::clock;
use jobvault::prune::{plan_prune, take_steps};
use jobvault::store::Store;

use super::duration::{Keep, parse_keep};
use super::{BucketArg, ReadArgs};

/// Delete the snapshots and job objects that no restore to an instant in the
/// last DURATION needs. Kept always: the newest snapshot, the snapshot a
/// restore to the window's oldest instant starts from, the job objects a
/// restore to any instant in the window reads, and every job object while no
/// snapshot is old enough. Noncurrent generations are left to the bucket's
/// lifecycle rule (see the README). Deleting a snapshot under a day old
/// takes --yes.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// How far back restores must keep working, e.g. 30d (units: s, min,
    /// h, d, w; at least 1h), or `off` to delete nothing.
    #[arg(long, value_name = "DURATION", value_parser = parse_keep)]
    keep: Keep,
    /// Print each object that would be deleted, and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Delete snapshots uploaded less than a day ago too, when the window
    /// leaves them out.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    reads: ReadArgs,
}

pub async fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket).await?;
    let reads = args.reads.reads()?;
    reads.read(|| store.check()).await?;
    let Keep(Some(keep)) = args.keep else {
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println!("{verb} nothing: --keep off keeps every backup");
        return Ok(ExitCode::SUCCESS);
    };
    let plan = plan_prune(&store, keep, args.reads.concurrency(), &reads, clock::now())
        .await
        .context("prune failed")?;
    if let Some(youngest) = plan.young_snapshots.last()
        && !args.dry_run
        && !args.yes
    {
        anyhow::bail!(
            "--keep {} would delete {} snapshot(s) uploaded less than a day ago, the newest {}; \
             pass --yes if that is meant (--dry-run lists everything it would delete)",
            humantime::format_duration(keep),
            plan.young_snapshots.len(),
            store.location(youngest)
        );
    }
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
        take_steps(&store, &plan, |object| {
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
