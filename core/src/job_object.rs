//! The bytes of a job object: a job envelope in a gzip member.
//!
//! Small enough to build in memory, so this is a pure function of the
//! envelope. Snapshots are streamed by the shell instead.

use std::io::Read;

use flate2::read::GzDecoder;
use flate2::{Compress, Compression, Crc, FlushCompress};

use crate::envelope::{Envelope, EnvelopeError, MAGIC, MAX_BODY_BYTES};
use crate::gzip_member;
use crate::object_name::Framing;

/// A job object larger than this once decompressed is refused, so a corrupt
/// or hostile object cannot exhaust memory: the envelope of the largest body
/// the database accepts, with room for its id (at most 256 bytes), sequence
/// and time.
pub const MAX_JOB_OBJECT_BYTES: u64 = MAX_BODY_BYTES + 4096;

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
    JobObjectEncoder::default().encode(envelope, framing)
}

/// Gzips job objects one after another with one deflate state, reset
/// between them. For a job of a few hundred bytes, setting a compressor up
/// (allocating and zeroing its window and hash tables) cost more than the
/// compression: 5.5% of the daemon's CPU while it uploaded 10,000 jobs. The
/// bytes are the same as from a new compressor.
pub struct JobObjectEncoder {
    compress: Compress,
}

impl Default for JobObjectEncoder {
    fn default() -> Self {
        JobObjectEncoder {
            compress: Compress::new(Self::LEVEL, false),
        }
    }
}

impl JobObjectEncoder {
    /// The fastest level: for the benchmark's jobs of about 510 bytes of
    /// JSON it took 3.8 µs a job where level 6 took 12.5 µs, and wrote 426
    /// bytes where level 6 wrote 344 (zlib-rs's level 1 codes with fixed
    /// tables instead of building a Huffman tree for each object). A job
    /// object costs a store write whatever its size; the CPU is paid for
    /// every change.
    const LEVEL: Compression = Compression::fast();

    /// Gzips `envelope` with the header name and mtime of `framing`.
    pub fn encode(&mut self, envelope: &Envelope, framing: &Framing) -> Vec<u8> {
        let plain = envelope.encode();
        let mut gz = gzip_member::header(
            framing.gzip_name.as_bytes(),
            framing.gzip_mtime.gzip_mtime(),
            Self::LEVEL,
        );
        gz.reserve(plain.len() / 2 + 64);
        self.compress.reset();
        gzip_member::deflate_into(&mut self.compress, &plain, &mut gz, FlushCompress::Finish);
        let mut crc = Crc::new();
        crc.update(&plain);
        gz.extend_from_slice(&gzip_member::trailer(&crc));
        gz
    }
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
    fn one_encoder_after_another_writes_what_a_fresh_one_writes_and_gzip_reads_it() {
        let mut encoder = JobObjectEncoder::default();
        for n in [1usize, 300, 5, 20_000, 2] {
            let body = format!(r#"{{"id":"j1","name":"{}"}}"#, "Build ".repeat(n));
            let envelope = Envelope::written(
                JobId::new("j1").unwrap(),
                n as u64,
                Timestamp::from_unix_seconds(7),
                body,
            );
            let bytes = encoder.encode(&envelope, &framing());
            assert!(
                bytes == JobObjectEncoder::default().encode(&envelope, &framing()),
                "a body of {n} words came out differently"
            );
            let mut plain = Vec::new();
            GzDecoder::new(&bytes[..]).read_to_end(&mut plain).unwrap();
            assert_eq!(plain, envelope.encode(), "a body of {n} words");
        }
    }

    #[test]
    fn a_truncated_object_is_an_error() {
        let gz = encode_job_object(&envelope(), &framing());
        let err = decode_job_object(&gz[..gz.len() - 4]).unwrap_err();
        assert!(matches!(err, JobObjectError::Gzip(_)), "{err}");
    }
}
