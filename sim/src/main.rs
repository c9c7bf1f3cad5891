//! `jobvault-sim`: run many seeded days, or replay one with its trace.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use jobvault_sim::faults::FaultKind;
use jobvault_sim::{Summary, run_with};

/// The simulator allocates and frees small strings and maps by the million
/// (job ids, object names, holders); glibc's allocator was a sixth of its
/// samples, and 1,000 seeds took 64 s where DESIGN allows 40.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Drives the jobvault core through seeded, faulty simulated days and checks
/// its invariants after every step.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// How many seeds to run, one simulated day each.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Run this one seed only.
    #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
    seed: Option<u64>,
    /// With --seed: print every event and command.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Worker threads; defaults to the number of cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Inject only these kinds of fault (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<FaultKind>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let enabled: BTreeSet<FaultKind> = if args.faults.is_empty() {
        FaultKind::all().iter().copied().collect()
    } else {
        args.faults.iter().copied().collect()
    };
    let replay_faults = if args.faults.is_empty() {
        String::new()
    } else {
        let labels: Vec<String> = enabled.iter().map(|kind| kind.label()).collect();
        format!(" --faults {}", labels.join(","))
    };
    if let Some(seed) = args.seed {
        let outcome = run_with(seed, args.trace, &enabled);
        for line in &outcome.trace {
            println!("{line}");
        }
        println!(
            "seed {seed}: {} events, faults: {}, {} jobs, {} versions, {} invariant checks",
            outcome.events, outcome.faults, outcome.jobs, outcome.versions, outcome.checks
        );
        if outcome.violations.is_empty() {
            println!("all invariants held");
            return ExitCode::SUCCESS;
        }
        for violation in &outcome.violations {
            println!("VIOLATION: {violation}");
        }
        return ExitCode::FAILURE;
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let seeds = args.first_seed..args.first_seed + args.seeds;
    let summary = Summary::run_with(seeds, threads, &enabled);
    println!("{summary}");
    println!(
        "elapsed          {:.1} s on {threads} threads",
        started.elapsed().as_secs_f64()
    );
    if summary.failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    for (seed, violations) in &summary.failures {
        println!("seed {seed} FAILED: {}", violations[0]);
        println!(
            "  replay: cargo run --release -p jobvault-sim -- --seed {seed}{replay_faults} --trace"
        );
    }
    ExitCode::FAILURE
}
