//! `jobvault completions` and `jobvault man`, generated from the command
//! line's definitions: every command and flag is in them.

use jobvault_tests::{jobvault, stdout};

const COMMANDS: &[&str] = &[
    "init",
    "run",
    "backup",
    "trigger",
    "retrieve",
    "restore",
    "snapshots",
    "prune",
    "status",
    "verify",
    "check",
    "jobs",
    "demo",
];

#[test]
fn completions_name_every_command_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = jobvault(None)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        for command in COMMANDS {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
        assert!(
            script.contains("snapshot-every"),
            "{shell} lacks run's flags"
        );
    }
    let output = jobvault(None)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn the_man_pages_hold_every_command_and_each_command_its_flags() {
    let output = jobvault(None).arg("man").output().unwrap();
    assert!(output.status.success());
    let page = stdout(&output);
    assert!(
        page.starts_with(".ie") && page.contains(".TH jobvault 1"),
        "{page}"
    );
    for command in COMMANDS {
        assert!(page.contains(command), "the page lacks {command}");
    }
    let run = stdout(&jobvault(None).args(["man", "run"]).output().unwrap());
    assert!(run.contains(".TH jobvault-run 1"), "{run}");
    assert!(
        run.contains("snapshot\\-at") || run.contains("snapshot-at"),
        "{run}"
    );
    let nope = jobvault(None).args(["man", "nope"]).output().unwrap();
    assert_eq!(nope.status.code(), Some(1));
}
