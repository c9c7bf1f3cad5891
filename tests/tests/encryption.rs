//! Encrypted backups end to end: the real daemon with `--encrypt-to`
//! against the emulator, identities made by `jobvault keygen`, and the read
//! commands with and without `--identity`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use jobvault_tests::{
    Daemon, Emulator, StoreReader, Workspace, bodies, eventually, gauge, http_get, jobvault,
    stderr, stdout,
};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// A word in every job body, to look for in the raw objects.
const SECRET: &str = "launch-codes";

/// An emulator, a bucket named after `name` (with object versioning if
/// `versioned`) and a workspace.
fn setup(name: &str, versioned: bool) -> (Emulator, String, Workspace) {
    let emulator = Emulator::start(jobvault_tests::Backend::Memory);
    let bucket = if versioned {
        emulator.new_versioned_bucket(name)
    } else {
        emulator.new_bucket(name)
    };
    (emulator, format!("gs://{bucket}"), Workspace::new())
}

/// An identity made by `jobvault keygen` in `dir`, and its recipient.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let output = jobvault(None)
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    (path, stdout(&output).trim().to_owned())
}

fn jobs(names: &[&str]) -> Vec<serde_json::Value> {
    names
        .iter()
        .map(|id| json!({ "id": id, "name": format!("{SECRET} for {id}") }))
        .collect()
}

/// Runs the daemon encrypting to `recipients` until `ids` are in the
/// bucket, then stops it.
fn back_up(
    emulator: &Emulator,
    workspace: &Workspace,
    url: &str,
    recipients: &[&str],
    ids: &[&str],
) {
    workspace.put_jobs(&[]);
    let mut extra = Vec::new();
    for recipient in recipients {
        extra.extend(["--encrypt-to", recipient]);
    }
    let daemon = Daemon::start(workspace, Some(&emulator.endpoint()), url, "200ms", &extra);
    daemon.settled();
    workspace.put_jobs(&jobs(ids));
    let reader = StoreReader::connect(url, Some(&emulator.endpoint()));
    eventually("the jobs uploaded", PATIENCE, || {
        let names = reader.names("job-backup/");
        ids.iter()
            .all(|id| names.iter().any(|n| n.ends_with(&format!("/{id}.job"))))
            .then_some(())
    });
    assert!(daemon.stop().success());
}

/// The fingerprint keygen wrote into an identity file's comments.
fn fingerprint(identity: &Path) -> String {
    std::fs::read_to_string(identity)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("# fingerprint: ").map(str::to_owned))
        .unwrap()
}

fn command(emulator: &Emulator, args: &[&str], identities: &[&Path]) -> Output {
    let mut command = jobvault(Some(&emulator.endpoint()));
    command.args(args);
    for identity in identities {
        command.arg("--identity").arg(identity);
    }
    command.output().unwrap()
}

/// A plain backup that went through, warning of the encrypted snapshots
/// beside it.
fn taken_with_a_cleartext_warning(plain: &Output) {
    let said = stderr(plain);
    assert!(plain.status.success(), "{said}");
    assert!(
        said.contains("but this snapshot is written in the clear"),
        "{said}"
    );
}

/// The secret key line of the identity file at `identity`.
fn secret_key(identity: &Path) -> String {
    std::fs::read_to_string(identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned()
}

/// `jobvault backup` of `db` to `url`, encrypted to `recipient`.
fn encrypted_backup(emulator: &Emulator, recipient: &str, url: &str, db: &Path) -> Output {
    let db = db.to_str().unwrap();
    let args = [
        "backup",
        "--encrypt-to",
        recipient,
        "--bucket",
        url,
        "--db",
        db,
    ];
    command(emulator, &args, &[])
}

fn restore(emulator: &Emulator, url: &str, to: &Path, identities: &[&Path]) -> Output {
    let to = to.to_str().unwrap();
    command(
        emulator,
        &["restore", "--bucket", url, "--to", to],
        identities,
    )
}

/// The object's resource as the JSON API serves it.
fn resource(emulator: &Emulator, url: &str, name: &str) -> serde_json::Value {
    let bucket = url.trim_start_matches("gs://");
    let name = name.replace('/', "%2F");
    let (status, body) = http_get(&format!(
        "http://127.0.0.1:{}/storage/v1/b/{bucket}/o/{name}",
        emulator.port()
    ))
    .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn an_encrypting_daemon_writes_age_files_that_only_its_identity_restores() {
    let (emulator, url, workspace) = setup("sealed", true);
    let (identity, recipient) = keygen(workspace.path(), "ops.key");
    workspace.put_jobs(&jobs(&["j0"]));
    back_up(&emulator, &workspace, &url, &[&recipient], &["j1", "j2"]);

    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let objects: Vec<String> = ["db-backup/", "job-backup/"]
        .iter()
        .flat_map(|prefix| reader.names(prefix))
        .collect();
    assert!(objects.len() >= 3, "a snapshot and two jobs: {objects:?}");
    for name in &objects {
        let raw = reader.get(name);
        assert!(raw.starts_with(AGE_MAGIC), "{name} is an age file");
        assert!(
            !raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{name} shows a job's body"
        );
        let resource = resource(&emulator, &url, name);
        assert_eq!(resource["contentType"], "application/x-age-encryption");
        assert_eq!(resource["metadata"]["jobvault-encryption"], "age-v1");
        assert!(resource.get("contentEncoding").is_none(), "{resource}");
    }

    let target = workspace.path().join("restored.db");
    let output = restore(&emulator, &url, &target, &[&identity]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(bodies(&target), bodies(&workspace.db()));
    assert_eq!(bodies(&target).len(), 3);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "decrypted, it is its owner's alone: {mode:o}"
    );

    let output = command(
        &emulator,
        &["retrieve", "--bucket", &url, "--since", "1h"],
        &[&identity],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(&format!("{SECRET} for j2")));

    // The identity from a pipe, so that it need not be on disk.
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#""$0" retrieve --bucket "$1" --since 1h --identity <(cat "$2")"#)
        .arg(jobvault_tests::jobvault_bin())
        .args([url.as_str(), identity.to_str().unwrap()])
        .env("STORAGE_EMULATOR_HOST", emulator.endpoint())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(&format!("{SECRET} for j2")));

    let output = command(&emulator, &["verify", "--bucket", &url], &[&identity]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains(" encryption: age, opened and authenticated"),
        "{}",
        stdout(&output)
    );

    let output = command(&emulator, &["status", "--bucket", &url], &[]);
    assert!(
        stdout(&output).contains("bytes, encrypted (age))"),
        "status says the newest snapshot is encrypted: {}",
        stdout(&output)
    );

    let now = jobvault::clock::now().rfc3339();
    let at = workspace.path().join("at.db");
    let output = command(
        &emulator,
        &[
            "restore",
            "--bucket",
            &url,
            "--at",
            &now,
            "--to",
            at.to_str().unwrap(),
        ],
        &[&identity],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(bodies(&at), bodies(&workspace.db()));
}

#[test]
fn without_its_identity_a_restore_fails_in_one_line_naming_the_key_and_writes_nothing() {
    let (emulator, url, workspace) = setup("locked", false);
    let (_, recipient) = keygen(workspace.path(), "ops.key");
    let (stranger, _) = keygen(workspace.path(), "stranger.key");
    back_up(&emulator, &workspace, &url, &[&recipient], &["j1"]);
    let fingerprint = fingerprint(&workspace.path().join("ops.key"));

    for identities in [vec![], vec![stranger.as_path()]] {
        let target = workspace.path().join("restored.db");
        let output = restore(&emulator, &url, &target, &identities);
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{said}");
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(said.contains(&fingerprint), "names the key: {said}");
        assert!(said.contains("db-backup/"), "names the object: {said}");
        assert!(!target.exists(), "nothing written at --to");

        let output = command(&emulator, &["verify", "--bucket", &url], &identities);
        let said = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{said}{}", stderr(&output));
        let snapshot = said.lines().find(|l| l.contains("db-backup/")).unwrap();
        assert!(
            snapshot.starts_with("FAIL") && snapshot.contains(" encryption: "),
            "the snapshot fails as encrypted, not as gzip: {said}"
        );
        assert!(snapshot.contains(&fingerprint), "names the key: {said}");
        assert!(
            said.contains("FAIL  recent job objects: 1 of the 1 newest are encrypted to a key no --identity given holds"),
            "{said}"
        );

        let output = command(&emulator, &["snapshots", "--bucket", &url], &identities);
        let why = if identities.is_empty() {
            "it is encrypted; give its identity with --identity"
        } else {
            "it is encrypted, and no --identity given opens it"
        };
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(stderr(&output).contains(why), "{}", stderr(&output));
    }
}

#[test]
fn a_bucket_of_plain_then_encrypted_objects_under_two_keys_restores_whole() {
    let (emulator, url, workspace) = setup("mixed", false);
    let (old, old_recipient) = keygen(workspace.path(), "old.key");
    let (new, new_recipient) = keygen(workspace.path(), "new.key");
    back_up(&emulator, &workspace, &url, &[], &["plain"]);
    back_up(&emulator, &workspace, &url, &[&old_recipient], &["old"]);
    back_up(&emulator, &workspace, &url, &[&new_recipient], &["new"]);

    let target = workspace.path().join("restored.db");
    let output = restore(&emulator, &url, &target, &[&old, &new]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(bodies(&target), bodies(&workspace.db()));
    assert_eq!(bodies(&target).len(), 3);

    // Both from the environment, as PATH lists folders.
    let from_env = workspace.path().join("from-env.db");
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&from_env)
        .env(
            "JOBVAULT_IDENTITY",
            format!("{}:{}", old.display(), new.display()),
        )
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(bodies(&from_env), bodies(&workspace.db()));

    // The old key alone no longer opens what the new one was written to.
    let output = restore(
        &emulator,
        &url,
        &workspace.path().join("old-only.db"),
        &[&old],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[test]
fn a_tampered_job_object_is_named_and_can_be_skipped() {
    let (emulator, url, workspace) = setup("tampered", false);
    let (identity, recipient) = keygen(workspace.path(), "ops.key");
    back_up(&emulator, &workspace, &url, &[&recipient], &["j1", "j2"]);

    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let name = reader
        .names("job-backup/")
        .into_iter()
        .find(|n| n.ends_with("/j2.job"))
        .unwrap();
    let mut bytes = reader.get(&name);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let framing = jobvault_core::object_name::Framing::for_object(&name, jobvault::clock::now());
    jobvault_tests::runtime()
        .block_on(reader.store().put(&name, bytes, &framing))
        .unwrap();

    let target = workspace.path().join("restored.db");
    let output = restore(&emulator, &url, &target, &[&identity]);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains(&name), "names the object: {said}");
    assert!(said.contains("does not authenticate"), "{said}");
    assert!(said.contains("--skip-corrupt leaves it out"), "{said}");
    assert!(!target.exists());

    let to = target.to_str().unwrap();
    let output = command(
        &emulator,
        &["restore", "--bucket", &url, "--to", to, "--skip-corrupt"],
        &[&identity],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(bodies(&target).contains_key("j1"));
}

#[test]
fn a_snapshot_tampered_inside_its_payload_fails_verify_as_encryption_and_restore_passes_it_over() {
    // The only snapshot: passed over, it leaves the job objects alone, which
    // restore refuses unless asked.
    let (emulator, url, workspace) = setup("tampered-snapshot", false);
    let (identity, recipient) = keygen(workspace.path(), "ops.key");
    back_up(&emulator, &workspace, &url, &[&recipient], &["j1"]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let snapshot = reader.names("db-backup/").pop().unwrap();
    // The header still opens; a byte of the payload's last chunk does not.
    let mut bytes = reader.get(&snapshot);
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    let framing =
        jobvault_core::object_name::Framing::for_object(&snapshot, jobvault::clock::now());
    jobvault_tests::runtime()
        .block_on(reader.store().put(&snapshot, bytes, &framing))
        .unwrap();

    let output = command(&emulator, &["verify", "--bucket", &url], &[&identity]);
    let said = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let line = said.lines().find(|l| l.contains(&snapshot)).unwrap();
    assert!(
        line.starts_with("FAIL")
            && line.contains(" encryption: ")
            && line.contains("does not authenticate"),
        "{said}"
    );

    let target = workspace.path().join("restored.db");
    let output = restore(&emulator, &url, &target, &[&identity]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("each unusable: {snapshot}")),
        "{}",
        stderr(&output)
    );
    assert!(!target.exists());
    let to = target.to_str().unwrap();
    let output = command(
        &emulator,
        &[
            "restore",
            "--bucket",
            &url,
            "--to",
            to,
            "--from-job-objects",
        ],
        &[&identity],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("unusable snapshot {url}/{snapshot}: ")),
        "{}",
        stderr(&output)
    );
    assert!(bodies(&target).contains_key("j1"));
}

#[test]
fn check_proves_that_the_identities_read_back_what_the_recipients_encrypt() {
    let (emulator, url, workspace) = setup("check", false);
    workspace.put_jobs(&[]);
    let (identity, recipient) = keygen(workspace.path(), "ops.key");
    let (stranger, _) = keygen(workspace.path(), "stranger.key");
    let db = workspace.db();
    let workdir = workspace.workdir();
    let args = [
        "check",
        "--db",
        db.to_str().unwrap(),
        "--bucket",
        &url,
        "--workdir",
        workdir.to_str().unwrap(),
        "--encrypt-to",
        &recipient,
    ];
    let output = command(&emulator, &args, &[&identity]);
    let report = stdout(&output);
    assert!(output.status.success(), "{report}{}", stderr(&output));
    assert!(report.contains("ok    encryption:"), "{report}");

    let output = command(&emulator, &args, &[&stranger]);
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("FAIL  encryption:"), "{report}");

    // Two recipients, one identity: the round trip passes, and the key
    // it did not prove is named.
    let (_, offline) = keygen(workspace.path(), "offline.key");
    let offline_fingerprint = fingerprint(&workspace.path().join("offline.key"));
    let two = [&args[..], &["--encrypt-to", &offline]].concat();
    let output = command(&emulator, &two, &[&identity]);
    let report = stdout(&output);
    assert!(output.status.success(), "{report}{}", stderr(&output));
    let line = report.lines().find(|l| l.contains("encryption:")).unwrap();
    assert!(line.starts_with("WARN"), "{report}");
    assert!(
        line.contains(&format!("none is for {offline_fingerprint}")),
        "{report}"
    );
    // Both identities through JOBVAULT_IDENTITY, as PATH lists them: both
    // keys proved (check alone took the list for one file's name).
    let both = format!(
        "{}:{}",
        identity.display(),
        workspace.path().join("offline.key").display()
    );
    let output = jobvault(Some(&emulator.endpoint()))
        .args(&two)
        .env("JOBVAULT_IDENTITY", both)
        .output()
        .unwrap();
    let report = stdout(&output);
    assert!(output.status.success(), "{report}{}", stderr(&output));
    assert!(report.contains("ok    encryption:"), "{report}");
}

#[test]
fn backup_asking_for_encryption_beside_a_plain_daemon_takes_an_encrypted_snapshot_itself() {
    let (emulator, url, workspace) = setup("beside", false);
    workspace.put_jobs(&jobs(&["j1"]));
    let (_, recipient) = keygen(workspace.path(), "ops.key");
    let daemon = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    daemon.settled();
    let db = workspace.db();
    let output = encrypted_backup(&emulator, &recipient, &url, &db);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("writes in the clear"),
        "says why it did not go through the daemon: {}",
        stderr(&output)
    );
    let object = stdout(&output).trim().to_owned();
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    assert!(reader.get(&object).starts_with(AGE_MAGIC), "{object}");
    assert!(daemon.stop().success());
}

/// A backup with no recipients beside a daemon that encrypts was taken
/// beside it, in the clear, with exit 0 and a warning a newcomer missed. It
/// is refused, naming the daemon's keys, and nothing is uploaded.
#[test]
fn backup_without_recipients_beside_an_encrypting_daemon_is_refused() {
    let (emulator, url, workspace) = setup("plain-beside", false);
    workspace.put_jobs(&jobs(&["j1"]));
    let (_, recipient) = keygen(workspace.path(), "ops.key");
    let daemon = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        &url,
        "200ms",
        &["--encrypt-to", &recipient],
    );
    daemon.settled();
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    let before = reader.names("db-backup/");
    let db = workspace.db();
    let output = command(
        &emulator,
        &["backup", "--bucket", &url, "--db", db.to_str().unwrap()],
        &[],
    );
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("and this backup has no --encrypt-to")
            && said.contains("the whole database in a bucket in the clear"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert_eq!(reader.names("db-backup/"), before, "nothing was uploaded");
    // Nor to another bucket: a copy in the clear reads as well anywhere.
    let elsewhere = format!("file://{}", workspace.path().join("elsewhere").display());
    let output = command(
        &emulator,
        &[
            "backup",
            "--bucket",
            &elsewhere,
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(!workspace.path().join("elsewhere").exists());
    let with_keys = encrypted_backup(&emulator, &recipient, &url, &db);
    assert!(with_keys.status.success(), "{}", stderr(&with_keys));
    assert!(daemon.stop().success());
}

#[test]
fn a_daemon_started_without_its_recipients_on_an_encrypted_prefix_raises_an_alarm() {
    let (emulator, url, workspace) = setup("dropped", false);
    let (_, recipient) = keygen(workspace.path(), "ops.key");
    back_up(&emulator, &workspace, &url, &[&recipient], &["j1"]);
    let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
    assert!(
        !reader.names("db-backup/").is_empty(),
        "an encrypted snapshot"
    );

    let plain = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    eventually("jobvault_encryption_dropped at 1", PATIENCE, || {
        (gauge(&plain.scrape(), "jobvault_encryption_dropped") == Some(1.0)).then_some(())
    });
    let (status, log) = plain.stop_and_log();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("is --encrypt-to (JOBVAULT_ENCRYPT_TO) missing?"),
        "{log}"
    );

    // With no daemon, `backup` without its recipients writes a plain
    // snapshot, now the newest, and says so; `status` and `check` say it
    // too, and a plain daemon started again still raises the alarm.
    let db = workspace.db();
    let db = db.to_str().unwrap();
    let backup = command(&emulator, &["backup", "--bucket", &url, "--db", db], &[]);
    assert!(backup.status.success(), "{}", stderr(&backup));
    assert!(
        stderr(&backup).contains("but this snapshot is written in the clear"),
        "{}",
        stderr(&backup)
    );
    let status = command(&emulator, &["status", "--bucket", &url], &[]);
    assert_eq!(status.status.code(), Some(1), "{}", stdout(&status));
    assert!(
        stdout(&status).contains("is unencrypted, though"),
        "{}",
        stdout(&status)
    );
    let workdir = workspace.workdir();
    let check_with = |extra: &[&str]| {
        let mut args = vec!["check", "--bucket", &url, "--db", db, "--workdir"];
        args.push(workdir.to_str().unwrap());
        args.extend(extra);
        command(&emulator, &args, &[])
    };
    let check = check_with(&[]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(
        stdout(&check).contains("is encrypted, but no --encrypt-to (JOBVAULT_ENCRYPT_TO) is given"),
        "{}",
        stdout(&check)
    );
    // With its recipient, check still says the plain snapshot is there.
    let check = check_with(&["--encrypt-to", &recipient]);
    assert!(
        stdout(&check).contains("is unencrypted, though"),
        "{}",
        stdout(&check)
    );
    let plain = Daemon::start(&workspace, Some(&emulator.endpoint()), &url, "200ms", &[]);
    eventually("jobvault_encryption_dropped at 1 again", PATIENCE, || {
        (gauge(&plain.scrape(), "jobvault_encryption_dropped") == Some(1.0)).then_some(())
    });
    assert!(plain.stop().success());

    // With its recipient again, the daemon says nothing of the kind.
    let again = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        &url,
        "200ms",
        &["--encrypt-to", &recipient],
    );
    again.settled();
    assert_eq!(
        gauge(&again.scrape(), "jobvault_encryption_dropped"),
        Some(0.0)
    );
    assert!(again.stop().success());
}

/// A secret key pasted where a recipient or a file's path goes, whole or in
/// part (a double-click selects `1…` alone), is refused and never repeated:
/// error lines end up in logs.
#[test]
fn a_secret_key_pasted_anywhere_is_refused_without_being_repeated() {
    let workspace = Workspace::new();
    workspace.put_jobs(&jobs(&["j1"]));
    let (identity, recipient) = keygen(workspace.path(), "ops.key");
    let secret = secret_key(&identity);
    let payload = secret.trim_start_matches("AGE-SECRET-KEY-");
    let url = format!("file://{}", workspace.path().join("bucket").display());
    let db = workspace.db();
    let db = db.to_str().unwrap();
    let backup = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = jobvault(None);
        command
            .args(["backup", "--db", db, "--bucket", &url])
            .args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    // Arguments, environment, exit code.
    type Case<'a> = (Vec<String>, Vec<(&'a str, String)>, i32);
    let cases: Vec<Case> = vec![
        (vec!["--encrypt-to".into(), secret.clone()], vec![], 2),
        (vec!["--encrypt-to".into(), payload.to_owned()], vec![], 2),
        (
            vec!["--encrypt-to".into(), format!("{recipient} {secret}")],
            vec![],
            2,
        ),
        (
            vec![],
            vec![("JOBVAULT_ENCRYPT_TO", format!("recipient={payload}"))],
            2,
        ),
        (vec![format!("--{secret}")], vec![], 2),
        (vec!["--encrypt-to-file".into(), secret.clone()], vec![], 1),
        (
            vec!["--encrypt-to".into(), payload.to_owned()],
            vec![("JOBVAULT_LOG_FORMAT", "json".to_owned())],
            2,
        ),
    ];
    for (args, env, code) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let output = backup(&args, &env);
        let said = format!("{}{}", stdout(&output), stderr(&output));
        assert_eq!(
            output.status.code(),
            Some(*code),
            "{args:?} {env:?}: {said}"
        );
        assert!(!said.is_empty(), "{args:?}: says why");
        assert!(
            !said.contains(payload),
            "{args:?} {env:?} repeats the key: {said}"
        );
    }
    for pasted in [secret.clone(), payload.to_owned(), payload.to_lowercase()] {
        let output = jobvault(None)
            .args(["verify", "--bucket", &url])
            .env(
                "JOBVAULT_IDENTITY",
                format!("{}:{pasted}", identity.display()),
            )
            .output()
            .unwrap();
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{said}");
        assert!(said.contains("instead of the path"), "{said}");
        assert!(
            !said.to_uppercase().contains(payload),
            "repeats the key: {said}"
        );
    }
    // Where a path goes, it is refused as an argument.
    let output = jobvault(None)
        .args(["backup", "--bucket", &url, "--db", &secret])
        .output()
        .unwrap();
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(!said.contains(payload), "repeats the key: {said}");
}

/// An encrypted snapshot whose content type was changed by hand still
/// counts as encrypted: its metadata says so. Read as plain, it silenced
/// the warnings of a backup that dropped encryption.
#[test]
fn a_snapshot_whose_content_type_was_changed_still_counts_as_encrypted() {
    let (emulator, url, workspace) = setup("retyped", false);
    workspace.put_jobs(&jobs(&["j1"]));
    let (_, recipient) = keygen(workspace.path(), "ops.key");
    let db = workspace.db();
    let backup = |extra: &[&str]| {
        let mut args = vec!["backup", "--db", db.to_str().unwrap(), "--bucket", &url];
        args.extend(extra);
        command(&emulator, &args, &[])
    };
    let sealed = backup(&["--encrypt-to", &recipient, "--name", "sealed"]);
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    let bucket = url.strip_prefix("gs://").unwrap();
    let printed = stdout(&sealed);
    let object = printed.trim();
    let object = object.strip_prefix(&format!("{url}/")).unwrap_or(object);
    let (status, body) = jobvault_tests::http_patch_json(
        &format!(
            "{}/storage/v1/b/{bucket}/o/{}",
            emulator.endpoint(),
            object.replace('/', "%2F")
        ),
        &json!({ "contentType": "application/octet-stream" }),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    taken_with_a_cleartext_warning(&backup(&["--name", "plain"]));
}

/// A directory store keeps no content type: a snapshot's first bytes say
/// whether it is encrypted, so a plain `backup` beside encrypted ones is
/// flagged there too.
#[test]
fn a_plain_snapshot_beside_encrypted_ones_is_flagged_in_a_directory_store_too() {
    let workspace = Workspace::new();
    workspace.put_jobs(&jobs(&["j1"]));
    let (_, recipient) = keygen(workspace.path(), "ops.key");
    let url = format!("file://{}", workspace.path().join("bucket").display());
    let db = workspace.db();
    let backup = |extra: &[&str]| {
        jobvault(None)
            .args(["backup", "--db", db.to_str().unwrap(), "--bucket", &url])
            .args(extra)
            .output()
            .unwrap()
    };
    let sealed = backup(&["--encrypt-to", &recipient, "--name", "sealed"]);
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    taken_with_a_cleartext_warning(&backup(&["--name", "plain"]));
    let status = jobvault(None)
        .args(["status", "--bucket", &url])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1), "{}", stdout(&status));
    assert!(
        stdout(&status).contains("is unencrypted, though"),
        "{}",
        stdout(&status)
    );
}

/// A key pasted where a name, a path or a URL goes was uploaded as a
/// snapshot's name, or a trigger's, printed with the path, and logged.
/// Given alone as a trigger file's name, it is quarantined and its name is
/// cut from the log.
#[test]
fn a_secret_key_never_names_a_snapshot_or_a_trigger_and_is_cut_from_logs() {
    let workspace = Workspace::new();
    workspace.put_jobs(&jobs(&["j1"]));
    let (identity, _) = keygen(workspace.path(), "ops.key");
    let secret = secret_key(&identity);
    let payload = secret.trim_start_matches("AGE-SECRET-KEY-").to_owned();
    let url = format!("file://{}", workspace.path().join("bucket").display());
    std::fs::create_dir_all(workspace.path().join("bucket")).unwrap();
    let workdir = workspace.workdir();
    let workdir = workdir.to_str().unwrap();
    let keyed_url = format!("gs://b1/{secret}");
    let keyed_path = format!("r-{secret}.db");
    // The payload alone, with anything around it.
    let wrapped_url = format!("gs://b1/x{payload}");
    let wrapped_name = format!("x{}", payload.to_lowercase());
    for args in [
        vec![
            "backup", "--bucket", &url, "--db", "x.db", "--name", &secret,
        ],
        vec!["trigger", "--workdir", workdir, &secret],
        vec!["status", "--bucket", &keyed_url],
        vec!["restore", "--bucket", &url, "--to", &keyed_path],
        vec!["init", "--db", &keyed_path],
        vec!["status", "--bucket", &wrapped_url],
        vec!["trigger", "--workdir", workdir, &wrapped_name],
    ] {
        let output = jobvault(None).args(&args).output().unwrap();
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains("looks like an age secret key"), "{said}");
        assert!(!said.contains(&payload), "{args:?} repeats the key: {said}");
    }
    assert!(!workspace.triggers().exists(), "no trigger was dropped");
    // The payload alone as a trigger file's name, dropped by hand.
    let bare = payload.trim_start_matches('1').to_lowercase();
    let daemon = Daemon::start(&workspace, None, &url, "200ms", &[]);
    workspace.trigger(&bare, "");
    eventually("the trigger quarantined", PATIENCE, || {
        daemon.log().contains("quarantine directory").then_some(())
    });
    let (status, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    assert!(
        !log.to_lowercase().contains(&bare),
        "the log repeats the key: {log}"
    );
    let names: Vec<String> = ["db-backup/", "job-backup/"]
        .iter()
        .flat_map(|prefix| StoreReader::connect(&url, None).names(prefix))
        .collect();
    assert!(
        names.iter().all(|n| !n.to_lowercase().contains(&bare)),
        "{names:?}"
    );
}
