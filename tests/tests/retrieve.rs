//! `jobvault retrieve`: the newest version of every job uploaded since a time,
//! read back from the day folders of a real store.

use std::process::Output;
use std::time::Duration;

use jobvault_core::object_name::{Framing, job_object};
use jobvault_core::{Envelope, JobId, Timestamp};
use jobvault_tests::{Emulator, StoreReader, jobvault, runtime, stderr, stdout};

const DAY: Duration = Duration::from_secs(86_400);

/// A version of a job whose body has a field jobvault does not know and
/// spacing of its own, as an outside writer might store it.
fn version(id: &str, seq: u64) -> Envelope {
    let body =
        format!(r#"{{"id": "{id}", "name": "{id} version {seq}", "owner": {{"team": "ci"}}}}"#);
    let at = Timestamp::from_unix_seconds(1_700_000_000 + seq as i64);
    Envelope::written(JobId::new(id).unwrap(), seq, at, body)
}

fn deletion(id: &str, seq: u64) -> Envelope {
    let at = Timestamp::from_unix_seconds(1_700_000_000 + seq as i64);
    Envelope::deleted(JobId::new(id).unwrap(), seq, at)
}

fn retrieve(endpoint: &str, url: &str, since: Timestamp, extra: &[&str]) -> Output {
    jobvault(Some(endpoint))
        .args(["retrieve", "--bucket", url, "--since", &since.rfc3339()])
        .args(extra)
        .output()
        .unwrap()
}

fn retrieved(output: &Output) -> Vec<(String, String)> {
    stdout(output)
        .lines()
        .map(|line| {
            let job: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                job["id"].as_str().unwrap().to_owned(),
                job["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn retrieve_returns_the_newest_version_of_each_job_across_day_folders() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("retrieve");
    let url = format!("gs://{bucket}");
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let now = jobvault::clock::now();
    let days_ago = |n: u32| now - DAY * n;
    reader.put_job(days_ago(3), &version("a", 1));
    reader.put_job(days_ago(1), &version("a", 5));
    reader.put_job(now, &version("a", 9));
    reader.put_job(days_ago(2), &version("b", 2));
    // An older folder may hold a newer version (a clock step): the version
    // inside the object decides, not the folder.
    reader.put_job(now, &version("c", 3));
    reader.put_job(days_ago(1), &version("c", 7));
    // Only in a folder before the day of `since`.
    reader.put_job(days_ago(3), &version("e", 4));
    // Deleted after its last write: not brought back. Deleted, then written
    // again: back with its new body.
    reader.put_job(days_ago(2), &version("d", 3));
    reader.put_job(days_ago(1), &deletion("d", 6));
    reader.put_job(days_ago(2), &deletion("f", 2));
    reader.put_job(now, &version("f", 8));

    let output = retrieve(&emulator.endpoint(), &url, days_ago(2), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        retrieved(&output),
        [
            ("a".to_owned(), "a version 9".to_owned()),
            ("b".to_owned(), "b version 2".to_owned()),
            ("c".to_owned(), "c version 7".to_owned()),
            ("f".to_owned(), "f version 8".to_owned()),
        ]
    );
    assert_eq!(
        stdout(&output).lines().next().unwrap(),
        version("a", 9).body().unwrap(),
        "the body comes back byte for byte, with the field jobvault does not know"
    );
    assert!(
        stderr(&output).contains("deleted jobs left out: 1 (--deleted prints them)"),
        "{}",
        stderr(&output)
    );

    let output = retrieve(&emulator.endpoint(), &url, days_ago(2), &["--deleted"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["a", "b", "c", "d", "f"],
        "in id order, the deletion too"
    );
    assert_eq!(lines[3]["deleted"], true);
    assert_eq!(lines[3]["modified"], deletion("d", 6).modified.rfc3339());
}

/// `--since 2h`: a duration ago, as well as RFC 3339.
#[test]
fn since_takes_a_duration_ago() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("since-ago"));
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let now = jobvault::clock::now();
    reader.put_job(now - DAY * 2, &version("old", 1));
    reader.put_job(now, &version("new", 2));
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["retrieve", "--bucket", &url, "--since", "1d"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        retrieved(&output),
        [("new".to_owned(), "new version 2".to_owned())]
    );
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["retrieve", "--bucket", &url, "--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("neither an RFC 3339 time"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn retrieve_skips_objects_uploaded_before_since() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("since");
    let url = format!("gs://{bucket}");
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let now = jobvault::clock::now();
    reader.put_job(now, &version("early", 1));
    std::thread::sleep(Duration::from_millis(1100));
    let since = jobvault::clock::now();
    reader.put_job(now, &version("late", 2));
    let output = retrieve(&emulator.endpoint(), &url, since, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        retrieved(&output),
        [("late".to_owned(), "late version 2".to_owned())]
    );
}

#[test]
fn a_corrupt_job_object_fails_retrieve_unless_skipped() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("corrupt");
    let url = format!("gs://{bucket}");
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let now = jobvault::clock::now();
    reader.put_job(now, &version("good", 1));
    let bad = job_object(now, &JobId::new("bad").unwrap());
    let framing = Framing::for_object(&bad, now);
    runtime()
        .block_on(
            reader
                .store()
                .put(&bad, b"\x1f\x8bnot really gzip".to_vec(), &framing),
        )
        .unwrap();

    let output = retrieve(&emulator.endpoint(), &url, now - DAY, &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&format!("{url}/{bad}")),
        "the object is named: {text}"
    );
    assert!(
        stdout(&output).is_empty(),
        "nothing is printed when failing"
    );

    let output = retrieve(&emulator.endpoint(), &url, now - DAY, &["--skip-corrupt"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        retrieved(&output),
        [("good".to_owned(), "good version 1".to_owned())]
    );
    assert!(
        stderr(&output).contains("1 corrupt objects skipped"),
        "{}",
        stderr(&output)
    );
}
