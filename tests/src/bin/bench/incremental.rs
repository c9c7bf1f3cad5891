//! `bench incremental`: job uploads. How much concurrency buys at GCS's
//! latency, what the daemon's CPU costs per upload, and how close it comes
//! to a bare loop of the same uploads.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use jobvault::db::JobDb;
use jobvault_core::Envelope;
use jobvault_core::job_object::encode_job_object;
use jobvault_core::object_name::{Framing, ObjectName, job_object};
use jobvault_tests::{Daemon, StoreReader, Workspace};

use super::setup::{
    LATENCY, cpu_seconds, database_with_jobs, emulator_with_proxy, realistic_job, run_within,
    wait_for_cursor,
};
use super::targets::Figure;
use super::verdict::Measured;

/// How long a daemon may take over a database's uploads.
const UPLOADS_TIMEOUT: Duration = Duration::from_secs(20 * 60);

pub fn run() -> Measured {
    println!("== incremental: job uploads");
    let (emulator, proxy, _data) = emulator_with_proxy();
    let (fast, fast_cpu) =
        daemon_rate(&proxy.endpoint(), &emulator.new_bucket("inc32"), 10_000, 32);
    let (slow, _) = daemon_rate(&proxy.endpoint(), &emulator.new_bucket("inc1"), 1_000, 1);
    println!(
        "  with {LATENCY:?} per request: concurrency 32: {fast:.0} jobs/s over 10,000 jobs; concurrency 1: {slow:.1} jobs/s over 1,000 jobs; {:.1}x",
        fast / slow
    );
    println!("  CPU of the daemon for the 10,000 uploads at concurrency 32: {fast_cpu:.2} s");
    let (daemon, bare_cpu) = daemon_rate(
        &emulator.endpoint(),
        &emulator.new_bucket("bare-daemon"),
        10_000,
        32,
    );
    let (bare, loop_cpu) = bare_upload_rate(
        &emulator.endpoint(),
        &emulator.new_bucket("bare-loop"),
        10_000,
        32,
    );
    println!(
        "  bare emulator: daemon {daemon:.0} jobs/s, a plain loop of 32 concurrent uploads {bare:.0} jobs/s; {:.2}x",
        daemon / bare
    );
    println!(
        "  CPU for those 10,000 uploads: the daemon {bare_cpu:.2} s, the plain loop of uploads alone {loop_cpu:.2} s"
    );
    vec![
        (Figure::UploadConcurrencyGain, fast / slow),
        (Figure::UploadCpuPer10k, fast_cpu),
        (Figure::DaemonVersusLoop, daemon / bare),
    ]
}

/// Runs the daemon over a database of `jobs` jobs until its cursor covers
/// them all; returns jobs per second and the daemon's CPU seconds.
fn daemon_rate(endpoint: &str, bucket: &str, jobs: usize, concurrency: u16) -> (f64, f64) {
    daemon_rate_with(endpoint, bucket, jobs, concurrency, &[])
}

/// [`daemon_rate`], with `extra` arguments to `run`.
pub fn daemon_rate_with(
    endpoint: &str,
    bucket: &str,
    jobs: usize,
    concurrency: u16,
    extra: &[&str],
) -> (f64, f64) {
    let workspace = Workspace::new();
    database_with_jobs(&workspace, jobs);
    let started = Instant::now();
    let mut args = vec!["--concurrency".to_owned(), concurrency.to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(
        &workspace,
        Some(endpoint),
        &format!("gs://{bucket}"),
        "1s",
        &args,
    );
    let db = JobDb::open(&workspace.db()).unwrap();
    wait_for_cursor(&db, jobs as u64, UPLOADS_TIMEOUT);
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(daemon.pid());
    daemon.stop();
    (jobs as f64 / elapsed.as_secs_f64(), cpu)
}

/// Uploads `jobs` pre-encoded job objects with `concurrency` uploads in
/// flight: the fastest the store takes them. Returns jobs per second and
/// the CPU seconds this process spent on the uploads.
pub fn bare_upload_rate(
    endpoint: &str,
    bucket: &str,
    jobs: usize,
    concurrency: usize,
) -> (f64, f64) {
    let reader = StoreReader::connect(&format!("gs://{bucket}"), Some(endpoint));
    let mut rng = fastrand::Rng::with_seed(7);
    let now = jobvault::clock::now();
    let objects: Vec<(ObjectName, Vec<u8>, Framing)> = (0..jobs)
        .map(|n| {
            let (id, body) = realistic_job(n, &mut rng);
            let name = job_object(now, &id);
            let framing = Framing::for_object(&name, now);
            let envelope = Envelope::written(id, n as u64 + 1, now, body);
            let body = encode_job_object(&envelope, &framing);
            (name, body, framing)
        })
        .collect();
    let started = Instant::now();
    let cpu = cpu_seconds(std::process::id());
    run_within(
        "the plain loop of uploads",
        UPLOADS_TIMEOUT,
        stream::iter(objects)
            .map(|(name, body, framing)| {
                let store = reader.store();
                async move { store.put(&name, body, &framing).await.unwrap() }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<()>>(),
    );
    (
        jobs as f64 / started.elapsed().as_secs_f64(),
        cpu_seconds(std::process::id()) - cpu,
    )
}
