//! Restores and prunes of the simulated bucket, planned by the core's
//! [`RestorePlanner`] and [`PrunePlanner`]: the very planners `jobvault
//! restore` and `jobvault prune` run. Only the carrying out is simulated:
//! listings and downloads come from the world, answers go back in an order
//! drawn from the seed, and the plan is applied to the snapshot's rows and
//! tombstones as the shell applies it to SQLite: a newer body replaces a row
//! or a tombstone, a newer tombstone deletes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jobvault_core::prune::{PrunePlan, PrunePlanner};
use jobvault_core::restore_plan::{
    Answer, Ask, ChosenSnapshot, OnCorrupt, PlanError, Planner, RestorePlanner, supersedes,
};
use jobvault_core::{Envelope, JobId, Timestamp};

use crate::world::{Body, Held, Store};

/// What a restore produced.
#[derive(Debug)]
pub struct Restored {
    /// Every row and tombstone in the restored database.
    pub versions: BTreeMap<JobId, Held>,
    pub snapshot: Option<ChosenSnapshot>,
    /// When the store wrote each job object the restore fetched.
    pub fetched_uploads: Vec<Timestamp>,
    /// Reads of a snapshot the store served decompressed.
    pub served_decompressed: u64,
}

/// Restores the newest state of `store` as `jobvault restore` would at the
/// local time `now`, with each read of a snapshot served decompressed at
/// the rate `decompressed`.
pub fn restore(
    store: &Store,
    now: Timestamp,
    decompressed: f64,
    rng: &mut fastrand::Rng,
) -> Restored {
    let planner = RestorePlanner::new(now, OnCorrupt::Fail);
    carry_out(store, planner, decompressed, rng).expect("the newest state always restores")
}

/// Restores `store` as it was at local time `at`, as `jobvault restore --at`
/// would at local time `now`.
pub fn restore_at(
    store: &Store,
    at: Timestamp,
    now: Timestamp,
    rng: &mut fastrand::Rng,
) -> Result<Restored, PlanError> {
    carry_out(
        store,
        RestorePlanner::at(at, now, OnCorrupt::Fail),
        0.0,
        rng,
    )
}

/// Plans a prune of `store` as `jobvault prune --keep` would at local `now`.
pub fn plan_prune(
    store: &Store,
    now: Timestamp,
    keep: Duration,
    rng: &mut fastrand::Rng,
) -> PrunePlan {
    let mut planner = PrunePlanner::new(now, keep);
    let mut bucket = Bucket::new(store);
    drive(&mut bucket, &mut planner, rng).expect("the simulated bucket is well-formed");
    planner.finish().expect("every ask was answered")
}

/// Carries out the first `done` steps of a plan (all of them: `usize::MAX`):
/// the marker, then the deletions, as the shell does; a crash stops it
/// anywhere.
pub fn carry_out_prune(store: &mut Store, plan: &PrunePlan, done: usize) {
    if done == 0 {
        return;
    }
    if let Some(marker) = plan.marker {
        store.marker = Some(marker.encode());
    }
    for object in plan.delete.iter().take(done - 1) {
        store.delete(object);
    }
}

fn carry_out(
    store: &Store,
    mut planner: RestorePlanner,
    decompressed: f64,
    rng: &mut fastrand::Rng,
) -> Result<Restored, PlanError> {
    let mut bucket = Bucket {
        decompressed,
        ..Bucket::new(store)
    };
    drive(&mut bucket, &mut planner, rng)?;
    let plan = planner.finish()?;
    // A restore of the past may fetch a snapshot and then choose none.
    let mut versions = if plan.snapshot.is_some() {
        bucket.snapshot
    } else {
        BTreeMap::new()
    };
    for envelope in plan.retrieved.jobs {
        if supersedes(envelope.seq, versions.get(&envelope.id).map(|h| h.seq)) {
            let held = Held {
                seq: envelope.seq,
                body: envelope.body().map(Arc::from),
                modified: envelope.modified,
            };
            versions.insert(envelope.id, held);
        }
    }
    Ok(Restored {
        versions,
        snapshot: plan.snapshot,
        fetched_uploads: bucket.fetched_uploads,
        served_decompressed: bucket.served_decompressed,
    })
}

/// The simulated bucket as a planner's driver sees it, and what the driver
/// keeps: the rows of the snapshot fetched last.
struct Bucket<'a> {
    store: &'a Store,
    snapshot: BTreeMap<JobId, Held>,
    fetched_uploads: Vec<Timestamp>,
    /// The chance that a read of a snapshot is served decompressed.
    decompressed: f64,
    served_decompressed: u64,
}

impl<'a> Bucket<'a> {
    fn new(store: &'a Store) -> Self {
        Bucket {
            store,
            snapshot: BTreeMap::new(),
            fetched_uploads: Vec::new(),
            decompressed: 0.0,
            served_decompressed: 0,
        }
    }

    /// The gzip mtime a read of a snapshot sees: none when it is served
    /// decompressed.
    fn gzip_mtime(&mut self, mtime: Timestamp, rng: &mut fastrand::Rng) -> Option<Timestamp> {
        if rng.f64() < self.decompressed {
            self.served_decompressed += 1;
            None
        } else {
            Some(mtime)
        }
    }

    fn answer(&mut self, ask: Ask, rng: &mut fastrand::Rng) -> Answer {
        let store = self.store;
        match ask {
            Ask::ListFolders { folder } => Answer::Folders {
                folders: store.folders(&folder),
                folder,
            },
            Ask::ListObjects { prefix, versions } => Answer::Objects {
                objects: store.list_generations(std::slice::from_ref(&prefix), versions),
                prefix,
                more: false,
            },
            Ask::FetchSnapshot { object } => {
                let (versions, gzip_mtime, stored) = snapshot(store, &object);
                self.snapshot = (**versions).clone();
                Answer::SnapshotFetched {
                    newest_change: versions.values().map(|h| h.modified).max(),
                    gzip_mtime: self.gzip_mtime(gzip_mtime, rng),
                    object,
                    stored_cursor: stored,
                }
            }
            Ask::SnapshotTime { object } => Answer::SnapshotTime {
                gzip_mtime: self.gzip_mtime(snapshot(store, &object).1, rng),
                object,
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

type SnapshotParts<'s> = (
    &'s Arc<BTreeMap<JobId, Held>>,
    Timestamp,
    jobvault_core::Cursor,
);

fn snapshot<'s>(store: &'s Store, object: &str) -> SnapshotParts<'s> {
    let Some(Body::Snapshot {
        versions,
        gzip_mtime,
        stored,
    }) = store.objects.get(object).map(|o| &o.body)
    else {
        panic!("the planner asked for {object} as a snapshot");
    };
    (versions, *gzip_mtime, *stored)
}

/// What the driver still owes a planner: an ask, or the rest of a listing's
/// pages.
enum Owed {
    Ask(Ask),
    Pages(VecDeque<Answer>),
}

/// Answers every ask, one drawn at random from those outstanding. A listing
/// comes in pages of random size, as GCS pages at most 1,000 objects; the
/// pages of one listing in order, between the answers to other asks.
fn drive(
    bucket: &mut Bucket,
    planner: &mut impl Planner,
    rng: &mut fastrand::Rng,
) -> Result<(), PlanError> {
    let mut owed = Vec::new();
    loop {
        owed.extend(std::iter::from_fn(|| planner.poll_ask()).map(Owed::Ask));
        if owed.is_empty() {
            return Ok(());
        }
        let mut pages = match owed.swap_remove(rng.usize(0..owed.len())) {
            Owed::Ask(ask) => {
                let answer = bucket.answer(ask, rng);
                pages(answer, rng)
            }
            Owed::Pages(pages) => pages,
        };
        let answer = pages.pop_front().expect("a listing has a page");
        if !pages.is_empty() {
            owed.push(Owed::Pages(pages));
        }
        planner.handle_answer(answer)?;
    }
}

/// A listing cut into pages of 1 to 8 objects; any other answer whole.
fn pages(answer: Answer, rng: &mut fastrand::Rng) -> VecDeque<Answer> {
    let Answer::Objects {
        prefix,
        mut objects,
        ..
    } = answer
    else {
        return VecDeque::from([answer]);
    };
    let mut pages = VecDeque::new();
    loop {
        let rest = objects.split_off(rng.usize(1..=8).min(objects.len()));
        let more = !rest.is_empty();
        pages.push_back(Answer::Objects {
            prefix: prefix.clone(),
            objects,
            more,
        });
        if !more {
            return pages;
        }
        objects = rest;
    }
}
