//! Proving a backup sound before it is needed: the newest snapshot is
//! downloaded and checked (gzip CRC and header, SQLite integrity, every job
//! decodes), and a sample of recent job objects is decoded.

use std::time::Duration;

use futures::{StreamExt, stream};
use jobvault_core::Timestamp;
use jobvault_core::checks::Check;
use jobvault_core::job_object::decode_job_object;
use jobvault_core::object_name::ObjectName;
use jobvault_core::object_name::{ObjectKind, day_prefix, parse_object_name};
use jobvault_crypt::OpenError;

use crate::db::JobDb;
use crate::drive::{DriveError, find_newest, list_range};
use crate::reads::Reads;
use crate::restore::{RestoreError, TempDatabase, download_snapshot};
use crate::store::Store;

const DAY: Duration = Duration::from_secs(86_400);

/// Runs every check. Only a store that cannot be read at all is an error;
/// anything wrong with the backups is a failed check.
pub async fn verify(
    store: &Store,
    now: Timestamp,
    concurrency: usize,
    sample: usize,
    reads: &Reads,
) -> Result<Vec<Check>, DriveError> {
    reads.read(|| store.check()).await?;
    let mut checks = Vec::new();
    match find_newest(store, ObjectKind::Snapshot, reads).await? {
        None => checks.push(Check::failed(
            "snapshot",
            "no snapshot in the bucket".to_owned(),
        )),
        Some(newest) => checks.extend(check_snapshot(store, &newest.name, reads).await?),
    }
    checks.extend(check_recent_jobs(store, now, concurrency, sample, reads).await?);
    Ok(checks)
}

async fn check_snapshot(
    store: &Store,
    object: &str,
    reads: &Reads,
) -> Result<Vec<Check>, DriveError> {
    let location = store.location(object);
    let mut checks = Vec::new();
    // Removed with SQLite's files beside it, however the checks end.
    let copy = match TempDatabase::in_tmpdir() {
        Ok(copy) => copy,
        Err(e) => {
            checks.push(Check::failed(
                location,
                format!("cannot create a temporary file: {e}"),
            ));
            return Ok(checks);
        }
    };
    let downloaded = match download_snapshot(store, object, None, copy.path(), reads).await {
        Ok(downloaded) => downloaded,
        Err(RestoreError::Store(e)) => return Err(e.into()),
        Err(e) => {
            let what = if e.open_error().is_some() {
                "encryption"
            } else {
                "gzip stream"
            };
            checks.push(Check::failed(format!("{location} {what}"), e.why()));
            return Ok(checks);
        }
    };
    if downloaded.sealed {
        checks.push(Check::passed(
            format!("{location} encryption"),
            "age, opened and authenticated".to_owned(),
        ));
    }
    let base = object.rsplit('/').next().unwrap_or(object);
    match downloaded.gzip {
        Some((name, mtime)) => {
            checks.push(Check::passed(
                format!("{location} gzip stream"),
                format!("{} bytes, CRC ok", downloaded.received),
            ));
            let header = if name != base {
                Err(format!("the gzip header names {name:?}, not {base:?}"))
            } else {
                match mtime {
                    Some(mtime) => Ok(format!("name {name}, mtime {mtime}")),
                    None => Err("the gzip header has no mtime".to_owned()),
                }
            };
            checks.push(Check::new(format!("{location} gzip header"), header));
        }
        None => checks.push(Check::passed(
            format!("{location} gzip stream"),
            "served decompressed by the store; its CRC was checked there".to_owned(),
        )),
    }
    let path = copy.path().to_owned();
    let database = tokio::task::spawn_blocking(move || database_checks(&path, &location))
        .await
        .unwrap_or_else(|e| vec![Check::failed("database checks", e.to_string())]);
    checks.extend(database);
    Ok(checks)
}

/// Opens the downloaded copy: SQLite's integrity check, then every job.
fn database_checks(path: &std::path::Path, location: &str) -> Vec<Check> {
    let db = match JobDb::open(path) {
        Ok(db) => db,
        Err(e) => return vec![Check::failed(format!("{location} SQLite"), e.to_string())],
    };
    let integrity = db
        .integrity_check()
        .map_err(|e| e.to_string())
        .and_then(|result| result)
        .map(|()| "ok".to_owned());
    let jobs = db
        .check_every_job()
        .map(|n| format!("{n} jobs decode"))
        .map_err(|e| e.to_string());
    vec![
        Check::new(format!("{location} SQLite integrity_check"), integrity),
        Check::new(format!("{location} jobs"), jobs),
    ]
}

/// Decodes up to `sample` of the most recently uploaded job objects.
async fn check_recent_jobs(
    store: &Store,
    now: Timestamp,
    concurrency: usize,
    sample: usize,
    reads: &Reads,
) -> Result<Vec<Check>, DriveError> {
    let mut recent = list_range(store, ObjectKind::Job, now - DAY, now, concurrency, reads).await?;
    if recent.is_empty() {
        // Nothing in the last day: sample the day of the newest job upload.
        if let Some(newest) = find_newest(store, ObjectKind::Job, reads).await? {
            let day = day_prefix(ObjectKind::Job, newest.updated);
            recent = reads.read(|| store.list(&day)).await?;
        }
    }
    recent.retain(|o| parse_object_name(&o.name).is_ok_and(|p| p.kind == ObjectKind::Job));
    if recent.is_empty() {
        return Ok(vec![Check::passed(
            "job objects",
            "none in the bucket yet".to_owned(),
        )]);
    }
    recent.sort_by_key(|o| std::cmp::Reverse(o.updated));
    recent.truncate(sample);
    let total = recent.len();
    let results: Vec<(ObjectName, Result<(), Unread>)> = stream::iter(recent)
        .map(|object| async move {
            let decoded = match store.get(&object.name).await {
                Ok(bytes) => reads
                    .opened(&bytes)
                    .map_err(Unread::from)
                    .and_then(|plain| {
                        decode_job_object(&plain).map_err(|e| Unread::Undecodable(e.to_string()))
                    })
                    .map(drop),
                Err(e) => Err(Unread::Undecodable(e.message)),
            };
            (object.name, decoded)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let (mut undecodable, mut locked) = (0, 0);
    let mut checks: Vec<Check> = Vec::new();
    for (name, result) in results {
        match result {
            Ok(()) => {}
            // One names the keys; the rest would say the same.
            Err(Unread::Locked(why)) => {
                locked += 1;
                if locked == 1 {
                    checks.push(Check::failed(store.location(&name), why));
                }
            }
            Err(Unread::Undecodable(why)) => {
                undecodable += 1;
                checks.push(Check::failed(store.location(&name), why));
            }
        }
    }
    let summary = match (undecodable, locked) {
        (0, 0) => Ok(format!("{total} of the newest decode")),
        (n, 0) => Err(format!("{n} of the {total} newest do not decode")),
        (0, k) => Err(format!(
            "{k} of the {total} newest are encrypted to a key no --identity given holds"
        )),
        (n, k) => Err(format!(
            "{n} of the {total} newest do not decode, and {k} are encrypted to a key no --identity given holds"
        )),
    };
    checks.insert(0, Check::new("recent job objects", summary));
    Ok(checks)
}

/// Why a job object was not read.
enum Unread {
    /// Encrypted, and no identity given opens it.
    Locked(String),
    /// Damaged, not a job object, or not downloaded.
    Undecodable(String),
}

impl From<OpenError> for Unread {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::Damaged(_) => Unread::Undecodable(error.to_string()),
            OpenError::NoIdentity { .. } | OpenError::NoMatchingIdentity { .. } => {
                Unread::Locked(error.to_string())
            }
        }
    }
}
