//! The command line: output, exit codes, and one clear line per error.

use std::fs;
use std::process::Output;

use jobvault::db::JobDb;
use jobvault_tests::{
    Emulator, StoreReader, Workspace, back_up_once, jobvault, run_with_stdin, stderr, stdout, today,
};

/// Exit status 1 and exactly one line on stderr that contains `needle`.
fn assert_runtime_error(output: &Output, needle: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "one line expected: {text}"
    );
    assert!(text.starts_with("jobvault: error: "), "{text}");
    assert!(text.contains(needle), "{needle:?} not in {text}");
}

#[test]
fn backup_prints_the_object_name_it_uploaded() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("backup");
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["backup", "--bucket", &format!("gs://{bucket}"), "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8(output.stdout.clone()).unwrap();
    let name = printed.trim();
    let prefix = format!("db-backup/{}/task-scheduler-", today());
    assert!(name.starts_with(&prefix), "{name}");
    let clock = name
        .strip_prefix(&prefix)
        .unwrap()
        .strip_suffix(".bdb")
        .unwrap();
    assert!(
        clock.len() == 8 && clock.as_bytes()[2] == b':' && clock.as_bytes()[5] == b':',
        "HH:MM:SS expected, got {clock}"
    );
    let reader = StoreReader::connect(&format!("gs://{bucket}"), Some(&emulator.endpoint()));
    assert_eq!(reader.names("db-backup/"), [name]);
    assert!(
        stderr(&output).is_empty(),
        "a successful backup is quiet: {}",
        stderr(&output)
    );
}

#[test]
fn backup_to_a_missing_bucket_says_so_and_fails() {
    let emulator = Emulator::shared();
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["backup", "--bucket", "gs://missing-bucket", "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert_runtime_error(&output, "bucket missing-bucket does not exist");
}

#[test]
fn a_missing_or_unreadable_database_is_named() {
    let workspace = Workspace::new();
    let missing = workspace.path().join("nope.db");
    let output = jobvault(None)
        .args(["backup", "--bucket", "file:///tmp/unused", "--db"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_runtime_error(
        &output,
        &format!("job database {} does not exist", missing.display()),
    );

    // A path that cannot be looked up is not a missing file: it says why.
    // (Through a file here, as root searches any directory.)
    let plain = workspace.path().join("plain");
    fs::write(&plain, "").unwrap();
    let beyond = plain.join("jobs.db");
    let output = jobvault(None)
        .args(["backup", "--bucket", "file:///tmp/unused", "--db"])
        .arg(&beyond)
        .output()
        .unwrap();
    assert_runtime_error(
        &output,
        &format!("job database {}: Not a directory", beyond.display()),
    );

    let garbage = workspace.path().join("garbage.db");
    fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let output = jobvault(None)
        .args(["jobs", "list", "--db"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert_runtime_error(&output, "file is not a database");
    assert!(stderr(&output).contains(&garbage.display().to_string()));

    // Another program's `jobs` table: refused in one line naming what it
    // holds, and left as it was.
    let foreign = workspace.path().join("foreign.db");
    jobvault_tests::writers::sqlite3(&foreign, "CREATE TABLE jobs (name TEXT, owner TEXT);");
    let output = jobvault(None)
        .args(["init", "--db"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert_runtime_error(
        &output,
        "has a `jobs` table that is not jobvault's (columns: name, owner",
    );
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
    let tables = jobvault_tests::writers::sqlite3(&foreign, ".tables");
    assert_eq!(tables.split_whitespace().collect::<Vec<_>>(), ["jobs"]);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["run"],
        vec!["backup", "--db", "x.db", "--bucket", "s3://bucket"],
        vec![
            "run",
            "--db",
            "x",
            "--bucket",
            "gs://b",
            "--workdir",
            "w",
            "--interval",
            "1ms",
        ],
        vec![
            "run",
            "--db",
            "x",
            "--bucket",
            "gs://b",
            "--workdir",
            "w",
            "--concurrency",
            "0",
        ],
        vec!["no-such-command"],
    ] {
        let output = jobvault(None).args(&args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// `1m` reads as a minute to some tools and a month to others (restic):
/// every duration flag refuses it, and a number without a unit, with a
/// hint. `--keep` has one floor and one `off` for `run` and `prune`.
#[test]
fn durations_that_could_be_misread_are_refused_by_every_flag() {
    let run = [
        "run",
        "--db",
        "x.db",
        "--bucket",
        "gs://b",
        "--workdir",
        "w",
    ];
    let prune = ["prune", "--bucket", "gs://b"];
    let restore = ["restore", "--bucket", "gs://b", "--to", "x.db"];
    let cases: [(&[&str], &str, &str, &str); 7] = [
        (&prune, "--keep", "1m", "write `min` for minutes"),
        (&run, "--keep", "1m", "write `min` for minutes"),
        (&run, "--interval", "5m", "write `min` for minutes"),
        (&run, "--grace", "1M", "write `min` for minutes"),
        (
            &restore,
            "--read-patience",
            "10m",
            "write `min` for minutes",
        ),
        (&prune, "--keep", "0", "has no unit"),
        (&prune, "--keep", "30min", "under the floor of 1h"),
    ];
    for (command, flag, value, needle) in cases {
        let output = jobvault(None)
            .args(command)
            .args([flag, value])
            .output()
            .unwrap();
        let text = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command:?} {flag} {value}: {text}"
        );
        assert!(text.contains(needle), "{command:?} {flag} {value}: {text}");
        assert!(text.contains(flag), "the flag is named: {text}");
    }
}

/// A mistyped year gave today's jobs as the past asked for (or no job
/// since), with exit 0.
#[test]
fn an_instant_in_the_future_is_refused_by_restore_and_retrieve() {
    let restore = ["restore", "--bucket", "gs://b", "--to", "x.db"];
    let retrieve = ["retrieve", "--bucket", "gs://b"];
    for (command, flag) in [(&restore[..], "--at"), (&retrieve[..], "--since")] {
        let output = jobvault(None)
            .args(command)
            .args([flag, "2099-11-30T13:59:00Z"])
            .output()
            .unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {text}");
        assert!(
            text.contains("2099-11-30T13:59:00Z is in the future") && text.contains(flag),
            "{command:?}: {text}"
        );
    }
}

#[test]
fn prune_keep_off_deletes_nothing_as_run_keep_off_does() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("keep-off");
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let url = format!("gs://{bucket}");
    back_up_once(Some(&emulator.endpoint()), &url, &workspace.db());
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["prune", "--bucket", &url, "--keep", "off"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("--keep off keeps every backup"),
        "{}",
        stdout(&output)
    );
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    assert_eq!(reader.names("db-backup/").len(), 1);
}

#[test]
fn jobs_round_trip_and_a_bad_batch_writes_nothing() {
    let workspace = Workspace::new();
    workspace.put_jobs(&[
        serde_json::json!({ "id": "b", "name": "B", "status": "in-progress", "priority": 0.5 }),
        serde_json::json!({ "id": "a", "name": "A", "dependencies": { "Test": ["Build"] } }),
    ]);
    let listed = jobvault(None)
        .args(["jobs", "list", "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(listed.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[0]["dependencies"]["Test"][0], "Build");
    assert_eq!(lines[1]["status"], "in-progress");
    assert_eq!(lines[1]["priority"], 0.5);

    let got = jobvault(None)
        .args(["jobs", "get", "--db"])
        .arg(workspace.db())
        .arg("b")
        .output()
        .unwrap();
    let got: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(got, lines[1]);

    let mut put = jobvault(None);
    put.args(["jobs", "put", "--db"]).arg(workspace.db());
    let output = run_with_stdin(
        put,
        "{\"id\":\"c\",\"name\":\"C\"}\n{\"id\":\"../escape\",\"name\":\"D\"}\n",
    );
    assert_runtime_error(&output, "stdin line 2: job id \"../escape\" contains '/'");
    let ids: Vec<String> = JobDb::open(&workspace.db())
        .unwrap()
        .list()
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(ids, ["a", "b"], "the bad batch wrote nothing");

    let missing = jobvault(None)
        .args(["jobs", "get", "--db"])
        .arg(workspace.db())
        .arg("zzz")
        .output()
        .unwrap();
    assert_runtime_error(&missing, "job zzz is not in");
}

#[test]
fn trigger_drops_a_file_the_daemon_will_serve() {
    let workspace = Workspace::new();
    let trigger = |name: &str| {
        jobvault(None)
            .args(["trigger", "--workdir"])
            .arg(workspace.workdir())
            .arg(name)
            .output()
            .unwrap()
    };
    let output = trigger("nightly");
    assert!(output.status.success(), "{}", stderr(&output));
    let path = workspace.triggers().join("nightly");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        path.display().to_string()
    );
    assert_eq!(fs::read(&path).unwrap(), b"");

    let again = trigger("nightly");
    assert!(again.status.success());
    assert!(stderr(&again).contains("already waiting"));

    assert_runtime_error(&trigger("a/b"), "contains '/'");
}

#[test]
fn backup_leaves_nothing_in_tmpdir_whether_it_succeeds_or_fails() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("tmpdir");
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let tmp = tempfile::tempdir().unwrap();
    for (url, succeeds) in [
        (format!("gs://{bucket}"), true),
        ("gs://no-such-bucket".to_owned(), false),
    ] {
        let output = jobvault(Some(&emulator.endpoint()))
            .env("TMPDIR", tmp.path())
            .args(["backup", "--bucket", &url, "--db"])
            .arg(workspace.db())
            .output()
            .unwrap();
        assert_eq!(output.status.success(), succeeds, "{}", stderr(&output));
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    }
}

/// `jobvault jobs list | head -1`: the reader goes away, and the command
/// ends as `cat` does, by SIGPIPE, silently. Before, the next print failed
/// (an error line and exit 1, or a panic and exit 101 where `println!`
/// printed).
#[test]
fn output_into_a_reader_that_stops_early_ends_by_sigpipe_and_says_nothing() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    const SIGPIPE: i32 = 13;

    let workspace = Workspace::new();
    // More than a pipe's 64 KiB buffer, so the command is still writing
    // when the reader goes.
    let jobs: Vec<_> = (0..3000)
        .map(|n| serde_json::json!({ "id": format!("job-{n}"), "name": "x".repeat(60) }))
        .collect();
    workspace.put_jobs(&jobs);
    let mut child = jobvault(None)
        .args(["jobs", "list", "--db"])
        .arg(workspace.db())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.signal(),
        Some(SIGPIPE),
        "{:?}: {}",
        output.status,
        stderr(&output)
    );
    assert_eq!(stderr(&output), "");
}

/// `keygen --out -` made a file named `-` where `age-keygen` would write
/// to stdout.
#[test]
fn keygen_refuses_dash_for_its_identity_file() {
    let workspace = Workspace::new();
    let output = jobvault(None)
        .args(["keygen", "--out", "-"])
        .current_dir(workspace.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("to a file only"));
    assert!(!workspace.path().join("-").exists());
}

/// An empty JOBVAULT_ENCRYPT_TO (an environment file's template left
/// blank) was refused as "invalid Bech32 encoding".
#[test]
fn an_empty_recipient_is_named_as_empty() {
    let output = jobvault(None)
        .args(["backup", "--db", "x.db", "--bucket", "file:///nowhere"])
        .env("JOBVAULT_ENCRYPT_TO", "")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("a value is empty"),
        "{}",
        stderr(&output)
    );
}

/// A database file with a second name (hard link): a daemon on one name
/// never saw what writers committed under the other, and reported itself
/// caught up. Every command refuses it before SQLite opens it.
#[test]
fn a_database_with_a_second_name_is_refused_by_every_command() {
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let linked = workspace.path().join("linked.db");
    fs::hard_link(workspace.db(), &linked).unwrap();
    for db in [&workspace.db(), &linked] {
        for command in [["jobs", "put"], ["jobs", "list"], ["init", ""]] {
            let mut run = jobvault(None);
            run.args(command.iter().filter(|a| !a.is_empty()))
                .arg("--db")
                .arg(db);
            let output = run_with_stdin(run, "{\"id\":\"b\",\"name\":\"B\"}\n");
            assert_runtime_error(&output, "2 names (hard links)");
        }
    }
    let mut wal = linked.into_os_string();
    wal.push("-wal");
    assert!(
        !std::path::Path::new(&wal).exists(),
        "SQLite never opened it"
    );
}
