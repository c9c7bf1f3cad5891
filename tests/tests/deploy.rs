//! What deploy/ relies on: the systemd units are valid as systemd judges
//! them and the daemon's is sandboxed to an exposure of 2.0 or lower, `run`
//! takes its flags from the environment the unit gives it, every alert has a
//! severity and a section of docs/runbook.md, and the dashboard plots
//! metrics the daemon exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jobvault_tests::{Daemon, Workspace, eventually, jobvault_bin, today};

/// The units are templates, one instance per database; they are checked as
/// the instance `task-scheduler`.
const INSTANCE: &str = "task-scheduler";
const TEMPLATES: [&str; 3] = [
    "jobvault@.service",
    "jobvault-trigger@.service",
    "jobvault-trigger@.timer",
];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether `systemd-analyze` runs here, and its systemd version.
fn systemd_version() -> Option<u32> {
    let output = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .ok()?;
    // "systemd 252 (252.38-1~deb12u1)"
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `deploy/<template>` written into `dir` under its instance's name
/// (`jobvault@.service` as `jobvault@task-scheduler.service`), its program
/// the one just built: systemd checks that the program exists.
fn instantiate(dir: &Path, template: &str) -> PathBuf {
    let text = std::fs::read_to_string(repository().join("deploy").join(template))
        .unwrap()
        .replace(
            "/usr/local/bin/jobvault",
            &jobvault_bin().display().to_string(),
        );
    let path = dir.join(template.replacen('@', &format!("@{INSTANCE}"), 1));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn systemd_accepts_the_units() {
    if systemd_version().is_none() {
        eprintln!("systemd-analyze is not installed; the units are not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units: Vec<PathBuf> = TEMPLATES
        .iter()
        .map(|template| instantiate(dir.path(), template))
        .collect();
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

/// `systemd-analyze security` rates the daemon's unit 2.0 or lower (0 is
/// the best, 10 a unit with no sandbox at all). Offline (`--offline=`, since
/// systemd 250) it rates the file as written, without loading it into the
/// service manager. The level is read from the output rather than through
/// `--threshold=`, which systemd 252 compares on a scale of 0 to 100
/// (`--threshold=20` for 2.0).
#[test]
fn the_unit_is_hardened_to_an_exposure_of_2_or_lower() {
    match systemd_version() {
        None => {
            eprintln!("systemd-analyze is not installed; the sandbox is not rated");
            return;
        }
        Some(version) if version < 250 => {
            eprintln!("systemd {version} has no `security --offline`; the sandbox is not rated");
            return;
        }
        Some(_) => {}
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = instantiate(dir.path(), "jobvault@.service");
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // "→ Overall exposure level for jobvault@task-scheduler.service: 1.2 OK 🙂"
    let exposure: f64 = text
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .and_then(|line| line.rsplit_once(": "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|level| level.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{text}"));
    assert!(
        exposure <= 2.0,
        "exposure {exposure}, more than 2.0:\n{text}"
    );
}

/// The unit gives `jobvault run` no flags: every one comes from its
/// `JOBVAULT_*` variable, as the unit and `/etc/jobvault/NAME.env` set them.
/// With `JOBVAULT_LOG_FORMAT=json` each log line is a JSON object Cloud
/// Logging reads: severity, message, time.
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
    assert_eq!(running["interval_seconds"], 0.2);
    assert!(
        running["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{running}"
    );
}

/// `deploy/grafana-dashboard.json` parses, and every metric it plots, or
/// `deploy/alerts.yml` alerts on, is one a running daemon exports (`up`,
/// Prometheus's own, is not one: only `jobvault_` names are checked). The
/// dashboard picks the instance and the database, and every query it
/// plots selects both.
#[test]
fn the_dashboard_and_the_alerts_use_only_metrics_the_daemon_exports() {
    let deploy = repository().join("deploy");
    let text = std::fs::read_to_string(deploy.join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut plotted = BTreeSet::new();
    let mut unselected = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            if !expr.contains(r#"instance=~"$instance", database=~"$database""#) {
                unselected.push(expr.to_owned());
            }
            plotted.extend(metric_names(expr));
        }
    }
    assert!(plotted.len() >= 10, "{plotted:?}");
    assert!(
        unselected.is_empty(),
        "queries that do not select $instance and $database: {unselected:?}"
    );
    let variables: BTreeMap<&str, &str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|variable| variable["type"] == "query")
        .map(|variable| {
            let query = &variable["query"];
            // A string, or `{"query": ...}` as newer Grafana writes it.
            let query = query
                .as_str()
                .or_else(|| query["query"].as_str())
                .unwrap_or_else(|| panic!("no query: {variable}"));
            (variable["name"].as_str().unwrap(), query)
        })
        .collect();
    assert_eq!(
        variables.get("instance").copied(),
        Some("label_values(jobvault_pending_jobs, instance)"),
        "{variables:?}"
    );
    assert_eq!(
        variables.get("database").copied(),
        Some(r#"label_values(jobvault_pending_jobs{instance=~"$instance"}, database)"#),
        "{variables:?}"
    );
    for query in variables.values() {
        plotted.extend(metric_names(query));
    }
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

/// Every alert of `deploy/alerts.yml` has a `severity` label, `page` or
/// `ticket`, a `summary`, and a `runbook_url` whose anchor is the section of
/// `docs/runbook.md` headed with the alert's name; every such section has
/// its alert. A daemon that is down is alerted on from Prometheus's `up`.
#[test]
fn every_alert_has_a_severity_and_a_section_of_the_runbook() {
    let alerts = alerts(&std::fs::read_to_string(repository().join("deploy/alerts.yml")).unwrap());
    assert!(alerts.len() >= 12, "{alerts:#?}");
    let runbook = std::fs::read_to_string(repository().join("docs/runbook.md")).unwrap();
    let headings = headings(&runbook);
    let anchors: BTreeSet<String> = headings
        .iter()
        .map(|heading| anchor(heading.as_str()))
        .collect();

    let mut wrong = Vec::new();
    let mut names = BTreeSet::new();
    for alert in &alerts {
        let name = &alert.name;
        if !names.insert(name.as_str()) {
            wrong.push(format!("{name}: named twice"));
        }
        if alert.expr.is_empty() {
            wrong.push(format!("{name}: no expr"));
        }
        match alert.labels.get("severity").map(String::as_str) {
            Some("page" | "ticket") => {}
            other => wrong.push(format!("{name}: severity {other:?}, not page or ticket")),
        }
        if !alert.annotations.contains_key("summary") {
            wrong.push(format!("{name}: no summary"));
        }
        if alert.annotations.contains_key("runbook") {
            wrong.push(format!(
                "{name}: a `runbook` annotation: it is `description` now"
            ));
        }
        match alert
            .annotations
            .get("runbook_url")
            .and_then(|url| url.split_once('#'))
        {
            Some((page, section)) if page.ends_with("docs/runbook.md") => {
                if section != name.to_lowercase() {
                    wrong.push(format!("{name}: runbook_url points at #{section}"));
                }
                if !anchors.contains(section) {
                    wrong.push(format!("{name}: docs/runbook.md has no section #{section}"));
                }
            }
            _ => wrong.push(format!(
                "{name}: runbook_url {:?} is not docs/runbook.md#<section>",
                alert.annotations.get("runbook_url")
            )),
        }
    }
    for heading in &headings {
        if heading.starts_with("Jobvault") && !names.contains(heading.as_str()) {
            wrong.push(format!("docs/runbook.md: section {heading} has no alert"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    let down = alerts
        .iter()
        .find(|alert| alert.name == "JobvaultDown")
        .expect("an alert JobvaultDown");
    assert!(
        down.expr.starts_with("up{") && down.expr.ends_with("== 0"),
        "{down:?}"
    );
    assert_eq!(
        down.labels.get("severity").map(String::as_str),
        Some("page")
    );
}

/// The README's table of alerts names exactly the alerts of
/// `deploy/alerts.yml`: it once listed 7 of 9.
#[test]
fn the_readme_lists_every_alert_and_no_other() {
    let alerts = alerts(&std::fs::read_to_string(repository().join("deploy/alerts.yml")).unwrap());
    let defined: BTreeSet<String> = alerts.into_iter().map(|a| a.name).collect();
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let listed: BTreeSet<String> = readme
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("| `Jobvault"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| format!("Jobvault{name}"))
        .collect();
    assert_eq!(
        listed, defined,
        "the README's alert table against deploy/alerts.yml"
    );
}

/// One alerting rule, as much of it as the tests read.
#[derive(Debug, Default)]
struct Alert {
    name: String,
    expr: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// The alerts of a Prometheus rules file, read line by line. The tests
/// crate has no YAML parser, and deploy/alerts.yml keeps to a plain subset
/// this reads: one `key: value` a line (a value quoted with `"` or bare),
/// `labels:` and `annotations:` as nested mappings, and an `expr: >` folded
/// over the more indented lines below it. A line outside that subset fails
/// the test rather than being misread.
fn alerts(text: &str) -> Vec<Alert> {
    let mut alerts: Vec<Alert> = Vec::new();
    // The mapping being read (`labels` or `annotations`), and its key's indent.
    let mut section: Option<(&str, usize)> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            alerts.push(Alert {
                name: unquote(name),
                ..Alert::default()
            });
            section = None;
            continue;
        }
        // `groups:`, `- name:` and `rules:` come before the first alert.
        let Some(alert) = alerts.last_mut() else {
            continue;
        };
        let (key, value) = trimmed
            .split_once(':')
            .unwrap_or_else(|| panic!("not a `key: value` line: {line:?}"));
        let value = value.trim();
        if section.is_some_and(|(_, at)| indent <= at) {
            section = None;
        }
        match (section, key) {
            (Some(("labels", _)), _) => {
                alert.labels.insert(key.to_owned(), unquote(value));
            }
            (Some(_), _) => {
                alert.annotations.insert(key.to_owned(), unquote(value));
            }
            (None, "labels" | "annotations") => {
                assert!(value.is_empty(), "not a nested mapping: {line:?}");
                section = Some((key, indent));
            }
            (None, "expr") => {
                if value == ">" {
                    let mut folded = Vec::new();
                    while let Some(&next) = lines.peek() {
                        let next_trimmed = next.trim_start();
                        if next.len() - next_trimmed.len() <= indent {
                            break;
                        }
                        folded.push(next_trimmed);
                        lines.next();
                    }
                    alert.expr = folded.join(" ");
                } else {
                    assert!(
                        !value.starts_with(['|', '>', '&', '*', '[', '{']),
                        "an expr this reader does not read: {line:?}"
                    );
                    alert.expr = unquote(value);
                }
            }
            // `for:`, and the group's keys after its rules.
            (None, _) => {}
        }
    }
    alerts
}

/// A YAML scalar as written on one line: bare, or in double quotes (with
/// `\"` and `\\` escaped).
fn unquote(value: &str) -> String {
    let value = value.trim();
    match value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
    {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_owned(),
    }
}

/// The headings of a Markdown text, outside fenced code blocks.
fn headings(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut headings = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let text = line.trim_start_matches('#');
        if !fenced && line.starts_with('#') && text.starts_with(' ') {
            headings.push(text.trim().to_owned());
        }
    }
    headings
}

/// The anchor GitHub gives a heading: lower case, spaces as `-`, and
/// everything but letters, digits, `-` and `_` left out.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(*c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}
