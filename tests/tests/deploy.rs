//! What deploy/ relies on: the systemd units are valid as systemd judges
//! them, `run` takes its flags from the environment the unit gives it, and
//! the dashboard plots metrics the daemon exports.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jobvault_tests::{Daemon, Workspace, eventually, jobvault_bin, today};

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

/// The unit gives `jobvault run` no flags: every one comes from its
/// `JOBVAULT_*` variable, as `/etc/default/jobvault` sets them. With
/// `JOBVAULT_LOG_FORMAT=json` each log line is a JSON object Cloud Logging
/// reads: severity, message, time.
#[test]
fn run_takes_every_flag_from_the_environment_and_logs_json_lines() {
    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "from-env", "name": "E" })]);
    let bucket = workspace.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let log = workspace.path().join("run.log");
    let mut child = Command::new(jobvault_bin())
        .arg("run")
        .env("JOBVAULT_DB", workspace.db())
        .env("JOBVAULT_BUCKET", format!("file://{}", bucket.display()))
        .env("JOBVAULT_WORKDIR", workspace.workdir())
        .env("JOBVAULT_NAME", "from-env")
        .env("JOBVAULT_INTERVAL", "200ms")
        .env("JOBVAULT_CONCURRENCY", "4")
        .env("JOBVAULT_METRICS_ADDR", "127.0.0.1:0")
        .env("JOBVAULT_GRACE", "5s")
        .env("JOBVAULT_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let object = bucket.join(format!("job-backup/{}/from-env.job", today()));
    eventually("the job uploaded", Duration::from_secs(30), || {
        object.exists().then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let running = lines
        .iter()
        .find(|line| line["message"] == "jobvault running")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(running["severity"], "INFO");
    assert_eq!(running["interval"], "200ms");
    assert!(
        running["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{running}"
    );
}

/// `deploy/grafana-dashboard.json` parses, and every metric it plots, or
/// `deploy/alerts.yml` alerts on, is one a running daemon exports.
#[test]
fn the_dashboard_and_the_alerts_use_only_metrics_the_daemon_exports() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let text = std::fs::read_to_string(deploy.join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut plotted = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            plotted.extend(metric_names(expr));
        }
    }
    assert!(plotted.len() >= 10, "{plotted:?}");
    let alerts = std::fs::read_to_string(deploy.join("alerts.yml")).unwrap();
    let alerted = metric_names(&alerts);
    assert!(alerted.len() >= 10, "{alerted:?}");
    plotted.extend(alerted);

    let workspace = Workspace::new();
    workspace.put_jobs(&[serde_json::json!({ "id": "a", "name": "A" })]);
    let url = format!("file://{}", workspace.path().join("bucket").display());
    std::fs::create_dir_all(workspace.path().join("bucket")).unwrap();
    let daemon = Daemon::start(&workspace, None, &url, "200ms", &[]);
    let scrape = eventually(
        "a job upload in the metrics",
        Duration::from_secs(30),
        || {
            let text = daemon.scrape();
            text.contains("jobvault_upload_duration_seconds_bucket")
                .then_some(text)
        },
    );
    let missing: Vec<&String> = plotted
        .iter()
        .filter(|name| !scrape.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
}

fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("jobvault_"))
        .map(str::to_owned)
        .collect()
}
