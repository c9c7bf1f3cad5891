//! `jobvault check`: a good setup passes line by line and leaves nothing
//! behind; each broken part fails on its own line, naming what and why.

use std::fs;
use std::process::Output;

use jobvault_tests::{Emulator, StoreReader, Workspace, jobvault, stdout};

fn check(emulator: &Emulator, workspace: &Workspace, url: &str) -> Output {
    jobvault(Some(&emulator.endpoint()))
        .args(["check", "--bucket", url, "--db"])
        .arg(workspace.db())
        .arg("--workdir")
        .arg(workspace.workdir())
        .env("TMPDIR", workspace.tmp())
        .output()
        .unwrap()
}

/// Each line's verdict and what it checked: `("ok", "bucket")`.
fn verdicts(output: &Output) -> Vec<(String, String)> {
    stdout(output)
        .lines()
        .filter(|line| !line.starts_with("all "))
        .map(|line| {
            let (verdict, rest) = line.split_once(' ').unwrap();
            let what = rest.trim_start().split(':').next().unwrap();
            (verdict.to_owned(), what.to_owned())
        })
        .collect()
}

fn failed(output: &Output) -> Vec<String> {
    verdicts(output)
        .into_iter()
        .filter(|(verdict, _)| verdict == "FAIL")
        .map(|(_, what)| what)
        .collect()
}

#[test]
fn a_good_setup_passes_every_check_and_leaves_nothing_behind() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("check-good");
    let url = format!("gs://{bucket}/prod");
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let output = check(emulator, &workspace, &url);
    assert!(output.status.success(), "{}", stdout(&output));
    let whats: Vec<String> = verdicts(&output)
        .into_iter()
        .map(|(_, what)| what)
        .collect();
    assert_eq!(
        whats,
        [
            "credentials",
            "bucket",
            "create objects",
            "read objects",
            "list objects",
            "clock",
            "delete objects",
            "object versioning",
            "database",
            "trigger directory",
            "room in TMPDIR",
        ]
    );
    assert!(stdout(&output).contains("credentials: none: anonymous, to the emulator at"));
    // The emulator's bucket has versioning off: a warning, not `ok`, that
    // says what `restore --at` then lacks.
    assert!(
        stdout(&output).ends_with("all 11 checks passed, 1 with a warning\n"),
        "{}",
        stdout(&output)
    );
    let versioning = stdout(&output)
        .lines()
        .find(|line| line.contains("object versioning"))
        .unwrap()
        .to_owned();
    assert!(
        versioning.starts_with("WARN ") && versioning.contains("restore --at"),
        "{versioning}"
    );
    let reader = StoreReader::connect(&format!("gs://{bucket}"), Some(&emulator.endpoint()));
    assert_eq!(reader.names(""), Vec::<String>::new(), "the probe is gone");
    assert!(
        !workspace.workdir().exists(),
        "the trigger directory made for the check is gone"
    );
}

#[test]
fn each_broken_part_fails_on_its_own_line() {
    let emulator = Emulator::shared();
    let workspace = Workspace::new();
    fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/first-release.db"),
        workspace.db(),
    )
    .unwrap();
    // The work directory is a file: no trigger directory can be made in it.
    fs::write(workspace.workdir(), b"not a directory").unwrap();
    let output = check(emulator, &workspace, "gs://no-such-bucket/prod");
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_eq!(
        failed(&output),
        [
            "bucket",
            "object permissions",
            "database",
            "trigger directory"
        ]
    );
    let text = stdout(&output);
    assert!(
        text.contains(
            "FAIL  bucket: gs://no-such-bucket/prod: bucket no-such-bucket does not exist"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "schema version 1, not {}; run `jobvault init --db",
            jobvault::db::CURRENT_VERSION
        )),
        "{text}"
    );
    assert!(text.contains("ok    credentials:"), "{text}");
}

#[test]
fn a_trigger_directory_jobvault_cannot_write_fails() {
    if running_as_root() {
        eprintln!(
            "a_trigger_directory_jobvault_cannot_write_fails: skipped: root writes any directory"
        );
        return;
    }
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("check-ro"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let triggers = workspace.triggers();
    fs::create_dir_all(&triggers).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&triggers, fs::Permissions::from_mode(0o555)).unwrap();
    let output = check(emulator, &workspace, &url);
    fs::set_permissions(&triggers, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_eq!(failed(&output), ["trigger directory"]);
    assert!(
        stdout(&output).contains("Permission denied"),
        "{}",
        stdout(&output)
    );
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A UNIQUE index of the user's own on `jobs`: `INSERT OR REPLACE` beside
/// it removes a row without the delete triggers, so no backup records the
/// deletion and a restore gives the row back (a hostile trial), and it can
/// refuse a restore. `check` passed every line over it; it now warns.
#[test]
fn a_unique_index_of_ones_own_on_jobs_is_warned_of() {
    let emulator = Emulator::shared();
    let bucket = emulator.new_bucket("check-unique");
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    jobvault_tests::writers::sqlite3(
        &workspace.db(),
        "CREATE UNIQUE INDEX jobs_name ON jobs (json_extract(body, '$.name'));",
    );
    let output = check(emulator, &workspace, &format!("gs://{bucket}"));
    assert!(output.status.success(), "a warning: {}", stdout(&output));
    let database = stdout(&output)
        .lines()
        .find(|line| line.contains(" database: "))
        .unwrap()
        .to_owned();
    assert!(
        database.starts_with("WARN ")
            && database.contains("jobs_name")
            && database.contains("UNIQUE"),
        "{database}"
    );
}
