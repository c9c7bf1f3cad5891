//! How fresh the backups in a bucket are, for the person on call.
//!
//! A running daemon says how far it got in its lease: one object to read.
//! Only without a lease (no daemon, or the first release's) does `status`
//! list the day's job objects to find the newest upload, which costs more
//! the more jobs changed that day.

use std::time::Duration;

use jobvault_core::cleartext::{SEALED_LOOKBACK, plain_after_sealed};
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::ObjectName;
use jobvault_core::object_name::{ObjectKind, parse_object_name};
use jobvault_core::retrieval::newest_object;
use jobvault_core::{FailureKind, Timestamp};
use serde::Serialize;

use jobvault_core::lease::Lease;

use jobvault_core::history::{HISTORY_OBJECT, restorable_from};

use crate::drive::{DriveError, find_newest, list_range};
use crate::lease::{self, LeaseError};
use crate::nothing::NothingFound;
use crate::reads::Reads;
use crate::small_object;
use crate::store::Store;

/// A snapshot older than this is a problem: snapshots are daily.
pub const SNAPSHOT_WARN_AGE: Duration = Duration::from_secs(25 * 3600);
/// No job uploaded for this long, in a bucket that has jobs, is suspicious:
/// the incremental backup may have stopped.
pub const JOB_WARN_AGE: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    pub object: ObjectName,
    pub time: String,
    pub age_seconds: u64,
    pub size: u64,
    /// Its content type says it is encrypted (age); always `false` on a
    /// `file://` store, which keeps no content type.
    pub encrypted: bool,
}

impl ObjectStatus {
    fn encrypted_note(&self) -> &'static str {
        if self.encrypted {
            ", encrypted (age)"
        } else {
            ""
        }
    }
}

/// The daemon holding the bucket prefix's lease, as its lease says.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonStatus {
    pub host: String,
    pub pid: u32,
    pub database: String,
    pub renewed_seconds_ago: u64,
    /// How long the lease lasts unrenewed; its holder writes nothing once
    /// half of it has passed since the last renewal that got through.
    pub expiry_seconds: u64,
    /// Every change up to this sequence is in the bucket.
    pub cursor_seq: u64,
    /// When the daemon last had every change in the bucket.
    pub caught_up: Option<String>,
    pub caught_up_seconds_ago: Option<u64>,
    /// Rows of its database no backup can hold.
    pub jobs_set_aside: u64,
    /// Deletions of jobs no object name can carry that no snapshot holds
    /// yet: a restore gives those jobs back.
    pub deletions_unsnapshotted: u64,
    /// It took the lease over from a daemon that may still write, and
    /// writes nothing before this time.
    pub writes_from: Option<String>,
}

/// The daemon that last held the prefix's lease and gave it back at its
/// stop, as the lease it left says.
#[derive(Debug, Clone, Serialize)]
pub struct LastStop {
    pub host: String,
    pub pid: u32,
    pub database: String,
    pub stopped: String,
    pub stopped_seconds_ago: u64,
    /// Every change up to this sequence was in the bucket at the stop.
    pub cursor_seq: u64,
    /// It had every change in the bucket when it stopped: not so when it
    /// stopped before the full snapshot owed to a prefix new to its
    /// database (a copy found, a wipe) landed, and `cursor_seq` then says
    /// nothing of what a restore gives.
    pub caught_up: bool,
    /// Rows of its database no backup can hold when it stopped: a restore
    /// does not give them.
    pub jobs_set_aside: u64,
    /// Deletions no snapshot held when it stopped: a restore gives those
    /// jobs back.
    pub deletions_unsnapshotted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub bucket: String,
    pub newest_snapshot: Option<ObjectStatus>,
    pub snapshots_last_24h: usize,
    /// From the lease, when a daemon holds it.
    pub daemon: Option<DaemonStatus>,
    /// From the lease, when the daemon that held it gave it back.
    pub last_stop: Option<LastStop>,
    /// From a listing, when no daemon holds the lease.
    pub newest_job_upload: Option<ObjectStatus>,
    pub history: HistoryStatus,
    pub warnings: Vec<String>,
}

/// How far back the bucket restores (`restore --at`).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryStatus {
    /// Whether the bucket keeps noncurrent generations; `None` for a
    /// directory, which keeps none.
    pub versioning: Option<bool>,
    /// The oldest instant a restore reaches, from the history marker a
    /// prune wrote; `None` when nothing was ever pruned.
    pub restorable_from: Option<String>,
}

/// A daemon that has not caught up for this long has fallen behind, as the
/// `JobvaultIncrementalStalled` alert says.
const CAUGHT_UP_WARN_AGE: Duration = Duration::from_secs(600);

fn describe(object: &ListedObject, now: Timestamp) -> ObjectStatus {
    ObjectStatus {
        object: object.name.clone(),
        time: object.updated.rfc3339(),
        age_seconds: now.duration_since(object.updated).as_secs(),
        size: object.size,
        encrypted: object.sealed,
    }
}

/// Reads the state of the bucket. Lists the last week's snapshot folders
/// and the last day's job folders; walks further back only when they hold
/// nothing.
pub async fn status(
    store: &Store,
    now: Timestamp,
    concurrency: usize,
    reads: &Reads,
) -> Result<Status, DriveError> {
    reads.read(|| store.check()).await?;
    let day_ago = now - DAY;
    // A week, for encrypted snapshots beside a plain newest one.
    let recent_snapshots = list_range(
        store,
        ObjectKind::Snapshot,
        now - SEALED_LOOKBACK,
        now,
        concurrency,
        reads,
    )
    .await?;
    let snapshots_last_24h = recent_snapshots
        .iter()
        .filter(|o| o.updated > day_ago)
        .filter(|o| parse_object_name(&o.name).is_ok_and(|p| p.kind == ObjectKind::Snapshot))
        .count();
    let newest_snapshot = match newest_object(ObjectKind::Snapshot, &recent_snapshots) {
        Some(newest) => Some(newest.clone()),
        None => find_newest(store, ObjectKind::Snapshot, reads).await?,
    };
    let mut warnings = Vec::new();
    let (daemon, last_stop) = match lease::read(store).await {
        Ok(Some((lease, _))) if let Some(stopped) = lease.released => {
            let last = last_stop(&lease, stopped, now);
            if !last.caught_up {
                warnings.push(format!(
                    "the last daemon ({} pid {}) stopped before it had every change in the \
                     bucket (a full snapshot owed to the prefix had not landed): a restore may \
                     not give {}; start `jobvault run` on it",
                    last.host, last.pid, last.database
                ));
            }
            if last.jobs_set_aside > 0 {
                warnings.push(set_aside_warning(last.jobs_set_aside, &last.database));
            }
            if last.deletions_unsnapshotted > 0 {
                warnings.push(deletions_warning(last.deletions_unsnapshotted));
            }
            (None, Some(last))
        }
        Ok(found) => {
            if let Some((lease, _)) = &found
                && lease::runs_here(&lease.holder) == Some(false)
            {
                warnings.push(format!(
                    "the daemon that holds the lease ({} pid {}) is not running on this host: it \
                     stopped without giving the lease back (its grace ran out), crashed or was \
                     killed, and changes since its last renewal may not be in the \
                     bucket; the next start here takes the lease at once",
                    lease.holder.host, lease.holder.pid
                ));
            }
            (found.map(|(lease, _)| daemon_status(&lease, now)), None)
        }
        Err(LeaseError::Store(e)) => return Err(e.into()),
        Err(unreadable) => {
            warnings.push(format!(
                "{unreadable}: no daemon can take it until one runs with --takeover"
            ));
            (None, None)
        }
    };
    let newest_job = match &daemon {
        Some(_) => None,
        None => newest_job_upload(store, now, concurrency, reads).await?,
    };

    let marker = small_object::read(store, HISTORY_OBJECT).await?;
    let restorable_from = restorable_from(marker.as_deref()).unwrap_or_else(|e| {
        warnings.push(format!("{}: {e}", store.location(HISTORY_OBJECT)));
        None
    });
    // `storage.buckets.get`, which object roles lack: not knowing is a
    // warning, not a failed status.
    let versioning = match store.versioning().await {
        Ok(versioning) => versioning,
        Err(e) if e.kind == FailureKind::Permission => {
            warnings.push(format!("cannot tell whether object versioning is on: {e}"));
            None
        }
        Err(e) => return Err(e.into()),
    };
    let history = HistoryStatus {
        versioning,
        restorable_from: restorable_from.map(|t| t.to_string()),
    };
    if let Some(daemon) = &daemon {
        warnings.extend(daemon_warnings(daemon));
    }
    match &newest_snapshot {
        None => {
            let empty = daemon.is_none() && last_stop.is_none() && newest_job.is_none();
            warnings.push(no_snapshot_warning(store, reads, empty).await);
        }
        Some(snapshot) => {
            if snapshot.size == 0 {
                warnings.push(format!(
                    "the newest snapshot {} is empty (0 bytes): a restore passes it over for the \
                     one before, and `jobvault verify` fails it",
                    snapshot.name
                ));
            }
            let age = now.duration_since(snapshot.updated);
            if age > SNAPSHOT_WARN_AGE {
                warnings.push(format!(
                    "the newest snapshot is {} old (more than 25h)",
                    human_age(age)
                ));
            }
        }
    }
    if let Some((plain, sealed)) = plain_after_sealed(&recent_snapshots) {
        warnings.push(format!(
            "snapshot {} is unencrypted, though {} before it is encrypted: a daemon or `backup` \
             without --encrypt-to (JOBVAULT_ENCRYPT_TO) wrote it, and it stays readable in the \
             bucket until pruned or deleted",
            plain.name, sealed.name
        ));
    }
    if let Some(job) = &newest_job {
        let age = now.duration_since(job.updated);
        if age > JOB_WARN_AGE {
            warnings.push(format!(
                "no job uploaded in the last hour (newest {} ago): is `jobvault run` running?",
                human_age(age)
            ));
        }
    }
    Ok(Status {
        bucket: store.url().to_string(),
        newest_snapshot: newest_snapshot.map(|o| describe(&o, now)),
        snapshots_last_24h,
        daemon,
        last_stop,
        newest_job_upload: newest_job.map(|o| describe(&o, now)),
        history,
        warnings,
    })
}

/// That the prefix holds no snapshot; if it holds nothing at all, with the
/// prefixes beside it that hold backups, as `restore` names them: a
/// mistyped prefix read as a daemon never started.
async fn no_snapshot_warning(store: &Store, reads: &Reads, empty: bool) -> String {
    let warning = "no snapshot in the bucket".to_owned();
    if !empty {
        return warning;
    }
    let nothing = NothingFound::in_store(store, reads, String::new()).await;
    match nothing.neighbours.as_slice() {
        [] => warning,
        found => format!(
            "{warning} prefix; prefixes beside it that hold backups: {}",
            found.join(", ")
        ),
    }
}

/// The newest job object, from a listing of the last day (further back only
/// when it holds none).
async fn newest_job_upload(
    store: &Store,
    now: Timestamp,
    concurrency: usize,
    reads: &Reads,
) -> Result<Option<ListedObject>, DriveError> {
    let recent = list_range(store, ObjectKind::Job, now - DAY, now, concurrency, reads).await?;
    Ok(match newest_object(ObjectKind::Job, &recent) {
        Some(newest) => Some(newest.clone()),
        None => find_newest(store, ObjectKind::Job, reads).await?,
    })
}

fn daemon_status(lease: &Lease, now: Timestamp) -> DaemonStatus {
    let caught_up = lease.state.caught_up;
    DaemonStatus {
        host: lease.holder.host.clone(),
        pid: lease.holder.pid,
        database: lease.holder.db.clone(),
        renewed_seconds_ago: now.duration_since(lease.renewed).as_secs(),
        expiry_seconds: lease.expiry.as_secs(),
        cursor_seq: lease.state.cursor_seq,
        caught_up: caught_up.map(Timestamp::rfc3339),
        caught_up_seconds_ago: caught_up.map(|at| now.duration_since(at).as_secs()),
        jobs_set_aside: lease.state.jobs_set_aside,
        deletions_unsnapshotted: lease.state.deletions_unsnapshotted,
        writes_from: lease
            .state
            .fenced_until
            .filter(|until| *until > now)
            .map(Timestamp::rfc3339),
    }
}

/// The daemon that gave `lease` back at `stopped`.
fn last_stop(lease: &Lease, stopped: Timestamp, now: Timestamp) -> LastStop {
    LastStop {
        host: lease.holder.host.clone(),
        pid: lease.holder.pid,
        database: lease.holder.db.clone(),
        stopped: stopped.rfc3339(),
        stopped_seconds_ago: now.duration_since(stopped).as_secs(),
        cursor_seq: lease.state.cursor_seq,
        caught_up: lease.state.caught_up.is_some(),
        jobs_set_aside: lease.state.jobs_set_aside,
        deletions_unsnapshotted: lease.state.deletions_unsnapshotted,
    }
}

fn daemon_warnings(daemon: &DaemonStatus) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(from) = &daemon.writes_from {
        warnings.push(format!(
            "the daemon on {} (pid {}) took the lease over from one that may still write: it \
             writes nothing until {from}, and what the lease says of the bucket is the old \
             holder's until then",
            daemon.host, daemon.pid
        ));
    }
    if daemon.jobs_set_aside > 0 {
        warnings.push(set_aside_warning(daemon.jobs_set_aside, &daemon.database));
    }
    if daemon.deletions_unsnapshotted > 0 {
        warnings.push(deletions_warning(daemon.deletions_unsnapshotted));
    }
    let renewed = Duration::from_secs(daemon.renewed_seconds_ago);
    let gate = Duration::from_secs(daemon.expiry_seconds / 2);
    if renewed > gate {
        warnings.push(format!(
            "the daemon on {} (pid {}) last renewed its lease {} ago, and writes nothing \
             once {} have passed: is it running?",
            daemon.host,
            daemon.pid,
            human_age(renewed),
            human_age(gate)
        ));
    }
    match daemon.caught_up_seconds_ago.map(Duration::from_secs) {
        Some(age) if age > CAUGHT_UP_WARN_AGE => warnings.push(format!(
            "the daemon last had every change in the bucket {} ago",
            human_age(age)
        )),
        None => warnings.push("the daemon has not caught up with the changes yet".to_owned()),
        Some(_) => {}
    }
    warnings
}

/// `rows` rows of `database` no backup holds, and how to name them.
fn set_aside_warning(rows: u64, database: &str) -> String {
    format!(
        "{} of {database} cannot be backed up and are set aside (not UTF-8, over the \
         size limit, or an id no object name can carry): a restore does not give them; the \
         daemon's log names them, and so does: sqlite3 {database} 'SELECT id, seq, why FROM \
         set_aside_jobs'",
        counted(rows, "row")
    )
}

/// `deletions` jobs no object name can carry were deleted, and no snapshot
/// holds the deletions yet.
fn deletions_warning(deletions: u64) -> String {
    format!(
        "{} whose ids no object name can carry deleted, and the snapshot that records the \
         deletions has not landed: a restore gives them back until it does (`jobvault backup` \
         takes one now)",
        counted(deletions, "job")
    )
}

/// `1 row`, `2 rows`.
pub fn counted(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// `3d 4h`, `2h 5m`, `12m 3s`, `40s`.
pub fn human_age(age: Duration) -> String {
    let s = age.as_secs();
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

impl Status {
    /// The human-readable report, one fact per line.
    pub fn render(&self) -> String {
        let mut out = format!("bucket              {}\n", self.bucket);
        match &self.newest_snapshot {
            Some(s) => out.push_str(&format!(
                "newest snapshot     {} ({} bytes{})\n                    uploaded {}, {} ago\n",
                s.object,
                s.size,
                s.encrypted_note(),
                s.time,
                human_age(Duration::from_secs(s.age_seconds))
            )),
            None => out.push_str("newest snapshot     none\n"),
        }
        out.push_str(&format!(
            "snapshots in 24h    {}\n",
            self.snapshots_last_24h
        ));
        match (&self.daemon, &self.newest_job_upload) {
            (Some(d), _) => {
                out.push_str(&format!(
                    "daemon              {} pid {} ({}), lease renewed {} ago\n",
                    d.host,
                    d.pid,
                    d.database,
                    human_age(Duration::from_secs(d.renewed_seconds_ago))
                ));
                let caught_up = d.caught_up_seconds_ago.map_or_else(
                    || "not caught up yet".to_owned(),
                    |age| format!("all caught up {} ago", human_age(Duration::from_secs(age))),
                );
                // The lease says it: as of its renewal, not now.
                out.push_str(&format!(
                    "jobs in the bucket  every change up to {}; {caught_up} (as of the lease's \
                     renewal)\n",
                    d.cursor_seq
                ));
            }
            (None, newest_job) => self.render_no_daemon(&mut out, newest_job.as_ref()),
        }
        let restorable = match (&self.newest_snapshot, &self.newest_job_upload) {
            // A restore starts from a snapshot: with none, it has nothing
            // to start from but the job objects (`--from-job-objects`),
            // and with none of those either, nothing (a mistyped prefix
            // was pointed at `--from-job-objects`).
            (None, None) if self.daemon.is_none() && self.last_stop.is_none() => {
                "nothing: this prefix holds no backup".to_owned()
            }
            (None, _) => format!(
                "no snapshot yet (job objects alone, with --from-job-objects); once there is one, {}",
                self.history.render(&self.bucket)
            ),
            (Some(_), _) => self.history.render(&self.bucket),
        };
        out.push_str(&format!("restorable          {restorable}\n"));
        for warning in &self.warnings {
            out.push_str(&format!("WARNING: {warning}\n"));
        }
        out
    }

    /// The lines for a prefix no daemon holds: who last did, and the
    /// newest job upload.
    fn render_no_daemon(&self, out: &mut String, newest_job: Option<&ObjectStatus>) {
        if let Some(last) = &self.last_stop {
            let left = if last.caught_up {
                format!("with every change up to {} in the bucket", last.cursor_seq)
            } else {
                "before it had every change in the bucket".to_owned()
            };
            out.push_str(&format!(
                "last daemon         {} pid {} ({}), stopped {} ago {left}\n",
                last.host,
                last.pid,
                last.database,
                human_age(Duration::from_secs(last.stopped_seconds_ago)),
            ));
        }
        match newest_job {
            Some(j) => out.push_str(&format!(
                "newest job upload   {}, {} ago{}\n",
                j.time,
                human_age(Duration::from_secs(j.age_seconds)),
                j.encrypted_note()
            )),
            None => out.push_str("newest job upload   none\n"),
        }
    }
}

impl HistoryStatus {
    fn render(&self, bucket: &str) -> String {
        let since = self.restorable_from.as_ref().map_or_else(
            || "the prefix's first snapshot (never pruned)".to_owned(),
            |from| format!("{from} (what a prune kept)"),
        );
        match self.versioning {
            Some(true) => format!("any instant since {since}; object versioning on"),
            Some(false) => {
                // gcloud takes the bucket, not a prefix in it.
                let name = bucket
                    .trim_start_matches("gs://")
                    .split('/')
                    .next()
                    .unwrap_or_default();
                format!(
                    "the newest state only: object versioning is off \
                     (gcloud storage buckets update gs://{name} --versioning)"
                )
            }
            None if bucket.starts_with("file://") => {
                "the newest state only: a directory keeps no versions".to_owned()
            }
            None => format!("any instant since {since} if object versioning is on (unknown)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        let cases = [
            (40, "40s"),
            (723, "12m 3s"),
            (7500, "2h 5m"),
            (273_600, "3d 4h"),
        ];
        for (secs, text) in cases {
            assert_eq!(human_age(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn a_lease_unrenewed_past_half_its_expiry_is_warned_of_and_one_renewed_a_minute_ago_is_not() {
        let daemon = |renewed_seconds_ago| DaemonStatus {
            host: "vm".to_owned(),
            pid: 7,
            database: "/var/lib/s/jobs.db".to_owned(),
            renewed_seconds_ago,
            expiry_seconds: 180,
            cursor_seq: 1,
            caught_up: Some("2026-12-04T00:00:00Z".to_owned()),
            caught_up_seconds_ago: Some(1),
            jobs_set_aside: 0,
            deletions_unsnapshotted: 0,
            writes_from: None,
        };
        assert!(
            daemon_warnings(&daemon(75)).is_empty(),
            "renewed once a minute, a lease 75 s old is a live daemon's"
        );
        let warnings = daemon_warnings(&daemon(91));
        assert!(
            warnings.len() == 1
                && warnings[0].contains("1m 31s ago")
                && warnings[0].contains("1m 30s"),
            "{warnings:?}"
        );
        let deleted = DaemonStatus {
            deletions_unsnapshotted: 2,
            ..daemon(1)
        };
        let warnings = daemon_warnings(&deleted);
        assert!(
            warnings.len() == 1 && warnings[0].starts_with("2 jobs whose ids"),
            "a deletion no snapshot holds is not all caught up: {warnings:?}"
        );
    }
}
