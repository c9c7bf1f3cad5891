//! The limits of the daemon's listeners, and what a listener does when it
//! cannot accept a connection.
//!
//! The first listener accepted without limit and read headers without a
//! deadline: 1,100 idle connections under systemd's default of 1,024 open
//! files took the daemon to 100% CPU, logged 2.8 GB of `Too many open files`
//! in a minute, and failed its uploads for want of a file descriptor. Now
//! each listener holds at most its cap of connections, gives each a
//! deadline, and after an accept error waits [`ACCEPT_PAUSE`] and says so
//! at most once a minute with how many there were ([`AcceptErrors`]). The
//! shell carries these out (`shell/src/listener.rs`); the simulator has no
//! listener, so the unit tests below try the policy.

use std::time::Duration;

use crate::machine::SNAPSHOT_DEADLINE;
use crate::timestamp::Timestamp;

/// Connections the metrics port serves at once: a scraper or two, and
/// someone's curl.
pub const METRICS_CONNECTIONS: usize = 32;
/// How long a metrics client has to send its request's headers.
pub const METRICS_HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// How long one metrics connection may last, whatever it does.
pub const METRICS_CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// Requests the control socket serves at once.
pub const CONTROL_CONNECTIONS: usize = 8;
/// The longest request line, in bytes: a request is a few hundred.
pub const CONTROL_LINE_BYTES: u64 = 64 << 10;
/// How long a client of the control socket has to send its request.
pub const CONTROL_REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long `backup` waits for the daemon to take its request in hand
/// before it takes the snapshot itself.
pub const CONTROL_ACK_DEADLINE: Duration = Duration::from_secs(10);
/// How long `backup` waits for the daemon's answer once it took the
/// request: past the daemon's own deadline for the snapshot, it is not
/// answering.
pub const CONTROL_ANSWER_PATIENCE: Duration =
    Duration::from_secs(SNAPSHOT_DEADLINE.as_secs() + 300);

/// How long a listener waits after an accept error before it tries again.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// How often accept errors are said.
pub const SAY_ACCEPT_ERRORS_EVERY: Duration = Duration::from_secs(60);

/// The accept errors of one listener.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    unsaid: u64,
    said_at: Option<Timestamp>,
}

/// What to do after an accept error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct AfterAcceptError {
    /// Wait this long before accepting again.
    pub pause: Duration,
    /// Say how many accept errors there were since the last time said, if
    /// it is time to.
    pub say: Option<u64>,
}

impl AcceptErrors {
    /// An accept failed at `now`. A clock stepped back says at once.
    pub fn on_error(&mut self, now: Timestamp) -> AfterAcceptError {
        self.unsaid += 1;
        let due = self
            .said_at
            .is_none_or(|at| now < at || now.duration_since(at) >= SAY_ACCEPT_ERRORS_EVERY);
        let say = due.then(|| {
            self.said_at = Some(now);
            std::mem::take(&mut self.unsaid)
        });
        AfterAcceptError {
            pause: ACCEPT_PAUSE,
            say,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_errors_is_said_once_a_minute_with_its_count() {
        let mut errors = AcceptErrors::default();
        let at = |ms: u64| Timestamp::UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(errors.on_error(at(0)).say, Some(1));
        let said: Vec<_> = (1..=480)
            .map(|n| errors.on_error(at(n * 250)))
            .filter_map(|after| after.say)
            .collect();
        assert_eq!(said, [240, 240], "each minute's errors, said once");
        assert_eq!(errors.on_error(at(120_100)).pause, ACCEPT_PAUSE);
    }

    #[test]
    fn a_clock_stepped_back_says_at_once() {
        let mut errors = AcceptErrors::default();
        let _ = errors.on_error(Timestamp::UNIX_EPOCH + Duration::from_secs(600));
        assert_eq!(errors.on_error(Timestamp::UNIX_EPOCH).say, Some(1));
    }
}
