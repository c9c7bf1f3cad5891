//! The `jobvault` command.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.command.default_log_filter()));
    jobvault::logging::init(filter, cli.log_format == cli::LogFormat::Json);
    let runtime = match cli.command.runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("jobvault: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.execute()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jobvault: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
