//! When the daemon prunes (`jobvault run --keep`): once at start, and again
//! after every snapshot that lands, since a new snapshot may let an older
//! base go; one prune at a time. A prune that fails is tried again at the
//! next snapshot-listing tick rather than at once, so a store that refuses
//! is not asked every second. What a prune deletes is the prune planner's
//! business ([`crate::prune`]); this decides only when.

use std::time::Duration;

use tracing::warn;

use super::io::{Command, Failure, Pruned};
use super::metrics::Metrics;

#[derive(Debug)]
pub(crate) struct Retention {
    /// `None`: the daemon never prunes.
    keep: Option<Duration>,
    due: bool,
    outstanding: bool,
    failed: bool,
}

impl Retention {
    pub fn new(keep: Option<Duration>) -> Self {
        Retention {
            keep,
            due: keep.is_some(),
            outstanding: false,
            failed: false,
        }
    }

    pub fn snapshot_landed(&mut self) {
        self.due = self.keep.is_some();
    }

    /// The snapshot-listing tick: a failed prune is due again.
    pub fn tick(&mut self) {
        if self.failed {
            self.due = true;
        }
    }

    /// Issues the prune that is due, if none is in flight.
    pub fn poll(&mut self, out: &mut std::collections::VecDeque<Command>) {
        if let Some(keep) = self.keep
            && self.due
            && !self.outstanding
        {
            self.due = false;
            self.outstanding = true;
            out.push_back(Command::Prune { keep });
        }
    }

    /// Returns whether the report answered a prune in flight.
    pub fn on_pruned(&mut self, metrics: &mut Metrics, result: Result<Pruned, Failure>) -> bool {
        if !std::mem::take(&mut self.outstanding) {
            return false;
        }
        match result {
            Ok(pruned) => {
                self.failed = false;
                metrics.pruned_objects += pruned.deleted;
                metrics.oldest_restorable = pruned.oldest_restorable.or(metrics.oldest_restorable);
            }
            Err(failure) => {
                warn!(error = %failure, "pruning the bucket failed; trying again later");
                self.failed = true;
            }
        }
        true
    }

    pub fn stop(&mut self) {
        self.due = false;
    }

    pub fn is_quiet(&self) -> bool {
        !self.outstanding
    }
}
