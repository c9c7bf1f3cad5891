//! The command line is a contract: `--help` of every command is pinned, so a
//! change to it is a reviewed change.

use jobvault_tests::jobvault;

fn help(args: &[&str]) -> String {
    let output = jobvault(None).args(args).arg("--help").output().unwrap();
    assert!(output.status.success(), "{args:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn help_of_every_command() {
    let commands: [&[&str]; 18] = [
        &[],
        &["init"],
        &["run"],
        &["backup"],
        &["trigger"],
        &["retrieve"],
        &["restore"],
        &["snapshots"],
        &["prune"],
        &["status"],
        &["verify"],
        &["check"],
        &["keygen"],
        &["jobs"],
        &["jobs", "put"],
        &["jobs", "get"],
        &["jobs", "list"],
        &["demo"],
    ];
    for args in commands {
        let name = if args.is_empty() {
            "jobvault".to_owned()
        } else {
            args.join("-")
        };
        insta::assert_snapshot!(name, help(args));
    }
}
