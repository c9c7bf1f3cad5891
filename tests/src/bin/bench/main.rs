//! `bench`: jobvault's performance against its targets (`targets.rs`, the
//! one table of them), as ratios taken in one run on this machine. Build
//! everything in release first:
//!
//! ```sh
//! cargo build --release -p jobvault -p jobvault-tests
//! FAKE_GCS_SERVER=$(scripts/install-emulator) target/release/bench versus-litestream
//! ```
//!
//! Each section runs once to warm up (discarded), then `--runs` times; the
//! verdict is each figure's median over the runs, printed with its spread.
//! The exit status is 1 when a median misses its target, so a change that
//! costs speed fails where it is measured. `--target NAME=VALUE` sets a
//! target for one invocation (to show that a tighter one fails, or to judge
//! another machine).
//!
//! On loopback the emulator answers in microseconds where GCS takes tens of
//! milliseconds, so most figures go through a proxy that adds 20 ms to every
//! request, and compare two ways of doing the same work under that delay.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

mod encryption;
mod incremental;
mod memory;
mod recovery_point;
mod restore;
mod restore_at_scale;
mod retrieve;
mod setup;
mod snapshot;
mod targets;
mod verdict;
mod versus;
mod writes;

use targets::Figure;
use verdict::{Measured, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Incremental,
    Snapshot,
    Retrieve,
    RecoveryPoint,
    Restore,
    RestoreAtScale,
    Writes,
    VersusLitestream,
    Memory,
    Encryption,
}

/// Measures jobvault against its targets; exits 1 when one is missed.
#[derive(Debug, Parser)]
struct Args {
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Runs of each section that count, after the warm-up.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Runs of each section first, not counted.
    #[arg(long, default_value_t = 1)]
    warmups: u32,
    /// Sets a figure's target for this invocation: NAME=VALUE (the names
    /// are in the verdict table). Repeatable.
    #[arg(long = "target", value_name = "NAME=VALUE", value_parser = targets::parse_override)]
    targets: Vec<(Figure, f64)>,
    /// Size of the snapshot and restore databases, in MiB (at least 4: the
    /// snapshot section also measures a quarter of it).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(4..))]
    database_mib: u64,
    /// Size of the database `restore-at-scale` snapshots, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    scale_mib: u64,
    /// How many jobs `restore-at-scale` changes after its snapshot.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    scale_jobs: u64,
}

const SECTIONS: [Which; 10] = [
    Which::Incremental,
    Which::Snapshot,
    Which::Retrieve,
    Which::RecoveryPoint,
    Which::Restore,
    Which::RestoreAtScale,
    Which::Writes,
    Which::Memory,
    Which::Encryption,
    Which::VersusLitestream,
];

fn main() -> ExitCode {
    let args = Args::parse();
    let mut verdict = Verdict::new(&args.targets);
    for section in SECTIONS {
        if args.which != Which::All && args.which != section {
            continue;
        }
        for warmup in 1..=args.warmups {
            println!(
                "-- {section:?}: warm-up {warmup} of {} (not counted)",
                args.warmups
            );
            measure(section, &args);
        }
        for run in 1..=args.runs {
            println!("-- {section:?}: run {run} of {}", args.runs);
            verdict.add(measure(section, &args));
        }
    }
    match verdict.print() {
        0 => ExitCode::SUCCESS,
        missed => {
            eprintln!("bench: {missed} figures missed their targets");
            ExitCode::FAILURE
        }
    }
}

fn measure(section: Which, args: &Args) -> Measured {
    match section {
        Which::All => unreachable!("`all` is every section in turn"),
        Which::Incremental => incremental::run(),
        Which::Snapshot => snapshot::run(args.database_mib),
        Which::Retrieve => retrieve::run(),
        Which::RecoveryPoint => recovery_point::run(),
        Which::Restore => restore::run(args.database_mib),
        Which::RestoreAtScale => restore_at_scale::run(args.scale_mib, args.scale_jobs as usize),
        Which::Writes => writes::run(),
        Which::Memory => memory::run(),
        Which::VersusLitestream => versus::run(args.database_mib),
        Which::Encryption => encryption::run(args.database_mib),
    }
}
