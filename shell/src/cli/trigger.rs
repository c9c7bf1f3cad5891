//! `jobvault trigger`: what the systemd timer runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use clap::builder::PathBufValueParser;
use jobvault::clock;
use jobvault::logging::{Said, say};
use jobvault::triggers::TriggerDir;

use super::NoKeys;

/// Ask the running daemon for a snapshot: drop a trigger file into
/// <workdir>/trigger-backup/. The daemon serves it within one interval.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The daemon's work directory.
    #[arg(long, value_name = "DIR", env = "JOBVAULT_WORKDIR", value_parser = NoKeys(PathBufValueParser::new()))]
    workdir: PathBuf,
    /// The snapshot's base name [default: scheduled-HH:MM:SS, in UTC].
    #[arg(value_parser = NoKeys(clap::builder::StringValueParser::new()))]
    name: Option<String>,
}

pub fn trigger(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .unwrap_or_else(|| format!("scheduled-{}", clock::now().clock_hms()));
    let triggers = TriggerDir::new(&args.workdir);
    let created = triggers
        .drop_trigger(&name)
        .with_context(|| format!("cannot drop trigger {name:?}"))?;
    let path = triggers.path().join(&name);
    if created {
        println!("{}", path.display());
    } else {
        let path = path.display();
        say(
            Said::Notice,
            &format!("trigger {path} is already waiting; left as it is"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
