//! One prune of the daemon's, as store operations the core issues one by
//! one: the prune planner's reads ([`Command::ReadBucket`], a few at a
//! time), then the plan's steps ([`Deletion`]: the marker, then each
//! deletion). The driver carries out single reads, writes and deletions;
//! the simulator executes these very commands. Before, the driver planned
//! and carried out a whole prune behind one command, and the simulator
//! checked a copy of that sequence rather than the one that ships.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::info;

use super::io::{Command, Failure, FailureKind};
use crate::object_name::ObjectName;
use crate::prune::{Deletion, PrunePlanner, PruneStep};
use crate::restore_plan::{Answer, Ask, Planner};
use crate::timestamp::Timestamp;

/// Reads a prune keeps in flight: fewer than a restore, so that uploads
/// keep their share of the connection.
pub const PRUNE_READS: usize = 8;

/// What a prune did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pruned {
    pub deleted: u64,
    /// The oldest instant the bucket restores once pruned
    /// ([`crate::prune::PrunePlan::oldest_restorable`]).
    pub oldest_restorable: Option<Timestamp>,
}

#[derive(Debug)]
enum Phase {
    Planning(PrunePlanner),
    Deleting {
        deletion: Deletion,
        step: Option<PruneStep>,
        oldest_restorable: Option<Timestamp>,
    },
    /// The plan could not be made.
    Unplanned,
}

/// A prune in flight.
#[derive(Debug)]
pub(crate) struct Pruning {
    phase: Phase,
    /// The reads out, each answered by the report that names it.
    reads: Vec<Ask>,
    failed: Option<Failure>,
}

impl Pruning {
    pub fn new(now: Timestamp, keep: Duration) -> Self {
        Pruning {
            phase: Phase::Planning(PrunePlanner::new(now, keep)),
            reads: Vec::new(),
            failed: None,
        }
    }

    /// Issues what the prune can do now.
    pub fn poll(&mut self, out: &mut VecDeque<Command>) {
        if self.failed.is_some() {
            return;
        }
        match &mut self.phase {
            Phase::Planning(planner) => {
                while self.reads.len() < PRUNE_READS {
                    let Some(ask) = planner.poll_ask() else { break };
                    self.reads.push(ask.clone());
                    out.push_back(Command::ReadBucket(ask));
                }
                if self.reads.is_empty() && !planner.is_complete() {
                    let stalled = "the prune's planner stalled with nothing to ask";
                    self.failed = Some(Failure::new(FailureKind::Internal, stalled));
                }
            }
            Phase::Unplanned => {}
            Phase::Deleting { deletion, step, .. } => {
                if let Some(next) = deletion.poll_step() {
                    out.push_back(match &next {
                        PruneStep::WriteMarker(marker) => Command::WriteHistory(*marker),
                        PruneStep::Delete(object) => Command::DeleteObject {
                            object: object.clone(),
                        },
                    });
                    *step = Some(next);
                }
            }
        }
    }

    /// Takes in a read's answer; returns whether one was out.
    pub fn on_read(&mut self, ask: &Ask, result: Result<Answer, Failure>) -> bool {
        let Phase::Planning(planner) = &mut self.phase else {
            return false;
        };
        let Some(at) = self.reads.iter().position(|out| out == ask) else {
            return false;
        };
        self.reads.swap_remove(at);
        if self.failed.is_some() {
            return true;
        }
        let answered = result.and_then(|answer| {
            planner.handle_answer(answer).map_err(|e| {
                let why = format!("the prune's plan failed at {ask:?}: {e}");
                Failure::new(FailureKind::Corrupt, why)
            })
        });
        if let Err(failure) = answered {
            self.failed.get_or_insert(failure);
        } else if self.reads.is_empty() && planner.is_complete() {
            self.start_deleting();
        }
        true
    }

    fn start_deleting(&mut self) {
        let Phase::Planning(planner) = std::mem::replace(&mut self.phase, Phase::Unplanned) else {
            unreachable!("called while planning")
        };
        match planner.finish() {
            Ok(plan) => {
                self.phase = Phase::Deleting {
                    deletion: Deletion::new(&plan),
                    step: None,
                    oldest_restorable: plan.oldest_restorable(),
                }
            }
            Err(e) => {
                let why = format!("the prune's plan failed: {e}");
                self.failed = Some(Failure::new(FailureKind::Corrupt, why));
            }
        }
    }

    /// Takes in the report of the marker's write (`object`: `None`) or of
    /// a deletion; returns whether it answers the step in flight.
    pub fn on_step(&mut self, object: Option<&ObjectName>, result: Result<(), Failure>) -> bool {
        let Phase::Deleting { deletion, step, .. } = &mut self.phase else {
            return false;
        };
        let answers = match (&step, object) {
            (Some(PruneStep::WriteMarker(_)), None) => true,
            (Some(PruneStep::Delete(deleting)), Some(object)) => deleting == object,
            _ => false,
        };
        if !answers {
            return false;
        }
        let done = step.take().expect("a step is in flight");
        match deletion.step_done(&done, result.err()) {
            Some(failure) => {
                self.failed.get_or_insert(failure.clone());
            }
            None => {
                if let PruneStep::Delete(object) = &done {
                    info!(%object, "pruned");
                }
            }
        }
        true
    }

    /// Issues nothing more: the prune ends with `failure` once what it has
    /// in flight reports.
    pub fn give_up(&mut self, failure: Failure) {
        self.failed.get_or_insert(failure);
    }

    /// How the prune ended, once it has and nothing of it is in flight.
    pub fn outcome(&self) -> Option<Result<Pruned, Failure>> {
        if !self.is_quiet() {
            return None;
        }
        if let Some(failure) = &self.failed {
            return Some(Err(failure.clone()));
        }
        let Phase::Deleting {
            deletion,
            oldest_restorable,
            ..
        } = &self.phase
        else {
            return None;
        };
        let deleted = deletion.outcome()?.ok()?;
        Some(Ok(Pruned {
            deleted,
            oldest_restorable: *oldest_restorable,
        }))
    }

    /// Nothing of the prune is in flight.
    pub fn is_quiet(&self) -> bool {
        self.reads.is_empty() && !matches!(&self.phase, Phase::Deleting { step: Some(_), .. })
    }
}
