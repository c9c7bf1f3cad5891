//! Format 1, frozen: the record and the job model as the first release wrote
//! them. Never change anything here; a new shape is a new format.
//!
//! Format 1 carried a typed job, so a job field the model did not know was
//! refused (and a lenient model would have dropped it). Format 2 carries the
//! body as the writer stored it. A format-1 job becomes the body the first
//! release stored for it, which was this model as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Change, Envelope, EnvelopeError};
use crate::Seq;
use crate::job_id::JobId;
use crate::timestamp::Timestamp;

#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    format: u16,
    job_id: String,
    seq: Seq,
    modified: Timestamp,
    job: Job,
}

impl Record {
    pub(super) fn into_envelope(self) -> Result<Envelope, EnvelopeError> {
        if self.job_id != self.job.id.as_str() {
            return Err(EnvelopeError::IdMismatch {
                outer: self.job_id,
                inner: self.job.id.as_str().to_owned(),
            });
        }
        // JSON cannot carry NaN or infinity, so no body could hold this job.
        if !self.job.priority.is_finite() {
            return Err(EnvelopeError::NonFinitePriority);
        }
        let body = serde_json::to_string(&self.job).expect("a finite job always serializes");
        Ok(Envelope {
            id: self.job.id,
            seq: self.seq,
            modified: self.modified,
            change: Change::Written(body.into()),
        })
    }
}

/// The job model of format 1. Field and variant order are its wire format.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    id: JobId,
    name: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    revision: String,
    #[serde(default)]
    status: JobStatus,
    #[serde(default)]
    created: Timestamp,
    #[serde(default)]
    finished: Option<Timestamp>,
    #[serde(default)]
    db_modified: Timestamp,
    #[serde(default)]
    priority: f64,
    #[serde(default)]
    is_force: bool,
    #[serde(default)]
    dependencies: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    tasks: BTreeMap<String, Vec<TaskSummary>>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum JobStatus {
    #[default]
    Requested,
    InProgress,
    Success,
    Failure,
    Mishap,
    Canceled,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSummary {
    id: String,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    max_attempts: u32,
    #[serde(default)]
    status: TaskStatus,
    #[serde(default)]
    swarming_task_id: String,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum TaskStatus {
    #[default]
    Pending,
    Running,
    Success,
    Failure,
    Mishap,
}
