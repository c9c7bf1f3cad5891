//! `bench recovery-point`: how long a committed job takes to reach the
//! bucket with default settings at GCS's latency, and what an idle daemon
//! costs in CPU.

use std::time::{Duration, Instant};

use jobvault::db::JobDb;
use jobvault_core::object_name::job_object;
use jobvault_tests::{Daemon, StoreReader, Workspace, eventually_every, runtime};

use super::setup::{cpu_seconds, database_with_jobs, emulator_with_proxy, realistic_job};
use super::targets::Figure;
use super::verdict::Measured;

const SAMPLES: u64 = 60;
const IDLE: Duration = Duration::from_secs(30);

pub fn run() -> Measured {
    println!(
        "== recovery point: default settings (--interval 10s), 20 ms store latency, one job committed at a time"
    );
    let (emulator, proxy, _data) = emulator_with_proxy();
    let bucket = emulator.new_bucket("rpo");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    database_with_jobs(&workspace, 10);
    let daemon = Daemon::start(&workspace, Some(&proxy.endpoint()), &url, "10s", &[]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let mut db = JobDb::open(&workspace.db()).unwrap();
    let mut lags = Vec::new();
    let mut rng = fastrand::Rng::with_seed(99);
    for n in 0..SAMPLES {
        std::thread::sleep(Duration::from_millis(100 + rng.u64(..700)));
        let job = realistic_job(100_000 + n as usize, &mut rng);
        let name = job_object(jobvault::clock::now(), &job.0);
        db.put(&[job]).unwrap();
        let committed = Instant::now();
        eventually_every(
            &format!("{name} in the bucket"),
            Duration::from_secs(60),
            Duration::from_millis(2),
            || runtime().block_on(reader.store().get(&name)).ok(),
        );
        lags.push(committed.elapsed().as_secs_f64());
    }
    lags.sort_by(f64::total_cmp);
    let p90 = lags[lags.len() * 9 / 10];
    println!(
        "  {} jobs: p50 {:.3} s, p90 {p90:.3} s, max {:.3} s",
        lags.len(),
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );
    let before = cpu_seconds(daemon.pid());
    std::thread::sleep(IDLE);
    let used = cpu_seconds(daemon.pid()) - before;
    let idle = 100.0 * used / IDLE.as_secs_f64();
    println!(
        "  idle for {} s: {used:.3} s of CPU, {idle:.2}% of a core",
        IDLE.as_secs()
    );
    vec![(Figure::RecoveryPointP90, p90), (Figure::IdleCpu, idle)]
}
