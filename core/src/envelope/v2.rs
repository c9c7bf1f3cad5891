//! Format 2: the job's body as the writer stored it, byte for byte, or a
//! tombstone for a deleted job. Frozen once released.

use std::fmt;

use serde::de::{self, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
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
/// `json_extract`, the first `"id"` member counts; like the database, a key
/// that spells "id" with escapes is refused (SQLite versions disagree on
/// whether `json_extract` sees it).
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
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id if id.is_none() => id = Some(map.next_value::<String>()?),
                Key::EscapedId => {
                    return Err(A::Error::custom("its \"id\" key is written with escapes"));
                }
                Key::Id | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(FirstId(id))
    }
}

/// An object key as written: `id` as it is, `id` spelt with escapes (the
/// parser had to unescape it into a buffer), or any other.
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
