//! `jobvault check`: is the setup right, before the first night depends on it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use jobvault::check::{Setup, check as run_checks};
use jobvault::clock;
use jobvault::logging::{Said, say};

use super::{BucketArg, DbArg};

/// Try the setup as `jobvault run` will use it: the credentials found, the
/// bucket and whether it lets jobvault create, read, list and delete objects
/// (with a probe object, removed afterwards), the store's clock, versioning,
/// the database, the trigger directory and room in TMPDIR for a snapshot. One
/// line each; exit 0 only if every check passes. Nothing is left behind.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    bucket: BucketArg,
    /// The daemon's work directory; trigger files go to <DIR>/trigger-backup/.
    #[arg(long, value_name = "DIR", env = "JOBVAULT_WORKDIR")]
    workdir: PathBuf,
}

pub async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let setup = Setup {
        db: &args.db.db,
        bucket: &args.bucket.bucket,
        workdir: &args.workdir,
    };
    let checks = run_checks(&setup, clock::now).await;
    let mut failed = 0;
    let warned = checks.iter().filter(|c| c.warning).count();
    for check in &checks {
        match &check.result {
            Ok(detail) if check.warning => println!("WARN  {}: {detail}", check.what),
            Ok(detail) => println!("ok    {}: {detail}", check.what),
            Err(why) => {
                failed += 1;
                println!("FAIL  {}: {why}", check.what);
            }
        }
    }
    if failed == 0 && warned > 0 {
        println!(
            "all {} checks passed, {warned} with a warning",
            checks.len()
        );
        Ok(ExitCode::SUCCESS)
    } else if failed == 0 {
        println!("all {} checks passed", checks.len());
        Ok(ExitCode::SUCCESS)
    } else {
        let of = checks.len();
        say(Said::Error, &format!("{failed} of {of} checks failed"));
        Ok(ExitCode::FAILURE)
    }
}
