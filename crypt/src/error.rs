//! What can be wrong with keys and encrypted objects. Each message is one
//! line; callers add the file or object it is about when the error does not
//! carry it.

use std::path::PathBuf;

use crate::fingerprint::{Fingerprint, listed};

/// A recipient that is not an X25519 recipient (`age1…`).
#[derive(Debug, thiserror::Error)]
#[error("{what} is not an age X25519 recipient (age1…): {why}")]
pub struct BadRecipient {
    /// The text given, or the file and line it came from.
    pub what: String,
    pub why: String,
}

/// An identity file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BadIdentities {
    #[error("{}: cannot read the identity file: {why}", path.display())]
    Unreadable { path: PathBuf, why: String },
    /// age's own parser names the line, never its content.
    #[error("{}: not an age identity file: {why}", path.display())]
    NotIdentities { path: PathBuf, why: String },
    #[error("{}: the file holds no identity (AGE-SECRET-KEY-1…)", path.display())]
    Empty { path: PathBuf },
    /// The key itself where its file's path goes: never repeated, as an
    /// error line ends up in logs.
    #[error(
        "--identity was given a secret key (AGE-SECRET-KEY-1…) instead of the path of a file \
         holding it; give a file readable by its owner only, or a pipe: --identity <(…)"
    )]
    SecretForPath,
}

/// Why an encrypted object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// None of the identities given unwraps it.
    #[error(
        "encrypted to {}; no --identity given holds a matching key (the identities given are for {})",
        listed(written_to),
        listed(have)
    )]
    NoMatchingIdentity {
        written_to: Vec<Fingerprint>,
        have: Vec<Fingerprint>,
    },
    /// The object is encrypted and no identity was given at all.
    #[error(
        "encrypted to {}; give its identity file with --identity",
        listed(written_to)
    )]
    NoIdentity { written_to: Vec<Fingerprint> },
    /// Its header or its payload does not authenticate: cut short, or
    /// changed since it was written.
    #[error("an encrypted object that does not authenticate (cut short or tampered with): {0}")]
    Damaged(String),
}

impl OpenError {
    /// The reading of an age file failed: in words of our own, as Rust's
    /// "failed to fill whole buffer" says nothing to an operator.
    pub fn damaged_by(error: &std::io::Error) -> OpenError {
        OpenError::Damaged(match error.kind() {
            std::io::ErrorKind::UnexpectedEof => "it ends early".to_owned(),
            _ => one_line(&error.to_string()),
        })
    }
}

/// A message of others' (age's, the OS's) on one line: they may span lines.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
