//! A listener of the daemon, carried out as `jobvault_core::listen` says:
//! it takes a permit before it accepts, so it holds at most its cap of
//! connections and the rest wait in the kernel's queue, and after an accept
//! error it waits and says so as the core's [`AcceptErrors`] decides.

use std::future::Future;
use std::io;
use std::sync::Arc;

use jobvault_core::listen::AcceptErrors;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::clock;

/// How one listener accepts: under its cap, waiting out errors.
#[derive(Debug)]
pub struct Bounded {
    name: &'static str,
    permits: Arc<Semaphore>,
    errors: AcceptErrors,
}

impl Bounded {
    /// A listener called `name` (for its log line) holding at most `cap`
    /// connections.
    pub fn new(name: &'static str, cap: usize) -> Self {
        Bounded {
            name,
            permits: Arc::new(Semaphore::new(cap)),
            errors: AcceptErrors::default(),
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
                Err(error) => {
                    let after = self.errors.on_error(clock::now());
                    if let Some(errors) = after.say {
                        warn!(listener = self.name, errors, %error, "cannot accept connections; pausing between tries, and saying so once a minute");
                    }
                    tokio::time::sleep(after.pause).await;
                }
            }
        }
    }
}
