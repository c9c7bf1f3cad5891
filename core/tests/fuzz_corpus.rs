//! Replays the fuzz corpora as ordinary tests, so CI checks every input the
//! fuzzers found interesting without needing a nightly toolchain.

use std::fs;
use std::path::{Path, PathBuf};

include!("../../fuzz/properties.rs");

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn trigger_corpus() {
    let entries = corpus("trigger_parse");
    assert!(entries.len() >= 10, "the corpus lost its seeds");
    for (name, data) in entries {
        let parsed = check_trigger_content(&data);
        let expected = match name.as_str() {
            "empty" | "zero" => Some(Some(0)),
            "two-newline" => Some(Some(2)),
            "three-spaced" => Some(Some(3)),
            "word" | "negative" | "overflow" | "too-long" | "not-utf8" | "plus" => Some(None),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(parsed, expected, "{name}");
        }
    }
}

#[test]
fn job_object_corpus() {
    let entries = corpus("job_object_decode");
    assert!(entries.len() >= 5, "the corpus lost its seeds");
    for (name, data) in entries {
        let decoded = check_job_object(&data);
        if name.starts_with("valid-") {
            assert!(decoded.is_some(), "{name} no longer decodes");
        }
        if name == "truncated" || name == "future-format" || name == "nan-priority" {
            assert!(decoded.is_none(), "{name} decoded");
        }
    }
}
