//! The job envelope: the bytes inside every job object, before gzip.
//!
//! Layout: the magic bytes `JVJ1`, then a postcard-encoded record whose first
//! field is the format version. Decoding reads the version first and then the
//! record shape of that version, so every version ever written stays readable.
//! Backups outlive the code that wrote them; `tests/envelope_frozen.rs` keeps a
//! sample of each version and fails if it stops decoding.
//!
//! To change the format: freeze the current record shape (including a copy of
//! the job model as it is now) in a module of its own, add the new version,
//! convert old records to the current [`Envelope`] on decode, and add a frozen
//! sample of the new version.

use serde::{Deserialize, Serialize};

use crate::Seq;
use crate::job::Job;
use crate::timestamp::Timestamp;

/// Marks a job envelope.
pub const MAGIC: &[u8; 4] = b"JVJ1";

/// The format version this code writes.
pub const CURRENT_FORMAT: u16 = 1;

/// One version of one job, as backed up.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The job's change sequence: its position in the database's commit order.
    /// Of two envelopes of one job, the one with the larger `seq` is newer.
    pub seq: Seq,
    /// When the database wrote this version.
    pub modified: Timestamp,
    pub job: Job,
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
}

/// Format 1. Frozen: never change this shape or the job model it encodes
/// without adding a new format (see the module docs).
#[derive(Serialize, Deserialize)]
struct RecordV1 {
    format: u16,
    job_id: String,
    seq: Seq,
    modified: Timestamp,
    job: Job,
}

impl Envelope {
    pub fn new(seq: Seq, modified: Timestamp, job: Job) -> Self {
        Envelope { seq, modified, job }
    }

    /// Encodes in the current format.
    pub fn encode(&self) -> Vec<u8> {
        let record = RecordV1 {
            format: CURRENT_FORMAT,
            job_id: self.job.id.as_str().to_owned(),
            seq: self.seq,
            modified: self.modified,
            job: self.job.clone(),
        };
        let mut out = MAGIC.to_vec();
        postcard::to_io(&record, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes any format this code has ever written.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(EnvelopeError::BadMagic)?;
        let (format, _) = postcard::take_from_bytes::<u16>(body).map_err(corrupt)?;
        match format {
            1 => {
                let (record, rest) =
                    postcard::take_from_bytes::<RecordV1>(body).map_err(corrupt)?;
                if !rest.is_empty() {
                    return Err(EnvelopeError::TrailingBytes(rest.len()));
                }
                if record.job_id != record.job.id.as_str() {
                    return Err(EnvelopeError::IdMismatch {
                        outer: record.job_id,
                        inner: record.job.id.as_str().to_owned(),
                    });
                }
                // JSON cannot carry NaN or infinity; such a job could be
                // restored but never listed or written back.
                if !record.job.priority.is_finite() {
                    return Err(EnvelopeError::NonFinitePriority);
                }
                Ok(Envelope {
                    seq: record.seq,
                    modified: record.modified,
                    job: record.job,
                })
            }
            other => Err(EnvelopeError::UnknownFormat(other)),
        }
    }
}

fn corrupt(err: postcard::Error) -> EnvelopeError {
    EnvelopeError::Corrupt(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_id::JobId;

    fn sample() -> Envelope {
        let job = Job::new(JobId::new("j.1").unwrap(), "Build");
        Envelope::new(7, Timestamp::from_unix_seconds(1_479_333_865), job)
    }

    #[test]
    fn round_trips() {
        let envelope = sample();
        assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
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
    fn rejects_a_priority_json_cannot_carry() {
        let mut envelope = sample();
        envelope.job.priority = f64::NAN;
        assert_eq!(
            Envelope::decode(&envelope.encode()),
            Err(EnvelopeError::NonFinitePriority)
        );
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
