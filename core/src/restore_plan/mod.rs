//! Planning a restore, and every search it is made of.
//!
//! A restore is three decisions, all taken here: which snapshot to start
//! from, from when to take job objects on top of it (the `since` bound,
//! with an allowance for clocks), and which version of each job wins. A
//! snapshot that downloads unusable (its gzip stream cut short, its CRC or
//! SQLite's check failing) is passed over for the next older one and the job
//! objects since it, and the plan names it; with none left, or none in the
//! bucket, it refuses unless asked to rebuild from the job objects alone
//! (see [`without_snapshot`]), and even then only if no prune ever deleted
//! any. A
//! restore of the past ([`RestorePlanner::at`]) adds a fourth: whether the
//! bucket still holds that past at all (see [`past`]). A restore of the
//! newest state fetches its job objects while its snapshot downloads (see
//! `overlap.rs`). The
//! shell's `restore` and the simulator's check that "a restore equals the
//! database" drive this one [`RestorePlanner`]; neither has a copy of it.
//!
//! Planners are sans-I/O like the backup machine: they ask ([`Ask`]), the
//! driver answers ([`Answer`]), in any order. The searches a restore is
//! made of are planners too, and serve the other commands: [`NewestSearch`]
//! (`verify`, `status`), [`RangeListing`] (`status`, `verify`) and
//! [`JobSearch`] (`retrieve`).

mod apply;
mod ask;
mod inventory;
mod jobs;
mod newest;
mod one_ask;
mod overlap;
mod past;
mod range;
mod without_snapshot;

use std::time::Duration;

pub use apply::{RestoreTarget, apply_versions};
pub use ask::{Answer, Ask, ChosenSnapshot, PlanError, Planner};
pub use inventory::{InventoryEntry, SnapshotInventory};
pub use jobs::{JobSearch, OnCorrupt, Retrieved, Skipped};
pub use newest::NewestSearch;
pub use one_ask::OneAsk;
pub use past::check_instant;
pub use range::RangeListing;
pub use without_snapshot::WithoutSnapshot;

use crate::machine::ListedObject;
use crate::object_name::{ObjectKind, ObjectName};
use crate::timestamp::Timestamp;
use crate::{Cursor, Seq};
pub(crate) use ask::unexpected;
use overlap::{Overlap, Overlapped, job_objects_since};
pub(crate) use past::read_history;
use past::{Past, Setup};

/// How far a restore reaches back before the snapshot's time, to allow for
/// the store's clock running behind ours. Fetching a few extra versions costs
/// little: the newest-wins merge discards them.
pub const RESTORE_CLOCK_ALLOWANCE: Duration = Duration::from_secs(10 * 60);

/// What a restore starts from and what it puts on top.
#[derive(Debug)]
pub struct RestorePlan {
    /// `None` when no snapshot was usable and the job objects alone were
    /// asked for, or a restore of the past starts before the first.
    pub snapshot: Option<ChosenSnapshot>,
    /// Job objects uploaded at or after this were fetched.
    pub since: Timestamp,
    /// The newest version of each job uploaded since `since`, to apply
    /// where [`supersedes`] says so.
    pub retrieved: Retrieved,
    /// Snapshots passed over as unusable, newest first, with why.
    pub unusable: Vec<Skipped>,
}

impl RestorePlan {
    /// The cursor of the restored database, given the newest sequence in it
    /// and the change counter it holds: every job in it is in the bucket, so
    /// `jobvault run` continues after the newest sequence (or after the
    /// newest the bucket holds, for a restore of the past), and the next
    /// snapshot's time is the restore's.
    ///
    /// `leased`, for a restore of the newest state, is what the prefix's
    /// lease says the bucket may hold ([`crate::lease::LeaseState::bucket_may_hold`]):
    /// changes its daemon read and never uploaded, lost with it, count
    /// there, and a start on a database below it takes it for an older copy
    /// put back. The restore runbook's step after a crash raised that false
    /// alarm; the cursor passes them instead. A restore of the past went
    /// back on purpose, and its start must find it so: `None`.
    pub fn cursor(
        &self,
        newest_seq: Seq,
        counter: Seq,
        leased: Option<Seq>,
        now: Timestamp,
    ) -> Cursor {
        Cursor {
            seq: counter
                .max(newest_seq)
                .max(self.retrieved.newest_seen)
                .max(leased.unwrap_or(0)),
            time: now,
        }
    }
}

impl RestorePlan {
    /// For a restore of the past: the jobs a later version in the bucket
    /// would win over, with that version's sequence. Left as restored, the
    /// next plain restore would bring the later, abandoned versions back, so
    /// each restored row or tombstone that [`supersedes`] says loses to its
    /// bucket version (and each job absent then, as a tombstone) is written
    /// again as a new change, after the restored cursor, for `jobvault run`
    /// to upload. Empty for a restore of the newest state.
    pub fn abandoned(&self) -> impl Iterator<Item = (&crate::JobId, Seq)> {
        self.retrieved
            .newest_by_job
            .iter()
            .map(|(id, seq)| (id, *seq))
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

/// A gzip mtime that can be: not after the object was uploaded (with the
/// clock allowance). The header is outside gzip's CRC and SQLite's checks,
/// and one changed bit put a time days ahead, leaving out the job objects
/// between (a hostile trial found it); such a header counts as none, and
/// the cursor time stored inside stands instead.
fn possible(gzip_mtime: Option<Timestamp>, uploaded: Timestamp) -> Option<Timestamp> {
    gzip_mtime.filter(|mtime| *mtime <= uploaded + RESTORE_CLOCK_ALLOWANCE)
}

#[derive(Debug)]
enum Phase {
    /// Restoring the past: whether the bucket keeps versions, and how far
    /// back its history reaches.
    Setup(Setup),
    FindNewest(NewestSearch),
    /// Restoring from a snapshot named by the user: its listing, for when
    /// it was uploaded.
    FindNamed {
        object: ObjectName,
        asked: bool,
        listed: Vec<ListedObject>,
    },
    /// Restoring the newest state: the newest snapshot's gzip header, for
    /// the time to search job objects from while it downloads.
    ReadTime {
        candidate: ListedObject,
        asked: bool,
    },
    Overlapped(Overlapped),
    /// Restoring the past: every snapshot, to pick the base from.
    ListSnapshots(RangeListing),
    /// Candidates, oldest first: the last is fetched, and taken if it holds
    /// only what the restore may hold.
    FetchSnapshot {
        candidates: Vec<ListedObject>,
        asked: bool,
    },
    Jobs(JobSearch),
    /// No snapshot is usable and the job objects alone were asked for:
    /// whether a prune ever deleted job objects, which they would then lack.
    JobsAlone {
        asked: bool,
    },
}

/// Plans the restore of a bucket: its newest state, or its state at an
/// instant ([`RestorePlanner::at`]).
#[derive(Debug)]
pub struct RestorePlanner {
    now: Timestamp,
    on_corrupt: OnCorrupt,
    without_snapshot: WithoutSnapshot,
    past: Option<Past>,
    phase: Phase,
    snapshot: Option<ChosenSnapshot>,
    since: Timestamp,
    unusable: Vec<Skipped>,
    /// The snapshot was named: one found unusable fails the plan rather
    /// than be passed over.
    named: bool,
}

impl RestorePlanner {
    pub fn new(now: Timestamp, on_corrupt: OnCorrupt) -> Self {
        RestorePlanner {
            now,
            on_corrupt,
            without_snapshot: WithoutSnapshot::default(),
            past: None,
            phase: Phase::FindNewest(NewestSearch::new(ObjectKind::Snapshot)),
            snapshot: None,
            since: Timestamp::UNIX_EPOCH,
            unusable: Vec::new(),
            named: false,
        }
    }

    /// Plans the restore from the snapshot `object` (an object name such as
    /// `db-backup/2026/12/01/nightly.bdb`) and the job objects uploaded
    /// since its time: a state other than the newest, chosen from
    /// [`SnapshotInventory`]. Refused if there is no such snapshot or it is
    /// unusable.
    pub fn from_snapshot(object: ObjectName, now: Timestamp, on_corrupt: OnCorrupt) -> Self {
        RestorePlanner {
            phase: Phase::FindNamed {
                object,
                asked: false,
                listed: Vec::new(),
            },
            named: true,
            ..RestorePlanner::new(now, on_corrupt)
        }
    }

    /// Plans the restore of the database as it was at `at`: the newest
    /// snapshot holding no change after `at`, then the newest version of
    /// each job committed at or before `at`.
    pub fn at(at: Timestamp, now: Timestamp, on_corrupt: OnCorrupt) -> Self {
        RestorePlanner {
            past: Some(Past::new(at)),
            phase: Phase::Setup(Setup::default()),
            ..RestorePlanner::new(now, on_corrupt)
        }
    }

    /// What to do when no snapshot is usable (by default, refuse).
    #[must_use]
    pub fn without_snapshot(self, without_snapshot: WithoutSnapshot) -> Self {
        RestorePlanner {
            without_snapshot,
            ..self
        }
    }

    /// The plan, once [`Planner::is_complete`]. A bucket that gave no
    /// snapshot and no job version (of the instant asked for) has nothing
    /// to restore: an empty database is never passed off as its backup.
    pub fn finish(self) -> Result<RestorePlan, PlanError> {
        let plan = match self.phase {
            Phase::Jobs(jobs) if jobs.is_complete() => RestorePlan {
                snapshot: self.snapshot,
                since: self.since,
                retrieved: jobs.finish(),
                unusable: self.unusable,
            },
            phase => return Err(PlanError::Unexpected(format!("finish while in {phase:?}"))),
        };
        if plan.snapshot.is_none() && plan.retrieved.jobs.is_empty() && !plan.unusable.is_empty() {
            return Err(PlanError::NotRestorable(format!(
                "every snapshot is unusable ({}) and no job object was found",
                without_snapshot::named(&plan.unusable)
            )));
        }
        if plan.snapshot.is_none()
            && self.without_snapshot == WithoutSnapshot::Refuse
            && !plan.retrieved.jobs.is_empty()
        {
            let jobs = plan.retrieved.jobs.len();
            return Err(match &self.past {
                None => without_snapshot::none_in_bucket(jobs),
                Some(past) => without_snapshot::none_for_instant(past, &plan.unusable, jobs),
            });
        }
        if plan.snapshot.is_none() && plan.retrieved.jobs.is_empty() {
            return Err(PlanError::NothingToRestore(match &self.past {
                None => "no snapshot and no job object found (looked under db-backup/ and \
                         job-backup/)"
                    .to_owned(),
                Some(past) => format!(
                    "no snapshot and no job version from at or before {} found (looked under \
                     db-backup/ and job-backup/): the instant is before the first backup",
                    past.at
                ),
            }));
        }
        Ok(plan)
    }

    fn retrieve_since(&mut self, since: Timestamp) {
        self.since = since;
        let jobs = match &self.past {
            None => JobSearch::new(since, self.now, self.on_corrupt),
            Some(past) => JobSearch::at(since, self.now, past.at, past.versioned, self.on_corrupt),
        };
        self.phase = Phase::Jobs(jobs);
    }

    /// Fetches the next candidate, or, with none left, starts from no
    /// snapshot where the past, or the choice made
    /// [`without_snapshot`](Self::without_snapshot), allows that. With
    /// none in the bucket and the job objects alone not asked for, they are
    /// still fetched: [`finish`](Self::finish) refuses if there are any,
    /// and says there is nothing to restore if not.
    fn next_candidate(&mut self, mut candidates: Vec<ListedObject>) -> Result<(), PlanError> {
        if candidates.is_empty() {
            match (&self.past, self.without_snapshot) {
                (Some(past), _) => past.may_start_from_nothing()?,
                (None, WithoutSnapshot::FromJobObjects) => {
                    self.phase = Phase::JobsAlone { asked: false };
                    return Ok(());
                }
                (None, WithoutSnapshot::Refuse) if !self.unusable.is_empty() => {
                    return Err(without_snapshot::every_unusable(&self.unusable));
                }
                (None, WithoutSnapshot::Refuse) => {}
            }
            self.retrieve_since(Timestamp::UNIX_EPOCH);
        } else {
            self.may_fall_back()?;
            candidates.sort_by(|a, b| (a.updated, &a.name).cmp(&(b.updated, &b.name)));
            self.phase = Phase::FetchSnapshot {
                candidates,
                asked: false,
            };
        }
        Ok(())
    }

    fn on_snapshot_fetched(&mut self, answer: Answer) -> Result<(), PlanError> {
        let Phase::FetchSnapshot {
            candidates,
            asked: true,
        } = &mut self.phase
        else {
            return Err(unexpected(&answer));
        };
        if let Answer::SnapshotUnusable { object, why } = answer {
            if candidates.pop_if(|c| c.name == object).is_none() {
                return Err(PlanError::Unexpected(format!("unusable {object}")));
            }
            let rest = std::mem::take(candidates);
            if self.named {
                return Err(PlanError::NotRestorable(format!(
                    "the snapshot {object} is unusable: {why}"
                )));
            }
            self.unusable.push(Skipped { object, why });
            if self.past.is_some() {
                return self.next_candidate(rest);
            }
            self.find_older();
            return Ok(());
        }
        let Answer::SnapshotFetched {
            object,
            gzip_mtime,
            stored_cursor,
            newest_change,
        } = answer
        else {
            return Err(unexpected(&answer));
        };
        let Some(candidate) = candidates.pop_if(|c| c.name == object) else {
            return Err(PlanError::Unexpected(format!("fetched {object}")));
        };
        if let Some(past) = &mut self.past
            && !past.takes(newest_change)
        {
            let rest = std::mem::take(candidates);
            return self.next_candidate(rest);
        }
        let time = snapshot_time(possible(gzip_mtime, candidate.updated), stored_cursor);
        self.snapshot = Some(ChosenSnapshot {
            object,
            generation: candidate.generation,
            uploaded: candidate.updated,
            time,
        });
        self.retrieve_since(job_objects_since(time));
        Ok(())
    }

    /// With the newest snapshot's header time, the job search starts while
    /// the snapshot downloads; without one (served decompressed), the
    /// snapshot is fetched first for the cursor time inside it.
    fn on_snapshot_time(&mut self, answer: Answer) -> Result<(), PlanError> {
        let Phase::ReadTime {
            candidate,
            asked: true,
        } = &self.phase
        else {
            return Err(unexpected(&answer));
        };
        let Answer::SnapshotTime {
            object,
            gzip_mtime,
            generation: None,
        } = &answer
        else {
            return Err(unexpected(&answer));
        };
        if *object != candidate.name {
            return Err(unexpected(&answer));
        }
        let candidate = candidate.clone();
        match possible(*gzip_mtime, candidate.updated) {
            Some(header_time) => {
                self.since = job_objects_since(header_time);
                let jobs = JobSearch::new(self.since, self.now, self.on_corrupt);
                self.phase = Phase::Overlapped(Overlapped::new(candidate, header_time, jobs));
                Ok(())
            }
            None => self.next_candidate(vec![candidate]),
        }
    }

    fn on_overlapped(&mut self, answer: Answer) -> Result<(), PlanError> {
        let Phase::Overlapped(overlapped) = &mut self.phase else {
            return Err(unexpected(&answer));
        };
        overlapped.handle_answer(answer)?;
        if !overlapped.is_complete() {
            return Ok(());
        }
        let Phase::Overlapped(overlapped) =
            std::mem::replace(&mut self.phase, Phase::Setup(Setup::default()))
        else {
            unreachable!()
        };
        match overlapped.finish() {
            Overlap::Covered(chosen, jobs) => {
                self.snapshot = Some(chosen);
                self.phase = Phase::Jobs(*jobs);
            }
            Overlap::SearchAgain(chosen, since) => {
                self.snapshot = Some(chosen);
                self.retrieve_since(since);
            }
            Overlap::Unusable(unusable) if self.named => {
                return Err(PlanError::NotRestorable(format!(
                    "the snapshot {} is unusable: {}",
                    unusable.object, unusable.why
                )));
            }
            Overlap::Unusable(unusable) => {
                self.unusable.push(unusable);
                self.find_older();
            }
        }
        Ok(())
    }

    /// The named snapshot's listing, a page at a time: once complete, its
    /// header is read as the newest's would be.
    fn on_named_listed(&mut self, answer: Answer) -> Result<(), PlanError> {
        let Phase::FindNamed {
            object,
            asked: true,
            listed,
        } = &mut self.phase
        else {
            return Err(unexpected(&answer));
        };
        let Answer::Objects {
            prefix,
            objects,
            more,
        } = answer
        else {
            return Err(unexpected(&answer));
        };
        if prefix != object.as_str() {
            return Err(PlanError::Unexpected(format!("listing of {prefix}")));
        }
        listed.extend(objects);
        if more {
            return Ok(());
        }
        let Some(candidate) = listed.iter().find(|o| o.name == *object).cloned() else {
            return Err(PlanError::NotRestorable(format!(
                "no live snapshot {object} in the bucket (`jobvault snapshots` lists every one; \
                 on a bucket with object versioning, `gcloud storage cp \
                 'gs://…/NAME#GENERATION' gs://…/NAME` makes a noncurrent one live)"
            )));
        };
        self.phase = Phase::ReadTime {
            candidate,
            asked: false,
        };
        Ok(())
    }

    /// Before falling back to an older snapshot: refused past one where the
    /// backups started again (see [`without_snapshot::is_restart`]), unless
    /// the job objects alone were asked for.
    fn may_fall_back(&self) -> Result<(), PlanError> {
        match self
            .unusable
            .iter()
            .find(|u| without_snapshot::is_restart(&u.object))
        {
            Some(restart) if self.without_snapshot == WithoutSnapshot::Refuse => {
                Err(without_snapshot::restart_unusable(restart))
            }
            _ => Ok(()),
        }
    }

    /// Restoring the newest state: looks for the newest snapshot not found
    /// unusable yet.
    fn find_older(&mut self) {
        let excluded = self.unusable.iter().map(|u| u.object.clone()).collect();
        self.phase = Phase::FindNewest(NewestSearch::excluding(ObjectKind::Snapshot, excluded));
    }

    /// With no usable snapshot: the job objects alone, if no prune deleted
    /// any.
    fn on_history(&mut self, answer: Answer) -> Result<(), PlanError> {
        let (Phase::JobsAlone { asked: true }, Answer::History { bytes }) = (&self.phase, &answer)
        else {
            return Err(unexpected(&answer));
        };
        if let Some(from) = read_history(bytes.as_deref())? {
            let found = match self.unusable.len() {
                0 => "no snapshot in the bucket".to_owned(),
                n => format!(
                    "no usable snapshot ({n} unusable: {})",
                    without_snapshot::named(&self.unusable)
                ),
            };
            return Err(PlanError::NotRestorable(format!(
                "{found}, and a prune has deleted the job objects a restore without one needs \
                 (the bucket restored {} and later)",
                from.rfc3339()
            )));
        }
        self.retrieve_since(Timestamp::UNIX_EPOCH);
        Ok(())
    }
}

impl Planner for RestorePlanner {
    fn poll_ask(&mut self) -> Option<Ask> {
        match &mut self.phase {
            Phase::Setup(setup) => setup.poll_ask(),
            Phase::FindNewest(search) => search.poll_ask(),
            Phase::FindNamed { object, asked, .. } => (!*asked).then(|| {
                *asked = true;
                Ask::ListObjects {
                    prefix: object.to_string(),
                    versions: false,
                }
            }),
            Phase::ReadTime { candidate, asked } => (!*asked).then(|| {
                *asked = true;
                Ask::SnapshotTime {
                    object: candidate.name.clone(),
                    generation: None,
                }
            }),
            Phase::Overlapped(overlapped) => overlapped.poll_ask(),
            Phase::ListSnapshots(listing) => listing.poll_ask(),
            Phase::FetchSnapshot { candidates, asked } => (!*asked).then(|| {
                *asked = true;
                let candidate = candidates.last().expect("never empty");
                Ask::FetchSnapshot {
                    object: candidate.name.clone(),
                    stored: candidate.size,
                    generation: candidate.generation,
                }
            }),
            Phase::Jobs(jobs) => jobs.poll_ask(),
            Phase::JobsAlone { asked } => (!*asked).then(|| {
                *asked = true;
                Ask::ReadHistory
            }),
        }
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        match &mut self.phase {
            Phase::Setup(setup) => {
                setup.handle_answer(answer)?;
                if let (Some(versioned), Some(from)) = (setup.versioned, setup.restorable_from) {
                    let past = self.past.as_mut().expect("only the past sets up");
                    past.set_up(versioned, from)?;
                    // With versioning, a snapshot overwritten or deleted
                    // since may be the one the instant needs.
                    let (since, now) = (Timestamp::UNIX_EPOCH, self.now);
                    let listing = if versioned {
                        RangeListing::with_versions(ObjectKind::Snapshot, since, now)
                    } else {
                        RangeListing::new(ObjectKind::Snapshot, since, now)
                    };
                    self.phase = Phase::ListSnapshots(listing);
                }
                Ok(())
            }
            Phase::FindNewest(search) => {
                search.handle_answer(answer)?;
                if search.is_complete() {
                    match search.newest().cloned() {
                        Some(candidate) => {
                            self.may_fall_back()?;
                            self.phase = Phase::ReadTime {
                                candidate,
                                asked: false,
                            };
                        }
                        None => self.next_candidate(Vec::new())?,
                    }
                }
                Ok(())
            }
            Phase::ListSnapshots(listing) => {
                listing.handle_answer(answer)?;
                if listing.is_complete() {
                    let Phase::ListSnapshots(listing) =
                        std::mem::replace(&mut self.phase, Phase::Setup(Setup::default()))
                    else {
                        unreachable!()
                    };
                    let past = self.past.as_ref().expect("only the past lists snapshots");
                    self.next_candidate(past.candidates(listing.into_objects()))?;
                }
                Ok(())
            }
            Phase::FindNamed { .. } => self.on_named_listed(answer),
            Phase::ReadTime { .. } => self.on_snapshot_time(answer),
            Phase::Overlapped(_) => self.on_overlapped(answer),
            Phase::FetchSnapshot { .. } => self.on_snapshot_fetched(answer),
            Phase::Jobs(jobs) => jobs.handle_answer(answer),
            Phase::JobsAlone { .. } => self.on_history(answer),
        }
    }

    fn is_complete(&self) -> bool {
        matches!(&self.phase, Phase::Jobs(jobs) if jobs.is_complete())
    }
}
