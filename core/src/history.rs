//! The bucket's history marker: how far back a restore can reach once a
//! prune has deleted what came before.
//!
//! A restore to an instant before every snapshot rebuilds the database from
//! job objects alone, which is exact only while no job object was ever
//! deleted. A prune deletes old ones, so before deleting anything it writes
//! `jobvault-history.json`, saying from which instant on everything a
//! restore needs is still kept. A restore to an earlier instant refuses
//! instead of returning a database with jobs missing; `status` shows the
//! window from it. The original, like a lifecycle rule, deleted without
//! leaving a word of what no longer restores.

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// The marker's name, beside the lease, under the store's prefix.
pub const HISTORY_OBJECT: &str = "jobvault-history.json";

const FORMAT: u16 = 1;

/// What the marker says. Frozen once released: add fields, never change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMarker {
    format: u16,
    /// A restore to any instant from this one on finds all it needs.
    pub restorable_from: Timestamp,
    /// When the prune that wrote the marker planned it.
    pub pruned_at: Timestamp,
}

/// Why a marker's bytes do not hold one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("it is not a history marker: {0}")]
    Syntax(String),
    #[error("its format {0} is newer than this jobvault knows (1); upgrade jobvault")]
    Format(u16),
}

impl HistoryMarker {
    pub fn new(restorable_from: Timestamp, pruned_at: Timestamp) -> Self {
        HistoryMarker {
            format: FORMAT,
            restorable_from,
            pruned_at,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a marker serializes");
        bytes.push(b'\n');
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<HistoryMarker, HistoryError> {
        let marker: HistoryMarker =
            serde_json::from_slice(bytes).map_err(|e| HistoryError::Syntax(e.to_string()))?;
        if marker.format > FORMAT {
            return Err(HistoryError::Format(marker.format));
        }
        Ok(marker)
    }
}

/// Decodes a marker fetched from the bucket (`None`: there is none).
pub fn restorable_from(bytes: Option<&[u8]>) -> Result<Option<Timestamp>, HistoryError> {
    bytes
        .map(|bytes| HistoryMarker::decode(bytes).map(|m| m.restorable_from))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROZEN: &str = include_str!("../tests/frozen/history-v1.json");

    #[test]
    fn the_frozen_sample_decodes() {
        let marker = HistoryMarker::decode(FROZEN.as_bytes()).unwrap();
        assert_eq!(
            marker,
            HistoryMarker::new(
                Timestamp::parse_rfc3339("2026-11-01T03:00:00Z").unwrap(),
                Timestamp::parse_rfc3339("2026-12-01T03:10:00Z").unwrap(),
            )
        );
        assert_eq!(
            String::from_utf8(marker.encode()).unwrap(),
            FROZEN,
            "the encoding changed"
        );
    }

    #[test]
    fn a_newer_format_or_garbage_is_refused() {
        let newer = FROZEN.replace("\"format\": 1", "\"format\": 2");
        assert_eq!(
            HistoryMarker::decode(newer.as_bytes()),
            Err(HistoryError::Format(2))
        );
        assert!(matches!(
            HistoryMarker::decode(b"{}"),
            Err(HistoryError::Syntax(_))
        ));
    }
}
