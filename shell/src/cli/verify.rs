//! `jobvault verify`: prove the newest backup sound.

use std::process::ExitCode;

use clap::Args;
use jobvault::clock;
use jobvault::logging::{Said, say};
use jobvault::nothing::{NOTHING_FOUND_EXIT, NothingFound, holds_backups};
use jobvault::store::Store;
use jobvault::verify::verify as run_checks;

use super::report::report;
use super::{BucketArg, ReadArgs, unless_missing, until_signal};

/// Download the newest snapshot and check it (gzip CRC and header, SQLite
/// integrity_check, every job decodes), and decode a sample of recent job
/// objects. One line per check on stdout; exit 0 only if every check passes,
/// and otherwise say on stderr how many failed.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// How many of the newest job objects to decode.
    #[arg(long, default_value_t = 100)]
    sample: usize,
    #[command(flatten)]
    reads: ReadArgs,
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket).await?;
    let reads = args.reads.reads()?;
    if let Some(missing) = unless_missing(&store, &reads).await? {
        return Ok(missing);
    }
    if !holds_backups(&store, &reads).await? {
        let why = "no snapshot and no job object found (looked under db-backup/ and job-backup/)";
        let nothing = NothingFound::in_store(&store, &reads, why.to_owned()).await;
        say(Said::Error, &nothing.to_string());
        return Ok(ExitCode::from(NOTHING_FOUND_EXIT));
    }
    // Stopped by a signal, the checks are dropped, and with them the
    // snapshot's copy in TMPDIR: decrypted, it holds every job.
    let checks = until_signal(run_checks(
        &store,
        clock::now(),
        args.reads.concurrency(),
        args.sample,
        &reads,
    ))
    .await??;
    Ok(report(&checks))
}
