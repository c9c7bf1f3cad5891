//! The command line. Each subcommand lives in a module of its own; this one
//! holds what they share.

mod backup;
mod jobs;
mod run;
mod trigger;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jobvault::store::BucketUrl;

/// Keeps a job database safe in Google Cloud Storage: scheduled snapshots,
/// every job change in the bucket within seconds, one-command restore.
#[derive(Debug, Parser)]
#[command(name = "jobvault", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Run(run::RunArgs),
    Backup(backup::BackupArgs),
    Trigger(trigger::TriggerArgs),
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
}

impl Command {
    /// The log level when `RUST_LOG` is not set: the daemon tells what it
    /// does; one-shot commands stay quiet unless something is wrong.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Run(_) => "info",
            _ => "warn",
        }
    }

    pub async fn execute(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(args) => run::run(args).await,
            Command::Backup(args) => backup::backup(args).await,
            Command::Trigger(args) => trigger::trigger(args),
            Command::Jobs(command) => jobs::jobs(command),
        }
    }
}

/// `--db PATH`
#[derive(Debug, Clone, Args)]
pub struct DbArg {
    /// The job database (SQLite).
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
}

/// `--bucket URL`
#[derive(Debug, Clone, Args)]
pub struct BucketArg {
    /// Where backups live: gs://bucket[/prefix], or file:///dir for a local directory.
    #[arg(long, value_name = "URL")]
    pub bucket: BucketUrl,
}
