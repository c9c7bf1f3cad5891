//! Retrieving jobs from the bucket: the newest version of every job uploaded
//! since a time. Day folders are listed and objects fetched concurrently;
//! which version wins is decided by the change sequence inside each object,
//! never by listing order.

use futures::{StreamExt, stream};
use indicatif::ProgressBar;
use jobvault_core::object_name::{ObjectKind, parse_object_name};
use jobvault_core::retrieval::{NewestWins, uploaded_since};
use jobvault_core::{Envelope, Timestamp, job_object::decode_job_object};

use crate::listing::list_range;
use crate::store::{Store, StoreError};

/// What a retrieval found.
#[derive(Debug)]
pub struct Retrieval {
    /// The newest version of each job, sorted by job id.
    pub jobs: Vec<Envelope>,
    /// Objects skipped as corrupt (with `skip_corrupt`), each with why.
    pub skipped: Vec<String>,
    /// Job objects fetched and decoded.
    pub fetched: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{object}: {why}")]
    Corrupt { object: String, why: String },
}

/// Retrieves the newest version of every job uploaded at or after `since`.
/// A corrupt object fails the retrieval, naming it, unless `skip_corrupt`.
pub async fn retrieve(
    store: &Store,
    since: Timestamp,
    now: Timestamp,
    concurrency: usize,
    skip_corrupt: bool,
    progress: &ProgressBar,
) -> Result<Retrieval, RetrieveError> {
    let listed = list_range(store, ObjectKind::Job, since, now, concurrency).await?;
    let candidates: Vec<String> = listed
        .into_iter()
        .filter(|object| uploaded_since(object.updated, since))
        .filter(|object| parse_object_name(&object.name).is_ok_and(|p| p.kind == ObjectKind::Job))
        .map(|object| object.name)
        .collect();
    progress.set_length(candidates.len() as u64);
    let mut fetches = stream::iter(candidates)
        .map(|name| async move {
            let bytes = store.get(&name).await;
            (name, bytes)
        })
        .buffer_unordered(concurrency.max(1));
    let mut newest = NewestWins::new();
    let mut skipped = Vec::new();
    let mut fetched = 0;
    while let Some((name, bytes)) = fetches.next().await {
        progress.inc(1);
        let decoded = decode_job_object(&bytes?)
            .map_err(|e| e.to_string())
            .and_then(|envelope| holds_its_own_job(&name, envelope));
        match decoded {
            Ok(envelope) => {
                fetched += 1;
                newest.offer(envelope);
            }
            Err(why) if skip_corrupt => skipped.push(format!("{}: {why}", store.location(&name))),
            Err(why) => {
                return Err(RetrieveError::Corrupt {
                    object: store.location(&name),
                    why,
                });
            }
        }
    }
    progress.finish_and_clear();
    Ok(Retrieval {
        jobs: newest.into_sorted(),
        skipped,
        fetched,
    })
}

/// An object named after one job must hold that job.
fn holds_its_own_job(name: &str, envelope: Envelope) -> Result<Envelope, String> {
    let named = parse_object_name(name).map_err(|e| e.to_string())?.base;
    if envelope.job.id.as_str() == named {
        Ok(envelope)
    } else {
        Err(format!(
            "is named for job {named:?} but holds job {:?}",
            envelope.job.id.as_str()
        ))
    }
}
