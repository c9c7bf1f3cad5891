//! The simulator as part of the test suite: many seeds, every invariant, and
//! the same run for the same seed.

use jobvault_sim::faults::FaultKind;
use jobvault_sim::{Summary, run};

const SEEDS: u64 = 200;

#[test]
fn two_hundred_seeded_days_hold_every_invariant() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let summary = Summary::run(0..SEEDS, threads);
    println!("{summary}");
    let failures: Vec<String> = summary
        .failures
        .iter()
        .map(|(seed, violations)| {
            format!(
                "seed {seed}: {} (replay: cargo run --release -p jobvault-sim -- --seed {seed} --trace)",
                violations[0]
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(summary.seeds, SEEDS);
    // The checks ran, and every kind of fault was injected somewhere.
    assert!(
        summary.checks > SEEDS * 1_000,
        "only {} checks",
        summary.checks
    );
    for &kind in FaultKind::all() {
        assert!(
            summary.faults.get(kind) > 0,
            "no {} fault injected",
            kind.label()
        );
    }
    assert!(
        summary.snapshots > SEEDS,
        "only {} snapshots",
        summary.snapshots
    );
}

#[test]
fn a_seed_replays_identically() {
    for seed in [3, 17, 101] {
        let first = run(seed, false);
        let second = run(seed, false);
        assert_eq!(first.fingerprint, second.fingerprint, "seed {seed}");
        assert_eq!(first.events, second.events, "seed {seed}");
        assert_eq!(first.faults, second.faults, "seed {seed}");
    }
    assert_ne!(run(3, false).fingerprint, run(4, false).fingerprint);
}

#[test]
fn tracing_records_the_run_without_changing_it() {
    let quiet = run(42, false);
    let traced = run(42, true);
    assert_eq!(quiet.fingerprint, traced.fingerprint);
    assert!(quiet.trace.is_empty());
    assert!(traced.trace.len() as u64 > traced.events / 2);
    assert_eq!(traced.trace, run(42, true).trace);
    assert!(
        traced
            .trace
            .iter()
            .any(|line| line.contains("command UploadJob job-backup/"))
    );
}
