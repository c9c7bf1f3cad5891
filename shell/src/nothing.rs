//! A bucket prefix that holds no backup, said as such.
//!
//! A restore of a mistyped prefix used to write an empty database and exit
//! 0: a typo in a runbook passed for a restore. Finding nothing is an error
//! of its own, with its own exit code, one line naming the prefix, what was
//! looked for, and the prefixes beside it that do hold backups.

use std::fmt;

use jobvault_core::FailureKind;
use jobvault_core::object_name::{JOB_DIR, SNAPSHOT_DIR};

use crate::reads::Reads;
use crate::store::{Store, StoreError};

/// The exit status of a command that found nothing to work on.
pub const NOTHING_FOUND_EXIT: u8 = 3;

/// How many neighbouring prefixes a message names at most.
const NEIGHBOURS_NAMED: usize = 3;

/// Nothing to restore, retrieve or verify where the command looked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NothingFound {
    /// The bucket URL.
    pub url: String,
    /// What was looked for and not found.
    pub why: String,
    /// Whether the prefix holds no backup at all (rather than none of
    /// what was asked for), not even a noncurrent generation of one.
    pub empty: bool,
    /// The prefix holds no live backup, but noncurrent generations of some:
    /// objects deleted or overwritten that a versioned bucket keeps. A
    /// restore said "nothing found" and `--if-replica-exists` started an
    /// empty database, with the backups one `gcloud storage cp` away.
    pub noncurrent: bool,
    /// Prefixes beside it that hold backups.
    pub neighbours: Vec<String>,
    /// The bucket itself does not exist: a typo or a missing set-up, never
    /// "no backup yet".
    pub no_bucket: bool,
}

impl fmt::Display for NothingFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: nothing found: {}", self.url, self.why)?;
        if self.noncurrent {
            return write!(
                f,
                "; only noncurrent generations are left (objects deleted or overwritten, kept by \
                 the bucket's versioning): `jobvault snapshots` lists them, and `gcloud storage cp \
                 '{0}/NAME#GENERATION' {0}/NAME` makes one live again",
                self.url.trim_end_matches('/')
            );
        }
        match self.neighbours.as_slice() {
            [] if self.empty => write!(f, "; no prefix beside it holds backups either"),
            [] => Ok(()),
            found => write!(
                f,
                "; prefixes beside it that hold backups: {}",
                found.join(", ")
            ),
        }
    }
}

impl NothingFound {
    /// Nothing found where `store` looked, for `why`; if the prefix holds
    /// no backup at all, the prefixes beside it that do are looked up (a
    /// failure to look only leaves them out).
    pub async fn in_store(store: &Store, reads: &Reads, why: String) -> Self {
        let no_live = match holds_backups(store, reads).await {
            Ok(holds) => !holds,
            Err(e) => e.kind == FailureKind::NotFound,
        };
        let noncurrent = no_live && holds_noncurrent(store, reads).await;
        let empty = no_live && !noncurrent;
        let neighbours = if empty {
            store
                .neighbours_with_backups(NEIGHBOURS_NAMED)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        NothingFound {
            url: store.url().to_string(),
            why,
            empty,
            noncurrent,
            neighbours,
            no_bucket: false,
        }
    }
}

/// Checks that the bucket (or directory) can be read. One that does not
/// exist holds nothing: that is the inner error, for its own exit code.
pub async fn check_store(
    store: &Store,
    reads: &Reads,
) -> Result<Result<(), NothingFound>, StoreError> {
    match reads.read(|| store.check()).await {
        Ok(()) => Ok(Ok(())),
        Err(e) if e.kind == FailureKind::NotFound => Ok(Err(NothingFound {
            no_bucket: true,
            ..NothingFound::in_store(store, reads, e.message).await
        })),
        Err(e) => Err(e),
    }
}

/// Whether the prefix holds any backup: one listing of the folders at its
/// top, for `db-backup/` or `job-backup/`.
pub async fn holds_backups(store: &Store, reads: &Reads) -> Result<bool, StoreError> {
    let top = reads.read(|| store.list_folders("", false)).await?;
    Ok(are_backups(&top))
}

/// Whether the prefix's top holds backup folders in a listing of every
/// generation; a failure to look says no (the message only leaves out the
/// hint).
async fn holds_noncurrent(store: &Store, reads: &Reads) -> bool {
    reads
        .read(|| store.list_folders("", true))
        .await
        .is_ok_and(|top| are_backups(&top))
}

fn are_backups(top: &[String]) -> bool {
    top.iter().any(|folder| {
        folder.trim_end_matches('/') == SNAPSHOT_DIR || folder.trim_end_matches('/') == JOB_DIR
    })
}
