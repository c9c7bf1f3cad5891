//! When the daemon prunes (`jobvault run --keep`): once at start, and again
//! after every snapshot that lands, since a new snapshot may let an older
//! base go; one prune at a time. A prune that fails is tried again at the
//! next snapshot-listing tick rather than at once, so a store that refuses
//! is not asked every second. What a prune deletes is the prune planner's
//! business ([`crate::prune`]), and its store operations are
//! [`super::pruning`]'s; this decides only when.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{info, warn};

use super::io::{Command, Failure, FailureKind};
use super::metrics::Metrics;
use super::pruning::Pruning;
use crate::object_name::ObjectName;
use crate::restore_plan::{Answer, Ask};
use crate::timestamp::Timestamp;

#[derive(Debug)]
pub(crate) struct Retention {
    /// `None`: the daemon never prunes.
    keep: Option<Duration>,
    due: bool,
    running: Option<Pruning>,
    /// The daemon is stopping: the prune running issues nothing more.
    stopped: bool,
    failed: bool,
    /// The prune running was given up because the prefix started over:
    /// not a failure to warn of (a trial read the warning as one).
    given_up: bool,
}

impl Retention {
    pub fn new(keep: Option<Duration>) -> Self {
        Retention {
            keep,
            due: keep.is_some(),
            running: None,
            stopped: false,
            failed: false,
            given_up: false,
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

    /// Starts the prune that is due, if none is running, and issues what
    /// the one running can do now.
    pub fn poll(&mut self, now: Timestamp, metrics: &mut Metrics, out: &mut VecDeque<Command>) {
        if let Some(keep) = self.keep
            && self.due
            && self.running.is_none()
        {
            self.due = false;
            self.running = Some(Pruning::new(now, keep));
            self.given_up = false;
        }
        if let Some(running) = &mut self.running {
            running.poll(out);
        }
        self.end_if_over(metrics);
    }

    /// Takes in a read of the running prune; returns whether one was out.
    pub fn on_read(
        &mut self,
        metrics: &mut Metrics,
        ask: &Ask,
        result: Result<Answer, Failure>,
    ) -> bool {
        self.report(metrics, |running| running.on_read(ask, result))
    }

    /// Takes in the report of the marker's write (`object`: `None`) or of a
    /// deletion; returns whether it answers the running prune's step.
    pub fn on_step(
        &mut self,
        metrics: &mut Metrics,
        object: Option<&ObjectName>,
        result: Result<(), Failure>,
    ) -> bool {
        self.report(metrics, |running| running.on_step(object, result))
    }

    /// Hands a report to the running prune, and ends it if it is over.
    fn report(&mut self, metrics: &mut Metrics, take: impl FnOnce(&mut Pruning) -> bool) -> bool {
        let answered = self.running.as_mut().is_some_and(take);
        self.end_if_over(metrics);
        answered
    }

    fn end_if_over(&mut self, metrics: &mut Metrics) {
        let Some(running) = &self.running else {
            return;
        };
        let Some(outcome) = running.outcome() else {
            if self.stopped && running.is_quiet() {
                self.running = None;
            }
            return;
        };
        self.running = None;
        match outcome {
            Ok(pruned) => {
                self.failed = false;
                metrics.pruned_objects += pruned.deleted;
                metrics.oldest_restorable = pruned.oldest_restorable.or(metrics.oldest_restorable);
            }
            Err(failure) if std::mem::take(&mut self.given_up) => {
                info!(reason = %failure, "the prune under way stopped; the next runs once the prefix holds the database");
                self.failed = true;
            }
            Err(failure) => {
                warn!(error = %failure, "pruning the bucket failed; trying again later");
                self.failed = true;
            }
        }
    }

    /// The prefix turned out new (wiped, recreated): the plan of the prune
    /// running was made of another bucket's contents, so it deletes nothing
    /// more and fails; the next starts once the prefix holds the database.
    pub fn destination_changed(&mut self, metrics: &mut Metrics) {
        if let Some(running) = &mut self.running {
            let why = "the bucket prefix changed under the prune";
            running.give_up(Failure::new(FailureKind::Conflict, why));
            self.given_up = true;
        }
        self.end_if_over(metrics);
    }

    /// Nothing new starts; the prune running ends once what it has in
    /// flight reports.
    pub fn stop(&mut self) {
        self.due = false;
        self.stopped = true;
        if self.running.as_ref().is_some_and(Pruning::is_quiet) {
            self.running = None;
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.running.is_none()
    }
}
