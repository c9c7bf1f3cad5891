//! Which snapshots the bucket holds: every one, with when it was uploaded
//! and the time inside it (the incremental time its gzip header holds),
//! and, where the bucket keeps versions, the noncurrent generations too.
//! What `jobvault snapshots` lists, and what `restore --snapshot` picks
//! from; the original had no way to see them but a raw listing.

use std::collections::{BTreeMap, BTreeSet};

use super::ask::{Answer, Ask, PlanError, Planner, unexpected};
use super::range::RangeListing;
use crate::machine::ListedObject;
use crate::object_name::{ObjectKind, ObjectName, parse_object_name};
use crate::timestamp::Timestamp;

/// One snapshot generation in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    pub object: ObjectName,
    /// `None` when the listing did not say (a bucket without versioning).
    pub generation: Option<i64>,
    pub uploaded: Timestamp,
    /// Bytes stored (compressed).
    pub size: u64,
    /// The gzip header's mtime; `None` when the header has none or came
    /// decompressed.
    pub time: Option<Timestamp>,
    /// The live generation, which a plain read gets; `false` for a
    /// noncurrent one.
    pub live: bool,
    /// Its content type says it is encrypted.
    pub sealed: bool,
}

#[derive(Debug)]
enum Phase {
    Versioning {
        asked: bool,
    },
    /// The live listing; `versioned` says every generation is listed next.
    Live {
        listing: RangeListing,
        versioned: bool,
    },
    /// The listing of every generation, after the live one (the two ask for
    /// the same prefixes, so they go one after the other).
    Every {
        live: Vec<ListedObject>,
        listing: RangeListing,
    },
    Headers {
        queue: Vec<Ask>,
        waiting: BTreeMap<(ObjectName, Option<i64>), InventoryEntry>,
    },
    Done,
}

/// Lists every snapshot and reads each one's header.
#[derive(Debug)]
pub struct SnapshotInventory {
    now: Timestamp,
    phase: Phase,
    entries: Vec<InventoryEntry>,
}

impl SnapshotInventory {
    pub fn new(now: Timestamp) -> Self {
        SnapshotInventory {
            now,
            phase: Phase::Versioning { asked: false },
            entries: Vec::new(),
        }
    }

    /// Every snapshot generation, newest upload first (then greatest name,
    /// then greatest generation), once [`Planner::is_complete`].
    pub fn finish(mut self) -> Vec<InventoryEntry> {
        self.entries.sort_by(|a, b| {
            (b.uploaded, &b.object, b.generation).cmp(&(a.uploaded, &a.object, a.generation))
        });
        self.entries
    }

    fn on_listed(&mut self, live: Vec<ListedObject>, every: Option<Vec<ListedObject>>) {
        let is_snapshot = |o: &ListedObject| {
            parse_object_name(&o.name).is_ok_and(|p| p.kind == ObjectKind::Snapshot)
        };
        let live_names: BTreeSet<ObjectName> = live
            .iter()
            .filter(|o| is_snapshot(o))
            .map(|o| o.name.clone())
            .collect();
        let entries: Vec<InventoryEntry> = match every {
            None => live
                .into_iter()
                .filter(|o| is_snapshot(o))
                .map(|o| entry(o, true))
                .collect(),
            Some(every) => {
                let mut newest: BTreeMap<ObjectName, i64> = BTreeMap::new();
                for o in every.iter().filter(|o| is_snapshot(o)) {
                    let generation = o.generation.unwrap_or_default();
                    let top = newest.entry(o.name.clone()).or_insert(generation);
                    *top = (*top).max(generation);
                }
                every
                    .into_iter()
                    .filter(|o| is_snapshot(o))
                    .map(|o| {
                        let live = live_names.contains(&o.name)
                            && o.generation.unwrap_or_default() == newest[&o.name];
                        entry(o, live)
                    })
                    .collect()
            }
        };
        let queue = entries
            .iter()
            .map(|e| Ask::SnapshotTime {
                object: e.object.clone(),
                generation: e.generation.filter(|_| !e.live),
            })
            .collect();
        let waiting = entries
            .into_iter()
            .map(|e| ((e.object.clone(), e.generation.filter(|_| !e.live)), e))
            .collect();
        self.phase = Phase::Headers { queue, waiting };
        self.done_if_answered();
    }

    fn done_if_answered(&mut self) {
        if let Phase::Headers { waiting, .. } = &self.phase
            && waiting.is_empty()
        {
            self.phase = Phase::Done;
        }
    }
}

fn entry(listed: ListedObject, live: bool) -> InventoryEntry {
    InventoryEntry {
        object: listed.name,
        generation: listed.generation,
        uploaded: listed.updated,
        size: listed.size,
        time: None,
        live,
        sealed: listed.sealed,
    }
}

impl Planner for SnapshotInventory {
    fn poll_ask(&mut self) -> Option<Ask> {
        match &mut self.phase {
            Phase::Versioning { asked } => (!*asked).then(|| {
                *asked = true;
                Ask::Versioning
            }),
            Phase::Live { listing, .. } | Phase::Every { listing, .. } => listing.poll_ask(),
            Phase::Headers { queue, .. } => queue.pop(),
            Phase::Done => None,
        }
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        match (&mut self.phase, answer) {
            (Phase::Versioning { asked: true }, Answer::Versioning { enabled }) => {
                let listing =
                    RangeListing::new(ObjectKind::Snapshot, Timestamp::UNIX_EPOCH, self.now);
                self.phase = Phase::Live {
                    listing,
                    versioned: enabled,
                };
            }
            (Phase::Live { listing, versioned }, answer) => {
                listing.handle_answer(answer)?;
                if listing.is_complete() {
                    let versioned = *versioned;
                    let Phase::Live { listing, .. } =
                        std::mem::replace(&mut self.phase, Phase::Done)
                    else {
                        unreachable!()
                    };
                    let live = listing.into_objects();
                    if versioned {
                        let listing = RangeListing::with_versions(
                            ObjectKind::Snapshot,
                            Timestamp::UNIX_EPOCH,
                            self.now,
                        );
                        self.phase = Phase::Every { live, listing };
                    } else {
                        self.on_listed(live, None);
                    }
                }
            }
            (Phase::Every { listing, .. }, answer) => {
                listing.handle_answer(answer)?;
                if listing.is_complete() {
                    let Phase::Every { live, listing } =
                        std::mem::replace(&mut self.phase, Phase::Done)
                    else {
                        unreachable!()
                    };
                    self.on_listed(live, Some(listing.into_objects()));
                }
            }
            (
                Phase::Headers { waiting, .. },
                Answer::SnapshotTime {
                    object,
                    generation,
                    gzip_mtime,
                },
            ) => {
                let Some(mut entry) = waiting.remove(&(object.clone(), generation)) else {
                    return Err(unexpected(&Answer::SnapshotTime {
                        object,
                        generation,
                        gzip_mtime,
                    }));
                };
                entry.time = gzip_mtime;
                self.entries.push(entry);
                self.done_if_answered();
            }
            (_, answer) => return Err(unexpected(&answer)),
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
}
