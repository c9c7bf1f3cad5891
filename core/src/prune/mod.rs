//! Retention: which objects no restore within the window needs.
//!
//! The window is the last `keep` before now. A restore to its oldest instant
//! starts from the newest snapshot taken at or before it (the base; older
//! than the window itself, and kept for that reason) and reads job objects
//! uploaded since the base's time, less the clock allowance. So the prune
//! deletes the snapshots older than the base and the job objects in day
//! folders wholly before that, and nothing at all while no snapshot is old
//! enough to be a base: while snapshots fail, history is kept, however long.
//! The original kept everything for ever; a lifecycle rule on age alone
//! breaks every restore once snapshots have failed for longer than its age.
//!
//! Ages are what names and headers say: a job object's day folder (its
//! upload day), a snapshot's gzip mtime (its incremental time), or, where
//! its header came decompressed, its upload time, which its contents are no
//! newer than. A restore to
//! the window's start takes only snapshots uploaded by then, so the base is
//! also one uploaded before the window: one planned early but uploaded late
//! chosen as base would leave that instant with no snapshot at all (found by
//! the simulator once its prunes read through decompressing stores). Before any
//! deletion the plan writes the history marker ([`crate::history`]), so a
//! prune cut short leaves a bucket that restores as before, and a restore
//! to an instant the prune gave up refuses rather than comes back short.

mod deletion;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::history::HistoryMarker;
use crate::machine::ListedObject;
use crate::object_name::{ObjectKind, ObjectName, parse_object_name};
use crate::restore_plan::{
    Answer, Ask, PlanError, Planner, RESTORE_CLOCK_ALLOWANCE, RangeListing, read_history,
    unexpected,
};
use crate::retrieval::newest_object;
use crate::timestamp::Timestamp;

pub use deletion::{Deletion, PruneStep};

/// The base is taken this much before the window's start: a snapshot's copy
/// is taken a moment after its mtime, so its contents run a little past it.
pub const BASE_MARGIN: Duration = Duration::from_secs(3600);

/// The snapshot kept as the base for the window's oldest instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub object: ObjectName,
    pub time: Timestamp,
}

/// What a prune deletes, and what it leaves restorable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    /// The oldest instant the window promises.
    pub window_start: Timestamp,
    /// `None` when no snapshot is old enough: nothing is deleted.
    pub base: Option<Base>,
    /// Where the bucket's history starts once the plan is carried out;
    /// `None` when nothing was ever pruned.
    pub restorable_from: Option<Timestamp>,
    /// Write this marker before deleting anything.
    pub marker: Option<HistoryMarker>,
    /// The time of the oldest snapshot kept (the base, when there is one).
    pub oldest_snapshot: Option<Timestamp>,
    /// The objects to delete, oldest first.
    pub delete: Vec<ObjectName>,
    /// The snapshots among them uploaded less than a day ago: a window that
    /// short is more often a typo than a wish, so `prune` asks first.
    pub young_snapshots: Vec<ObjectName>,
}

/// A snapshot with the time its header gave.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Timed {
    /// The gzip mtime, or, without one, its upload time, which its contents
    /// are no newer than: what it is kept or deleted by. Its day folder's
    /// start, taken before, sorted a snapshot of an hour ago before the
    /// base and deleted it: the first one after the database went back to
    /// a copy, so that a restore passing over the next as unusable fell
    /// back to one of the state the copy abandoned (the simulator).
    time: Timestamp,
    /// The gzip mtime, or, without one, its day folder's start, which its
    /// contents are no older than: as the base, a restore reads the job
    /// objects from then on, and those are kept.
    reads_from: Timestamp,
    object: ObjectName,
    uploaded: Timestamp,
    /// The header gave the time.
    known: bool,
}

impl Timed {
    /// Whether it may be the base of a window starting at `start`. A restore
    /// to `start` takes only snapshots uploaded by then (and holding nothing
    /// later), so one uploaded after it cannot be the base, whatever its
    /// mtime: a snapshot planned early and uploaded late (the store refused
    /// it for hours). Without a known time, the upload must be a margin
    /// before too: the contents run up to the upload.
    fn may_be_base(&self, start: Timestamp) -> bool {
        let latest_upload = if self.known {
            start
        } else {
            start - BASE_MARGIN
        };
        self.time <= start - BASE_MARGIN && self.uploaded <= latest_upload
    }
}

#[derive(Debug)]
enum Phase {
    Snapshots {
        listing: RangeListing,
        asked_history: bool,
        history_read: bool,
    },
    Times {
        queue: Vec<Ask>,
        waiting: BTreeMap<ObjectName, Timestamp>,
        timed: Vec<Timed>,
        /// The newest upload, which a restore of the newest state starts
        /// from: never deleted, whatever its time says.
        newest: Option<ObjectName>,
    },
    Jobs {
        listing: RangeListing,
        before: Timestamp,
    },
    Done,
}

/// Plans a prune of what no restore to the last `keep` needs.
#[derive(Debug)]
pub struct PrunePlanner {
    now: Timestamp,
    window_start: Timestamp,
    phase: Phase,
    history: Option<Timestamp>,
    base: Option<Base>,
    oldest_snapshot: Option<Timestamp>,
    delete: Vec<ObjectName>,
    young_snapshots: Vec<ObjectName>,
}

/// A snapshot uploaded less than this long ago is young: deleting it asks
/// for consent.
pub const YOUNG_SNAPSHOT: Duration = Duration::from_secs(86_400);

impl PrunePlan {
    /// The oldest instant the bucket restores once the plan is carried out:
    /// where the marker says history starts, or, if later, the oldest
    /// snapshot kept. That one moves forward only when someone else deleted
    /// snapshots, which is what the window alert is for.
    pub fn oldest_restorable(&self) -> Option<Timestamp> {
        match (self.restorable_from, self.oldest_snapshot) {
            (Some(from), Some(oldest)) => Some(from.max(oldest)),
            (from, oldest) => from.or(oldest),
        }
    }
}

impl PrunePlanner {
    pub fn new(now: Timestamp, keep: Duration) -> Self {
        PrunePlanner {
            now,
            window_start: now - keep,
            phase: Phase::Snapshots {
                listing: RangeListing::new(ObjectKind::Snapshot, Timestamp::UNIX_EPOCH, now),
                asked_history: false,
                history_read: false,
            },
            history: None,
            base: None,
            oldest_snapshot: None,
            delete: Vec::new(),
            young_snapshots: Vec::new(),
        }
    }

    /// The plan, once [`Planner::is_complete`].
    pub fn finish(mut self) -> Result<PrunePlan, PlanError> {
        // Day folders sort by date, so names sort oldest first.
        self.delete.sort();
        if !matches!(self.phase, Phase::Done) {
            return Err(PlanError::Unexpected(format!(
                "finish while in {:?}",
                self.phase
            )));
        }
        // Exactly the window: a version current inside it became noncurrent
        // inside it, so the lifecycle rule of the README keeps it.
        let promised = self.base.as_ref().map(|_| self.window_start);
        let marker = promised
            .filter(|from| !self.delete.is_empty() && self.history.is_none_or(|h| h < *from))
            .map(|from| HistoryMarker::new(from, self.now));
        Ok(PrunePlan {
            window_start: self.window_start,
            restorable_from: marker.map(|m| m.restorable_from).or(self.history),
            base: self.base,
            oldest_snapshot: self.oldest_snapshot,
            marker,
            delete: self.delete,
            young_snapshots: self.young_snapshots,
        })
    }

    fn on_snapshots_listed(&mut self, snapshots: Vec<ListedObject>) {
        let snapshots: Vec<ListedObject> = snapshots
            .into_iter()
            .filter(|o| parse_object_name(&o.name).is_ok_and(|p| p.kind == ObjectKind::Snapshot))
            .collect();
        let newest = newest_object(ObjectKind::Snapshot, &snapshots).map(|o| o.name.clone());
        self.phase = Phase::Times {
            newest,
            queue: snapshots
                .iter()
                .map(|o| Ask::SnapshotTime {
                    object: o.name.clone(),
                    generation: None,
                })
                .collect(),
            waiting: snapshots
                .iter()
                .map(|o| (o.name.clone(), o.updated))
                .collect(),
            timed: Vec::new(),
        };
        self.after_times();
    }

    /// Once every snapshot's time is in: choose the base, and list the job
    /// objects older than it.
    fn after_times(&mut self) {
        let Phase::Times {
            waiting,
            timed,
            newest,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if !waiting.is_empty() {
            return;
        }
        timed.sort();
        self.oldest_snapshot = timed.first().map(|t| t.reads_from);
        let start = self.window_start;
        let Some(split) = timed.iter().rposition(|t| t.may_be_base(start)) else {
            self.phase = Phase::Done;
            return;
        };
        let (time, object) = (timed[split].reads_from, timed[split].object.clone());
        let deleted = timed[..split]
            .iter()
            .filter(|t| Some(&t.object) != newest.as_ref());
        let young_since = self.now - YOUNG_SNAPSHOT;
        self.young_snapshots = deleted
            .clone()
            .filter(|t| t.uploaded > young_since)
            .map(|t| t.object.clone())
            .collect();
        self.young_snapshots.sort();
        self.delete = deleted.map(|t| t.object.clone()).collect();
        self.oldest_snapshot = Some(time);
        self.base = Some(Base { object, time });
        let before = (time - RESTORE_CLOCK_ALLOWANCE).start_of_day();
        let last = before - Duration::from_nanos(1);
        self.phase = if last < Timestamp::UNIX_EPOCH {
            Phase::Done
        } else {
            Phase::Jobs {
                listing: RangeListing::new(ObjectKind::Job, Timestamp::UNIX_EPOCH, last),
                before,
            }
        };
    }
}

impl Planner for PrunePlanner {
    fn poll_ask(&mut self) -> Option<Ask> {
        match &mut self.phase {
            Phase::Snapshots {
                listing,
                asked_history,
                ..
            } => {
                if !*asked_history {
                    *asked_history = true;
                    return Some(Ask::ReadHistory);
                }
                listing.poll_ask()
            }
            Phase::Times { queue, .. } => queue.pop(),
            Phase::Jobs { listing, .. } => listing.poll_ask(),
            Phase::Done => None,
        }
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        match (&mut self.phase, answer) {
            (Phase::Snapshots { history_read, .. }, Answer::History { bytes })
                if !*history_read =>
            {
                self.history = read_history(bytes.as_deref())?;
                *history_read = true;
            }
            (Phase::Snapshots { listing, .. }, answer) => listing.handle_answer(answer)?,
            (
                Phase::Times { waiting, timed, .. },
                Answer::SnapshotTime {
                    object,
                    gzip_mtime,
                    generation: None,
                },
            ) if waiting.contains_key(&object) => {
                let uploaded = waiting.remove(&object).expect("just looked up");
                let day = parse_object_name(&object).map_or(Timestamp::UNIX_EPOCH, |p| p.day);
                timed.push(Timed {
                    time: gzip_mtime.unwrap_or(uploaded),
                    reads_from: gzip_mtime.unwrap_or(day),
                    object,
                    uploaded,
                    known: gzip_mtime.is_some(),
                });
                self.after_times();
            }
            (Phase::Jobs { listing, before }, answer) => {
                let before = *before;
                for object in listing.take_answer(answer)? {
                    if parse_object_name(&object.name)
                        .is_ok_and(|p| p.kind == ObjectKind::Job && p.day < before)
                    {
                        self.delete.push(object.name);
                    }
                }
                if listing.is_complete() {
                    self.phase = Phase::Done;
                }
            }
            (_, answer) => return Err(unexpected(&answer)),
        }
        if let Phase::Snapshots {
            listing,
            history_read: true,
            ..
        } = &mut self.phase
            && listing.is_complete()
        {
            let Phase::Snapshots { listing, .. } = std::mem::replace(&mut self.phase, Phase::Done)
            else {
                unreachable!()
            };
            self.on_snapshots_listed(listing.into_objects());
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
}
