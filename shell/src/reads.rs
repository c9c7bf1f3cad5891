//! Reads of the bucket made again as the core's [`ReadRetry`] decides.
//!
//! One [`Reads`] serves one command: every read it makes reports its
//! progress here, so the patience counts from the last time anything came
//! back, whichever read it was. This only sleeps and asks again; whether and
//! when is the core's.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobvault_core::Failure;
use jobvault_core::read_retry::{DEFAULT_READ_PATIENCE, ReadAgain, ReadGaveUp, ReadRetry};
use jobvault_crypt::{Keyring, OpenError, is_sealed};
use tracing::{debug, warn};

use crate::clock;
use crate::store::StoreError;

/// The read retry policy of one command, shared by all its reads, and the
/// identities its reads open encrypted objects with.
#[derive(Debug, Clone)]
pub struct Reads {
    policy: Arc<Mutex<ReadRetry>>,
    /// Whether a retry has been said on stderr yet.
    warned: Arc<AtomicBool>,
    /// `--identity`: none opens plain objects only.
    keyring: Arc<Keyring>,
}

impl Default for Reads {
    fn default() -> Self {
        Reads::new(DEFAULT_READ_PATIENCE)
    }
}

impl Reads {
    /// Reads that give up once nothing has come back for `patience`.
    pub fn new(patience: Duration) -> Self {
        Reads {
            policy: Arc::new(Mutex::new(ReadRetry::new(patience, clock::now()))),
            warned: Arc::new(AtomicBool::new(false)),
            keyring: Arc::new(Keyring::default()),
        }
    }

    /// The same reads, opening encrypted objects with `keyring`.
    pub fn with_keyring(self, keyring: Keyring) -> Self {
        Reads {
            keyring: Arc::new(keyring),
            ..self
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// An object's bytes as written before encryption: opened if they are
    /// an age file, as they are otherwise (objects from before encryption
    /// was turned on).
    pub fn opened<'b>(&self, bytes: &'b [u8]) -> Result<Cow<'b, [u8]>, OpenError> {
        if is_sealed(bytes) {
            self.keyring.open(bytes).map(Cow::Owned)
        } else {
            Ok(Cow::Borrowed(bytes))
        }
    }

    /// Something came back: an answer, or bytes of a body.
    pub fn progressed(&self) {
        self.policy
            .lock()
            .expect("the policy is never left poisoned")
            .progressed(clock::now());
    }

    /// Decides after `error` ended the `attempt`th try at a read (`pinned`:
    /// of a generation seen before), and waits out the wait it says. Returns
    /// how to read again, or the error to end with.
    pub async fn after_failure(
        &self,
        error: StoreError,
        attempt: u32,
        pinned: bool,
    ) -> Result<ReadAgain, StoreError> {
        // The message without the location: a give-up names it once.
        let failure = Failure::new(error.kind, error.message.clone());
        let verdict = self
            .policy
            .lock()
            .expect("the policy is never left poisoned")
            .on_failure(&failure, attempt, pinned, clock::now());
        match verdict {
            Ok(ReadAgain::After(wait)) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    warn!(%error, "a read of the bucket failed; reading again until one succeeds or --read-patience runs out (further failures are logged at debug level)");
                }
                debug!(%error, attempt, wait_ms = wait.as_millis() as u64, "a read failed; reading again");
                tokio::time::sleep(wait).await;
                Ok(ReadAgain::After(wait))
            }
            Ok(ReadAgain::FromStart) => Ok(ReadAgain::FromStart),
            Err(ReadGaveUp::Final(_)) => Err(error),
            Err(gave_up @ ReadGaveUp::NoProgress { .. }) => Err(StoreError {
                location: error.location,
                message: gave_up.to_string(),
                kind: error.kind,
            }),
        }
    }

    /// Makes the read `read` (a whole one, never pinned) until it succeeds
    /// or the policy gives up.
    pub async fn read<T, F, Fut>(&self, mut read: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match read().await {
                Ok(value) => {
                    self.progressed();
                    return Ok(value);
                }
                Err(error) => {
                    let _ = self.after_failure(error, attempt, false).await?;
                }
            }
        }
    }
}
