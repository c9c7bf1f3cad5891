//! Restores of the simulated bucket, planned by the core's
//! [`RestorePlanner`]: the very planner `jobvault restore` runs, and the
//! reads a daemon's prune asks for ([`read_one`]). Only the carrying out is
//! simulated: listings and downloads come from the world, answers go back
//! in an order drawn from the seed, and the plan's versions go on top of the
//! snapshot's rows and tombstones through the core's [`apply_versions`],
//! the step the shell takes in SQLite.
//!
//! Reads fail at the day's `store-read-failure` rate (a 5xx or 429, a body
//! cut part way, a stall ended by the idle timeout), and each failed read is
//! made again as the core's [`ReadRetry`] decides, on a clock of the
//! restore's own that its waits and stalls move on: the shell's policy, not
//! a copy of it.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use jobvault_core::object_name::ObjectName;
use jobvault_core::read_retry::{
    DEFAULT_READ_PATIENCE, IDLE_READ_TIMEOUT, ReadAgain, ReadGaveUp, ReadRetry,
};
use jobvault_core::restore_plan::{
    Answer, Ask, ChosenSnapshot, OnCorrupt, OneAsk, PlanError, Planner, RestorePlanner,
    RestoreTarget, WithoutSnapshot, apply_versions,
};
use jobvault_core::{Envelope, Failure, FailureKind, JobId, Seq, Timestamp};

use crate::world::{Body, JobVersion, Store};

/// What a restore produced; empty by default, as a restore of a bucket
/// that holds nothing.
#[derive(Debug, Default)]
pub struct Restored {
    /// Every row and tombstone in the restored database.
    pub versions: BTreeMap<JobId, JobVersion>,
    pub snapshot: Option<ChosenSnapshot>,
    /// When the store wrote each job object the restore fetched.
    pub fetched_uploads: Vec<Timestamp>,
    /// Reads of a snapshot the store served decompressed.
    pub served_decompressed: u64,
    /// Reads that failed and were made again.
    pub failed_reads: u64,
    /// Snapshots the restore found unusable and passed over.
    pub unusable: Vec<ObjectName>,
}

/// Why a restore or prune of the simulated bucket failed.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("reads given up: {0}")]
    GaveUp(#[from] ReadGaveUp),
}

/// What goes wrong with the reads of one restore or prune.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadFaults {
    /// The chance that a read fails.
    pub failing: f64,
    /// The chance that a snapshot read is served decompressed.
    pub decompressed: f64,
    /// The chance that the first snapshot downloaded is unusable, when
    /// another remains.
    pub unusable: f64,
    /// Every snapshot downloaded is unusable.
    pub every_unusable: bool,
}

/// Restores the newest state of `store` as `jobvault restore` would at the
/// local time `now`, its reads meeting `faults`. A bucket that holds nothing
/// restores as an empty database, for the invariants to judge.
pub fn restore(
    store: &Store,
    now: Timestamp,
    faults: ReadFaults,
    rng: &mut fastrand::Rng,
) -> Result<Restored, Failed> {
    let planner = RestorePlanner::new(now, OnCorrupt::Fail);
    restore_with(store, planner, now, faults, rng)
}

/// Restores `store` as it was at local time `at`, as `jobvault restore --at`
/// would at local time `now`, its reads meeting `faults`.
pub fn restore_at(
    store: &Store,
    at: Timestamp,
    now: Timestamp,
    faults: ReadFaults,
    rng: &mut fastrand::Rng,
) -> Result<Restored, Failed> {
    // The history checks judge what a restore of the past holds, from an
    // instant before the first snapshot too: it starts from no snapshot as
    // `--from-job-objects` asks. Refusing without it is judged by the
    // newest-state restores (`every-snapshot-unusable`).
    let planner = RestorePlanner::at(at, now, OnCorrupt::Fail)
        .without_snapshot(WithoutSnapshot::FromJobObjects);
    restore_with(store, planner, now, faults, rng)
}

/// Answers one read of a daemon's prune ([`jobvault_core::Command::ReadBucket`])
/// as the shell's driver does, its reads meeting `faults` at local `now`;
/// also says how many reads failed.
pub fn read_one(
    store: &Store,
    ask: Ask,
    now: Timestamp,
    faults: ReadFaults,
    rng: &mut fastrand::Rng,
) -> (Result<Answer, Failed>, u64) {
    let mut one = OneAsk::new(ask);
    let mut bucket = Bucket::new(store, now, faults);
    let driven = drive(&mut bucket, &mut one, rng);
    let answer = driven.map(|()| one.into_answer().expect("a drive ends complete"));
    (answer, bucket.failed_reads)
}

fn restore_with(
    store: &Store,
    mut planner: RestorePlanner,
    now: Timestamp,
    faults: ReadFaults,
    rng: &mut fastrand::Rng,
) -> Result<Restored, Failed> {
    let mut bucket = Bucket::new(store, now, faults);
    drive(&mut bucket, &mut planner, rng)?;
    let plan = match planner.finish() {
        Err(PlanError::NothingToRestore(_)) => {
            return Ok(Restored {
                failed_reads: bucket.failed_reads,
                ..Restored::default()
            });
        }
        planned => planned?,
    };
    // A restore of the past may fetch a snapshot and then choose none.
    let (mut versions, counter) = if plan.snapshot.is_some() {
        (bucket.snapshot, bucket.snapshot_counter)
    } else {
        (BTreeMap::new(), 0)
    };
    let Ok(_) = apply_versions(&mut Building(&mut versions, counter), &plan.retrieved.jobs);
    Ok(Restored {
        versions,
        snapshot: plan.snapshot,
        fetched_uploads: bucket.fetched_uploads,
        served_decompressed: bucket.served_decompressed,
        failed_reads: bucket.failed_reads,
        unusable: plan.unusable.into_iter().map(|u| u.object).collect(),
    })
}

/// The simulated database a restore builds, for the core's
/// [`apply_versions`]: the step the shell takes in SQLite.
struct Building<'v>(&'v mut BTreeMap<JobId, JobVersion>, Seq);

impl RestoreTarget for Building<'_> {
    type Error = Infallible;

    fn counter(&mut self) -> Result<Seq, Infallible> {
        Ok(self.1)
    }

    fn held(&mut self, id: &JobId) -> Result<Option<Seq>, Infallible> {
        Ok(self.0.get(id).map(|h| h.seq))
    }

    fn write(&mut self, version: &Envelope) -> Result<(), Infallible> {
        let held = JobVersion {
            seq: version.seq,
            body: version.body().map(Arc::from),
            modified: version.modified,
            bad: false,
        };
        self.0.insert(version.id.clone(), held);
        Ok(())
    }
}

/// The simulated bucket as a planner's driver sees it, and what the driver
/// keeps: the rows of the snapshot fetched last, the read retry policy and
/// the clock its waits move on.
struct Bucket<'a> {
    store: &'a Store,
    snapshot: BTreeMap<JobId, JobVersion>,
    /// The change counter of the snapshot fetched last.
    snapshot_counter: Seq,
    fetched_uploads: Vec<Timestamp>,
    faults: ReadFaults,
    served_decompressed: u64,
    failed_reads: u64,
    /// Whether a snapshot download was drawn unusable or not yet.
    unusable_drawn: bool,
    retry: ReadRetry,
    clock: Timestamp,
}

/// How long a read takes in the restore's clock.
const READ_TIME: Duration = Duration::from_millis(20);

impl<'a> Bucket<'a> {
    fn new(store: &'a Store, now: Timestamp, faults: ReadFaults) -> Self {
        Bucket {
            store,
            snapshot: BTreeMap::new(),
            snapshot_counter: 0,
            fetched_uploads: Vec::new(),
            faults,
            served_decompressed: 0,
            failed_reads: 0,
            unusable_drawn: false,
            retry: ReadRetry::new(DEFAULT_READ_PATIENCE, now),
            clock: now,
        }
    }

    /// Whether this read fails, and how; the clock moves on by the time
    /// the read took.
    fn read_fails(&mut self, rng: &mut fastrand::Rng) -> Option<Failure> {
        if rng.f64() >= self.faults.failing {
            self.clock = self.clock + READ_TIME;
            return None;
        }
        self.failed_reads += 1;
        let (kind, message, took) = match rng.u8(0..4) {
            0 => (FailureKind::Transient, "503 Service Unavailable", READ_TIME),
            1 => (FailureKind::Transient, "429 Too Many Requests", READ_TIME),
            2 => (
                FailureKind::Transient,
                "the body was cut part way",
                READ_TIME,
            ),
            _ => (
                FailureKind::Timeout,
                "no byte for the idle timeout",
                IDLE_READ_TIMEOUT,
            ),
        };
        self.clock = self.clock + took;
        Some(Failure::new(kind, message))
    }

    /// Whether this snapshot download is unusable: every one, or the
    /// first, drawn at the day's rate, while the bucket holds another.
    fn draws_unusable(&mut self, rng: &mut fastrand::Rng) -> bool {
        if self.faults.every_unusable {
            return true;
        }
        if std::mem::replace(&mut self.unusable_drawn, true) {
            return false;
        }
        let snapshots = self
            .store
            .objects
            .values()
            .filter(|o| matches!(o.body, Body::Snapshot { .. }))
            .count();
        rng.f64() < self.faults.unusable && snapshots > 1
    }

    /// The read retry's verdict on a failed `attempt`; a wait moves the
    /// clock on.
    fn after_failure(&mut self, failure: &Failure, attempt: u32) -> Result<(), ReadGaveUp> {
        match self.retry.on_failure(failure, attempt, false, self.clock)? {
            ReadAgain::After(wait) => self.clock = self.clock + wait,
            ReadAgain::FromStart => {}
        }
        Ok(())
    }

    /// The gzip mtime a read of a snapshot sees: none when it is served
    /// decompressed.
    fn gzip_mtime(&mut self, mtime: Timestamp, rng: &mut fastrand::Rng) -> Option<Timestamp> {
        if rng.f64() < self.faults.decompressed {
            self.served_decompressed += 1;
            None
        } else {
            Some(mtime)
        }
    }

    fn answer(&mut self, ask: Ask, rng: &mut fastrand::Rng) -> Answer {
        let store = self.store;
        match ask {
            Ask::ListFolders { folder, versions } => Answer::Folders {
                folders: store.folders(&folder, versions),
                folder,
            },
            Ask::ListObjects { prefix, versions } => Answer::Objects {
                objects: store.list_generations(std::slice::from_ref(&prefix), versions),
                prefix,
                more: false,
            },
            Ask::FetchSnapshot { object, .. } if self.draws_unusable(rng) => {
                Answer::SnapshotUnusable {
                    object,
                    why: "incomplete deflate stream".to_owned(),
                }
            }
            Ask::FetchSnapshot {
                object, generation, ..
            } => {
                let (versions, gzip_mtime, stored, counter, newest_change) =
                    snapshot(store, &object, generation);
                self.snapshot = (**versions).clone();
                self.snapshot_counter = counter;
                Answer::SnapshotFetched {
                    newest_change,
                    gzip_mtime: self.gzip_mtime(gzip_mtime, rng),
                    object,
                    stored_cursor: stored,
                }
            }
            Ask::SnapshotTime { object, generation } => Answer::SnapshotTime {
                gzip_mtime: self.gzip_mtime(snapshot(store, &object, generation).1, rng),
                object,
                generation,
            },
            Ask::FetchJob { object, generation } => {
                let stored = store
                    .generation(&object, generation)
                    .unwrap_or_else(|| panic!("the planner asked for {object} {generation:?}"));
                self.fetched_uploads.push(stored.updated);
                let Body::Job { id, held } = &stored.body else {
                    panic!("the planner asked for {object} as a job");
                };
                let (id, seq, at) = (id.clone(), held.seq, held.modified);
                let envelope = match &held.body {
                    Some(body) => Envelope::written(id, seq, at, &**body),
                    None => Envelope::deleted(id, seq, at),
                };
                Answer::JobFetched {
                    object,
                    generation,
                    result: Ok(envelope),
                }
            }
            Ask::Versioning => Answer::Versioning {
                enabled: store.versioned,
            },
            Ask::ReadHistory => Answer::History {
                bytes: store.marker.clone(),
            },
        }
    }
}

/// A snapshot's rows, gzip mtime, stored cursor, counter and newest change.
type SnapshotParts<'s> = (
    &'s Arc<BTreeMap<JobId, JobVersion>>,
    Timestamp,
    jobvault_core::Cursor,
    Seq,
    Option<Timestamp>,
);

fn snapshot<'s>(store: &'s Store, object: &str, generation: Option<i64>) -> SnapshotParts<'s> {
    let Some(Body::Snapshot {
        versions,
        gzip_mtime,
        stored,
        counter,
        went_back_at,
    }) = store.generation(object, generation).map(|o| &o.body)
    else {
        panic!("the planner asked for {object} {generation:?} as a snapshot");
    };
    let newest_change = versions.values().map(|h| h.modified).max();
    (
        versions,
        *gzip_mtime,
        *stored,
        *counter,
        newest_change.max(*went_back_at),
    )
}

/// What the driver still owes a planner: an ask (with the attempt at it
/// about to be made), or the rest of a listing's pages.
enum Owed {
    Ask(Ask, u32),
    Pages(VecDeque<Answer>, u32),
}

/// Answers every ask, one drawn at random from those outstanding. A listing
/// comes in pages of random size, as GCS pages at most 1,000 objects; the
/// pages of one listing in order, between the answers to other asks. A read
/// that fails (an ask, or a page) is owed again once the read retry allows.
fn drive(
    bucket: &mut Bucket,
    planner: &mut impl Planner,
    rng: &mut fastrand::Rng,
) -> Result<(), Failed> {
    let mut owed = Vec::new();
    loop {
        owed.extend(std::iter::from_fn(|| planner.poll_ask()).map(|ask| Owed::Ask(ask, 1)));
        if owed.is_empty() {
            return Ok(());
        }
        let drawn = owed.swap_remove(rng.usize(0..owed.len()));
        if let Some(failure) = bucket.read_fails(rng) {
            let attempt = match &drawn {
                Owed::Ask(_, attempt) | Owed::Pages(_, attempt) => *attempt,
            };
            bucket.after_failure(&failure, attempt)?;
            owed.push(match drawn {
                Owed::Ask(ask, _) => Owed::Ask(ask, attempt + 1),
                Owed::Pages(pages, _) => Owed::Pages(pages, attempt + 1),
            });
            continue;
        }
        bucket.retry.progressed(bucket.clock);
        let mut pages = match drawn {
            Owed::Ask(ask, _) => {
                let answer = bucket.answer(ask, rng);
                pages(answer, rng)
            }
            Owed::Pages(pages, _) => pages,
        };
        let answer = pages.pop_front().expect("a listing has a page");
        if !pages.is_empty() {
            owed.push(Owed::Pages(pages, 1));
        }
        planner.handle_answer(answer)?;
    }
}

/// A listing cut into pages of 1 to 8 objects; any other answer whole.
/// Each page is a Vec of its own size: splitting the rest off again and
/// again kept every page at the whole listing's capacity, and a restore of
/// the past that lists 18,000 generations took 860 MB.
fn pages(answer: Answer, rng: &mut fastrand::Rng) -> VecDeque<Answer> {
    let Answer::Objects {
        prefix, objects, ..
    } = answer
    else {
        return VecDeque::from([answer]);
    };
    let mut pages = VecDeque::new();
    let mut objects = objects.into_iter().peekable();
    loop {
        let page: Vec<_> = objects.by_ref().take(rng.usize(1..=8)).collect();
        let more = objects.peek().is_some();
        pages.push_back(Answer::Objects {
            prefix: prefix.clone(),
            objects: page,
            more,
        });
        if !more {
            return pages;
        }
    }
}
