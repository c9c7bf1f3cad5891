//! A response body read on a blocking thread.
//!
//! Decoding a snapshot and parsing a listing page are blocking work over a
//! body that arrives on the async side. `SyncIoBridge` straight over the
//! response polls reqwest's timers from the blocking thread, and that panics
//! once a failed command shuts the runtime down while the body still comes.
//! So the async side feeds the body's pieces into a channel, and the thread
//! reads the channel through `SyncIoBridge`: a failed piece comes out as the
//! read's error, with its cause.

use std::future::Future;
use std::io::{self, Read};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use tokio_util::io::{StreamReader, SyncIoBridge};

/// Pieces held between the feed and the reader.
const PIECES_IN_FLIGHT: usize = 8;

/// A reader of `body` for a blocking thread, and the future that feeds it:
/// await it or spawn it on the async side. The reader ends early when the
/// feed is dropped; the feed ends when the reader is dropped.
pub fn bridge<'a, E>(
    body: impl Stream<Item = Result<Bytes, E>> + Send + 'a,
) -> (
    impl Future<Output = ()> + Send + 'a,
    impl Read + Send + 'static,
)
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'a,
{
    let (sender, receiver) = mpsc::channel(PIECES_IN_FLIGHT);
    let feed = body
        .map_err(io::Error::other)
        .map(Ok)
        .forward(sender)
        .map(drop);
    (feed, SyncIoBridge::new(StreamReader::new(receiver)))
}
