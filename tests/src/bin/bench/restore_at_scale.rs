//! `bench restore-at-scale`: a big scheduler's day restored through the
//! latency proxy, at several concurrencies, then with 2% of requests
//! failing, then with listings paged as GCS pages them.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use jobvault::db::JobDb;
use jobvault_tests::{Chaos, Daemon, StoreReader, Workspace, jobvault};

use super::setup::{
    LATENCY, bounded, database_of_size, emulator_with_proxy, mark_backed_up, put_jobs, run_within,
    timed, versions, wait_for_cursor,
};
use super::targets::Figure;
use super::verdict::Measured;

/// `restore --concurrency`'s default, which the targets judge.
const DEFAULT_CONCURRENCY: u16 = 64;

/// A big scheduler's day: a snapshot of a `mib` MiB database, then `changed`
/// jobs rewritten after it and uploaded by the daemon, and a restore of it
/// all through the latency proxy, checked job by job against the source.
/// Restores at several concurrencies, then at the default with 2% of
/// requests failing.
pub fn run(mib: u64, changed: usize) -> Measured {
    println!(
        "== restore at scale: a {mib} MiB snapshot and {changed} job objects since, {LATENCY:?} per request"
    );
    let (emulator, proxy, _data) = emulator_with_proxy();
    let url = format!("gs://{}", emulator.new_bucket("scale"));
    let workspace = Workspace::new();
    database_of_size(&workspace, mib);
    mark_backed_up(&workspace.db());
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1s", &[]);
    let mut backup = jobvault(Some(&emulator.endpoint()));
    backup
        .args(["backup", "--bucket", &url, "--db"])
        .arg(workspace.db());
    let output = bounded(backup).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut db = JobDb::open(&workspace.db()).unwrap();
    put_jobs(&mut db, changed, 0x51ce);
    let newest = db.newest_seq().unwrap();
    let uploading = Instant::now();
    wait_for_cursor(&db, newest, Duration::from_secs(60 * 60));
    println!(
        "  (the daemon uploaded the {changed} jobs in {:.0} s, through the proxy)",
        uploading.elapsed().as_secs_f64()
    );
    daemon.stop();
    let source = versions(&workspace.db());
    let restore = |concurrency: u16| -> (f64, u64) {
        let target = workspace.path().join(format!("restored-{concurrency}.db"));
        let mut restore = jobvault(Some(&proxy.endpoint()));
        restore
            .args(["restore", "--concurrency", &concurrency.to_string()])
            .args(["--bucket", &url, "--to"])
            .arg(&target);
        let (seconds, peak) = timed(restore);
        assert!(
            versions(&target) == source,
            "the restored database holds other versions than the source"
        );
        std::fs::remove_file(&target).unwrap();
        (seconds, peak / 1024)
    };
    let mut clean = Vec::new();
    for concurrency in [32, 64, 128] {
        let (seconds, peak) = restore(concurrency);
        println!(
            "  restore --concurrency {concurrency}: {seconds:.1} s, peak memory {peak} MiB, {} jobs equal to the source",
            source.len()
        );
        clean.push((concurrency, seconds, peak));
    }
    let (_, clean_seconds, clean_peak) = *clean
        .iter()
        .find(|(c, ..)| *c == DEFAULT_CONCURRENCY)
        .expect("the default was measured");
    // 2% of requests fail for a while: 1% answered 503, 1% 429.
    proxy.set_chaos(
        Some(Chaos {
            unavailable: 0.01,
            throttled: 0.01,
            ..Chaos::default()
        }),
        0xbad,
    );
    let (seconds, peak) = restore(DEFAULT_CONCURRENCY);
    proxy.set_chaos(None, 0);
    println!(
        "  restore at the default ({DEFAULT_CONCURRENCY}), 2% of requests failing (503 or 429): {seconds:.1} s, peak memory {peak} MiB ({:.2}x the clean restore; target at most 1.2x)",
        seconds / clean_seconds
    );
    // Listings as GCS serves them, at most 1,000 objects a page: the
    // emulator reads the whole folder for every page it serves.
    proxy.page_listings(Some(1_000));
    let (paged, _) = restore(DEFAULT_CONCURRENCY);
    proxy.page_listings(None);
    println!(
        "  restore at the default, listings in pages of 1,000 as GCS serves them: {paged:.1} s ({:.2}x; the emulator lists the whole day folder for each of its pages)",
        paged / clean_seconds
    );
    let (floor, fetched) = fetch_all_jobs(&url, &proxy.endpoint());
    println!(
        "  the floor for the job objects: a plain loop of 128 concurrent downloads of all {fetched} through the same proxy took {floor:.1} s"
    );
    vec![
        (Figure::ScaleRestoreSeconds, clean_seconds),
        (Figure::ScaleRestorePeakMib, clean_peak as f64),
        (Figure::ScaleRestoreFaultyRatio, seconds / clean_seconds),
    ]
}

/// Downloads every job object in the bucket, 128 at a time, doing nothing
/// with them: the store's part of a restore. Returns seconds and how many.
fn fetch_all_jobs(url: &str, endpoint: &str) -> (f64, usize) {
    let reader = StoreReader::connect(url, Some(endpoint));
    let names = reader.names("job-backup/");
    let started = Instant::now();
    let fetched = run_within(
        "the downloads of every job object",
        Duration::from_secs(30 * 60),
        stream::iter(&names)
            .map(|name| {
                let store = reader.store();
                async move { store.get(name).await.unwrap() }
            })
            .buffer_unordered(128)
            .count(),
    );
    (started.elapsed().as_secs_f64(), fetched)
}
