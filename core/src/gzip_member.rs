//! The parts of a gzip member (RFC 1952) that jobvault writes itself: the
//! header with a name and an mtime, and the trailer.
//!
//! `flate2` writes whole members only from one deflate stream it owns. Job
//! objects are deflated with a compressor reused from one object to the
//! next, and snapshots in independent blocks on several cores, so both write
//! the header and trailer here, byte for byte as `flate2::GzBuilder` does
//! (tests hold the two equal).

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The header: deflate, a file name, `mtime`, the extra-flags byte saying
/// which level compressed it, and the OS "unknown".
pub fn header(name: &[u8], mtime: u32, level: Compression) -> Vec<u8> {
    const DEFLATE: u8 = 8;
    const FNAME: u8 = 0x08;
    const UNKNOWN_OS: u8 = 255;
    let extra_flags = if level.level() >= Compression::best().level() {
        2
    } else if level.level() <= Compression::fast().level() {
        4
    } else {
        0
    };
    let mut bytes = Vec::with_capacity(11 + name.len());
    bytes.extend_from_slice(&[0x1f, 0x8b, DEFLATE, FNAME]);
    bytes.extend_from_slice(&mtime.to_le_bytes());
    bytes.extend_from_slice(&[extra_flags, UNKNOWN_OS]);
    bytes.extend_from_slice(name);
    bytes.push(0);
    bytes
}

/// Deflates all of `data` onto the end of `out` with `flush`, growing `out`
/// until the flush is complete: for `Finish` the stream has ended, for a
/// sync flush zlib left output space unused.
pub fn deflate_into(compress: &mut Compress, data: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
    let start = compress.total_in();
    loop {
        let consumed = (compress.total_in() - start) as usize;
        let status = compress
            .compress_vec(&data[consumed..], out, flush)
            .expect("deflating into a Vec cannot fail");
        let all_in = (compress.total_in() - start) as usize == data.len();
        let complete = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => all_in && out.len() < out.capacity(),
        };
        if complete {
            return;
        }
        out.reserve(out.capacity().max(64));
    }
}

/// The trailer: the CRC-32 of the uncompressed bytes and their length
/// modulo 2³².
pub fn trailer(crc: &Crc) -> [u8; 8] {
    let mut bytes = [0; 8];
    bytes[..4].copy_from_slice(&crc.sum().to_le_bytes());
    bytes[4..].copy_from_slice(&crc.amount().to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::GzBuilder;

    use super::*;

    #[test]
    fn the_header_and_trailer_are_the_ones_flate2_writes() {
        for level in [
            Compression::fast(),
            Compression::default(),
            Compression::best(),
        ] {
            let data = b"a job body";
            let mut gz = GzBuilder::new()
                .filename("a.job")
                .mtime(1_479_333_865)
                .write(Vec::new(), level);
            gz.write_all(data).unwrap();
            let theirs = gz.finish().unwrap();
            let ours = header(b"a.job", 1_479_333_865, level);
            assert_eq!(theirs[..ours.len()], ours[..], "level {level:?}");
            let mut crc = Crc::new();
            crc.update(data);
            assert_eq!(theirs[theirs.len() - 8..], trailer(&crc), "level {level:?}");
        }
    }
}
