//! Gzip on every core, pigz's way: the input is cut into blocks that are
//! deflated independently on their own threads, each ended by a sync flush
//! so that it stops on a byte boundary, and the blocks are written in order
//! behind one gzip header, then an empty final block and one trailer whose
//! CRC is the blocks' CRCs combined. The result is a single gzip member:
//! `gunzip`, GCS's decompressive transcoding and any inflater read it as if
//! one deflate stream had written it.
//!
//! The first release gzipped snapshots on one thread, leaving the other
//! cores idle for most of a snapshot's time. `gzp`, the crate for parallel
//! gzip, writes a fixed header without a name or an mtime, and a snapshot's
//! header carries both (`Framing`), so the header comes from
//! `jobvault_core::gzip_member`, as flate2 would have written it.
//!
//! Memory is bounded by the blocks in flight (two per thread) and does not
//! grow with the input.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::thread;

use flate2::{Compress, Compression, Crc, FlushCompress};
use jobvault_core::gzip_member;

/// Input bytes per block: large enough that starting each block without the
/// previous one's window costs a fraction of a per cent of the ratio.
const BLOCK_BYTES: usize = 1 << 20;

/// A gzip header's fields that a snapshot sets.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub mtime: u32,
}

/// One block, deflated, and the CRC of its input.
struct Deflated {
    bytes: Vec<u8>,
    crc: Crc,
}

/// Gzips everything `input` yields into `output` with up to `threads`
/// blocks compressing at once; returns the number of input bytes.
pub fn compress(
    input: &mut impl Read,
    header: &Header<'_>,
    level: Compression,
    threads: usize,
    output: &mut impl Write,
) -> io::Result<u64> {
    output.write_all(&gzip_member::header(header.name, header.mtime, level))?;
    let mut crc = Crc::new();
    let mut total = 0u64;
    thread::scope(|scope| -> io::Result<()> {
        let mut in_flight = VecDeque::new();
        let mut ended = false;
        loop {
            while !ended && in_flight.len() < 2 * threads.max(1) {
                let block = read_block(input)?;
                ended = block.len() < BLOCK_BYTES;
                if !block.is_empty() {
                    total += block.len() as u64;
                    in_flight.push_back(scope.spawn(move || deflate(&block, level)));
                }
            }
            let Some(oldest) = in_flight.pop_front() else {
                return Ok(());
            };
            let block = oldest
                .join()
                .map_err(|_| io::Error::other("a compression thread panicked"))?;
            crc.combine(&block.crc);
            output.write_all(&block.bytes)?;
        }
    })?;
    output.write_all(&final_block(level))?;
    output.write_all(&gzip_member::trailer(&crc))?;
    Ok(total)
}

/// Reads up to a block; shorter only at the end of the input.
fn read_block(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(BLOCK_BYTES);
    input.take(BLOCK_BYTES as u64).read_to_end(&mut block)?;
    Ok(block)
}

/// Deflates `data` as blocks that end on a byte boundary and do not end the
/// stream.
fn deflate(data: &[u8], level: Compression) -> Deflated {
    let mut crc = Crc::new();
    crc.update(data);
    let bytes = run(data, level, FlushCompress::Sync);
    Deflated { bytes, crc }
}

/// The deflate block that ends the stream: empty, marked final.
fn final_block(level: Compression) -> Vec<u8> {
    run(&[], level, FlushCompress::Finish)
}

fn run(data: &[u8], level: Compression, flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    gzip_member::deflate_into(&mut Compress::new(level, false), data, &mut out, flush);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::GzBuilder;
    use flate2::read::GzDecoder;

    use super::*;

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let header = Header {
            name: b"nightly.bdb",
            mtime: 1_700_000_000,
        };
        let read = compress(
            &mut &data[..],
            &header,
            Compression::default(),
            threads,
            &mut out,
        )
        .unwrap();
        assert_eq!(read, data.len() as u64);
        out
    }

    /// Bytes that compress somewhat, like a database: repeated text with
    /// a counter in it.
    fn sample(len: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(len);
        let mut n = 0u64;
        while data.len() < len {
            data.extend_from_slice(format!("{{\"id\":{n},\"status\":\"queued\"}}").as_bytes());
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 40;
        }
        data.truncate(len);
        data
    }

    #[test]
    fn any_length_reads_back_whole_with_its_name_and_mtime() {
        for len in [
            0,
            1,
            BLOCK_BYTES - 1,
            BLOCK_BYTES,
            BLOCK_BYTES + 1,
            5 * BLOCK_BYTES + 7,
        ] {
            let data = sample(len);
            let gz = gzip(&data, 2);
            let mut decoder = GzDecoder::new(&gz[..]);
            let mut back = Vec::new();
            decoder.read_to_end(&mut back).unwrap();
            assert!(
                back == data,
                "length {len} came back as {} bytes",
                back.len()
            );
            let header = decoder.header().unwrap();
            assert_eq!(header.filename(), Some(&b"nightly.bdb"[..]));
            assert_eq!(header.mtime(), 1_700_000_000);
        }
    }

    #[test]
    fn gunzip_reads_it_and_checks_its_crc() {
        let data = sample(3 * BLOCK_BYTES + 5);
        let mut gunzip = std::process::Command::new("gzip")
            .args(["-d", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip is installed");
        let gz = gzip(&data, 2);
        let mut stdin = gunzip.stdin.take().unwrap();
        let feeder = thread::spawn(move || stdin.write_all(&gz));
        let output = gunzip.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(output.status.success());
        assert!(
            output.stdout == data,
            "gunzip gave {} bytes",
            output.stdout.len()
        );
    }

    #[test]
    fn the_same_bytes_whatever_the_number_of_threads() {
        let data = sample(3 * BLOCK_BYTES + 11);
        assert_eq!(gzip(&data, 1), gzip(&data, 4));
    }

    #[test]
    fn a_corrupted_trailer_is_caught_by_the_crc() {
        let data = sample(2 * BLOCK_BYTES + 3);
        let mut gz = gzip(&data, 2);
        let crc_at = gz.len() - 8;
        gz[crc_at] ^= 1;
        let mut back = Vec::new();
        let error = GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
    }

    #[test]
    fn costs_a_fraction_of_a_per_cent_of_the_ratio_of_one_stream() {
        let data = sample(8 * BLOCK_BYTES);
        let ours = gzip(&data, 2).len();
        let mut single = GzBuilder::new().write(Vec::new(), Compression::default());
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            (ours as f64) < single as f64 * 1.005,
            "parallel {ours} bytes, one stream {single} bytes"
        );
    }
}
