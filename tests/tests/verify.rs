//! `jobvault verify`: the newest snapshot downloaded and checked; damage fails it.

use std::process::Output;

use jobvault_core::Timestamp;
use jobvault_core::object_name::Framing;
use jobvault_tests::{
    Emulator, StoreReader, Workspace, back_up_once, jobvault, runtime, stderr, stdout,
};

/// A bucket holding one snapshot of a few jobs, made by `jobvault backup`.
fn bucket_with_a_snapshot(emulator: &Emulator, name: &str) -> (String, String) {
    let bucket = emulator.new_bucket(name);
    let url = format!("gs://{bucket}");
    let workspace = Workspace::new();
    workspace.put_jobs(&[
        serde_json::json!({ "id": "a", "name": "A" }),
        serde_json::json!({ "id": "b", "name": "B" }),
    ]);
    let object = back_up_once(Some(&emulator.endpoint()), &url, &workspace.db());
    (url, object)
}

/// `jobvault verify` with a `TMPDIR` of its own, which it must leave empty:
/// its copy of the snapshot, and SQLite's files beside it, go with it.
fn verify(emulator: &Emulator, url: &str) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let output = jobvault(Some(&emulator.endpoint()))
        .args(["verify", "--bucket", url])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "verify left {left:?} in TMPDIR");
    output
}

#[test]
fn verify_passes_a_sound_snapshot_and_fails_a_damaged_one() {
    let emulator = Emulator::shared();
    for damage in ["flip", "truncate"] {
        let (url, object) = bucket_with_a_snapshot(emulator, damage);
        let sound = verify(emulator, &url);
        assert!(
            sound.status.success(),
            "{}{}",
            stdout(&sound),
            stderr(&sound)
        );
        assert!(stdout(&sound).contains("CRC ok"), "{}", stdout(&sound));

        let reader = StoreReader::connect(&url, Some(&emulator.endpoint()));
        let mut bytes = reader.get(&object);
        match damage {
            "flip" => {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x55;
            }
            _ => bytes.truncate(bytes.len() / 2),
        }
        let framing = Framing::for_object(&object, Timestamp::from_unix_seconds(1_700_000_000));
        runtime()
            .block_on(reader.store().put(&object, bytes, &framing))
            .unwrap();

        let damaged = verify(emulator, &url);
        assert_eq!(
            damaged.status.code(),
            Some(1),
            "{damage}: {}",
            stdout(&damaged)
        );
        // The report on stdout, the count of failures as the error.
        let report = stdout(&damaged);
        let failures: String = report.lines().filter(|l| l.starts_with("FAIL  ")).collect();
        assert!(!failures.is_empty(), "{report}");
        let error = stderr(&damaged);
        assert!(
            error.lines().count() == 1 && error.contains(" checks failed"),
            "{error}"
        );
        assert!(
            failures.contains(&format!("{url}/{object}")),
            "{damage}: {failures}"
        );
    }
}
