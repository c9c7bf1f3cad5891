//! The pure core of jobvault.
//!
//! Everything jobvault decides is decided here: when to snapshot, what to
//! upload, when a job counts as safe in the bucket, when to give up on a
//! trigger, how objects are named and framed, and how a retrieval picks the
//! newest version of each job. Nothing here does I/O, reads a clock or draws a
//! random number. The shell executes what this crate decides against the real
//! world; the simulator executes it against a seeded, faulty one.

/// What a name held as a `String` of its own type reads as: the `str` it
/// is (`Deref`, `Borrow<str>` for map lookups, `Display`, `as_str`).
macro_rules! reads_as_str {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub mod checks;
pub mod cleartext;
pub mod commit_watch;
pub mod destination;
pub mod envelope;
pub mod escape;
pub mod gzip_member;
pub mod history;
pub mod job;
pub mod job_id;
pub mod job_object;
pub mod lease;
pub mod listen;
pub mod locked_copy;
pub mod machine;
pub mod object_name;
pub mod prune;
pub mod read_retry;
pub mod restore_plan;
pub mod retrieval;
pub mod timestamp;
pub mod trigger;

/// A job's change sequence: its position in the database's commit order.
pub type Seq = u64;

pub use envelope::{Change, Envelope};
pub use job::{Job, JobStatus, TaskStatus, TaskSummary};
pub use job_id::JobId;
pub use machine::{Backup, Command, Config, Cursor, Failure, FailureKind, Input, Metrics, Stopped};
pub use timestamp::Timestamp;
