//! The job envelope: the bytes inside every job object, before gzip.
//!
//! Layout: the magic bytes `JVJ1`, then a postcard-encoded record whose first
//! field is the format version. Decoding reads the version first and then the
//! record shape of that version, so every version ever written stays readable.
//! Backups outlive the code that wrote them; `tests/envelope_frozen.rs` keeps a
//! sample of each version and fails if it stops decoding.
//!
//! - Format 1 (`v1`): a typed job. Decodes to the body the first release
//!   stored for it.
//! - Format 2 (`v2`, written now): the body as the writer stored it, or a
//!   tombstone.
//!
//! To change the format: add a module with the new record shape, write it,
//! convert every older record to the current [`Envelope`] on decode, and add a
//! frozen sample of the new version. Never edit a released module.

mod v1;
mod v2;

pub use v2::check_body;

use std::sync::Arc;

use crate::Seq;
use crate::job_id::JobId;
use crate::timestamp::Timestamp;

/// Marks a job envelope.
pub const MAGIC: &[u8; 4] = b"JVJ1";

/// The format version this code writes.
pub const CURRENT_FORMAT: u16 = 2;

/// The largest job body jobvault backs up, in bytes, one limit everywhere:
/// the database's rule refuses a longer body at the writer's commit, the
/// daemon sets aside a row that holds one, and retrieve and restore refuse
/// an object that decompresses to more than such a body's envelope.
pub const MAX_BODY_BYTES: u64 = 64 << 20;

/// One change to one job, as backed up.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: JobId,
    /// The change's sequence: its position in the database's commit order.
    /// Of two envelopes of one job, the one with the larger `seq` is newer.
    pub seq: Seq,
    /// When the database made this change.
    pub modified: Timestamp,
    pub change: Change,
}

/// What happened to the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The job as the writer stored it: its JSON body, byte for byte.
    /// Shared, not copied: a body of megabytes is held once while the
    /// machine keeps it, its upload carries it and its object is encoded.
    Written(Arc<str>),
    /// The job was deleted.
    Deleted,
}

/// Why bytes are not a job envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("does not start with the job envelope magic bytes JVJ1")]
    BadMagic,
    #[error(
        "job envelope format {0} is newer than this jobvault understands (up to {CURRENT_FORMAT})"
    )]
    UnknownFormat(u16),
    #[error("job envelope is corrupt: {0}")]
    Corrupt(String),
    #[error("job envelope has {0} unexpected bytes after the record")]
    TrailingBytes(usize),
    #[error("job envelope names job {outer:?} but holds job {inner:?}")]
    IdMismatch { outer: String, inner: String },
    #[error("job envelope holds a priority that is not a finite number")]
    NonFinitePriority,
    #[error("job envelope holds a body that is not a JSON object with a string \"id\": {0}")]
    BadBody(String),
}

impl Envelope {
    /// A job written with `body`.
    pub fn written(id: JobId, seq: Seq, modified: Timestamp, body: impl Into<Arc<str>>) -> Self {
        Envelope {
            id,
            seq,
            modified,
            change: Change::Written(body.into()),
        }
    }

    /// A job deleted.
    pub fn deleted(id: JobId, seq: Seq, modified: Timestamp) -> Self {
        Envelope {
            id,
            seq,
            modified,
            change: Change::Deleted,
        }
    }

    /// The body written, or `None` for a tombstone.
    pub fn body(&self) -> Option<&str> {
        match &self.change {
            Change::Written(body) => Some(body),
            Change::Deleted => None,
        }
    }

    /// Encodes in the current format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        postcard::to_io(&v2::Record::new(self), &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes any format this code has ever written.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(EnvelopeError::BadMagic)?;
        let (format, _) = postcard::take_from_bytes::<u16>(body).map_err(corrupt)?;
        match format {
            1 => whole::<v1::Record>(body)?.into_envelope(),
            2 => whole::<v2::Record>(body)?.into_envelope(),
            other => Err(EnvelopeError::UnknownFormat(other)),
        }
    }
}

/// Decodes a record that must take every byte.
fn whole<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, EnvelopeError> {
    let (record, rest) = postcard::take_from_bytes::<T>(body).map_err(corrupt)?;
    if !rest.is_empty() {
        return Err(EnvelopeError::TrailingBytes(rest.len()));
    }
    Ok(record)
}

fn corrupt(err: postcard::Error) -> EnvelopeError {
    EnvelopeError::Corrupt(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> JobId {
        JobId::new("j.1").unwrap()
    }

    fn at() -> Timestamp {
        Timestamp::from_unix_seconds(1_479_333_865)
    }

    fn sample() -> Envelope {
        Envelope::written(
            id(),
            7,
            at(),
            r#"{"id":"j.1", "name":"Build","extra":[1.50]}"#,
        )
    }

    #[test]
    fn bodies_and_tombstones_round_trip_byte_for_byte() {
        for envelope in [sample(), Envelope::deleted(id(), 8, at())] {
            assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        }
    }

    #[test]
    fn rejects_other_magic_and_newer_formats() {
        assert_eq!(Envelope::decode(b"JVJ2rest"), Err(EnvelopeError::BadMagic));
        let mut bytes = MAGIC.to_vec();
        bytes.push(9);
        assert_eq!(
            Envelope::decode(&bytes),
            Err(EnvelopeError::UnknownFormat(9))
        );
    }

    #[test]
    fn rejects_a_body_that_is_not_its_job() {
        for (body, why) in [
            ("{\"id\":", "not a JSON object"),
            ("[1]", "not a JSON object"),
            (r#"{"name":"x"}"#, "not a JSON object"),
            (r#"{"id":5}"#, "not a JSON object"),
            (r#"{"id":"other"}"#, "holds job \"other\""),
            (r#"{"id":"other","id":"j.1"}"#, "holds job \"other\""),
            (r#"{"\u0069d":"other"}"#, "holds job \"other\""),
        ] {
            let envelope = Envelope::written(id(), 1, at(), body);
            let err = Envelope::decode(&envelope.encode())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{body}: {err}");
        }
    }

    #[test]
    fn the_first_id_member_counts_under_either_reading_of_sqlite() {
        for body in [
            r#"{"id":"j.1","id":"other"}"#,
            // SQLite 3.40 reads only the plain key, 3.53 the escaped one too.
            r#"{"\u0069d":"other","id":"j.1"}"#,
            r#"{"\u0069d":"j.1","id":"other"}"#,
        ] {
            let envelope = Envelope::written(id(), 1, at(), body);
            assert_eq!(
                Envelope::decode(&envelope.encode()).unwrap(),
                envelope,
                "{body}"
            );
        }
    }

    #[test]
    fn rejects_truncation_and_trailing_bytes() {
        let bytes = sample().encode();
        assert!(matches!(
            Envelope::decode(&bytes[..bytes.len() - 1]),
            Err(EnvelopeError::Corrupt(_))
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Envelope::decode(&longer),
            Err(EnvelopeError::TrailingBytes(1))
        );
    }
}
