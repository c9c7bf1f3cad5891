//! Carrying out a prune plan, one step at a time: the history marker first,
//! then each deletion, oldest first. A deletion that finds the object gone
//! counts as done, so a prune cut short is simply run again. `jobvault
//! prune`, the daemon's core and so the simulator all take their steps from
//! here; none has a copy of the order.

use std::collections::VecDeque;

use super::PrunePlan;
use crate::history::HistoryMarker;
use crate::machine::{Failure, FailureKind};
use crate::object_name::ObjectName;

/// One store operation of a prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneStep {
    /// Write the history marker ([`crate::history::HISTORY_OBJECT`]).
    WriteMarker(HistoryMarker),
    /// Delete the live object of this name.
    Delete(ObjectName),
}

/// The steps of one plan still to take, one in flight at a time.
#[derive(Debug)]
pub struct Deletion {
    marker: Option<HistoryMarker>,
    delete: VecDeque<ObjectName>,
    in_flight: bool,
    deleted: u64,
    failed: Option<Failure>,
}

impl Deletion {
    pub fn new(plan: &PrunePlan) -> Self {
        Deletion {
            marker: plan.marker,
            delete: plan.delete.iter().cloned().collect(),
            in_flight: false,
            deleted: 0,
            failed: None,
        }
    }

    /// The next step, once the one before is reported; `None` while one is
    /// in flight, after a failure, or when all are done.
    #[must_use]
    pub fn poll_step(&mut self) -> Option<PruneStep> {
        if self.in_flight || self.failed.is_some() {
            return None;
        }
        let step = match self.marker.take() {
            Some(marker) => PruneStep::WriteMarker(marker),
            None => PruneStep::Delete(self.delete.pop_front()?),
        };
        self.in_flight = true;
        Some(step)
    }

    /// The step in flight ended with `failure` (`None`: it worked). Returns
    /// the failure that ends the prune, if this is one: a deletion that
    /// found nothing to delete is done.
    pub fn step_done(&mut self, step: &PruneStep, failure: Option<Failure>) -> Option<&Failure> {
        self.in_flight = false;
        let is_delete = matches!(step, PruneStep::Delete(_));
        match failure {
            Some(f) if !(is_delete && f.kind == FailureKind::NotFound) => {
                self.failed = Some(f);
                self.failed.as_ref()
            }
            _ => {
                self.deleted += u64::from(is_delete);
                None
            }
        }
    }

    /// How it ended, once it has: the objects deleted, or the failure that
    /// stopped it.
    pub fn outcome(&self) -> Option<Result<u64, Failure>> {
        if self.in_flight {
            return None;
        }
        match &self.failed {
            Some(failure) => Some(Err(failure.clone())),
            None if self.marker.is_none() && self.delete.is_empty() => Some(Ok(self.deleted)),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    fn plan(marker: bool, delete: &[&str]) -> PrunePlan {
        let at = Timestamp::from_unix_seconds(86_400);
        PrunePlan {
            window_start: at,
            base: None,
            restorable_from: None,
            marker: marker.then(|| HistoryMarker::new(at, at)),
            oldest_snapshot: None,
            delete: delete.iter().map(|d| ObjectName::listed(*d)).collect(),
            young_snapshots: Vec::new(),
        }
    }

    #[test]
    fn the_marker_goes_first_and_one_step_is_in_flight_at_a_time() {
        let mut deletion = Deletion::new(&plan(true, &["a", "b"]));
        let marker = deletion.poll_step().expect("the marker");
        assert!(matches!(marker, PruneStep::WriteMarker(_)));
        assert_eq!(deletion.poll_step(), None, "the marker is not reported yet");
        assert_eq!(deletion.step_done(&marker, None), None);
        let a = deletion.poll_step().expect("a deletion");
        assert_eq!(a, PruneStep::Delete(ObjectName::listed("a")));
        let gone = Failure::new(FailureKind::NotFound, "404");
        assert_eq!(deletion.step_done(&a, Some(gone)), None, "gone is deleted");
        let b = deletion.poll_step().expect("b");
        assert_eq!(deletion.outcome(), None, "b is in flight");
        assert_eq!(deletion.step_done(&b, None), None);
        assert_eq!(deletion.poll_step(), None);
        assert_eq!(deletion.outcome(), Some(Ok(2)));
    }

    #[test]
    fn a_failure_stops_the_prune_and_a_missing_marker_target_is_no_excuse() {
        let mut deletion = Deletion::new(&plan(true, &["a"]));
        let marker = deletion.poll_step().unwrap();
        let refused = Failure::new(FailureKind::NotFound, "404 no such bucket");
        assert!(deletion.step_done(&marker, Some(refused.clone())).is_some());
        assert_eq!(deletion.poll_step(), None, "nothing is deleted unmarked");
        assert_eq!(deletion.outcome(), Some(Err(refused)));
    }

    #[test]
    fn a_plan_with_nothing_to_delete_is_done_at_once() {
        let mut deletion = Deletion::new(&plan(false, &[]));
        assert_eq!(deletion.poll_step(), None);
        assert_eq!(deletion.outcome(), Some(Ok(0)));
    }
}
