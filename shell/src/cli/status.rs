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
pub struct StatusArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    reads: ReadArgs,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket).await?;
    let reads = args.reads.reads();
    let status = read_status(&store, clock::now(), args.reads.concurrency(), &reads).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render());
    }
    Ok(ExitCode::SUCCESS)
}
