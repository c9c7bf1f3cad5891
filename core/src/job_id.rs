//! Checked names for the last segment of an object name.
//!
//! Job ids and snapshot base names become part of object names. The original
//! put them there unchecked, so an id such as `../db-backup/x` could write
//! outside `job-backup/`. Everything that becomes an object name's last segment
//! goes through [`check_base_name`] first. One rule for every store: a name
//! starting with `.` is refused because a `file://` bucket's directory
//! listing treats it as hidden, and such a job was uploaded, passed by the
//! cursor, and then never restored.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest base name accepted, in bytes. GCS allows 1024 bytes for a whole
/// object name; this leaves room for a prefix, the day path and an extension.
pub const MAX_BASE_NAME_BYTES: usize = 256;

/// Why a string cannot be the last segment of an object name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {name:?} is {len} bytes long; at most {MAX_BASE_NAME_BYTES} are allowed")]
    TooLong {
        what: &'static str,
        name: String,
        len: usize,
    },
    #[error("{what} {name:?} contains '/', which would put it outside its folder")]
    Slash { what: &'static str, name: String },
    #[error("{what} {name:?} contains '..', which could escape its folder")]
    DotDot { what: &'static str, name: String },
    #[error("{what} {name:?} starts with '.', which a file store hides")]
    LeadingDot { what: &'static str, name: String },
    #[error("{what} {name:?} contains the control character {ch:?}")]
    Control {
        what: &'static str,
        name: String,
        ch: char,
    },
}

/// Checks that `name` can be used as the last segment of an object name.
/// `what` names the thing in the error ("job id", "trigger name").
pub fn check_base_name(what: &'static str, name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::Empty { what });
    }
    if name.len() > MAX_BASE_NAME_BYTES {
        return Err(InvalidName::TooLong {
            what,
            name: name.to_owned(),
            len: name.len(),
        });
    }
    if name.contains('/') {
        return Err(InvalidName::Slash {
            what,
            name: name.to_owned(),
        });
    }
    if name.starts_with('.') {
        return Err(InvalidName::LeadingDot {
            what,
            name: name.to_owned(),
        });
    }
    if name.contains("..") {
        return Err(InvalidName::DotDot {
            what,
            name: name.to_owned(),
        });
    }
    if let Some(ch) = name.chars().find(|c| c.is_control()) {
        return Err(InvalidName::Control {
            what,
            name: name.to_owned(),
            ch,
        });
    }
    Ok(())
}

/// A job id that is safe to put into an object name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidName> {
        let id = id.into();
        check_base_name("job id", &id)?;
        Ok(JobId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = InvalidName;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        JobId::new(id)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_scheduler_ids_and_ids_with_dots() {
        for id in [
            "20161116T220425.634818978Z_0000000000001e88",
            "a.b.c",
            "x.job",
            "trailing.",
        ] {
            assert_eq!(JobId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_ids_that_could_escape_the_prefix() {
        let long = "a".repeat(MAX_BASE_NAME_BYTES + 1);
        let cases: [(&str, &str); 9] = [
            ("", "job id is empty"),
            ("a/b", "contains '/'"),
            ("..", "starts with '.'"),
            (".", "starts with '.'"),
            (".hidden", "starts with '.'"),
            ("x..y", "contains '..'"),
            ("tab\there", "control character '\\t'"),
            ("nl\n", "control character '\\n'"),
            (&long, "257 bytes long"),
        ];
        for (id, why) in cases {
            let err = JobId::new(id).unwrap_err().to_string();
            assert!(err.contains(why), "{id:?}: {err}");
        }
    }

    #[test]
    fn the_limit_is_inclusive() {
        assert!(JobId::new("a".repeat(MAX_BASE_NAME_BYTES)).is_ok());
    }
}
