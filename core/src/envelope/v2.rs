//! Format 2: the job's body as the writer stored it, byte for byte, or a
//! tombstone for a deleted job. Frozen once released.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
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

/// Checks that `body` is a JSON object whose `"id"` is `id`, as the job
/// database's constraints require of every row. Like SQLite's
/// `json_extract`, the first `"id"` member counts.
pub fn check_body(id: &JobId, body: &str) -> Result<(), EnvelopeError> {
    let inner = serde_json::from_str::<FirstId>(body)
        .map_err(|e| EnvelopeError::BadBody(e.to_string()))?
        .0;
    match inner {
        Some(inner) if inner == id.as_str() => Ok(()),
        Some(inner) => Err(EnvelopeError::IdMismatch {
            outer: id.as_str().to_owned(),
            inner,
        }),
        None => Err(EnvelopeError::BadBody("it has no \"id\"".to_owned())),
    }
}

/// The first `"id"` member of a JSON object, reading past everything else.
struct FirstId(Option<String>);

impl<'de> Deserialize<'de> for FirstId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FirstIdVisitor)
    }
}

struct FirstIdVisitor;

impl<'de> Visitor<'de> for FirstIdVisitor {
    type Value = FirstId;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstId, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "id" && id.is_none() {
                id = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(FirstId(id))
    }
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
