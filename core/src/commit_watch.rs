//! When the driver looks for commits to the job database: the looks behind
//! [`crate::Input::DatabaseChanged`].
//!
//! The first release read its change feed every 10 s. Then the driver
//! looked at SQLite's `data_version` every [`CHANGE_POLL`]: cheap for one
//! look, but 20 wake-ups a second at rest, most of an idle daemon's CPU and
//! more than a general replicator spends doing nothing. Where the OS says
//! when the database's files change (inotify on Linux), the driver now
//! looks when told ([`Watch::Notified`]) and otherwise only every
//! [`NOTICED_FALLBACK`], for a notice the OS dropped (its queue overflowed)
//! or a write it cannot see; the poll stays where there is no such notice
//! ([`Watch::Polled`]). A notice comes with the write of a commit's pages,
//! a moment before SQLite's index in shared memory shows the commit, so the
//! driver looks [`NOTICE_SETTLE`] after a notice (the commit's other writes
//! come in meanwhile), and once more [`NOTICE_RECHECK`] later if that look
//! found nothing (a commit waiting on its `fsync`). Looking at once and again
//! 5 ms later cost two looks a commit, a fifth of the daemon's CPU at 50
//! commits a second.

use std::time::Duration;

/// How often the driver looks for commits with no notice from the OS: a
/// look reads one counter SQLite keeps in shared memory, and this bounds
/// the time from a commit to its upload starting.
pub const CHANGE_POLL: Duration = Duration::from_millis(50);

/// How long the driver waits for a notice before it looks anyway: what a
/// dropped notice costs a commit at most.
pub const NOTICED_FALLBACK: Duration = Duration::from_secs(1);

/// How long after a notice the driver looks: the commit's index in shared
/// memory trails the write that raised the notice by microseconds.
pub const NOTICE_SETTLE: Duration = Duration::from_millis(2);

/// How soon after a look that a notice brought and that found nothing the
/// driver looks once more: the commit may have waited on its `fsync`.
pub const NOTICE_RECHECK: Duration = Duration::from_millis(20);

/// What the driver has to learn of commits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The OS says when the database's files are written.
    Notified,
    /// Nothing says: the driver polls.
    Polled,
}

/// When the driver looks next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextLook {
    /// After this long, notice or not.
    After(Duration),
    /// At the next notice, or after this long without one.
    AtNoticeOr(Duration),
}

/// The next look after one that a notice brought (`noticed`) or not and
/// that `found` a commit or not.
#[must_use]
pub fn next_look(watch: Watch, noticed: bool, found: bool) -> NextLook {
    match watch {
        Watch::Polled => NextLook::After(CHANGE_POLL),
        Watch::Notified if noticed && !found => NextLook::After(NOTICE_RECHECK),
        Watch::Notified => NextLook::AtNoticeOr(NOTICED_FALLBACK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_notices_the_driver_waits_for_one_and_looks_again_after_a_notice_that_found_nothing() {
        assert_eq!(
            next_look(Watch::Notified, true, true),
            NextLook::AtNoticeOr(NOTICED_FALLBACK)
        );
        assert_eq!(
            next_look(Watch::Notified, false, false),
            NextLook::AtNoticeOr(NOTICED_FALLBACK)
        );
        assert_eq!(
            next_look(Watch::Notified, true, false),
            NextLook::After(NOTICE_RECHECK)
        );
    }

    #[test]
    fn without_notices_the_driver_polls() {
        for (noticed, found) in [(false, false), (false, true)] {
            assert_eq!(
                next_look(Watch::Polled, noticed, found),
                NextLook::After(CHANGE_POLL)
            );
        }
    }
}
