//! The trigger-file protocol.
//!
//! A systemd timer drops an empty file into `<workdir>/trigger-backup/`. The
//! file's name becomes the snapshot's base name; its content counts the
//! attempts made so far (empty means none). jobvault writes the count *before*
//! each attempt, so a crash in the middle of one still counts, and a trigger is
//! attempted at most [`RETRY_COUNT`] times even across restarts.
//!
//! Unlike the original, a file that cannot be parsed does not block every
//! later backup: it is moved to `<workdir>/trigger-backup-invalid/`. So is a
//! file whose name is not UTF-8 (the daemon once took it under a lossy name,
//! failed to write its count every interval, and served nothing after it)
//! and a file it may not read (which once failed the whole scan).

use crate::job_id::{InvalidName, check_base_name};
use crate::timestamp::Timestamp;

/// The folder, under the work dir, where triggers are dropped.
pub const TRIGGER_DIR: &str = "trigger-backup";
/// The folder, under the work dir, where malformed triggers are moved.
pub const QUARANTINE_DIR: &str = "trigger-backup-invalid";
/// How many times one trigger is attempted before it is given up.
pub const RETRY_COUNT: u32 = 3;
/// A valid trigger's content is a small number; more bytes than this is not one.
pub const MAX_TRIGGER_BYTES: usize = 32;

/// The name of a file in the trigger directory, as the shell's scan found
/// it (for a name that is not UTF-8, its bytes escaped): what the
/// commands on trigger files name, and what a served trigger's snapshot is
/// named after. A type of its own so that it cannot be taken for an object
/// name or a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TriggerName(String);

impl TriggerName {
    /// A name as the scan found it.
    pub fn found(name: impl Into<String>) -> Self {
        TriggerName(name.into())
    }
}

reads_as_str!(TriggerName);

/// A file found in the trigger directory, as the shell read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFile {
    /// The file's name; for a name that is not UTF-8, its bytes escaped
    /// ([`crate::escape::escape_bytes`]), and `name_is_text` is false.
    pub name: TriggerName,
    pub name_is_text: bool,
    pub modified: Timestamp,
    /// The first bytes of the file (the shell reads at most
    /// [`MAX_TRIGGER_BYTES`] + 1 so that an oversized file is recognised),
    /// or why they could not be read.
    pub content: Result<Vec<u8>, String>,
}

/// Why a trigger file cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedTrigger {
    #[error("its name is not UTF-8 text")]
    NameNotText,
    #[error("it cannot be read: {0}")]
    Unreadable(String),
    #[error("its name cannot name a snapshot: {0}")]
    Name(#[from] InvalidName),
    #[error("its content is longer than {MAX_TRIGGER_BYTES} bytes")]
    TooLong,
    #[error("its content {0:?} is not an attempt count (a whole number, or empty)")]
    NotACount(String),
}

/// Reads the attempt count from a trigger file's content. Surrounding white
/// space is ignored; empty content means no attempt yet.
pub fn parse_attempts(content: &[u8]) -> Result<u32, MalformedTrigger> {
    if content.len() > MAX_TRIGGER_BYTES {
        return Err(MalformedTrigger::TooLong);
    }
    let not_a_count = || MalformedTrigger::NotACount(String::from_utf8_lossy(content).into_owned());
    let text = std::str::from_utf8(content)
        .map_err(|_| not_a_count())?
        .trim();
    if text.is_empty() {
        return Ok(0);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_count());
    }
    text.parse().map_err(|_| not_a_count())
}

/// The content that records `attempts` attempts.
pub fn format_attempts(attempts: u32) -> String {
    attempts.to_string()
}

/// Whether the file is ignored altogether (editors' and tools' dot files).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// A trigger that can be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidTrigger {
    pub name: TriggerName,
    pub modified: Timestamp,
    pub attempts: u32,
}

/// What a scan of the trigger directory holds, sorted into what to serve and
/// what to quarantine. Hidden files are left out of both.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SortedTriggers {
    /// Oldest first (by modification time, then name): the order to serve them.
    pub valid: Vec<ValidTrigger>,
    pub malformed: Vec<(TriggerName, MalformedTrigger)>,
}

/// Sorts scanned files into valid triggers, oldest first, and malformed ones.
pub fn sort_triggers(files: &[TriggerFile]) -> SortedTriggers {
    let mut sorted = SortedTriggers::default();
    for file in files.iter().filter(|f| !is_hidden(&f.name)) {
        let checked = check_trigger(file);
        match checked {
            Ok(attempts) => sorted.valid.push(ValidTrigger {
                name: file.name.clone(),
                modified: file.modified,
                attempts,
            }),
            Err(why) => sorted.malformed.push((file.name.clone(), why)),
        }
    }
    sorted
        .valid
        .sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
    sorted
}

/// The attempts a file records, or why it cannot be served.
fn check_trigger(file: &TriggerFile) -> Result<u32, MalformedTrigger> {
    if !file.name_is_text {
        return Err(MalformedTrigger::NameNotText);
    }
    check_base_name("trigger name", &file.name)?;
    match &file.content {
        Ok(content) => parse_attempts(content),
        Err(why) => Err(MalformedTrigger::Unreadable(why.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(name: &str, secs: i64, content: &str) -> TriggerFile {
        TriggerFile {
            name: TriggerName::found(name),
            name_is_text: true,
            modified: Timestamp::from_unix_seconds(secs),
            content: Ok(content.as_bytes().to_vec()),
        }
    }

    #[test]
    fn empty_content_is_zero_attempts() {
        assert_eq!(parse_attempts(b""), Ok(0));
        assert_eq!(parse_attempts(b" \n"), Ok(0));
    }

    #[test]
    fn written_counts_read_back() {
        for n in [0, 1, 2, RETRY_COUNT, 4_000_000_000] {
            assert_eq!(parse_attempts(format_attempts(n).as_bytes()), Ok(n));
        }
        assert_eq!(parse_attempts(b"2\n"), Ok(2));
    }

    #[test]
    fn unparsable_content_names_the_content() {
        for content in ["two", "-1", "+1", "1.5", "1 2", "99999999999"] {
            let err = parse_attempts(content.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(content), "{content}: {err}");
        }
        assert_eq!(
            parse_attempts(&[0xff]),
            Err(MalformedTrigger::NotACount("\u{fffd}".into()))
        );
        assert_eq!(parse_attempts(&[b'0'; 33]), Err(MalformedTrigger::TooLong));
    }

    #[test]
    fn several_files_are_served_oldest_first_then_by_name() {
        let sorted = sort_triggers(&[
            file("c", 20, ""),
            file("b", 10, "1"),
            file("a", 20, ""),
            file(".swp", 1, ""),
            file("bad", 5, "x"),
        ]);
        let order: Vec<_> = sorted.valid.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert_eq!(sorted.valid[0].attempts, 1);
        assert_eq!(sorted.malformed.len(), 1);
        assert_eq!(sorted.malformed[0].0.as_str(), "bad");
    }

    #[test]
    fn a_name_that_cannot_name_a_snapshot_is_malformed() {
        let sorted = sort_triggers(&[file("x..y", 0, "")]);
        assert!(sorted.valid.is_empty());
        assert!(matches!(sorted.malformed[0].1, MalformedTrigger::Name(_)));
    }

    #[test]
    fn a_name_not_text_and_a_file_not_readable_are_malformed() {
        let mut not_text = file(r"caf\xe9", 0, "");
        not_text.name_is_text = false;
        let mut unreadable = file("nightly", 0, "");
        unreadable.content = Err("Permission denied".to_owned());
        let sorted = sort_triggers(&[not_text, unreadable, file("ok", 1, "")]);
        assert_eq!(sorted.valid.len(), 1);
        assert_eq!(sorted.malformed[0].1, MalformedTrigger::NameNotText);
        assert!(
            matches!(&sorted.malformed[1].1, MalformedTrigger::Unreadable(why) if why.contains("denied"))
        );
    }

    #[test]
    fn an_empty_directory_has_nothing_to_serve() {
        assert_eq!(sort_triggers(&[]), SortedTriggers::default());
    }

    proptest! {
        #[test]
        fn parsing_a_trigger_never_panics(content in proptest::collection::vec(any::<u8>(), 0..64)) {
            match parse_attempts(&content) {
                Ok(n) => prop_assert_eq!(
                    std::str::from_utf8(&content).unwrap().trim().parse::<u32>().unwrap_or(0),
                    n
                ),
                Err(_) => prop_assert!(content.len() > MAX_TRIGGER_BYTES
                    || std::str::from_utf8(&content).map_or(true, |t| t.trim().parse::<u32>().is_err())
                    || content.iter().any(|b| !b.is_ascii_digit() && !b.is_ascii_whitespace())),
            }
        }

        #[test]
        fn counts_round_trip(n in any::<u32>()) {
            prop_assert_eq!(parse_attempts(format_attempts(n).as_bytes()), Ok(n));
        }
    }
}
