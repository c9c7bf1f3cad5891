//! `--log-format json`: every line on stderr is one JSON object Cloud
//! Logging reads, with `severity` and `message`, whatever the run ends
//! with: a normal run and its stop, a start the lease refuses, an argument
//! error. Before, the refusal and argument errors were plain text, which
//! Cloud Logging files with no severity, and numbers were strings.

use jobvault_tests::{Daemon, Emulator, Workspace, jobvault, stderr};
use serde_json::{Value, json};

/// Every line of `log`, parsed; fails naming the first that is not a JSON
/// object with a severity and a message.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| {
            let parsed: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{log}"));
            assert!(
                parsed["severity"].is_string() && parsed["message"].is_string(),
                "no severity or message: {line}"
            );
            parsed
        })
        .collect()
}

fn run_json(workspace: &Workspace, emulator: &Emulator, url: &str) -> std::process::Output {
    jobvault(Some(&emulator.endpoint()))
        .args(["--log-format", "json", "run", "--bucket", url])
        .args(["--interval", "200ms", "--metrics-addr", "127.0.0.1:0"])
        .arg("--db")
        .arg(workspace.db())
        .arg("--workdir")
        .arg(workspace.workdir())
        .output()
        .unwrap()
}

#[test]
fn a_run_and_its_stop_log_only_json_with_numbers_as_numbers() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}", emulator.new_bucket("json-run"));
    let workspace = Workspace::new();
    workspace.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let daemon = Daemon::start(
        &workspace,
        Some(&emulator.endpoint()),
        &url,
        "200ms",
        &["--log-format", "json"],
    );
    daemon.settled();
    let (status, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    let lines = json_lines(&log);
    let started = lines
        .iter()
        .find(|l| l["message"] == "jobvault running")
        .expect("the start line");
    assert!(started["interval_seconds"].is_f64(), "{started}");
    let location = &started["logging.googleapis.com/sourceLocation"];
    assert!(
        location["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(".rs")),
        "{started}"
    );
    let snapshot = lines
        .iter()
        .find(|l| l["message"] == "snapshot uploaded")
        .expect("the destination's first snapshot");
    assert!(
        snapshot["bytes"].is_u64() && snapshot["seconds"].is_f64(),
        "{snapshot}"
    );
    let last = lines.last().unwrap();
    assert!(last["drained"].is_u64(), "{last}");
}

#[test]
fn a_start_the_lease_refuses_logs_only_json() {
    let emulator = Emulator::shared();
    let url = format!("gs://{}/prod", emulator.new_bucket("json-refused"));
    let first_place = Workspace::new();
    first_place.put_jobs(&[json!({ "id": "a", "name": "A" })]);
    let _first = Daemon::start(&first_place, Some(&emulator.endpoint()), &url, "200ms", &[]);
    let second_place = Workspace::new();
    second_place.put_jobs(&[json!({ "id": "b", "name": "B" })]);
    let output = run_json(&second_place, emulator, &url);
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    let last = json_lines(&said).pop().unwrap();
    assert_eq!(last["severity"], "ERROR");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("jobvault-lease.json is held by"),
        "{said}"
    );
}

#[test]
fn an_argument_error_is_one_json_line_and_exit_2() {
    for env in [false, true] {
        let mut command = jobvault(None);
        if env {
            command
                .env("JOBVAULT_LOG_FORMAT", "json")
                .args(["run", "--bogus"]);
        } else {
            command.args(["run", "--log-format", "json", "--bogus"]);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        let said = stderr(&output);
        let lines = json_lines(&said);
        assert_eq!(lines.len(), 1, "{said}");
        assert!(
            lines[0]["message"].as_str().unwrap().contains("--bogus"),
            "{said}"
        );
    }
}
