//! Objects written encrypted: a store given a [`Sealer`] (`run
//! --encrypt-to`) writes every job object and snapshot as an age file. The
//! lease and the markers beside them hold no job and stay readable to
//! `status` without a key.

use std::io::{self, Write as _};
use std::sync::Arc;

use jobvault_crypt::Sealer;
use tokio::sync::mpsc;

use super::ChunkReceiver;
use super::chunk_sink::ChunkSink;

/// `chunks` encrypted as one age file, in chunks again. The encryption runs
/// on a blocking thread, one chunk behind the chunks it is given; an error
/// in `chunks` is passed on and ends the upload.
pub(super) fn sealed_chunks(sealer: Arc<Sealer>, mut chunks: ChunkReceiver) -> ChunkReceiver {
    let (sender, receiver) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let sealed = (|| {
            let mut writer = sealer.seal_into(ChunkSink::new(&sender))?;
            while let Some(chunk) = chunks.blocking_recv() {
                let chunk = chunk?;
                writer.write_all(&chunk.bytes)?;
                if chunk.last {
                    return writer.finish()?.finish();
                }
            }
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the object's bytes stopped before their end",
            ))
        })();
        if let Err(error) = sealed {
            let _ = sender.blocking_send(Err(error));
        }
    });
    receiver
}
