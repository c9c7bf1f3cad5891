//! A database that went back to an older copy under a running daemon.
//!
//! `cp older.db jobs.db` or `sqlite3 jobs.db ".restore older.db"` writes an
//! older state into the file the daemon reads: the same file, so the
//! watcher's check for a file renamed over it does not see it. The change
//! counter goes back with it. The daemon took it for a cursor changed by
//! someone, read the feed again from the older cursor, and uploaded the
//! next changes under sequences the bucket already held for the versions
//! the copy had abandoned. A restore kept those, being higher, over the
//! copy's own, and brought back jobs the copy did not hold, exit 0, while
//! the daemon reported itself caught up.
//!
//! Now a read whose counter is below a sequence the daemon has read before,
//! or whose stored cursor is behind the one it saved, stops the feed (a
//! copy written to since, or a writer quick after the copy, brings the
//! counter back up; its cursor stays behind). So does a read, before any
//! other, whose counter is below the highest change the lease found at
//! start says the bucket may hold, or whose cursor is below that lease's:
//! a daemon killed before it read the copy left that lease. The
//! daemon raises the counter past what the bucket may hold
//! ([`Command::RaiseCounter`]), so no sequence is used twice, reads the feed
//! again from the stored cursor, and treats the prefix as new: a fresh
//! marker and a full snapshot, which holds the raised counter. A restore
//! leaves out every version numbered at or below its snapshot's counter
//! ([`crate::restore_plan::apply_versions`]), so the abandoned versions
//! stay history (`restore --at` an instant before the copy still finds
//! them) and never win over the copy.

use super::io::{Command, Failure};
use crate::Seq;

/// A raise of the change counter owed after the database went back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raise {
    /// Above every change of the database the bucket may hold: the highest
    /// read, or the highest change the lease found at start says plus
    /// [`super::LEASED_MARGIN`]. The counter goes at least here.
    pub past: Seq,
    in_flight: bool,
}

impl Raise {
    pub fn new(past: Seq) -> Self {
        Raise {
            past,
            in_flight: false,
        }
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// The command to send, unless one is out.
    #[must_use]
    pub fn command(&mut self) -> Option<Command> {
        (!self.in_flight).then(|| {
            self.in_flight = true;
            Command::RaiseCounter { past: self.past }
        })
    }

    /// Whether the counter is raised; a failure makes it due again.
    pub fn on_raised(&mut self, result: &Result<(), Failure>) -> bool {
        self.in_flight = false;
        result.is_ok()
    }
}
