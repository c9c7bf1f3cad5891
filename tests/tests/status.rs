//! `jobvault status`: the newest snapshot and job upload, and warnings when
//! backups look stale.

use std::fs;
use std::time::{Duration, SystemTime};

use jobvault_core::object_name::{job_object, snapshot_object};
use jobvault_core::{JobId, Timestamp};
use jobvault_tests::{Emulator, jobvault, stderr, stdout};

/// Sets a file's modification time to `age` ago.
fn age_file(path: &std::path::Path, age: Duration) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

/// Replaces what changes from run to run (times, the dates in object
/// names, the temporary directory) so a report can be compared to a snapshot.
fn redact(text: &str, root: &std::path::Path) -> String {
    let text = text.replace(&root.display().to_string(), "[ROOT]");
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<String> = line
            .split(' ')
            .map(|word| {
                let bare = word.trim_end_matches(',');
                if Timestamp::parse_rfc3339(bare).is_ok() {
                    word.replace(bare, "[TIME]")
                } else if let Some(at) = word.find("-backup/") {
                    let (head, tail) = word.split_at(at + "-backup/".len());
                    format!("{head}[YYYY/MM/DD]{}", &tail[10.min(tail.len())..])
                } else {
                    word.to_owned()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

#[test]
fn status_of_an_empty_bucket_says_there_is_no_snapshot() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("empty");
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["status", "--bucket", &format!("gs://{bucket}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "no backup is a warning");
    let text = stdout(&output).replace(&bucket, "[BUCKET]");
    insta::assert_snapshot!(text);
}

/// A script tells a report with warnings (1) from a bucket it could not
/// read (4).
#[test]
fn status_of_a_bucket_that_cannot_be_read_exits_4_naming_it() {
    let emulator = Emulator::shared();
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["status", "--bucket", "gs://no-such-bucket-for-status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no-such-bucket-for-status"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn status_of_a_stale_bucket_warns() {
    let dir = tempfile::tempdir().unwrap();
    let now = jobvault::clock::now();
    let snapshot = dir.path().join(
        snapshot_object(now - Duration::from_secs(30 * 3600), "nightly")
            .unwrap()
            .as_str(),
    );
    let job = dir
        .path()
        .join(job_object(now - Duration::from_secs(7200), &JobId::new("j").unwrap()).as_str());
    for (path, age) in [(&snapshot, 30 * 3600), (&job, 7200)] {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
        age_file(path, Duration::from_secs(age));
    }
    let url = format!("file://{}", dir.path().display());
    let output = jobvault(None)
        .args(["status", "--bucket", &url])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "warnings: {}",
        stderr(&output)
    );
    insta::assert_snapshot!(redact(&stdout(&output), dir.path()));

    let json = jobvault(None)
        .args(["status", "--bucket", &url, "--json"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["snapshots_last_24h"], 0);
    assert_eq!(json["warnings"].as_array().unwrap().len(), 2);
    assert!(json["newest_snapshot"]["age_seconds"].as_u64().unwrap() >= 30 * 3600);
}

/// With a daemon running, `status` reads its lease, one object, instead of
/// listing the day's job objects.
#[test]
fn status_reads_the_daemons_lease_instead_of_listing_job_objects() {
    use jobvault_tests::{Backend, Daemon, Proxy, Workspace, eventually, free_port};
    let proxy_port = free_port();
    let emulator = Emulator::start_on(free_port(), proxy_port, Backend::Memory);
    let proxy = Proxy::start(proxy_port, emulator.address(), Duration::ZERO);
    let url = format!("gs://{}", emulator.new_bucket("status-lease"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    // Until the first snapshot lands, and the lease says the daemon caught
    // up (a renewal may carry the cursor before), `status` warns.
    daemon.settled();
    let output = eventually(
        "a lease caught up to the cursor",
        Duration::from_secs(30),
        || {
            let output = jobvault(Some(&proxy.endpoint()))
                .args(["status", "--bucket", &url])
                .output()
                .unwrap();
            (output.status.success() && stdout(&output).contains("every change up to 1;"))
                .then_some(output)
        },
    );
    let report = stdout(&output);
    assert!(
        report.contains(&format!("pid {}", daemon.pid())),
        "{report}"
    );
    assert!(!report.contains("newest job upload"), "{report}");
    let listed_jobs = proxy
        .seen()
        .iter()
        .any(|seen| seen.path_and_query.contains("prefix=job-backup"));
    assert!(
        !listed_jobs,
        "status listed job objects: {:?}",
        proxy.seen()
    );
}

/// A mistyped prefix holds nothing: `status` says which prefixes beside it
/// hold backups, as `restore` does, instead of only "no snapshot" (read as
/// a daemon never started).
#[test]
fn status_of_a_mistyped_prefix_names_the_prefixes_beside_it_that_hold_backups() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("typo");
    let workspace = jobvault_tests::Workspace::new();
    workspace.put_jobs(&[serde_json::json!({"id": "a", "name": "a"})]);
    let output = jobvault(Some(&emulator.endpoint()))
        .args([
            "backup",
            "--bucket",
            &format!("gs://{bucket}/prod/eu"),
            "--db",
        ])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["status", "--bucket", &format!("gs://{bucket}/prod/ue")])
        .output()
        .unwrap();
    let said = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("hold backups: gs://{bucket}/prod/eu")),
        "{said}"
    );
}
