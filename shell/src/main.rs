//! The `jobvault` command.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// glibc's allocator kept up to 2.6 GiB of freed memory in a restore of a
/// 1 GiB database and 100,000 job objects whose live heap never passed
/// 92 MiB (heaptrack); with jemalloc that restore peaks at 111 MiB.
/// mimalloc returned the memory too, but its snapshots peaked at 73-96 MiB,
/// over the 64 MiB target, against 24-39 with glibc and 38-57 with jemalloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e),
    };
    if !cli.command.writes_to_unix_sockets() {
        end_quietly_when_the_reader_goes();
    }
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.command.default_log_filter()));
    let json = cli.log_format == cli::LogFormat::Json;
    jobvault::logging::init(filter, json);
    let runtime = match cli.command.runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            jobvault::logging::fatal(json, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli.command.execute());
    // Blocking work still running (a snapshot's copy the grace gave up
    // on) must not hold the exit past the grace.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            jobvault::logging::fatal(json, &format!("{e:#}"));
            if e.is::<cli::status::Unreadable>() {
                ExitCode::from(4)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Output piped into a reader that stops early (`jobvault snapshots |
/// head`) ends the command as it ends `cat`, by SIGPIPE, where Rust's
/// default (the signal ignored) made the next `println!` panic with exit
/// 101. TCP writes are unaffected (std sends them with `MSG_NOSIGNAL`);
/// Unix sockets are not, so the daemon and `backup`, which talk over one,
/// keep the signal ignored and take a peer gone as an error.
fn end_quietly_when_the_reader_goes() {
    // SAFETY: restores the default disposition of one signal, before any
    // thread is started; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// clap's answer to the arguments: help and version as clap prints them; an
/// error as one JSON line (exit 2) if JSON logs were asked for.
fn argument_error(e: &clap::Error) -> ExitCode {
    let json = jobvault::logging::json_requested(
        std::env::args_os(),
        std::env::var_os("JOBVAULT_LOG_FORMAT"),
    );
    let code = ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    if !e.use_stderr() {
        let _ = e.print();
        return code;
    }
    // A key pasted as an argument is cut short wherever clap quotes it.
    let usage = jobvault_crypt::redact_secret_keys(&e.render().to_string());
    if !json {
        eprint!("{usage}");
        return code;
    }
    jobvault::logging::usage(usage.trim_end());
    ExitCode::from(2)
}
