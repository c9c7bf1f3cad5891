//! `jobvault check`: is the setup right, before the first night depends on it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use clap::builder::PathBufValueParser;
use jobvault::check::{Setup, check as run_checks};
use jobvault::clock;

use super::report::report;
use super::{BucketArg, DbArg, EncryptArgs, NoKeys, load_identities};

/// Try the setup as `jobvault run` will use it: the credentials found, the
/// bucket and whether it lets jobvault create, read, list and delete objects
/// (with a probe object, removed afterwards), the store's clock, versioning,
/// the database, the trigger directory and room in TMPDIR for a snapshot;
/// with --encrypt-to and --identity, that the identities read back what is
/// encrypted. One line each; exit 0 only if every check passes. Nothing is left behind.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    bucket: BucketArg,
    /// The daemon's work directory; trigger files go to <DIR>/trigger-backup/.
    #[arg(long, value_name = "DIR", env = "JOBVAULT_WORKDIR", value_parser = NoKeys(PathBufValueParser::new()))]
    workdir: PathBuf,
    #[command(flatten)]
    encrypt: EncryptArgs,
    /// An age identity file that should read back what --encrypt-to
    /// encrypts; repeatable (several files are separated by `:`, as in
    /// PATH, as for every command). Checked in memory; keep it off the
    /// daemon's host and run check with it where the key lives.
    #[arg(
        long,
        value_name = "FILE",
        env = "JOBVAULT_IDENTITY",
        value_delimiter = ':'
    )]
    identity: Vec<PathBuf>,
}

pub async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let sealer = args.encrypt.sealer()?;
    let keyring = load_identities(&args.identity)?;
    let setup = Setup {
        db: &args.db.db,
        bucket: &args.bucket.bucket,
        workdir: &args.workdir,
        sealer: sealer.as_ref(),
        keyring: &keyring,
    };
    let checks = run_checks(&setup, clock::now).await;
    Ok(report(&checks))
}
