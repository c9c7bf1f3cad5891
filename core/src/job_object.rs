//! The bytes of a job object: a job envelope in a gzip member.
//!
//! Small enough to build in memory, so this is a pure function of the
//! envelope. Snapshots are streamed by the shell instead.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::GzBuilder;
use flate2::read::GzDecoder;

use crate::envelope::{Envelope, EnvelopeError, MAGIC};
use crate::object_name::Framing;

/// A job object larger than this once decompressed is refused, so a corrupt
/// or hostile object cannot exhaust memory.
pub const MAX_JOB_OBJECT_BYTES: u64 = 64 << 20;

/// Why the bytes of a job object do not hold a job.
#[derive(Debug, thiserror::Error)]
pub enum JobObjectError {
    #[error("gzip stream is corrupt: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("decompresses to more than {MAX_JOB_OBJECT_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// Gzips `envelope` with the header name and mtime of `framing`.
pub fn encode_job_object(envelope: &Envelope, framing: &Framing) -> Vec<u8> {
    let plain = envelope.encode();
    let mut gz = GzBuilder::new()
        .filename(framing.gzip_name.as_bytes())
        .mtime(framing.gzip_mtime.gzip_mtime())
        .write(
            Vec::with_capacity(plain.len() / 2 + 64),
            Compression::default(),
        );
    gz.write_all(&plain).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// Decodes a job object as stored (gzip, CRC checked) or as served
/// decompressed by a store that transcodes (the envelope itself).
pub fn decode_job_object(bytes: &[u8]) -> Result<Envelope, JobObjectError> {
    if bytes.starts_with(MAGIC) {
        return Ok(Envelope::decode(bytes)?);
    }
    let mut plain = Vec::new();
    GzDecoder::new(bytes)
        .take(MAX_JOB_OBJECT_BYTES + 1)
        .read_to_end(&mut plain)
        .map_err(JobObjectError::Gzip)?;
    if plain.len() as u64 > MAX_JOB_OBJECT_BYTES {
        return Err(JobObjectError::TooLarge);
    }
    Ok(Envelope::decode(&plain)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_id::JobId;
    use crate::timestamp::Timestamp;

    fn envelope() -> Envelope {
        Envelope::written(
            JobId::new("j1").unwrap(),
            3,
            Timestamp::from_unix_seconds(1_479_333_865),
            r#"{"id":"j1","name":"Build"}"#,
        )
    }

    fn framing() -> Framing {
        Framing::for_object(
            "job-backup/2016/11/16/j1.job",
            Timestamp::from_unix_seconds(1_479_333_865),
        )
    }

    #[test]
    fn gzip_header_carries_name_and_mtime() {
        let bytes = encode_job_object(&envelope(), &framing());
        let decoder = GzDecoder::new(&bytes[..]);
        let header = decoder.header().expect("a complete gzip header");
        assert_eq!(header.filename(), Some(&b"j1.job"[..]));
        assert_eq!(header.mtime(), 1_479_333_865);
    }

    #[test]
    fn decodes_gzip_and_transcoded_bytes() {
        let envelope = envelope();
        let gz = encode_job_object(&envelope, &framing());
        assert_eq!(decode_job_object(&gz).unwrap(), envelope);
        assert_eq!(decode_job_object(&envelope.encode()).unwrap(), envelope);
    }

    #[test]
    fn a_flipped_byte_fails_the_crc_or_the_decode() {
        let gz = encode_job_object(&envelope(), &framing());
        // Past the fixed header and the file name, every byte is checked.
        let first_checked = 10 + framing().gzip_name.len() + 1;
        for i in first_checked..gz.len() {
            let mut bad = gz.clone();
            bad[i] ^= 0xff;
            assert!(
                decode_job_object(&bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn a_truncated_object_is_an_error() {
        let gz = encode_job_object(&envelope(), &framing());
        let err = decode_job_object(&gz[..gz.len() - 4]).unwrap_err();
        assert!(matches!(err, JobObjectError::Gzip(_)), "{err}");
    }
}
