//! How fresh the backups in a bucket are, for the person on call.

use std::time::Duration;

use jobvault_core::Timestamp;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::{ObjectKind, parse_object_name};
use jobvault_core::retrieval::newest_object;
use serde::Serialize;

use crate::drive::{DriveError, find_newest, list_range};
use crate::store::Store;

/// A snapshot older than this is a problem: snapshots are daily.
pub const SNAPSHOT_WARN_AGE: Duration = Duration::from_secs(25 * 3600);
/// No job uploaded for this long, in a bucket that has jobs, is suspicious:
/// the incremental backup may have stopped.
pub const JOB_WARN_AGE: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    pub object: String,
    pub time: String,
    pub age_seconds: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub bucket: String,
    pub newest_snapshot: Option<ObjectStatus>,
    pub snapshots_last_24h: usize,
    pub newest_job_upload: Option<ObjectStatus>,
    pub warnings: Vec<String>,
}

fn describe(object: &ListedObject, now: Timestamp) -> ObjectStatus {
    ObjectStatus {
        object: object.name.clone(),
        time: object.updated.rfc3339(),
        age_seconds: now.duration_since(object.updated).as_secs(),
        size: object.size,
    }
}

/// Reads the state of the bucket. Lists today's and yesterday's folders;
/// walks further back only when they hold nothing.
pub async fn status(
    store: &Store,
    now: Timestamp,
    concurrency: usize,
) -> Result<Status, DriveError> {
    store.check().await?;
    let day_ago = now - DAY;
    let recent_snapshots =
        list_range(store, ObjectKind::Snapshot, day_ago, now, concurrency).await?;
    let snapshots_last_24h = recent_snapshots
        .iter()
        .filter(|o| o.updated > day_ago)
        .filter(|o| parse_object_name(&o.name).is_ok_and(|p| p.kind == ObjectKind::Snapshot))
        .count();
    let newest_snapshot = match newest_object(ObjectKind::Snapshot, &recent_snapshots) {
        Some(newest) => Some(newest.clone()),
        None => find_newest(store, ObjectKind::Snapshot).await?,
    };
    let recent_jobs = list_range(store, ObjectKind::Job, day_ago, now, concurrency).await?;
    let newest_job = match newest_object(ObjectKind::Job, &recent_jobs) {
        Some(newest) => Some(newest.clone()),
        None => find_newest(store, ObjectKind::Job).await?,
    };

    let mut warnings = Vec::new();
    match &newest_snapshot {
        None => warnings.push("no snapshot in the bucket".to_owned()),
        Some(snapshot) => {
            let age = now.duration_since(snapshot.updated);
            if age > SNAPSHOT_WARN_AGE {
                warnings.push(format!(
                    "the newest snapshot is {} old (more than 25h)",
                    human_age(age)
                ));
            }
        }
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
        newest_job_upload: newest_job.map(|o| describe(&o, now)),
        warnings,
    })
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
                "newest snapshot     {} ({} bytes)\n                    uploaded {}, {} ago\n",
                s.object,
                s.size,
                s.time,
                human_age(Duration::from_secs(s.age_seconds))
            )),
            None => out.push_str("newest snapshot     none\n"),
        }
        out.push_str(&format!(
            "snapshots in 24h    {}\n",
            self.snapshots_last_24h
        ));
        match &self.newest_job_upload {
            Some(j) => out.push_str(&format!(
                "newest job upload   {}, {} ago\n",
                j.time,
                human_age(Duration::from_secs(j.age_seconds))
            )),
            None => out.push_str("newest job upload   none\n"),
        }
        for warning in &self.warnings {
            out.push_str(&format!("WARNING: {warning}\n"));
        }
        out
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
}
