//! `jobvault completions SHELL` and `jobvault man [COMMAND]`: generated from
//! the command line's own definitions (clap_complete, clap_mangen), so they
//! cannot drift from it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

/// Print a shell completion script, e.g. `jobvault completions bash >
/// /etc/bash_completion.d/jobvault`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Print a man page (roff), e.g. `jobvault man >
/// /usr/local/share/man/man1/jobvault.1`, `jobvault man run >
/// /usr/local/share/man/man1/jobvault-run.1`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print; none: jobvault's own, which lists
    /// every command.
    command: Option<String>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "jobvault", &mut out);
    out.flush().context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let jobvault = Cli::command();
    let page = match &args.command {
        None => jobvault,
        Some(name) => {
            let Some(sub) = jobvault.find_subcommand(name) else {
                let names: Vec<&str> = jobvault.get_subcommands().map(|c| c.get_name()).collect();
                anyhow::bail!("no command {name:?}; the commands are {}", names.join(", "));
            };
            sub.clone().display_name(format!("jobvault-{name}"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&roff)
        .and_then(|()| out.flush())
        .context("cannot write the man page")?;
    Ok(ExitCode::SUCCESS)
}
