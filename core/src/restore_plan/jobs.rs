//! Retrieving jobs: the newest version of every job uploaded since a time.
//!
//! Which version wins is decided by the change sequence inside each object,
//! never by listing order (the original took whichever came last). A job
//! object is fetched as soon as the listing of its day folder arrives.
//!
//! Searching the past ([`JobSearch::at`]) fetches every generation of each
//! job object, since one object per job per day keeps only the day's last
//! version live, and keeps only versions committed at or before the
//! instant. Without object versioning that past is gone once a later upload
//! overwrote it; the search refuses rather than return a mix of then and now.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::ask::{Answer, Ask, PlanError, Planner, unexpected};
use super::range::RangeListing;
use crate::Seq;
use crate::envelope::Envelope;
use crate::job_id::JobId;
use crate::object_name::{ObjectKind, ObjectName, parse_object_name};
use crate::retrieval::{NewestWins, uploaded_since};
use crate::timestamp::Timestamp;

/// What to do with an object that does not hold a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorrupt {
    /// Fail the whole retrieval, naming the object.
    Fail,
    /// Leave it out, and say so in [`JobSearch::skipped`].
    Skip,
}

/// Retrieves the newest version of every job uploaded at or after `since`.
#[derive(Debug)]
pub struct JobSearch {
    since: Timestamp,
    on_corrupt: OnCorrupt,
    listing: RangeListing,
    fetches: VecDeque<Ask>,
    /// Objects (and generations) whose fetch is queued or in flight.
    fetching: BTreeSet<(ObjectName, Option<i64>)>,
    newest: NewestWins,
    skipped: Vec<Skipped>,
    newest_seen: Seq,
    newest_by_job: BTreeMap<JobId, Seq>,
    history: Option<History>,
}

/// The instant a search of the past restores to.
#[derive(Debug, Clone, Copy)]
struct History {
    at: Timestamp,
    /// The bucket keeps noncurrent generations.
    versioned: bool,
}

/// An object left out because it does not hold a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub object: ObjectName,
    pub why: String,
}

/// What a [`JobSearch`] found.
#[derive(Debug, Default)]
pub struct Retrieved {
    /// The newest change to each job, sorted by job id: a tombstone for a job
    /// whose newest change deleted it.
    pub jobs: Vec<Envelope>,
    /// Objects left out as corrupt (with [`OnCorrupt::Skip`]).
    pub skipped: Vec<Skipped>,
    /// The newest sequence of any version fetched, kept or not: a database
    /// restored to the past numbers its next change after it, so that no
    /// sequence in the bucket is used twice.
    pub newest_seen: Seq,
    /// A search of the past ([`JobSearch::at`]): the newest sequence of each
    /// job among the versions fetched, kept or not. Empty otherwise.
    pub newest_by_job: BTreeMap<JobId, Seq>,
}

impl Retrieved {
    /// The jobs that exist, sorted by id: a deleted job is not brought back.
    pub fn living(&self) -> impl Iterator<Item = &Envelope> {
        self.jobs
            .iter()
            .filter(|envelope| envelope.body().is_some())
    }
}

impl JobSearch {
    pub fn new(since: Timestamp, now: Timestamp, on_corrupt: OnCorrupt) -> Self {
        JobSearch {
            since,
            on_corrupt,
            listing: RangeListing::new(ObjectKind::Job, since, now),
            fetches: VecDeque::new(),
            fetching: BTreeSet::new(),
            newest: NewestWins::new(),
            skipped: Vec::new(),
            newest_seen: 0,
            newest_by_job: BTreeMap::new(),
            history: None,
        }
    }

    /// Retrieves, of every job, the newest version committed at or before
    /// `at` among those uploaded since `since`: from every generation when
    /// the bucket is `versioned`. Without versioning, a job object uploaded
    /// after `at` makes the search fail: it may have replaced the version
    /// `at` asks for.
    pub fn at(
        since: Timestamp,
        now: Timestamp,
        at: Timestamp,
        versioned: bool,
        on_corrupt: OnCorrupt,
    ) -> Self {
        let listing = if versioned {
            RangeListing::with_versions(ObjectKind::Job, since, now)
        } else {
            RangeListing::new(ObjectKind::Job, since, now)
        };
        JobSearch {
            listing,
            history: Some(History { at, versioned }),
            ..JobSearch::new(since, now, on_corrupt)
        }
    }

    pub fn finish(self) -> Retrieved {
        Retrieved {
            jobs: self.newest.into_sorted(),
            skipped: self.skipped,
            newest_seen: self.newest_seen,
            newest_by_job: self.newest_by_job,
        }
    }

    fn on_fetched(
        &mut self,
        object: ObjectName,
        generation: Option<i64>,
        result: Result<Envelope, String>,
    ) -> Result<(), PlanError> {
        if !self.fetching.remove(&(object.clone(), generation)) {
            return Err(unexpected(&Answer::JobFetched {
                object,
                generation,
                result,
            }));
        }
        match result.and_then(|envelope| holds_its_own_job(&object, envelope)) {
            Ok(envelope) => self.take(&object, envelope),
            Err(why) => match self.on_corrupt {
                OnCorrupt::Skip => {
                    self.skipped.push(Skipped { object, why });
                    Ok(())
                }
                OnCorrupt::Fail => Err(PlanError::Corrupt { object, why }),
            },
        }
    }
}

impl JobSearch {
    /// Takes in a version that holds its job. In a search of the past, only
    /// one committed by the instant competes, and the newest of each job is
    /// noted whatever its time.
    fn take(&mut self, object: &str, envelope: Envelope) -> Result<(), PlanError> {
        self.newest_seen = self.newest_seen.max(envelope.seq);
        let Some(History { at, versioned }) = self.history else {
            self.newest.offer(envelope);
            return Ok(());
        };
        if !versioned && envelope.modified > at {
            // Uploaded by the store's clock before `at`, committed after it
            // by the database's: it replaced what `at` asks for.
            return Err(overwritten(object, envelope.modified, at));
        }
        let newest = self.newest_by_job.entry(envelope.id.clone()).or_default();
        *newest = (*newest).max(envelope.seq);
        if envelope.modified <= at {
            self.newest.offer(envelope);
        }
        Ok(())
    }
}

impl Planner for JobSearch {
    fn poll_ask(&mut self) -> Option<Ask> {
        self.listing.poll_ask().or_else(|| self.fetches.pop_front())
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        if let Answer::JobFetched {
            object,
            generation,
            result,
        } = answer
        {
            return self.on_fetched(object, generation, result);
        }
        for object in self.listing.take_answer(answer)? {
            let is_job = parse_object_name(&object.name).is_ok_and(|p| p.kind == ObjectKind::Job);
            if !is_job || !uploaded_since(object.updated, self.since) {
                continue;
            }
            if let Some(History {
                at,
                versioned: false,
            }) = self.history
                && object.updated > at
            {
                return Err(overwritten(&object.name, object.updated, at));
            }
            if self
                .fetching
                .insert((object.name.clone(), object.generation))
            {
                self.fetches.push_back(Ask::FetchJob {
                    object: object.name,
                    generation: object.generation,
                });
            }
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.listing.is_complete() && self.fetching.is_empty()
    }
}

/// Without versioning, `object` holds a version written at `when`, after
/// `at`: the one `at` asks for is gone.
fn overwritten(object: &str, when: Timestamp, at: Timestamp) -> PlanError {
    PlanError::NotRestorable(format!(
        "{object} holds a version written at {}, after {}, and the bucket keeps no object \
         versions, so the job's state at {} is lost; turn versioning on \
         (gcloud storage buckets update BUCKET --versioning) to restore past instants",
        when.rfc3339(),
        at.rfc3339(),
        at.rfc3339(),
    ))
}

/// An object named after one job must hold that job.
fn holds_its_own_job(name: &str, envelope: Envelope) -> Result<Envelope, String> {
    let named = parse_object_name(name).map_err(|e| e.to_string())?.base;
    if envelope.id.as_str() == named {
        Ok(envelope)
    } else {
        Err(format!(
            "is named for job {named:?} but holds job {:?}",
            envelope.id.as_str()
        ))
    }
}
