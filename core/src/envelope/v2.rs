//! Format 2: the job's body as the writer stored it, byte for byte, or a
//! tombstone for a deleted job. Frozen once released.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
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
    Written { body: Arc<str> },
    Deleted,
}

/// Checks that `body` is a JSON object whose `"id"` is `id`, as the job
/// database's constraints require of every row: the first `"id"` member, as
/// SQLite's `json_extract` reads it. SQLite versions disagree on a key spelt
/// with escapes (`"\u0069d"` is an `id` to 3.53, not to 3.40), so the first
/// member under either reading will do: the body passed the rule in its
/// writer's SQLite.
pub fn check_body(id: &JobId, body: &str) -> Result<(), EnvelopeError> {
    let ids = serde_json::from_str::<FirstIds>(body)
        .map_err(|e| EnvelopeError::BadBody(e.to_string()))?;
    let readings = [ids.plain, ids.any];
    if readings.iter().flatten().any(|inner| inner == id.as_str()) {
        return Ok(());
    }
    match readings.into_iter().flatten().next() {
        Some(inner) => Err(EnvelopeError::IdMismatch {
            outer: id.as_str().to_owned(),
            inner,
        }),
        None => Err(EnvelopeError::BadBody("it has no \"id\"".to_owned())),
    }
}

/// The first `"id"` member of a JSON object written plainly, and the first
/// whatever its spelling, reading past everything else.
struct FirstIds {
    plain: Option<String>,
    any: Option<String>,
}

impl<'de> Deserialize<'de> for FirstIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FirstIdsVisitor)
    }
}

struct FirstIdsVisitor;

impl<'de> Visitor<'de> for FirstIdsVisitor {
    type Value = FirstIds;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstIds, A::Error> {
        let mut ids = FirstIds {
            plain: None,
            any: None,
        };
        while let Some(key) = map.next_key::<Key>()? {
            let wanted = match key {
                Key::Id => ids.plain.is_none() || ids.any.is_none(),
                Key::EscapedId => ids.any.is_none(),
                Key::Other => false,
            };
            if !wanted {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = map.next_value::<String>()?;
            if key == Key::Id && ids.plain.is_none() {
                ids.plain = Some(value.clone());
            }
            ids.any.get_or_insert(value);
        }
        Ok(ids)
    }
}

/// An object key as written: `id` as it is, `id` spelt with escapes (the
/// parser had to unescape it into a buffer), or any other.
#[derive(PartialEq)]
enum Key {
    Id,
    EscapedId,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key, E> {
        Ok(if key == "id" { Key::Id } else { Key::Other })
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(if key == "id" {
            Key::EscapedId
        } else {
            Key::Other
        })
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
