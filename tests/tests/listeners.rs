//! Nothing a neighbour does to the daemon's listeners stops backups: a flood
//! of idle connections on the metrics port under a low open-file limit, a
//! request that never finishes its headers. `jobvault backup` reaches the
//! daemon through a socket only its owner and group may use, and eight at
//! once each get a snapshot of their own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jobvault::control::socket_path;
use jobvault_tests::writers::caught_up;
use jobvault_tests::{
    Daemon, Emulator, StoreReader, Workspace, http_post_json, jobvault, stderr, stdout,
};
use serde_json::json;

#[test]
fn a_flood_of_idle_connections_under_a_low_file_limit_does_not_stop_backups() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("flood"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({"id": "before", "name": "before"})]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    daemon.settled();
    let limited = Command::new("prlimit")
        .arg(format!("--pid={}", daemon.pid()))
        .arg("--nofile=96:96")
        .status()
        .unwrap();
    assert!(limited.success());
    let log_before = daemon.log().len();

    // More connections than the daemon may open files (those past its cap
    // wait in the kernel's queue of 128), half of them with a request that
    // never ends its headers.
    let flood: Vec<TcpStream> = (0..150)
        .filter_map(|i| {
            let mut stream =
                TcpStream::connect_timeout(&daemon.metrics, Duration::from_secs(2)).ok()?;
            if i % 2 == 0 {
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .ok()?;
            }
            Some(stream)
        })
        .collect();
    assert!(flood.len() > 96, "only {} connections made", flood.len());
    let jobs: Vec<_> = (0..20)
        .map(|i| json!({"id": format!("during-{i}"), "name": "during"}))
        .collect();
    workspace.put_jobs(&jobs);
    caught_up(&workspace.db());
    let names = StoreReader::connect(&url, Some(&emulator.endpoint())).names("job-backup/");
    assert!(
        names.iter().filter(|n| n.contains("/during-")).count() == 20,
        "{names:?}"
    );
    drop(flood);
    jobvault_tests::eventually(
        "a scrape once the flood is gone",
        Duration::from_secs(60),
        || {
            jobvault_tests::http_get(&format!("http://{}/metrics", daemon.metrics))
                .ok()
                .filter(|(status, _)| *status == 200)
        },
    );
    let log = daemon.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(
        log.len() - log_before < 20_000,
        "the flood wrote {} bytes of log",
        log.len() - log_before
    );
}

#[test]
fn a_request_that_never_ends_its_headers_is_closed() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("slow-headers"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({"id": "a", "name": "A"})]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1h", &[]);
    let mut stream = TcpStream::connect(daemon.metrics).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("closed before the test's own timeout");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn backup_goes_through_a_socket_for_the_owner_and_group_and_not_the_metrics_port() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("control");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({"id": "a", "name": "A"})]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1h", &[]);
    daemon.settled();
    let socket = socket_path(&std::fs::canonicalize(workspace.db()).unwrap());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
    let (status, _) = http_post_json(
        &format!("http://{}/backup", daemon.metrics),
        &json!({"name": "n"}),
    )
    .unwrap();
    assert_eq!(status, 404, "the metrics port takes no requests");

    // Eight at once: each its own snapshot, though names tell seconds.
    let backups: Vec<_> = (0..8)
        .map(|_| {
            jobvault(Some(&emulator.endpoint()))
                .args(["backup", "--bucket", &url, "--name", "burst", "--db"])
                .arg(workspace.db())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut objects: Vec<String> = backups
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{}", stderr(&output));
            stdout(&output).trim().to_owned()
        })
        .collect();
    objects.sort();
    objects.dedup();
    assert_eq!(objects.len(), 8, "{objects:?}");
    let stored = StoreReader::connect(&url, Some(&emulator.endpoint())).names("db-backup/");
    assert_eq!(
        stored.iter().filter(|n| n.contains("/burst-")).count(),
        8,
        "{stored:?}"
    );
    let through_daemon = daemon.log().matches("immediate snapshot done").count();
    assert_eq!(through_daemon, 8, "{}", daemon.log());
}

#[test]
fn backup_beside_a_stopped_daemon_takes_the_snapshot_itself_and_says_so() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("stopped-daemon"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({"id": "a", "name": "A"})]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "1h", &[]);
    daemon.settled();
    let stop = |signal: &str| {
        let sent = Command::new("kill")
            .args([signal, &daemon.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    stop("-STOP");
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["backup", "--bucket", &url, "--name", "alone", "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    stop("-CONT");
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains("taking the snapshot here, beside the daemon")
            && said.contains("took no request within 10s"),
        "{said}"
    );
    let stored = StoreReader::connect(&url, Some(&emulator.endpoint())).names("db-backup/");
    assert!(stored.iter().any(|n| n.contains("/alone-")), "{stored:?}");
}
