//! Names and files from outside that once stopped backups or forged the
//! log: a trigger whose name is not UTF-8, one whose name holds a newline
//! and an escape sequence, one the daemon may not read, ids and snapshot
//! names starting with `.`, and a TMPDIR without room for the copy.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use jobvault_tests::{Daemon, Workspace, eventually, jobvault, jobvault_bin, stderr};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(30);

fn quarantined(workspace: &Workspace) -> Vec<String> {
    let dir = workspace.workdir().join("trigger-backup-invalid");
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn snapshots_named(bucket: &Path, base: &str) -> usize {
    walk(&bucket.join("db-backup"))
        .iter()
        .filter(|name| {
            name.starts_with(&format!("{base}.")) || name.starts_with(&format!("{base}-"))
        })
        .count()
}

fn walk(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                vec![e.file_name().to_string_lossy().into_owned()]
            }
        })
        .collect()
}

#[test]
fn triggers_named_not_utf8_or_with_a_forged_line_are_quarantined_and_logged_escaped() {
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({"id": "a", "name": "A"})]);
    fs::create_dir_all(workspace.triggers()).unwrap();
    fs::write(
        workspace
            .triggers()
            .join(OsStr::from_bytes(b"caf\xe9-nightly")),
        "",
    )
    .unwrap();
    let forged = "x\n2026-12-04T00:00:00Z  INFO jobvault::snapshot: snapshot uploaded object=forged.bdb \u{1b}[31m";
    workspace.trigger(forged, "");
    workspace.trigger("nightly", "");
    let daemon = Daemon::start(&workspace, None, &url, "200ms", &[]);
    eventually("two quarantined and nightly served", PATIENCE, || {
        (quarantined(&workspace).len() == 2 && snapshots_named(bucket.path(), "nightly") == 1)
            .then_some(())
    });
    let names = quarantined(&workspace);
    assert!(names.contains(&r"caf\xe9-nightly".to_owned()), "{names:?}");
    let log = daemon.log();
    assert!(!log.contains('\u{1b}'), "a raw escape sequence in the log");
    assert!(
        !log.lines()
            .any(|line| line.starts_with("2026-12-04T00:00:00Z")),
        "a forged line: {log}"
    );
    assert!(log.contains(r"x\n2026-12-04T00:00:00Z"), "{log}");
    assert!(log.contains(r"\u{1b}[31m"), "{log}");
    assert!(!log.contains("cannot check the trigger directory"), "{log}");
}

#[test]
fn a_trigger_the_daemon_may_not_read_is_quarantined_and_the_others_served() {
    // Run as `nobody`: root reads any file, which would hide the case; and
    // only root can start a process as another user.
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("SKIPPED: starting the daemon as nobody needs root");
        return;
    }
    let bucket = tempfile::tempdir().unwrap();
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({"id": "a", "name": "A"})]);
    let secret = workspace.trigger("secret", "");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    workspace.trigger("nightly", "");
    let tmp = workspace.tmp();
    for dir in [workspace.path(), bucket.path()] {
        let status = Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let log_path = workspace.path().join("nobody.log");
    let mut daemon = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(jobvault_bin())
        .args([
            "run",
            "--interval",
            "200ms",
            "--metrics-addr",
            "127.0.0.1:0",
            "--db",
        ])
        .arg(workspace.db())
        .arg("--bucket")
        .arg(format!("file://{}", bucket.path().display()))
        .arg("--workdir")
        .arg(workspace.workdir())
        .env("TMPDIR", &tmp)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    eventually("the secret quarantined, nightly served", PATIENCE, || {
        (quarantined(&workspace) == ["secret"] && snapshots_named(bucket.path(), "nightly") == 1)
            .then_some(())
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("Permission denied"), "{log}");
    assert!(!log.contains("cannot check the trigger directory"), "{log}");
}

#[test]
fn ids_and_snapshot_names_starting_with_a_dot_are_refused() {
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({"id": "a", "name": "A"})]);
    let output = jobvault_tests::run_with_stdin(
        {
            let mut put = jobvault(None);
            put.args(["jobs", "put", "--db"]).arg(workspace.db());
            put
        },
        "{\"id\":\".hidden\",\"name\":\"x\"}\n",
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("starts with '.'"),
        "{}",
        stderr(&output)
    );
    let bucket = tempfile::tempdir().unwrap();
    let output = jobvault(None)
        .args(["backup", "--name", ".secret", "--bucket"])
        .arg(format!("file://{}", bucket.path().display()))
        .arg("--db")
        .arg(workspace.db())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("starts with '.'"),
        "{}",
        stderr(&output)
    );
    assert!(walk(bucket.path()).is_empty());
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs<'a>(&'a Path);

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_snapshot_without_room_in_tmpdir_says_so_and_leaves_nothing_there() {
    let workspace = Workspace::new();
    let pad = "x".repeat(100_000);
    let jobs: Vec<_> = (0..40)
        .map(|i| json!({"id": format!("j{i}"), "name": "big", "pad": pad}))
        .collect();
    workspace.put_jobs(&jobs);
    let tmp = workspace.tmp();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&tmp)
        .status();
    if !mounted.is_ok_and(|status| status.success()) {
        eprintln!("SKIPPED: mounting a tmpfs needs root; this machine refused");
        return;
    }
    let _tmpfs = Tmpfs(&tmp);
    let bucket = tempfile::tempdir().unwrap();
    let output = jobvault(None)
        .args(["backup", "--bucket"])
        .arg(format!("file://{}", bucket.path().display()))
        .arg("--db")
        .arg(workspace.db())
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains(&format!("TMPDIR ({})", tmp.display())) && said.contains("bytes free"),
        "{said}"
    );
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "files left in TMPDIR"
    );
    assert!(walk(bucket.path()).is_empty());
}

#[test]
fn an_error_naming_a_path_with_a_newline_stays_one_line_in_text_and_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil\nERROR forged\u{1b}[31m");
    fs::create_dir(&evil).unwrap();
    let db = evil.join("missing.db");
    for json in [false, true] {
        let mut command = jobvault(None);
        if json {
            command.args(["--log-format", "json"]);
        }
        let output = command
            .args(["run", "--bucket", "file:///nowhere", "--workdir"])
            .arg(dir.path())
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let said = stderr(&output);
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(!said.contains('\u{1b}'), "{said}");
        if json {
            let line: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
            assert_eq!(line["severity"], "ERROR");
            assert!(line["message"].as_str().unwrap().contains("does not exist"));
        } else {
            assert!(said.contains(r"evil\nERROR forged\u{1b}[31m"), "{said}");
        }
    }
}
