//! The store over TLS, as real GCS is reached: the emulator serves HTTPS
//! with a certificate from the tests' own authority (`tests/fixtures/tls/`).
//! Trusted through `SSL_CERT_FILE`, a backup and a restore go through it; not
//! trusted, a command ends at once with one line that says so, instead of
//! retrying for its whole `--read-patience`.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobvault_tests::{Backend, Emulator, Workspace, bodies, jobvault, stderr, test_ca};
use serde_json::json;

/// Far below the default `--read-patience` of ten minutes, which is what an
/// untrusted certificate used to cost.
const AT_ONCE: Duration = Duration::from_secs(60);

fn setup() -> (Emulator, Workspace, String) {
    let emulator = Emulator::start_tls(Backend::Memory);
    let url = format!("gs://{}", emulator.new_bucket("tls"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[
        json!({ "id": "j1", "name": "Build" }),
        json!({ "id": "j2", "name": "Deploy" }),
    ]);
    (emulator, workspace, url)
}

/// `jobvault` against the emulator's HTTPS address, trusting `ca` (or no
/// authority beyond the platform's).
fn over_tls(emulator: &Emulator, ca: Option<&std::path::Path>) -> Command {
    let mut command = jobvault(Some(&emulator.tls_endpoint()));
    command
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    command
}

/// Runs `command`, killing it and failing after `limit`.
fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jobvault starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stderr so far: {}",
                stderr(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `jobvault backup` over TLS, the test authority trusted.
fn back_up_trusting_the_authority(emulator: &Emulator, workspace: &Workspace, url: &str) {
    let mut backup = over_tls(emulator, Some(&test_ca()));
    backup
        .args(["backup", "--bucket", url, "--db"])
        .arg(workspace.db());
    let output = output_within(backup, AT_ONCE);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn with_the_authority_trusted_a_backup_and_a_restore_go_over_tls() {
    let (emulator, workspace, url) = setup();
    back_up_trusting_the_authority(&emulator, &workspace, &url);

    let target = workspace.path().join("restored.db");
    let mut restore = over_tls(&emulator, Some(&test_ca()));
    restore
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&target);
    let output = output_within(restore, AT_ONCE);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(bodies(&target), bodies(&workspace.db()));
    assert_eq!(bodies(&target).len(), 2);
}

#[test]
fn an_untrusted_certificate_ends_a_restore_at_once_with_one_line() {
    let (emulator, workspace, url) = setup();
    back_up_trusting_the_authority(&emulator, &workspace, &url);

    let target = workspace.path().join("restored.db");
    let mut restore = over_tls(&emulator, None);
    restore
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&target);
    let output = output_within(restore, AT_ONCE);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert_eq!(
        said.lines().count(),
        1,
        "one line, not one per attempt: {said}"
    );
    assert!(said.contains("not trusted"), "{said}");
    assert!(said.contains("SSL_CERT_FILE"), "{said}");
    assert!(said.contains(&url), "names the bucket: {said}");
    assert!(!target.exists(), "nothing written at --to");
}
