//! `bench retrieve`: `jobvault retrieve` of 10,000 jobs with its default
//! concurrency against one request at a time, at GCS's latency.

use std::time::{Duration, Instant};

use jobvault_tests::jobvault;

use super::incremental::bare_upload_rate;
use super::setup::{LATENCY, bounded, emulator_with_proxy};
use super::targets::Figure;
use super::verdict::Measured;

pub fn run() -> Measured {
    println!("== retrieve: 10,000 jobs");
    let (emulator, proxy, _data) = emulator_with_proxy();
    let since = jobvault::clock::now() - Duration::from_secs(60);
    let fetch = |bucket: &str, jobs: usize, concurrency: &str| {
        bare_upload_rate(&emulator.endpoint(), bucket, jobs, 32);
        let started = Instant::now();
        let mut retrieve = jobvault(Some(&proxy.endpoint()));
        retrieve.args([
            "retrieve",
            "--bucket",
            &format!("gs://{bucket}"),
            "--since",
            &since.rfc3339(),
            "--concurrency",
            concurrency,
        ]);
        let output = bounded(retrieve).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines = output.stdout.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines, jobs, "every job retrieved");
        lines as f64 / started.elapsed().as_secs_f64()
    };
    let concurrent = fetch(&emulator.new_bucket("retrieve"), 10_000, "32");
    let sequential = fetch(&emulator.new_bucket("retrieve-sequential"), 1_000, "1");
    println!(
        "  with {LATENCY:?} per request: concurrent {concurrent:.0} jobs/s over 10,000; one at a time {sequential:.1} jobs/s over 1,000; {:.1}x",
        concurrent / sequential
    );
    vec![(Figure::RetrieveConcurrencyGain, concurrent / sequential)]
}
