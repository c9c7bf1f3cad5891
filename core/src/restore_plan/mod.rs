//! Planning a restore, and every search it is made of.
//!
//! A restore is three decisions, all taken here: which snapshot to start
//! from, from when to take job objects on top of it (the `since` bound,
//! with an allowance for clocks), and which version of each job wins. The
//! shell's `restore` and the simulator's check that "a restore equals the
//! database" drive this one [`RestorePlanner`]; neither has a copy of it.
//!
//! Planners are sans-I/O like the backup machine: they ask ([`Ask`]), the
//! driver answers ([`Answer`]), in any order. The searches a restore is
//! made of are planners too, and serve the other commands: [`NewestSearch`]
//! (`verify`, `status`), [`RangeListing`] (`status`, `verify`) and
//! [`JobSearch`] (`retrieve`).

mod ask;
mod jobs;
mod newest;
mod range;

use std::time::Duration;

pub use ask::{Answer, Ask, ChosenSnapshot, PlanError, Planner};
pub use jobs::{JobSearch, OnCorrupt, Retrieved, Skipped};
pub use newest::NewestSearch;
pub use range::RangeListing;

use crate::object_name::ObjectKind;
use crate::timestamp::Timestamp;
use crate::{Cursor, Seq};
use ask::unexpected;

/// How far a restore reaches back before the snapshot's time, to allow for
/// the store's clock running behind ours. Fetching a few extra versions costs
/// little: the newest-wins merge discards them.
pub const RESTORE_CLOCK_ALLOWANCE: Duration = Duration::from_secs(10 * 60);

/// What a restore starts from and what it puts on top.
#[derive(Debug)]
pub struct RestorePlan {
    /// `None` when the bucket holds no snapshot: the database is rebuilt
    /// from job objects alone.
    pub snapshot: Option<ChosenSnapshot>,
    /// Job objects uploaded at or after this were fetched.
    pub since: Timestamp,
    /// The newest version of each job uploaded since `since`, to apply
    /// where [`supersedes`] says so.
    pub retrieved: Retrieved,
}

impl RestorePlan {
    /// The cursor of the restored database, given the newest sequence in it
    /// and the change counter it holds: every job in it is in the bucket, so
    /// `jobvault run` continues after the newest sequence, and the next
    /// snapshot's time is the restore's.
    pub fn cursor(&self, newest_seq: Seq, counter: Seq, now: Timestamp) -> Cursor {
        Cursor {
            seq: counter.max(newest_seq),
            time: now,
        }
    }
}

/// Whether a version from the bucket replaces the one the restored database
/// holds (`None`: it holds none).
pub fn supersedes(offered: Seq, held: Option<Seq>) -> bool {
    held.is_none_or(|held| offered > held)
}

/// The time a fetched snapshot stands for: its gzip mtime, or, when the store
/// served it decompressed or without one, the cursor time stored inside it.
fn snapshot_time(gzip_mtime: Option<Timestamp>, stored: Cursor) -> Timestamp {
    gzip_mtime.unwrap_or(stored.time)
}

#[derive(Debug)]
enum Phase {
    FindSnapshot(NewestSearch),
    FetchSnapshot {
        object: String,
        uploaded: Timestamp,
        asked: bool,
    },
    Jobs(JobSearch),
}

/// Plans the restore of the newest state in a bucket.
#[derive(Debug)]
pub struct RestorePlanner {
    now: Timestamp,
    on_corrupt: OnCorrupt,
    phase: Phase,
    snapshot: Option<ChosenSnapshot>,
    since: Timestamp,
}

impl RestorePlanner {
    pub fn new(now: Timestamp, on_corrupt: OnCorrupt) -> Self {
        RestorePlanner {
            now,
            on_corrupt,
            phase: Phase::FindSnapshot(NewestSearch::new(ObjectKind::Snapshot)),
            snapshot: None,
            since: Timestamp::UNIX_EPOCH,
        }
    }

    /// The plan, once [`Planner::is_complete`].
    pub fn finish(self) -> Result<RestorePlan, PlanError> {
        match self.phase {
            Phase::Jobs(jobs) if jobs.is_complete() => Ok(RestorePlan {
                snapshot: self.snapshot,
                since: self.since,
                retrieved: jobs.finish(),
            }),
            phase => Err(PlanError::Unexpected(format!("finish while in {phase:?}"))),
        }
    }

    fn retrieve_since(&mut self, since: Timestamp) {
        self.since = since;
        self.phase = Phase::Jobs(JobSearch::new(since, self.now, self.on_corrupt));
    }
}

impl Planner for RestorePlanner {
    fn poll_ask(&mut self) -> Option<Ask> {
        match &mut self.phase {
            Phase::FindSnapshot(search) => search.poll_ask(),
            Phase::FetchSnapshot { object, asked, .. } => (!*asked).then(|| {
                *asked = true;
                Ask::FetchSnapshot {
                    object: object.clone(),
                }
            }),
            Phase::Jobs(jobs) => jobs.poll_ask(),
        }
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        match &mut self.phase {
            Phase::FindSnapshot(search) => {
                search.handle_answer(answer)?;
                if search.is_complete() {
                    match search.newest().cloned() {
                        Some(newest) => {
                            self.phase = Phase::FetchSnapshot {
                                object: newest.name,
                                uploaded: newest.updated,
                                asked: false,
                            }
                        }
                        None => self.retrieve_since(Timestamp::UNIX_EPOCH),
                    }
                }
                Ok(())
            }
            Phase::FetchSnapshot {
                object,
                uploaded,
                asked: true,
            } => match answer {
                Answer::SnapshotFetched {
                    object: fetched,
                    gzip_mtime,
                    stored_cursor,
                } if fetched == *object => {
                    let time = snapshot_time(gzip_mtime, stored_cursor);
                    self.snapshot = Some(ChosenSnapshot {
                        object: fetched,
                        uploaded: *uploaded,
                        time,
                    });
                    self.retrieve_since(time - RESTORE_CLOCK_ALLOWANCE);
                    Ok(())
                }
                other => Err(unexpected(&other)),
            },
            Phase::FetchSnapshot { .. } => Err(unexpected(&answer)),
            Phase::Jobs(jobs) => jobs.handle_answer(answer),
        }
    }

    fn is_complete(&self) -> bool {
        matches!(&self.phase, Phase::Jobs(jobs) if jobs.is_complete())
    }
}
