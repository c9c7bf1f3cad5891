//! Which destination the database's cursor belongs to.
//!
//! The cursor lives in the database and says "every change up to here is in
//! the bucket". Until now nothing said which bucket. Pointed at a new prefix,
//! a daemon resumed from the cursor and uploaded only what came after it: the
//! new prefix got no job and `restore` from it gave zero jobs, exit 0. A
//! bucket wiped under a running daemon was refilled with the few pending
//! changes only: `restore` gave 5 of 7 jobs. Litestream starts a new
//! generation with a full snapshot here; so does jobvault now.
//!
//! Each prefix holds a marker, `jobvault-destination.json`, with a random id
//! written once when the prefix is first used. The database records, beside
//! its cursor, the id of the destination the cursor belongs to. A daemon that
//! finds the marker missing (it creates one) or naming another id than the
//! database records treats the destination as new ([`assess`]): it owes a
//! snapshot, taken at once and retried until it lands; only then does the
//! database record the id. Until then the cursor says nothing about this
//! destination, and the daemon does not report itself caught up.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::machine::FoundDestination;
use crate::timestamp::Timestamp;

/// The marker's object name, under the prefix.
pub const DESTINATION_OBJECT: &str = "jobvault-destination.json";

/// The marker's format; a newer one is refused, not guessed at.
pub const DESTINATION_FORMAT: u32 = 1;

/// A destination's id: random, drawn by whoever creates the marker. Never 0
/// (what a database that recorded none holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DestinationId(u64);

impl DestinationId {
    /// The id from a random draw; `None` for 0 or above `i64::MAX` (SQLite
    /// stores integers signed).
    pub fn new(raw: u64) -> Option<Self> {
        (raw != 0 && raw <= i64::MAX as u64).then_some(DestinationId(raw))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for DestinationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl TryFrom<String> for DestinationId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        u64::from_str_radix(&text, 16)
            .ok()
            .filter(|_| text.len() == 16)
            .and_then(DestinationId::new)
            .ok_or_else(|| format!("`{text}` is not a destination id (16 hex digits)"))
    }
}

impl From<DestinationId> for String {
    fn from(id: DestinationId) -> String {
        id.to_string()
    }
}

/// What the marker object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationMarker {
    pub format: u32,
    pub id: DestinationId,
    pub created: Timestamp,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MarkerError {
    #[error("not a destination marker: {0}")]
    Malformed(String),
    #[error(
        "destination marker format {0} is newer than this jobvault reads ({DESTINATION_FORMAT}); use a newer jobvault"
    )]
    TooNew(u32),
}

impl DestinationMarker {
    pub fn new(id: DestinationId, created: Timestamp) -> Self {
        DestinationMarker {
            format: DESTINATION_FORMAT,
            id,
            created,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a marker serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MarkerError> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format =
            serde_json::from_slice(bytes).map_err(|e| MarkerError::Malformed(e.to_string()))?;
        if format.format > DESTINATION_FORMAT {
            return Err(MarkerError::TooNew(format.format));
        }
        serde_json::from_slice(bytes).map_err(|e| MarkerError::Malformed(e.to_string()))
    }
}

/// Whether the database's cursor belongs to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// It does: the daemon resumes from the cursor.
    Known,
    /// It does not: everything the database holds must go up again, so the
    /// daemon owes a snapshot and records `id` once it has landed.
    New { id: DestinationId, why: NewBecause },
}

/// Why a destination is new to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewBecause {
    /// The prefix held no marker: a new bucket, or one wiped or recreated.
    NoMarker,
    /// The database records no destination: its first backup (or its first
    /// under a jobvault that records one).
    NoneRecorded,
    /// The database records another: it was backed up elsewhere, or
    /// restored and pointed at a new prefix.
    Other(DestinationId),
    /// The database went back to an older copy under the daemon, which
    /// starts the prefix over ([`crate::machine`]'s `went_back`).
    WentBack,
    /// The prefix's backups were deleted while its markers stayed: a
    /// listing lacked the newest snapshot ([`crate::machine`]'s `listing`).
    BackupsDeleted,
}

impl fmt::Display for NewBecause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NewBecause::NoMarker => {
                f.write_str("the prefix held no destination marker (new, wiped or recreated)")
            }
            NewBecause::NoneRecorded => f.write_str("the database records no destination yet"),
            NewBecause::Other(other) => {
                write!(f, "the database's cursor belongs to destination {other}")
            }
            NewBecause::WentBack => f.write_str("the database went back to an older copy"),
            NewBecause::BackupsDeleted => {
                f.write_str("the prefix's backups were deleted, its markers kept")
            }
        }
    }
}

/// Decides whether the marker `found` (written by this check if `created`,
/// over another's if `replaced`) is the destination the database
/// `recorded`.
pub fn assess(found: &FoundDestination, recorded: Option<DestinationId>) -> Destination {
    let why = match recorded {
        _ if found.created && found.replaced.is_none() => NewBecause::NoMarker,
        Some(recorded) if !found.created && recorded == found.marker.id => {
            return Destination::Known;
        }
        Some(other) => NewBecause::Other(other),
        None => NewBecause::NoneRecorded,
    };
    Destination::New {
        id: found.marker.id,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: u64) -> DestinationId {
        DestinationId::new(raw).unwrap()
    }

    fn marker(raw: u64) -> DestinationMarker {
        DestinationMarker::new(id(raw), Timestamp::from_unix_seconds(1_700_000_000))
    }

    fn found(raw: u64, created: bool, replaced: Option<u64>) -> FoundDestination {
        FoundDestination {
            marker: marker(raw),
            created,
            replaced: replaced.map(id),
        }
    }

    #[test]
    fn only_the_recorded_id_of_a_marker_found_is_known() {
        assert_eq!(
            assess(&found(7, false, None), Some(id(7))),
            Destination::Known
        );
        assert_eq!(
            assess(&found(7, true, None), Some(id(7))),
            Destination::New {
                id: id(7),
                why: NewBecause::NoMarker
            },
            "a marker just created is new, whatever the database says"
        );
        assert_eq!(
            assess(&found(7, false, None), Some(id(8))),
            Destination::New {
                id: id(7),
                why: NewBecause::Other(id(8))
            }
        );
        assert_eq!(
            assess(&found(7, false, None), None),
            Destination::New {
                id: id(7),
                why: NewBecause::NoneRecorded
            }
        );
        assert_eq!(
            assess(&found(9, true, Some(7)), Some(id(8))),
            Destination::New {
                id: id(9),
                why: NewBecause::Other(id(8))
            },
            "a marker written over another's is new for why it was written over"
        );
    }

    const FROZEN: &str = include_str!("../tests/frozen/destination-v1.json");

    #[test]
    fn the_frozen_sample_decodes_and_encodes_as_it_did() {
        let marker = DestinationMarker::decode(FROZEN.as_bytes()).unwrap();
        assert_eq!(
            marker,
            DestinationMarker::new(
                id(0x5d1c_0ffe_e0dd_f00d),
                Timestamp::parse_rfc3339("2026-12-04T08:00:00Z").unwrap()
            )
        );
        assert_eq!(String::from_utf8(marker.encode()).unwrap(), FROZEN);
    }

    #[test]
    fn the_marker_reads_back_and_a_newer_format_is_refused() {
        let written = marker(0x1234_5678_9abc_def0);
        let json = written.encode();
        assert!(String::from_utf8_lossy(&json).contains("\"123456789abcdef0\""));
        assert_eq!(DestinationMarker::decode(&json), Ok(written));
        assert_eq!(
            DestinationMarker::decode(br#"{"format": 2, "id": "x"}"#),
            Err(MarkerError::TooNew(2))
        );
        assert!(
            DestinationMarker::decode(
                br#"{"format": 1, "id": "0000000000000000", "created": "2026-01-01T00:00:00Z"}"#
            )
            .is_err()
        );
        assert!(DestinationMarker::decode(b"junk").is_err());
    }

    #[test]
    fn an_id_is_never_zero_and_fits_sqlite() {
        assert_eq!(DestinationId::new(0), None);
        assert_eq!(DestinationId::new(u64::MAX), None);
        assert!(DestinationId::new(i64::MAX as u64).is_some());
    }
}
