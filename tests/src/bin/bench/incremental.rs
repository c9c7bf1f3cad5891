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
    JOBS_SEED, LATENCY, cpu_seconds, emulator_with_proxy, put_jobs, realistic_job, run_within,
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

/// Starts the daemon on an empty database, waits for its first snapshot,
/// then commits `jobs` new jobs (a thousand a commit) and waits until its
/// cursor covers them; returns jobs per second and the daemon's CPU
/// seconds from the first commit to the last upload. The daemon's start
/// and its first snapshot are not upload work, and are left out.
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
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
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
    daemon.settled();
    let cpu_before = cpu_seconds(daemon.pid());
    println!(
        "  ({bucket}: the daemon's start and first snapshot took {cpu_before:.2} s of CPU, not counted)"
    );
    let started = Instant::now();
    put_jobs(&mut db, jobs, JOBS_SEED);
    wait_for_cursor(&db, jobs as u64, UPLOADS_TIMEOUT);
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(daemon.pid()) - cpu_before;
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
