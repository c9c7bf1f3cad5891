//! The job model: the fields jobvault knows in a job's JSON body.
//!
//! It checks what `jobvault jobs put` is given and reads bodies for display.
//! It never decides what is backed up: the bucket keeps each body as the
//! writer stored it, byte for byte, with fields this model does not know (the
//! first release refused them, which stopped the backup of a scheduler that
//! added a field). So unknown fields are accepted here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job_id::JobId;
use crate::timestamp::Timestamp;

/// A scheduled job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub name: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub status: JobStatus,
    #[serde(default)]
    pub created: Timestamp,
    #[serde(default)]
    pub finished: Option<Timestamp>,
    /// The first release stored the database's write time here. The
    /// database now keeps it in its own column and leaves the body alone.
    #[serde(default)]
    pub db_modified: Timestamp,
    #[serde(default)]
    pub priority: f64,
    #[serde(default)]
    pub is_force: bool,
    /// Task name → names of the tasks it depends on.
    #[serde(default)]
    pub dependencies: BTreeMap<String, Vec<String>>,
    /// Task name → every attempt at that task.
    #[serde(default)]
    pub tasks: BTreeMap<String, Vec<TaskSummary>>,
}

impl Job {
    /// A job with the given id and name and every other field at its default.
    pub fn new(id: JobId, name: impl Into<String>) -> Self {
        Job {
            id,
            name: name.into(),
            repo: String::new(),
            revision: String::new(),
            status: JobStatus::default(),
            created: Timestamp::default(),
            finished: None,
            db_modified: Timestamp::default(),
            priority: 0.0,
            is_force: false,
            dependencies: BTreeMap::new(),
            tasks: BTreeMap::new(),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    #[default]
    Requested,
    InProgress,
    Success,
    Failure,
    Mishap,
    Canceled,
}

/// One attempt at one task of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub id: String,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub max_attempts: u32,
    #[serde(default)]
    pub status: TaskStatus,
    #[serde(default)]
    pub swarming_task_id: String,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    #[default]
    Pending,
    Running,
    Success,
    Failure,
    Mishap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_needs_only_id_and_name() {
        let job: Job = serde_json::from_str(r#"{"id":"j1","name":"Build"}"#).unwrap();
        assert_eq!(job, Job::new(JobId::new("j1").unwrap(), "Build"));
    }

    #[test]
    fn json_statuses_are_kebab_case() {
        let job: Job =
            serde_json::from_str(r#"{"id":"j1","name":"n","status":"in-progress"}"#).unwrap();
        assert_eq!(job.status, JobStatus::InProgress);
        let err = serde_json::from_str::<Job>(r#"{"id":"j1","name":"n","status":"InProgress"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn json_accepts_fields_the_model_does_not_know() {
        let job: Job =
            serde_json::from_str(r#"{"id":"j1","name":"n","owner":{"team":"x"}}"#).unwrap();
        assert_eq!(job, Job::new(JobId::new("j1").unwrap(), "n"));
    }

    #[test]
    fn json_rejects_an_unsafe_id() {
        let err = serde_json::from_str::<Job>(r#"{"id":"../x","name":"n"}"#).unwrap_err();
        assert!(err.to_string().contains("contains '/'"), "{err}");
    }
}
