//! The systemd units in deploy/ are valid, as systemd itself judges them.

use std::path::Path;
use std::process::Command;

use jobvault_tests::jobvault_bin;

#[test]
fn systemd_accepts_the_units() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed; the units are not checked");
        return;
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in [
        "jobvault.service",
        "jobvault-trigger.service",
        "jobvault-trigger.timer",
    ] {
        // systemd checks that the program exists: point at the one just built.
        let text = std::fs::read_to_string(deploy.join(name)).unwrap().replace(
            "/usr/local/bin/jobvault",
            &jobvault_bin().display().to_string(),
        );
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{complaints}");
    assert!(
        !complaints.lines().any(|line| line.contains("jobvault")),
        "systemd complains: {complaints}"
    );
}
