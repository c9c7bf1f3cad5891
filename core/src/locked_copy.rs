//! When a snapshot's copy of the database meets another connection's lock:
//! whether to try again, and how soon. The shell's copy
//! (`JobDb::snapshot_to`) only measures and sleeps. It once tried again
//! every 50 ms for ever, on a thread the snapshot's deadline could not stop.

use std::time::Duration;

/// How long the copy waits before it tries a locked database again.
pub const LOCKED_RETRY: Duration = Duration::from_millis(50);
/// How long a statement on the job database waits for another
/// connection's lock before it fails (SQLite's busy timeout), and how long,
/// from the first try, the copy keeps trying a locked database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the copy does after a try found the database locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedCopy {
    TryAgainAfter(Duration),
    /// Give up, and why.
    GiveUp(&'static str),
}

/// The verdict after a locked try, `waited` since the first, with the
/// snapshot `given_up` (its deadline passed) or not.
#[must_use]
pub fn after_locked(waited: Duration, given_up: bool) -> LockedCopy {
    if given_up {
        LockedCopy::GiveUp("the snapshot was given up while the database was locked")
    } else if waited >= BUSY_TIMEOUT {
        LockedCopy::GiveUp("the database stayed locked for the whole busy timeout")
    } else {
        LockedCopy::TryAgainAfter(LOCKED_RETRY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_copy_is_tried_again_until_the_patience_or_the_snapshot_ends() {
        assert_eq!(
            after_locked(Duration::ZERO, false),
            LockedCopy::TryAgainAfter(LOCKED_RETRY)
        );
        let late = after_locked(BUSY_TIMEOUT, false);
        assert!(matches!(late, LockedCopy::GiveUp(why) if why.contains("busy timeout")));
        let dropped = after_locked(Duration::ZERO, true);
        assert!(matches!(dropped, LockedCopy::GiveUp(why) if why.contains("given up")));
    }
}
