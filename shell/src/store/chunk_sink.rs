//! Bytes written as a stream, sent on to an upload in whole chunks.

use std::io::{self, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{CHUNK_BYTES, Chunk};

/// Collects bytes and sends them on in chunks of [`CHUNK_BYTES`]; blocking,
/// so it is written to off the async runtime.
pub struct ChunkSink {
    pending: Vec<u8>,
    chunks: mpsc::Sender<io::Result<Chunk>>,
}

impl ChunkSink {
    pub fn new(chunks: &mpsc::Sender<io::Result<Chunk>>) -> Self {
        ChunkSink {
            pending: Vec::with_capacity(CHUNK_BYTES + (1 << 16)),
            chunks: chunks.clone(),
        }
    }

    fn send(&self, bytes: Vec<u8>, last: bool) -> io::Result<()> {
        self.chunks
            .blocking_send(Ok(Chunk {
                bytes: Bytes::from(bytes),
                last,
            }))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends what is left as the last chunk.
    pub fn finish(mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        self.send(rest, true)
    }
}

impl Write for ChunkSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // Strictly more than a chunk: the last chunk is never empty unless
        // the whole object is.
        while self.pending.len() > CHUNK_BYTES {
            let rest = self.pending.split_off(CHUNK_BYTES);
            let full = std::mem::replace(&mut self.pending, rest);
            self.send(full, false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
