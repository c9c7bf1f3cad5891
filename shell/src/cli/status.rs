//! `jobvault status`: how fresh are the backups?

use std::process::ExitCode;

use clap::Args;
use jobvault::clock;
use jobvault::status::status as read_status;
use jobvault::store::Store;

use super::{BucketArg, ReadArgs};

/// Show the newest snapshot, the snapshots of the last 24 hours and the newest
/// job upload, with a warning when backups look stale.
#[derive(Debug, Args)]
#[command(after_help = STATUS_EXIT_CODES)]
pub struct StatusArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    reads: ReadArgs,
}

const STATUS_EXIT_CODES: &str = "Exit status: 0 healthy; 1 the report has warnings (each a \
WARNING line, or in --json the \"warnings\" list); 2 a usage error; 4 the bucket could not be \
read (one line on stderr names what and why).";

/// The bucket could not be read: `status` exits 4, so that a script tells
/// it from a report with warnings (1).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Unreadable(#[from] anyhow::Error);

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket)
        .await
        .map_err(|e| Unreadable(e.into()))?;
    let reads = args.reads.reads()?;
    let status = read_status(&store, clock::now(), args.reads.concurrency(), &reads)
        .await
        .map_err(|e| Unreadable(e.into()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render());
    }
    Ok(if status.warnings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
