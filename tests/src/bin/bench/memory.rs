//! `bench memory`: the daemon's peak memory backing up bodies of 1 KB,
//! 1 MB and 32 MB. It holds at most `Config::max_pending_bytes` (64 MiB) of
//! bodies read and not yet uploaded, plus one body, so its peak should grow
//! with that budget and the bodies in flight, not with the database: the
//! first release held 4,096 jobs whatever their size (578 MB for 400 bodies
//! of about 1 MB).

use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_core::JobId;
use jobvault_tests::{Daemon, Workspace};

use super::setup::{emulator_with_proxy, wait_for_cursor};
use super::verdict::Measured;

/// Bodies of each size, and how many: a few hundred MiB each time.
const RUNS: [(&str, usize, usize); 3] = [
    ("1 KB", 1 << 10, 20_000),
    ("1 MB", 1 << 20, 400),
    ("32 MB", 32 << 20, 12),
];

/// Prints the peaks; none has a target of its own (DESIGN §7 bounds the
/// snapshot's and the restore's), so it measures nothing for the verdict.
pub fn run() -> Measured {
    println!("== memory: the daemon's peak RSS backing up bodies of each size");
    let (emulator, proxy, _data) = emulator_with_proxy();
    for (label, body_bytes, jobs) in RUNS {
        // The daemon starts on an empty database, so its first snapshot is
        // small: what is measured is the incremental backup of the bodies.
        let workspace = Workspace::new();
        drop(JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap());
        let bucket = format!("gs://{}", emulator.new_bucket("memory"));
        let daemon = Daemon::start(&workspace, Some(&proxy.endpoint()), &bucket, "1s", &[]);
        daemon.settled();
        database_of_bodies(&workspace, body_bytes, jobs);
        let db = JobDb::open(&workspace.db()).unwrap();
        wait_for_cursor(&db, jobs as u64, Duration::from_secs(30 * 60));
        let peak = peak_rss_mib(daemon.pid());
        daemon.stop();
        println!(
            "  {label} bodies, {jobs} jobs ({} MiB of bodies): peak RSS {peak:.0} MiB",
            (body_bytes * jobs) >> 20
        );
    }
    println!(
        "  (the budget: 64 MiB of bodies held, plus one body; the peak adds each upload's \
         encoded copies and what the allocator keeps of freed ones; flat in the number of jobs)"
    );
    Vec::new()
}

/// `jobs` jobs whose bodies are about `body_bytes` of JSON that does not
/// compress (random letters), a few to a commit.
fn database_of_bodies(workspace: &Workspace, body_bytes: usize, jobs: usize) {
    let mut db = JobDb::open(&workspace.db()).unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let per_commit = (64 << 20) / body_bytes;
    for start in (0..jobs).step_by(per_commit.max(1)) {
        let batch: Vec<_> = (start..jobs.min(start + per_commit.max(1)))
            .map(|n| {
                let id = format!("big-{n:06}");
                let pad: String = (0..body_bytes).map(|_| rng.alphanumeric()).collect();
                let body = format!(r#"{{"id":"{id}","log":"{pad}"}}"#);
                (JobId::new(id).unwrap(), body)
            })
            .collect();
        db.put(&batch).unwrap();
    }
}

/// The most memory the process has held, from `/proc`.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024.0
}
