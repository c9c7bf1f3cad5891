//! Restoring the newest state with the snapshot download and the job search
//! at the same time: the two longest parts of a restore at scale (a 1 GiB
//! snapshot, a day of 100,000 job objects) overlap instead of adding up.
//!
//! The job search needs the snapshot's time, and the snapshot says it in
//! its gzip header: the planner reads those ten bytes first and searches
//! from that time, less the clock allowance, while the whole object
//! downloads. A download served decompressed stands for the earlier of
//! the header's time and the cursor stored inside (the two reads are not
//! pinned to one generation); one whose own header holds an earlier time
//! (the object was replaced in between) has the last word. Either way, the
//! search runs again from an earlier time once it is complete. A plan never starts its job
//! objects later than its snapshot's time less the allowance.

use super::RESTORE_CLOCK_ALLOWANCE;
use super::ask::{Answer, Ask, ChosenSnapshot, PlanError, Planner, unexpected};
use super::jobs::{JobSearch, Skipped};
use crate::machine::ListedObject;
use crate::timestamp::Timestamp;

/// The snapshot downloading while job objects are fetched.
#[derive(Debug)]
pub(super) struct Overlapped {
    candidate: ListedObject,
    /// The mtime its gzip header holds.
    header_time: Timestamp,
    fetch_asked: bool,
    chosen: Option<ChosenSnapshot>,
    /// Why the snapshot downloaded is unusable, if it is.
    unusable: Option<Skipped>,
    jobs: JobSearch,
}

/// Where an overlapped restore ended up.
pub(super) enum Overlap {
    /// The search covered the snapshot's time: the plan is complete.
    Covered(ChosenSnapshot, Box<JobSearch>),
    /// The snapshot stands for an earlier time than the search started
    /// from: search again from `since`.
    SearchAgain(ChosenSnapshot, Timestamp),
    /// The snapshot is unusable: look for an older one.
    Unusable(Skipped),
}

impl Overlapped {
    /// Fetches `candidate`, whose gzip header holds `header_time`, while
    /// `search` fetches the job objects uploaded since
    /// [`job_objects_since`] that time.
    pub fn new(candidate: ListedObject, header_time: Timestamp, search: JobSearch) -> Self {
        Overlapped {
            candidate,
            header_time,
            fetch_asked: false,
            chosen: None,
            unusable: None,
            jobs: search,
        }
    }

    /// Once both the download and the search are complete: what they add
    /// up to.
    pub fn finish(self) -> Overlap {
        if let Some(unusable) = self.unusable {
            return Overlap::Unusable(unusable);
        }
        let chosen = self.chosen.expect("finished once the snapshot is fetched");
        let needed = job_objects_since(chosen.time);
        if needed < job_objects_since(self.header_time) {
            Overlap::SearchAgain(chosen, needed)
        } else {
            Overlap::Covered(chosen, Box::new(self.jobs))
        }
    }

    fn on_snapshot_fetched(&mut self, answer: Answer) -> Result<(), PlanError> {
        let answered = self.chosen.is_some() || self.unusable.is_some();
        match answer {
            Answer::SnapshotUnusable { object, why }
                if self.fetch_asked && !answered && object == self.candidate.name =>
            {
                self.unusable = Some(Skipped { object, why });
                Ok(())
            }
            Answer::SnapshotFetched {
                object,
                gzip_mtime,
                stored_cursor,
                ..
            } if self.fetch_asked && !answered && object == self.candidate.name => {
                self.chosen = Some(ChosenSnapshot {
                    object,
                    generation: None,
                    uploaded: self.candidate.updated,
                    // Served decompressed, it may still be the object whose
                    // header was read, or one that replaced it: the earlier
                    // of the two times is safe for both.
                    time: gzip_mtime.unwrap_or(self.header_time.min(stored_cursor.time)),
                });
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }
}

/// Job objects uploaded from this on are fetched on top of a snapshot taken
/// at `time`.
pub(super) fn job_objects_since(time: Timestamp) -> Timestamp {
    time - RESTORE_CLOCK_ALLOWANCE
}

impl Planner for Overlapped {
    fn poll_ask(&mut self) -> Option<Ask> {
        if !self.fetch_asked {
            self.fetch_asked = true;
            return Some(Ask::FetchSnapshot {
                object: self.candidate.name.clone(),
                stored: self.candidate.size,
                generation: None,
            });
        }
        self.jobs.poll_ask()
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        if matches!(
            answer,
            Answer::SnapshotFetched { .. } | Answer::SnapshotUnusable { .. }
        ) {
            self.on_snapshot_fetched(answer)
        } else {
            self.jobs.handle_answer(answer)
        }
    }

    fn is_complete(&self) -> bool {
        (self.chosen.is_some() || self.unusable.is_some()) && self.jobs.is_complete()
    }
}
