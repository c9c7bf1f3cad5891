//! Format 2: the job's body as the writer stored it, byte for byte, or a
//! tombstone for a deleted job. Frozen once released.

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
    change: RecordChange,
}

/// Variant order is part of the wire format.
#[derive(Serialize, Deserialize)]
enum RecordChange {
    Written { body: String },
    Deleted,
}

/// The one field of a body the envelope checks: the job's id.
#[derive(Deserialize)]
struct BodyId {
    id: String,
}

/// Checks that `body` is a JSON object whose `"id"` is `id`, as the job
/// database's triggers require of every row.
pub fn check_body(id: &JobId, body: &str) -> Result<(), EnvelopeError> {
    let inner = serde_json::from_str::<BodyId>(body)
        .map_err(|e| EnvelopeError::BadBody(e.to_string()))?
        .id;
    if inner != id.as_str() {
        return Err(EnvelopeError::IdMismatch {
            outer: id.as_str().to_owned(),
            inner,
        });
    }
    Ok(())
}

impl Record {
    pub(super) fn new(envelope: &Envelope) -> Self {
        Record {
            format: 2,
            job_id: envelope.id.as_str().to_owned(),
            seq: envelope.seq,
            modified: envelope.modified,
            change: match &envelope.change {
                Change::Written(body) => RecordChange::Written { body: body.clone() },
                Change::Deleted => RecordChange::Deleted,
            },
        }
    }

    pub(super) fn into_envelope(self) -> Result<Envelope, EnvelopeError> {
        let id = JobId::new(self.job_id).map_err(|e| EnvelopeError::Corrupt(e.to_string()))?;
        let change = match self.change {
            RecordChange::Written { body } => {
                check_body(&id, &body)?;
                Change::Written(body)
            }
            RecordChange::Deleted => Change::Deleted,
        };
        Ok(Envelope {
            id,
            seq: self.seq,
            modified: self.modified,
            change,
        })
    }
}
