//! Store errors handled as GCS documents them: a 403 is said once, clearly,
//! counted and retried slowly; a 429 is retried after a growing wait. The
//! daemon keeps running through both.

use std::time::{Duration, Instant};

use jobvault::db::JobDb;
use jobvault_tests::{Backend, Daemon, Emulator, Proxy, Workspace, eventually, free_port, gauge};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(30);

fn setup(name: &str) -> (Emulator, Proxy, Workspace, String) {
    let proxy_port = free_port();
    let emulator = Emulator::start_on(free_port(), proxy_port, Backend::Memory);
    let proxy = Proxy::start(proxy_port, emulator.address(), Duration::ZERO);
    let url = format!("gs://{}", emulator.new_bucket(name));
    let workspace = Workspace::new();
    workspace.put_jobs(&[]);
    (emulator, proxy, workspace, url)
}

/// Starts the daemon, lets it take its lease, then has the store answer
/// uploads with `status` and writes a job.
fn daemon_facing(
    status: u16,
    proxy: &Proxy,
    workspace: &Workspace,
    url: &str,
    interval: &str,
) -> Daemon {
    let daemon = Daemon::start(workspace, Some(&proxy.endpoint()), url, interval, &[]);
    eventually("the lease taken", PATIENCE, || {
        lease_taken(proxy).then_some(())
    });
    // The destination's marker and first snapshot are in: from here on the
    // only uploads refused are the job's.
    daemon.settled();
    proxy.refuse_uploads(Some(status));
    workspace.put_jobs(&[json!({ "id": "j1", "name": "Build" })]);
    daemon
}

/// Uploads the store refused.
fn refused(proxy: &Proxy) -> usize {
    proxy.seen().iter().filter(|seen| seen.failed).count()
}

fn lease_taken(proxy: &Proxy) -> bool {
    proxy
        .seen()
        .iter()
        .any(|seen| seen.path_and_query.starts_with("/upload/"))
}

/// The one line of `log` that holds `text`, with the bucket and the status
/// it must name; fails if it is said more than once or not at all.
fn said_once<'a>(log: &'a str, text: &str, bucket: &str, status: &str) -> &'a str {
    let said: Vec<&str> = log.lines().filter(|line| line.contains(text)).collect();
    assert_eq!(said.len(), 1, "said once, not at every try: {log}");
    assert!(
        said[0].contains(bucket) && said[0].contains(status),
        "{}",
        said[0]
    );
    said[0]
}

#[test]
fn a_403_is_said_once_naming_the_bucket_counted_and_not_retried_soon() {
    let (_emulator, proxy, workspace, url) = setup("refusing");
    let daemon = daemon_facing(403, &proxy, &workspace, &url, "200ms");
    let bucket = url.trim_start_matches("gs://");
    eventually("the refusal in the log", PATIENCE, || {
        daemon
            .log()
            .contains("the store refuses jobvault's uploads")
            .then_some(())
    });
    // Ten intervals later: no second try, and still running.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(refused(&proxy), 1, "retried before five minutes");
    let log = daemon.log();
    let said = said_once(&log, "the store refuses jobvault's uploads", bucket, "403");
    assert!(said.contains("storage.objects.create"), "{said}");
    let scrape = daemon.scrape();
    assert!(
        scrape.contains("jobvault_store_refusals_total{database=\"task-scheduler\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("jobvault_pending_jobs{database=\"task-scheduler\"} 1"),
        "{scrape}"
    );
}

#[test]
fn a_429_is_retried_after_a_growing_wait_until_the_job_lands() {
    let (_emulator, proxy, workspace, url) = setup("throttled");
    let daemon = daemon_facing(429, &proxy, &workspace, &url, "10s");
    eventually("the first throttled attempt", PATIENCE, || {
        (refused(&proxy) >= 1).then_some(())
    });
    let started = Instant::now();
    eventually("two more throttled attempts", PATIENCE, || {
        (refused(&proxy) >= 3).then_some(())
    });
    // Waits of about 1 s then 2 s (no sooner than a second apart: one write
    // a second per object), not the 10 s interval, and not at once.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_secs(9), "{took:?}");
    proxy.refuse_uploads(None);
    let db = JobDb::open(&workspace.db()).unwrap();
    eventually("the job in the bucket", PATIENCE, || {
        (db.cursor().unwrap().seq == 1).then_some(())
    });
    assert!(
        daemon
            .scrape()
            .contains("jobvault_upload_errors_total{database=\"task-scheduler\",kind=\"job\"}"),
        "{}",
        daemon.scrape()
    );
}

/// A bucket the credentials may not touch at all: even the lease cannot be
/// read. The daemon keeps running, says so once, counts each refused read
/// of the lease as a refusal (nothing is uploaded meanwhile), and takes the
/// lease once the store lets it.
#[test]
fn a_403_on_the_lease_too_is_said_once_counted_and_the_lease_taken_once_allowed() {
    let (_emulator, proxy, workspace, url) = setup("forbidden");
    proxy.refuse_everything(Some(403));
    let daemon = Daemon::start(&workspace, Some(&proxy.endpoint()), &url, "200ms", &[]);
    workspace.put_jobs(&[json!({ "id": "j1", "name": "Build" })]);
    eventually("the refused lease counted", PATIENCE, || {
        gauge(&daemon.scrape(), "jobvault_store_refusals_total")
            .is_some_and(|refusals| refusals >= 1.0)
            .then_some(())
    });
    eventually("three tries at the lease", PATIENCE, || {
        (refused(&proxy) >= 3).then_some(())
    });
    let bucket = url.trim_start_matches("gs://");
    said_once(
        &daemon.log(),
        "the store refuses jobvault's lease",
        bucket,
        "403",
    );
    proxy.refuse_everything(None);
    eventually("the lease taken", PATIENCE, || {
        daemon.log().contains("took the lease").then_some(())
    });
    assert!(
        lease_taken(&proxy),
        "the lease went through the store: {:?}",
        proxy.seen()
    );
}

/// A small object written again between the read of its generation and
/// the read of its bytes (a lease renewed while `status` reads it) is read
/// again at its new generation: on a bucket without versioning the old one
/// is gone, and `status` exited 4 on the 404 (a hostile trial, 2 runs of
/// 81). A writer here rewrites the object as fast as the emulator takes it.
#[test]
fn an_object_written_again_between_its_two_reads_is_read_at_its_new_generation() {
    use jobvault_core::object_name::Framing;
    use jobvault_tests::{StoreReader, runtime};
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("rewritten"));
    let framing = Framing::for_object("probe.json", jobvault::clock::now());
    let put = |reader: &StoreReader, n: usize| {
        runtime()
            .block_on(
                reader
                    .store()
                    .put("probe.json", n.to_string().into_bytes(), &framing),
            )
            .unwrap();
    };
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    put(&reader, 0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failed = std::thread::scope(|scope| {
        scope.spawn(|| {
            let writer = StoreReader::connect(&url, Some(&emulator.endpoint()));
            let mut n = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                put(&writer, n);
                n += 1;
            }
        });
        let failed: Vec<String> = (0..300)
            .filter_map(
                |_| match runtime().block_on(reader.store().get_versioned("probe.json")) {
                    Ok(Some(_)) => None,
                    other => Some(format!("{other:?}")),
                },
            )
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        failed
    });
    assert!(failed.is_empty(), "{failed:?}");
}
