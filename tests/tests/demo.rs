//! `jobvault demo`: the whole story on a local directory, every job restored.

use jobvault_tests::{jobvault, stderr, stdout};

#[test]
fn the_demo_restores_every_job() {
    let output = jobvault(None).arg("demo").output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let report = stdout(&output);
    assert!(
        report.contains("jobs deleted") && !report.contains(", 0 jobs deleted"),
        "the demo's writer deletes jobs too: {report}"
    );
    let last = report.lines().last().unwrap();
    assert!(
        last.trim_start().starts_with("restored ") && last.ends_with(", 0 lost"),
        "{report}"
    );
}
