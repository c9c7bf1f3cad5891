//! What every listener of the daemon keeps to, so that nothing a neighbour
//! does to one can stop backups.
//!
//! The first listener accepted without limit and read headers without a
//! deadline: 1,100 idle connections under systemd's default of 1,024 open
//! files took the daemon to 100% CPU, logged 2.8 GB of `Too many open files`
//! in a minute, and failed its uploads for want of a file descriptor. Now a
//! listener takes a permit before it accepts (so it holds at most its cap of
//! connections, and the rest wait in the kernel's queue), gives each
//! connection a deadline, and waits out an accept error, saying so once a
//! minute with how many there were.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// How long a listener waits after an accept error before it tries again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// How often accept errors are said.
const SAY_EVERY: Duration = Duration::from_secs(60);

/// How one listener accepts: under its cap, waiting out errors.
#[derive(Debug)]
pub struct Bounded {
    permits: Arc<Semaphore>,
    errors: AcceptErrors,
}

impl Bounded {
    /// A listener called `name` (for its log line) holding at most `cap`
    /// connections.
    pub fn new(name: &'static str, cap: usize) -> Self {
        Bounded {
            permits: Arc::new(Semaphore::new(cap)),
            errors: AcceptErrors::new(name),
        }
    }

    /// Waits until fewer than the cap are held, then for the next
    /// connection `accept` gives: the connection, and the permit it holds
    /// until it ends.
    pub async fn accept<S, A>(&mut self, mut accept: impl FnMut() -> A) -> (S, OwnedSemaphorePermit)
    where
        A: Future<Output = io::Result<S>>,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match accept().await {
                Ok(connection) => return (connection, permit),
                Err(e) => self.errors.on_error(e).await,
            }
        }
    }
}

/// Accept errors of one listener, said at most once a minute.
#[derive(Debug)]
struct AcceptErrors {
    listener: &'static str,
    unsaid: u64,
    said_at: Option<Instant>,
}

impl AcceptErrors {
    fn new(listener: &'static str) -> Self {
        AcceptErrors {
            listener,
            unsaid: 0,
            said_at: None,
        }
    }

    /// Counts `error`, says it if a minute has passed since the last time,
    /// and waits before the next accept.
    async fn on_error(&mut self, error: io::Error) {
        self.unsaid += 1;
        if self.said_at.is_none_or(|at| at.elapsed() >= SAY_EVERY) {
            warn!(
                listener = self.listener,
                errors = self.unsaid,
                error = %error,
                "cannot accept connections; pausing between tries, and saying so once a minute"
            );
            self.unsaid = 0;
            self.said_at = Some(Instant::now());
        }
        tokio::time::sleep(ACCEPT_PAUSE).await;
    }
}
