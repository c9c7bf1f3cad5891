//! The numbers an operator alerts on, kept by the core as it decides.
//!
//! The shell only renders them. Keeping them here means the simulator sees
//! the same numbers production would export.

use std::collections::BTreeMap;
use std::time::Duration;

use super::io::{Cursor, ListedObject};
use crate::object_name::{ObjectKind, ObjectName, parse_object_name};
use crate::timestamp::Timestamp;

const DAY: Duration = Duration::from_secs(86_400);

/// A count kept separately for snapshots and job objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerKind {
    pub snapshot: u64,
    pub job: u64,
}

impl PerKind {
    pub fn get(&self, kind: ObjectKind) -> u64 {
        match kind {
            ObjectKind::Snapshot => self.snapshot,
            ObjectKind::Job => self.job,
        }
    }

    pub(crate) fn add(&mut self, kind: ObjectKind, n: u64) {
        match kind {
            ObjectKind::Snapshot => self.snapshot += n,
            ObjectKind::Job => self.job += n,
        }
    }
}

/// Everything jobvault reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// When the newest snapshot was uploaded (by anyone, as far as known).
    pub last_snapshot: Option<Timestamp>,
    /// Snapshots uploaded in the 24 hours before the last refresh.
    pub snapshots_last_24h: u64,
    /// When the trigger directory was last checked successfully.
    pub trigger_check_alive: Option<Timestamp>,
    /// Every change committed before this time is in the bucket, but rows
    /// set aside: when the last read whose changes are all there began;
    /// `None` while the destination is new or unchecked, and on a feed
    /// never read.
    pub incremental_alive: Option<Timestamp>,
    /// The destination is new to the database (created, wiped, or another
    /// database's) and no snapshot of this one has landed in it yet.
    pub new_destination: bool,
    /// This daemon writes in the clear, and when it started the prefix's
    /// newest snapshot was encrypted: `--encrypt-to` was most likely lost.
    pub encryption_dropped: bool,
    /// Job versions uploaded.
    pub jobs_backed_up: u64,
    /// Times the change feed had to be rescanned since the last snapshot.
    pub feed_resets_since_snapshot: u64,
    /// Changes committed to the database and not yet covered by the
    /// cursor, as of the last read of the change feed: never 0 while a
    /// change waits, whether it waits in memory or in the database.
    pub pending_jobs: u64,
    /// Rows no job object can hold, passed by the cursor and recorded in
    /// the database ([`super::Unreadable`]).
    pub jobs_set_aside: u64,
    /// Reports that answered nothing outstanding, and were dropped.
    pub unexpected_reports: u64,
    /// Times the database was found gone back to an older copy
    /// ([`super::went_back`]).
    pub went_back: u64,
    /// The cursor last stored in the database.
    pub cursor: Cursor,
    pub uploads: PerKind,
    pub upload_bytes: PerKind,
    pub upload_errors: PerKind,
    /// Job uploads and lease reads and writes the store refused: permission
    /// denied, no such bucket, a certificate not trusted. Each refused
    /// upload pauses uploads for five minutes; while the lease is refused,
    /// nothing is written.
    pub store_refusals: u64,
    /// Snapshot attempts started from trigger files.
    pub trigger_attempts: u64,
    /// Malformed trigger files moved aside.
    pub triggers_quarantined: u64,
    /// Triggers given up after the last attempt failed.
    pub triggers_exhausted: u64,
    /// Objects the daemon's prunes deleted.
    pub pruned_objects: u64,
    /// The oldest instant the bucket restores, as the last prune found it.
    pub oldest_restorable: Option<Timestamp>,
    /// How far back restores are promised to work (`Config::keep`).
    pub keep: Option<Duration>,
}

impl Metrics {
    /// The metrics as a scrape at `now` shows them, between two calls of
    /// the core: a caught-up time ahead of the clock is withdrawn. The
    /// clock stepped back since the core's last call, which withdraws it
    /// only at its next one; a hostile trial's scrapes read it 118 s in
    /// the future for 7.5 s after a step back (an idle daemon's next
    /// wake-up), and said a burst committed then was safe.
    #[must_use]
    pub fn seen_at(self, now: Timestamp) -> Metrics {
        Metrics {
            incremental_alive: self.incremental_alive.filter(|at| *at <= now),
            ..self
        }
    }
}

/// Snapshots known from listings and from our own uploads, to count those of
/// the last 24 hours without listing every snapshot ever written.
#[derive(Debug, Default)]
pub(crate) struct SnapshotLedger {
    /// Object name → upload time, for snapshots of the last two days.
    recent: BTreeMap<ObjectName, Timestamp>,
}

impl SnapshotLedger {
    /// Replaces what the ledger knows with a listing issued at `listed_at`,
    /// keeping our own uploads that finished after it.
    pub fn refresh(&mut self, listed: &[ListedObject], listed_at: Timestamp) {
        self.recent.retain(|_, updated| *updated > listed_at);
        for object in listed {
            let is_snapshot = parse_object_name(&object.name)
                .is_ok_and(|parsed| parsed.kind == ObjectKind::Snapshot);
            if is_snapshot {
                self.recent.insert(object.name.clone(), object.updated);
            }
        }
    }

    pub fn record(&mut self, object: &ObjectName, at: Timestamp) {
        self.recent.insert(object.clone(), at);
    }

    /// The newest snapshot known, by upload time.
    pub fn newest_name(&self) -> Option<&ObjectName> {
        self.recent
            .iter()
            .max_by_key(|(_, updated)| **updated)
            .map(|(name, _)| name)
    }

    pub fn newest(&self) -> Option<Timestamp> {
        self.recent.values().copied().max()
    }

    pub fn count_last_24h(&mut self, now: Timestamp) -> u64 {
        let since = now - DAY;
        self.recent.retain(|_, updated| *updated > since - DAY);
        self.recent
            .values()
            .filter(|updated| **updated > since)
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_up_time_ahead_of_the_scrape_is_withdrawn() {
        let read = Timestamp::parse_rfc3339("2026-12-06T12:02:00Z").unwrap();
        let metrics = Metrics {
            incremental_alive: Some(read),
            ..Metrics::default()
        };
        let stepped_back = read - Duration::from_secs(118);
        assert_eq!(
            metrics.clone().seen_at(stepped_back).incremental_alive,
            None
        );
        assert_eq!(metrics.seen_at(read).incremental_alive, Some(read));
    }
}
