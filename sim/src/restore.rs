//! A restore from the simulated bucket, planned by the core's
//! [`RestorePlanner`]: the very planner `jobvault restore` runs. Only the
//! carrying out is simulated: listings and downloads come from the world,
//! answers go back in an order drawn from the seed, and the plan is applied
//! to the snapshot's rows and tombstones as the shell applies it to SQLite:
//! a newer body replaces a row or a tombstone, a newer tombstone deletes.

use std::collections::BTreeMap;
use std::sync::Arc;

use jobvault_core::restore_plan::{
    Answer, Ask, ChosenSnapshot, OnCorrupt, Planner, RestorePlanner, supersedes,
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
}

/// Restores the newest state of `store` as `jobvault restore` would at the
/// local time `now`.
pub fn restore(store: &Store, now: Timestamp, rng: &mut fastrand::Rng) -> Restored {
    let mut planner = RestorePlanner::new(now, OnCorrupt::Fail);
    let mut versions = BTreeMap::new();
    let mut fetched_uploads = Vec::new();
    let mut asked = Vec::new();
    loop {
        asked.extend(std::iter::from_fn(|| planner.poll_ask()));
        if asked.is_empty() {
            break;
        }
        let ask = asked.swap_remove(rng.usize(0..asked.len()));
        let answer = match ask {
            Ask::ListFolders { folder } => Answer::Folders {
                folders: store.folders(&folder),
                folder,
            },
            Ask::ListObjects { prefix } => Answer::Objects {
                objects: store.list(std::slice::from_ref(&prefix)),
                prefix,
            },
            Ask::FetchSnapshot { object } => {
                let Body::Snapshot {
                    versions: held,
                    gzip_mtime,
                    stored,
                } = &store.objects[&object].body
                else {
                    panic!("the planner asked for {object} as a snapshot");
                };
                versions = (**held).clone();
                Answer::SnapshotFetched {
                    object,
                    gzip_mtime: Some(*gzip_mtime),
                    stored_cursor: *stored,
                }
            }
            Ask::FetchJob { object } => {
                let stored = &store.objects[&object];
                fetched_uploads.push(stored.updated);
                let Body::Job { id, held } = &stored.body else {
                    panic!("the planner asked for {object} as a job");
                };
                let (id, seq, at) = (id.clone(), held.seq, Timestamp::UNIX_EPOCH);
                let envelope = match &held.body {
                    Some(body) => Envelope::written(id, seq, at, &**body),
                    None => Envelope::deleted(id, seq, at),
                };
                Answer::JobFetched {
                    object,
                    result: Ok(envelope),
                }
            }
        };
        planner
            .handle_answer(answer)
            .expect("the simulated bucket holds only well-formed objects");
    }
    let plan = planner.finish().expect("every ask was answered");
    for envelope in plan.retrieved.jobs {
        if supersedes(envelope.seq, versions.get(&envelope.id).map(|h| h.seq)) {
            let body = envelope.body().map(Arc::from);
            let held = Held {
                seq: envelope.seq,
                body,
            };
            versions.insert(envelope.id, held);
        }
    }
    Restored {
        versions,
        snapshot: plan.snapshot,
        fetched_uploads,
    }
}
