//! Retrieving jobs from the bucket: the newest version of every job uploaded
//! since a time, as the core's [`JobSearch`] decides. Day folders are listed
//! and objects fetched concurrently.

use indicatif::ProgressBar;
use jobvault_core::restore_plan::{JobSearch, OnCorrupt};
use jobvault_core::{Envelope, Timestamp};

use crate::drive::{DriveError, Driver};
use crate::reads::Reads;
use crate::store::Store;

/// What a retrieval found.
#[derive(Debug)]
pub struct Retrieval {
    /// The newest change to each job, sorted by job id: a tombstone (no
    /// body) for a job whose newest change deleted it.
    pub jobs: Vec<Envelope>,
    /// Objects skipped as corrupt (with [`OnCorrupt::Skip`]), each with its
    /// location and why.
    pub skipped: Vec<String>,
}

/// Retrieves the newest change to every job uploaded at or after `since`:
/// its newest version, or its deletion.
/// A corrupt object fails the retrieval, naming it, unless skipped.
pub async fn retrieve(
    store: &Store,
    since: Timestamp,
    now: Timestamp,
    concurrency: usize,
    on_corrupt: OnCorrupt,
    reads: &Reads,
    progress: &ProgressBar,
) -> Result<Retrieval, DriveError> {
    let mut search = JobSearch::new(since, now, on_corrupt);
    let driver = Driver {
        progress: Some(progress),
        ..Driver::new(store, concurrency, reads)
    };
    driver.drive(&mut search).await?;
    let found = search.finish();
    Ok(Retrieval {
        jobs: found.jobs,
        skipped: found
            .skipped
            .into_iter()
            .map(|s| format!("{}: {}", store.location(&s.object), s.why))
            .collect(),
    })
}
