//! `bench encryption`: what `--encrypt-to` costs, side by side with the same
//! work in the clear in one run: the daemon's CPU per job upload, a
//! snapshot end to end, and a restore of it.

use std::path::Path;

use jobvault_tests::{Backend, Emulator, Workspace, jobvault, stdout};

use super::incremental::daemon_rate_with;
use super::setup::{bounded, database_of_size, timed};
use super::targets::Figure;
use super::verdict::Measured;

const UPLOADS: usize = 10_000;

pub fn run(mib: u64) -> Measured {
    println!("== encryption: encrypted vs plain");
    let keys = Workspace::new();
    let (identity, recipient) = keygen(keys.path());
    let uploads = uploads(&recipient);
    let (snapshot, restore) = snapshot_and_restore(mib, &identity, &recipient);
    vec![
        (Figure::EncryptedUploadCpu, uploads),
        (Figure::EncryptedSnapshot, snapshot),
        (Figure::EncryptedRestore, restore),
    ]
}

fn keygen(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("bench.key");
    let mut keygen = jobvault(None);
    keygen.args(["keygen", "--out"]).arg(&path);
    let output = bounded(keygen).output().unwrap();
    assert!(output.status.success());
    (path, stdout(&output).trim().to_owned())
}

/// The daemon's CPU for the same uploads, encrypted over plain. The two
/// run in the order plain, encrypted, encrypted, plain, so that whatever
/// drifts during a run (the emulator's files, the page cache) weighs on
/// both alike.
fn uploads(recipient: &str) -> f64 {
    let data = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(Backend::Filesystem(data.path().to_owned()));
    let endpoint = emulator.endpoint();
    let sealed_args = ["--encrypt-to", recipient];
    let (mut plain, mut sealed) = (0.0, 0.0);
    for (n, encrypt) in [false, true, true, false].into_iter().enumerate() {
        let bucket = emulator.new_bucket(&format!("uploads-{n}"));
        let args: &[&str] = if encrypt { &sealed_args } else { &[] };
        let (_, cpu) = daemon_rate_with(&endpoint, &bucket, UPLOADS, 32, args);
        *(if encrypt { &mut sealed } else { &mut plain }) += cpu / 2.0;
    }
    println!(
        "  daemon CPU for {UPLOADS} job uploads (mean of two runs each): plain {plain:.2} s, encrypted {sealed:.2} s: {:.2}x",
        sealed / plain
    );
    sealed / plain
}

/// `backup` and `restore` of a `mib` MiB database, encrypted over plain.
fn snapshot_and_restore(mib: u64, identity: &Path, recipient: &str) -> (f64, f64) {
    let workspace = Workspace::new();
    database_of_size(&workspace, mib);
    let mut seconds = Vec::new();
    for (name, encrypt) in [("plain", None), ("sealed", Some(recipient))] {
        let bucket = workspace.path().join(name);
        std::fs::create_dir(&bucket).unwrap();
        let url = format!("file://{}", bucket.display());
        let mut backup = jobvault(None);
        backup
            .args(["backup", "--bucket", &url, "--db"])
            .arg(workspace.db());
        if let Some(recipient) = encrypt {
            backup.args(["--encrypt-to", recipient]);
        }
        let (backed_up, _) = timed(backup);
        let target = workspace.path().join(format!("{name}.db"));
        let mut restore = jobvault(None);
        restore
            .args(["restore", "--bucket", &url, "--to"])
            .arg(&target);
        if encrypt.is_some() {
            restore.arg("--identity").arg(identity);
        }
        let (restored, _) = timed(restore);
        assert_eq!(
            std::fs::metadata(&target).unwrap().len(),
            std::fs::metadata(workspace.db()).unwrap().len(),
            "the {name} restore gives the database back"
        );
        seconds.push((backed_up, restored));
    }
    let [
        (plain_backup, plain_restore),
        (sealed_backup, sealed_restore),
    ] = seconds[..]
    else {
        unreachable!("two runs")
    };
    println!(
        "  {mib} MiB database: backup plain {plain_backup:.2} s, encrypted {sealed_backup:.2} s: {:.2}x; restore plain {plain_restore:.2} s, encrypted {sealed_restore:.2} s: {:.2}x",
        sealed_backup / plain_backup,
        sealed_restore / plain_restore
    );
    (sealed_backup / plain_backup, sealed_restore / plain_restore)
}
