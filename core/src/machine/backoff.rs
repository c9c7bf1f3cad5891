//! How long to leave the store alone after job uploads fail, decided from
//! the failure's kind.
//!
//! The first release retried every failed upload at every step, whatever the
//! store had said: a 403 (a missing IAM role) quietly every 10 s for ever, a
//! 429 (slow down) no slower than a 503. Here a failure that says the store as
//! a whole is unwell closes a gate on new uploads:
//! - transient ones (a 5xx, 408 or 429, a reset, a timeout) for an
//!   exponentially growing, jittered while: 1 s, 2 s, 4 s ... up to 5 min;
//! - a refusal (permission denied, the bucket missing) for 5 minutes each
//!   time: retrying sooner cannot help, and someone has to act.
//!
//! A failure that concerns one object (rejected, corrupt, a conflict) leaves
//! the gate open; that job waits for the next step, as before. A success
//! opens the gate and starts over.

use std::time::Duration;

use super::io::{Failure, FailureKind};
use crate::timestamp::Timestamp;

/// The first wait after a transient failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait after transient failures.
pub const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// The wait after the store refused jobvault: permission, or no bucket.
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);

/// The longest the gate is ever closed. A gate closed until later than this
/// from now was closed before the local clock stepped back, and is open.
const LONGEST_CLOSED: Duration = if LONGEST_RETRY.as_nanos() > REFUSED_RETRY.as_nanos() {
    LONGEST_RETRY
} else {
    REFUSED_RETRY
};

/// What a failure says about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The store may work again soon.
    Unwell,
    /// The store refuses jobvault until someone acts.
    Refusing,
    /// Something about one object; the store itself may be fine.
    ObjectOnly,
}

pub(crate) fn verdict(kind: FailureKind) -> Verdict {
    match kind {
        FailureKind::Transient | FailureKind::Timeout => Verdict::Unwell,
        FailureKind::Permission | FailureKind::NotFound => Verdict::Refusing,
        FailureKind::Conflict
        | FailureKind::Corrupt
        | FailureKind::Rejected
        | FailureKind::Internal => Verdict::ObjectOnly,
    }
}

/// The gate on new job uploads.
#[derive(Debug, Default)]
pub(crate) struct StoreBackoff {
    /// Rounds of failures in a row, each a wait longer than the last.
    rounds: u32,
    /// No upload starts before this.
    closed_until: Option<Timestamp>,
    /// The store refuses jobvault: what it said, once, until a success.
    refusal: Option<String>,
}

/// What a failure changed, for the caller to say so.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing: the gate was already closed for this round, or the failure
    /// was about one object.
    None,
    /// The gate closed until then.
    Closed(Timestamp),
    /// The store started refusing jobvault; the gate closed until then.
    Refused(Timestamp),
}

impl StoreBackoff {
    /// Whether an upload may start at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.closed_until
            .is_none_or(|until| now >= until || until > now + LONGEST_CLOSED)
    }

    /// When the gate opens, if it is closed.
    pub fn closed_until(&self) -> Option<Timestamp> {
        self.closed_until
    }

    /// Forgets a gate whose time has come.
    pub fn open_if_due(&mut self, now: Timestamp) {
        if self.is_open(now) {
            self.closed_until = None;
        }
    }

    /// An upload succeeded: the store works. Returns what the store had been
    /// refusing, if it was.
    #[must_use]
    pub fn on_success(&mut self) -> Option<String> {
        self.rounds = 0;
        self.closed_until = None;
        self.refusal.take()
    }

    /// An upload failed at `now`. A refusal closes the gate for
    /// `REFUSED_RETRY` from now, however it stood (a short wait after a
    /// timeout must not let a refusing store be tried again in a second).
    /// Other failures of uploads started before the gate closed belong to the
    /// round that closed it and change nothing.
    #[must_use]
    pub fn on_failure(&mut self, failure: &Failure, now: Timestamp) -> Change {
        match verdict(failure.kind) {
            Verdict::ObjectOnly => Change::None,
            Verdict::Refusing => {
                let until = now + REFUSED_RETRY;
                self.closed_until = Some(until);
                if self.refusal.is_none() {
                    self.refusal = Some(failure.message.clone());
                    return Change::Refused(until);
                }
                Change::Closed(until)
            }
            Verdict::Unwell if !self.is_open(now) => Change::None,
            Verdict::Unwell => {
                self.rounds = self.rounds.saturating_add(1);
                let until = now + jittered(exponential(self.rounds), now);
                self.closed_until = Some(until);
                Change::Closed(until)
            }
        }
    }
}

/// `FIRST_RETRY` doubled for each round after the first, at most
/// `LONGEST_RETRY`.
fn exponential(rounds: u32) -> Duration {
    let doublings = rounds.saturating_sub(1).min(16);
    (FIRST_RETRY * 2u32.pow(doublings)).min(LONGEST_RETRY)
}

/// Between half of `wait` and all of it, drawn from the time of the failure:
/// no randomness in the core, and retries still do not fall in step.
fn jittered(wait: Duration, now: Timestamp) -> Duration {
    let mixed = (now.unix_nanos() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let fraction = (mixed >> 11) as f64 / (1u64 << 53) as f64;
    wait.mul_f64(0.5 + fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000 + secs)
    }

    fn failure(kind: FailureKind) -> Failure {
        Failure::new(kind, "gs://b/o: 503")
    }

    #[test]
    fn transient_failures_wait_longer_each_round_up_to_the_longest() {
        let mut backoff = StoreBackoff::default();
        let mut now = at(0);
        let mut waits = Vec::new();
        for _ in 0..12 {
            let Change::Closed(until) = backoff.on_failure(&failure(FailureKind::Transient), now)
            else {
                panic!("a transient failure closes an open gate");
            };
            waits.push(until.duration_since(now));
            assert!(!backoff.is_open(now));
            now = until;
            assert!(backoff.is_open(now));
            backoff.open_if_due(now);
        }
        for (round, wait) in waits.iter().enumerate() {
            let full = exponential(round as u32 + 1);
            assert!(
                *wait >= full / 2 && *wait <= full,
                "round {round}: {wait:?} of {full:?}"
            );
        }
        assert_eq!(exponential(12), LONGEST_RETRY);
    }

    #[test]
    fn failures_of_one_round_close_the_gate_once() {
        let mut backoff = StoreBackoff::default();
        let first = backoff.on_failure(&failure(FailureKind::Transient), at(0));
        assert!(matches!(first, Change::Closed(_)));
        for _ in 0..31 {
            assert_eq!(
                backoff.on_failure(&failure(FailureKind::Transient), at(0)),
                Change::None
            );
        }
        assert_eq!(backoff.rounds, 1);
    }

    #[test]
    fn a_refusal_is_said_once_and_retried_slowly_until_a_success() {
        let mut backoff = StoreBackoff::default();
        let refused = failure(FailureKind::Permission);
        assert_eq!(
            backoff.on_failure(&refused, at(0)),
            Change::Refused(at(300))
        );
        backoff.open_if_due(at(300));
        assert_eq!(
            backoff.on_failure(&refused, at(300)),
            Change::Closed(at(600))
        );
        assert_eq!(backoff.on_success().as_deref(), Some("gs://b/o: 503"));
        assert!(backoff.is_open(at(300)));
        assert_eq!(backoff.on_success(), None);
    }

    #[test]
    fn a_clock_stepped_back_does_not_keep_the_gate_closed_for_the_step() {
        let mut backoff = StoreBackoff::default();
        let _ = backoff.on_failure(&failure(FailureKind::Permission), at(3_600));
        assert!(!backoff.is_open(at(3_600 + 299)));
        assert!(
            backoff.is_open(at(0)),
            "an hour back, the 5-minute gate is open"
        );
    }

    #[test]
    fn a_failure_about_one_object_leaves_the_gate_open() {
        let mut backoff = StoreBackoff::default();
        for kind in [
            FailureKind::Rejected,
            FailureKind::Corrupt,
            FailureKind::Conflict,
        ] {
            assert_eq!(backoff.on_failure(&failure(kind), at(0)), Change::None);
            assert!(backoff.is_open(at(0)));
        }
    }
}
