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
//! come in meanwhile), and if that look found nothing (a commit waiting on
//! its `fsync`) again after [`NOTICE_RECHECK`], then after twice that, up to
//! [`NOTICE_RECHECKS`] times, or at the next notice: a commit during a
//! recheck's wait does not wait it out. Looking at once and again 5 ms
//! later cost two looks a commit, a fifth of the daemon's CPU at 50 commits
//! a second; and a commit whose `fsync` took longer than the one recheck
//! waited for the fallback (1 to 7% of them from writers at
//! `synchronous=FULL`).
//!
//! After a look that found a commit the driver rests [`LOOK_SPACING`]
//! before it takes the next notice: under a stream of commits one look,
//! and one read of the change feed, then takes the several that came
//! meanwhile. Looking at every commit cost a look and a feed read each, a
//! third of the daemon's samples at 50 commits a second (the watcher 17%,
//! the feed read 15%).

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

/// How long after a look that found a commit the driver takes no notice:
/// what a commit in a stream of them may wait on top of [`NOTICE_SETTLE`].
/// The old poll's period, half the recovery point's 0.1 s at p90. A commit
/// within it of the daemon's own cursor save (a commit too, at most once a
/// second) waits it as well.
pub const LOOK_SPACING: Duration = Duration::from_millis(50);

/// How soon after a look that a notice brought and that found nothing the
/// driver looks once more, or at the next notice: the commit may be waiting
/// on its `fsync`. Each recheck that finds nothing doubles the wait.
pub const NOTICE_RECHECK: Duration = Duration::from_millis(20);

/// How many rechecks follow a notice at most: 20 to 320 ms, 620 ms in all,
/// under the fallback. A notice that brings no commit (a checkpoint writing
/// the database file) costs no more than these.
pub const NOTICE_RECHECKS: u32 = 5;

/// What the driver has to learn of commits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The OS says when the database's files are written.
    Notified,
    /// Nothing says: the driver polls.
    Polled,
}

/// Waiting for a notice after `rest`, and looking `or_after` later without
/// one.
const fn at_notice(rest: Duration, or_after: Duration) -> NextLook {
    NextLook::AtNotice {
        rest,
        settle: NOTICE_SETTLE,
        or_after,
    }
}

/// Waiting for a notice, with the fallback behind it.
const AT_NOTICE: NextLook = at_notice(Duration::ZERO, NOTICED_FALLBACK);

/// Waiting for a notice after a look that found a commit: the fallback
/// still comes [`NOTICED_FALLBACK`] after that look.
const RESTED_AT_NOTICE: NextLook =
    at_notice(LOOK_SPACING, NOTICED_FALLBACK.saturating_sub(LOOK_SPACING));
const _: () = assert!(LOOK_SPACING.as_micros() < NOTICED_FALLBACK.as_micros());

/// When the driver looks next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextLook {
    /// After this long, notice or not.
    After(Duration),
    /// After `rest`, `settle` after the next notice (one that came during
    /// the rest counts), or `or_after` later without one.
    AtNotice {
        rest: Duration,
        settle: Duration,
        or_after: Duration,
    },
}

impl NextLook {
    /// The longest the driver waits for it: what it waits with no notices
    /// to take.
    #[must_use]
    pub fn longest(self) -> Duration {
        match self {
            NextLook::After(wait) => wait,
            NextLook::AtNotice { rest, or_after, .. } => rest + or_after,
        }
    }
}

/// The next look after one that `found` a commit or not, and that a notice
/// brought (`after_notice` is `Some(0)`), or that was the `k`th recheck
/// after one (`Some(k)`), or neither (`None`).
#[must_use]
pub fn next_look(watch: Watch, after_notice: Option<u32>, found: bool) -> NextLook {
    match (watch, after_notice) {
        (Watch::Polled, _) => NextLook::After(CHANGE_POLL),
        (Watch::Notified, Some(rechecks)) if !found && rechecks < NOTICE_RECHECKS => {
            at_notice(Duration::ZERO, NOTICE_RECHECK * 2u32.pow(rechecks))
        }
        (Watch::Notified, _) if found => RESTED_AT_NOTICE,
        (Watch::Notified, _) => AT_NOTICE,
    }
}

/// What the look after a wait is, for [`next_look`]'s `after_notice`: one a
/// notice brought (`noticed`), or without one, the next recheck of a notice
/// whose look found nothing, or neither (the fallback).
#[must_use]
pub fn after_wait(after_notice: Option<u32>, found: bool, noticed: bool) -> Option<u32> {
    match (noticed, found) {
        (true, _) => Some(0),
        (false, true) => None,
        (false, false) => after_notice.map(|rechecks| rechecks.saturating_add(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_notices_the_driver_waits_for_one_and_rechecks_a_notice_that_found_nothing() {
        assert_eq!(next_look(Watch::Notified, None, false), AT_NOTICE);
        let waits: Vec<_> = (0..NOTICE_RECHECKS)
            .map(|k| next_look(Watch::Notified, Some(k), false))
            .collect();
        assert_eq!(
            waits,
            [20, 40, 80, 160, 320].map(|ms| NextLook::AtNotice {
                rest: Duration::ZERO,
                settle: NOTICE_SETTLE,
                or_after: Duration::from_millis(ms),
            })
        );
        let total: Duration = (0..NOTICE_RECHECKS)
            .map(|k| NOTICE_RECHECK * 2u32.pow(k))
            .sum();
        assert!(total < NOTICED_FALLBACK, "{total:?}");
        assert_eq!(
            next_look(Watch::Notified, Some(NOTICE_RECHECKS), false),
            AT_NOTICE,
            "a notice that brought no commit is given up"
        );
    }

    #[test]
    fn a_notice_during_a_recheck_starts_the_rechecks_again_and_a_find_ends_them() {
        assert_eq!(after_wait(Some(2), false, true), Some(0));
        assert_eq!(after_wait(None, true, true), Some(0));
        assert_eq!(
            after_wait(Some(2), false, false),
            Some(3),
            "the next recheck"
        );
        assert_eq!(after_wait(Some(2), true, false), None, "the fallback");
        assert_eq!(after_wait(None, false, false), None, "the fallback");
        assert_eq!(after_wait(Some(u32::MAX), false, false), Some(u32::MAX));
    }

    #[test]
    fn after_a_look_that_found_a_commit_the_next_notice_waits_out_the_spacing() {
        for after_notice in [None, Some(0), Some(NOTICE_RECHECKS)] {
            let next = next_look(Watch::Notified, after_notice, true);
            let NextLook::AtNotice {
                rest,
                settle,
                or_after,
            } = next
            else {
                panic!("not waiting for a notice: {next:?}");
            };
            assert_eq!((rest, settle), (LOOK_SPACING, NOTICE_SETTLE));
            assert_eq!(
                rest + or_after,
                NOTICED_FALLBACK,
                "a dropped notice waits no longer"
            );
            assert_eq!(next.longest(), NOTICED_FALLBACK);
        }
        assert!(
            LOOK_SPACING + NOTICE_SETTLE < Duration::from_millis(100),
            "the spacing leaves room for the upload in the recovery point's 0.1 s"
        );
    }

    #[test]
    fn without_notices_the_driver_polls() {
        for (after_notice, found) in [(None, false), (None, true), (Some(0), false)] {
            assert_eq!(
                next_look(Watch::Polled, after_notice, found),
                NextLook::After(CHANGE_POLL)
            );
        }
    }
}
