//! `jobvault retrieve`: the newest version of every job since a time.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jobvault::clock;
use jobvault::nothing::{NOTHING_FOUND_EXIT, NothingFound, holds_backups};
use jobvault::progress;
use jobvault::retrieve::retrieve as retrieve_jobs;
use jobvault::store::Store;
use jobvault_core::Timestamp;

use super::{BucketArg, ReadArgs, on_corrupt, print_bodies, unless_missing};

/// Print the newest version of every job uploaded since a time, as JSON
/// lines sorted by id.
#[derive(Debug, Args)]
pub struct RetrieveArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// Jobs uploaded at or after this time (RFC 3339, e.g. 2026-11-25T03:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    since: Timestamp,
    /// Warn about corrupt objects and go on, instead of failing.
    #[arg(long)]
    skip_corrupt: bool,
    #[command(flatten)]
    reads: ReadArgs,
}

pub async fn retrieve(args: RetrieveArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket).await?;
    let reads = args.reads.reads();
    if let Some(missing) = unless_missing(&store, &reads).await? {
        return Ok(missing);
    }
    let bar = progress::items("jobs", None);
    let retrieval = retrieve_jobs(
        &store,
        args.since,
        clock::now(),
        args.reads.concurrency(),
        on_corrupt(args.skip_corrupt),
        &reads,
        &bar,
    )
    .await
    .context("retrieve failed")?;
    if retrieval.jobs.is_empty()
        && retrieval.skipped.is_empty()
        && !holds_backups(&store, &reads).await?
    {
        let why = "no job object found (looked under job-backup/)".to_owned();
        let nothing = NothingFound::in_store(&store, &reads, why).await;
        eprintln!("jobvault: error: {nothing}");
        return Ok(ExitCode::from(NOTHING_FOUND_EXIT));
    }
    print_bodies(&retrieval.jobs)?;
    for skipped in &retrieval.skipped {
        eprintln!("jobvault: warning: skipped corrupt object {skipped}");
    }
    if !retrieval.skipped.is_empty() {
        eprintln!(
            "jobvault: warning: {} corrupt objects skipped",
            retrieval.skipped.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
