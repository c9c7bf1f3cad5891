//! Whether, and when, to read the bucket again after a read failed.
//!
//! Every read a restore, retrieve, verify, status or prune makes (a listing,
//! a header, a download) is idempotent, so a read that failed for a reason
//! that passes (a 5xx, 408 or 429, a reset, a body cut part way, no byte for
//! a while) is made again: after a wait that doubles with each attempt at
//! that read, drawn at random below it ("full jitter", so that 32 reads that
//! failed together do not come back together). The first restore gave up on
//! the first failed request, at the moment a user needed it most.
//!
//! A read is never given up for failing often, only when nothing at all has
//! come back for `patience` (`--read-patience`): a store that answers one
//! read in ten still finishes a restore; one that answers nothing for ten
//! minutes ends it with the last failure. A refusal (permission, no such
//! object or bucket, a malformed request) is final at once: asking again
//! would get the same answer.
//!
//! A read pinned to the generation it first saw (a download resumed from the
//! byte it reached) that finds the generation gone starts that object over
//! at its live generation: the object was replaced, and the bucket keeps no
//! old ones.

use std::time::Duration;

use crate::machine::{Failure, FailureKind};
use crate::timestamp::Timestamp;

/// The wait before the second attempt at a read, at most.
pub const FIRST_READ_RETRY: Duration = Duration::from_millis(200);
/// The longest wait between two attempts at a read.
pub const LONGEST_READ_RETRY: Duration = Duration::from_secs(30);
/// How long reads may go without any success before a command gives up.
pub const DEFAULT_READ_PATIENCE: Duration = Duration::from_secs(10 * 60);
/// A listing or download that receives no byte for this long is cut, and
/// counts as a failed read (a timeout): read again from where it got to.
pub const IDLE_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do after a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ReadAgain {
    /// Make the read again, from where it got to, after this wait.
    After(Duration),
    /// Read the object again from its first byte, at its live generation:
    /// the generation the read was pinned to is gone.
    FromStart,
}

/// Why reads were given up; its text names what failed and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadGaveUp {
    /// The store refused the read (or the driver failed it for good);
    /// asking again gets the same answer.
    #[error("{0}")]
    Final(String),
    /// No read succeeded for the whole patience.
    #[error(
        "no read of the bucket succeeded for {} s (--read-patience); the last failure: {last}",
        waited.as_secs()
    )]
    NoProgress { waited: Duration, last: String },
}

/// The retry policy of one command's reads, and when they last got
/// anywhere.
#[derive(Debug, Clone)]
pub struct ReadRetry {
    patience: Duration,
    last_progress: Timestamp,
}

impl ReadRetry {
    /// Reads that have made no progress yet, as of `now`.
    pub fn new(patience: Duration, now: Timestamp) -> Self {
        ReadRetry {
            patience,
            last_progress: now,
        }
    }

    /// Something came back at `now`: an answer, or bytes of a body.
    pub fn progressed(&mut self, now: Timestamp) {
        self.last_progress = self.last_progress.max(now);
    }

    /// A read failed at `now` on its `attempt`th try (the first is 1);
    /// `pinned` says it read a generation it had seen before. Returns how to
    /// read again, or why not.
    pub fn on_failure(
        &self,
        failure: &Failure,
        attempt: u32,
        pinned: bool,
        now: Timestamp,
    ) -> Result<ReadAgain, ReadGaveUp> {
        match failure.kind {
            FailureKind::Transient | FailureKind::Timeout => {}
            FailureKind::NotFound if pinned => return Ok(ReadAgain::FromStart),
            FailureKind::NotFound
            | FailureKind::Permission
            | FailureKind::Conflict
            | FailureKind::Corrupt
            | FailureKind::Rejected
            | FailureKind::Internal => return Err(ReadGaveUp::Final(failure.message.clone())),
        }
        let waited = now.duration_since(self.last_progress);
        if waited >= self.patience {
            return Err(ReadGaveUp::NoProgress {
                waited,
                last: failure.message.clone(),
            });
        }
        Ok(ReadAgain::After(full_jitter(
            ceiling(attempt),
            attempt,
            now,
        )))
    }
}

/// `FIRST_READ_RETRY` doubled for each attempt after the first, at most
/// `LONGEST_READ_RETRY`.
fn ceiling(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    (FIRST_READ_RETRY * 2u32.pow(doublings)).min(LONGEST_READ_RETRY)
}

/// A wait between none and `ceiling`, drawn from the time of the failure and
/// the attempt: the core has no randomness, and failures at different
/// instants still spread out.
fn full_jitter(ceiling: Duration, attempt: u32, now: Timestamp) -> Duration {
    let mixed = splitmix64(now.unix_nanos() as u64 ^ u64::from(attempt).rotate_left(32));
    let fraction = (mixed >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(fraction)
}

/// SplitMix64's finalizer: every input bit moves about half the output bits,
/// so instants a millisecond apart draw unrelated fractions.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000) + Duration::from_millis(millis as u64)
    }

    fn failure(kind: FailureKind) -> Failure {
        Failure::new(kind, "gs://b/db-backup/x.bdb: 503 Service Unavailable")
    }

    fn wait(verdict: Result<ReadAgain, ReadGaveUp>) -> Duration {
        match verdict {
            Ok(ReadAgain::After(wait)) => wait,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn transient_failures_wait_below_a_ceiling_that_doubles_up_to_the_longest() {
        let retry = ReadRetry::new(DEFAULT_READ_PATIENCE, at(0));
        for attempt in 1..=12 {
            let ceiling = ceiling(attempt);
            let waits: Vec<Duration> = (0..50)
                .map(|n| retry.on_failure(&failure(FailureKind::Transient), attempt, false, at(n)))
                .map(wait)
                .collect();
            assert!(waits.iter().all(|w| *w < ceiling), "attempt {attempt}");
            assert!(
                waits.iter().any(|w| *w < ceiling / 4) && waits.iter().any(|w| *w > ceiling / 2),
                "attempt {attempt}: the waits spread over the whole range: {waits:?}"
            );
        }
        assert_eq!(ceiling(1), FIRST_READ_RETRY);
        assert_eq!(ceiling(2), FIRST_READ_RETRY * 2);
        assert_eq!(ceiling(40), LONGEST_READ_RETRY);
    }

    #[test]
    fn reads_are_given_up_only_after_the_patience_without_progress() {
        let patience = Duration::from_secs(600);
        let mut retry = ReadRetry::new(patience, at(0));
        let transient = failure(FailureKind::Timeout);
        assert!(
            retry
                .on_failure(&transient, 500, false, at(599_999))
                .is_ok()
        );
        retry.progressed(at(500_000));
        assert!(
            retry
                .on_failure(&transient, 900, false, at(1_099_999))
                .is_ok()
        );
        let gave_up = retry
            .on_failure(&transient, 901, false, at(1_100_000))
            .unwrap_err();
        assert_eq!(
            gave_up,
            ReadGaveUp::NoProgress {
                waited: patience,
                last: transient.message.clone()
            }
        );
        assert!(gave_up.to_string().contains("503 Service Unavailable"));
    }

    #[test]
    fn a_refusal_is_final_at_once() {
        let retry = ReadRetry::new(DEFAULT_READ_PATIENCE, at(0));
        for kind in [
            FailureKind::Permission,
            FailureKind::NotFound,
            FailureKind::Rejected,
            FailureKind::Conflict,
            FailureKind::Corrupt,
            FailureKind::Internal,
        ] {
            assert_eq!(
                retry.on_failure(&failure(kind), 1, false, at(1)),
                Err(ReadGaveUp::Final(failure(kind).message)),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_pinned_generation_that_is_gone_starts_the_object_over() {
        let retry = ReadRetry::new(DEFAULT_READ_PATIENCE, at(0));
        let gone = failure(FailureKind::NotFound);
        assert_eq!(
            retry.on_failure(&gone, 3, true, at(1)),
            Ok(ReadAgain::FromStart)
        );
    }

    #[test]
    fn progress_reported_late_never_moves_the_last_progress_back() {
        let mut retry = ReadRetry::new(Duration::from_secs(10), at(0));
        retry.progressed(at(9_000));
        retry.progressed(at(1_000));
        let transient = failure(FailureKind::Transient);
        assert!(retry.on_failure(&transient, 1, false, at(18_999)).is_ok());
    }
}
