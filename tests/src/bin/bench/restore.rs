//! `bench restore`: `jobvault restore` of a database's snapshot, against
//! downloading and gunzipping the same object by hand.

use std::process::Command;

use jobvault_tests::{Backend, Emulator, Workspace, jobvault};

use super::setup::{bounded, database_of_size, timed};
use super::targets::Figure;
use super::verdict::Measured;

pub fn run(mib: u64) -> Measured {
    println!("== restore: a {mib} MiB database");
    let data = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(Backend::Filesystem(data.path().to_owned()));
    let bucket = emulator.new_bucket("restore");
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    database_of_size(&workspace, mib);
    let mut backup = jobvault(Some(&emulator.endpoint()));
    backup
        .args(["backup", "--bucket", &url, "--db"])
        .arg(workspace.db());
    let output = bounded(backup).output().unwrap();
    assert!(output.status.success());
    let object = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let target = workspace.path().join("restored.db");
    let mut restore = jobvault(Some(&emulator.endpoint()));
    restore
        .args(["restore", "--bucket", &url, "--to"])
        .arg(&target);
    let (ours, peak) = timed(restore);
    let by_hand = workspace.path().join("by-hand.db");
    let mut manual = Command::new("sh");
    manual.arg("-c").arg(format!(
        "curl -s -H 'Accept-Encoding: gzip' '{}/download/storage/v1/b/{bucket}/o/{}?alt=media' | gunzip > {}",
        emulator.endpoint(),
        object.replace('/', "%2F"),
        by_hand.display()
    ));
    let (manual_seconds, _) = timed(manual);
    assert_eq!(
        std::fs::metadata(&by_hand).unwrap().len(),
        std::fs::metadata(&target).unwrap().len(),
        "both ways give a database of the same size"
    );
    println!(
        "  jobvault restore {ours:.2} s (peak memory {} MiB); curl | gunzip by hand {manual_seconds:.2} s; {:.2}x",
        peak / 1024,
        ours / manual_seconds
    );
    vec![(Figure::RestoreSeconds, ours)]
}
