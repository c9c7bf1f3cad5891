//! Restoring the past: which snapshot may be the base for an instant, and
//! when the bucket no longer holds that instant.
//!
//! A base for instant T must hold nothing committed after T. A snapshot's
//! gzip mtime is the incremental time it was planned at, and the copy is
//! taken a moment later, so the mtime alone cannot say: the planner fetches
//! the newest snapshot uploaded by T (plus the clock allowance), asks the
//! newest change it holds, and falls back to the next older one if that is
//! after T. With no base at all, the database is rebuilt from job objects
//! alone, which is exact only while the bucket has never been pruned: the
//! history marker says so ([`crate::history`]). Every way of not having T
//! is a refusal naming why, never a database that mixes T with later.

use super::RESTORE_CLOCK_ALLOWANCE;
use super::ask::{Answer, Ask, PlanError, unexpected};
use crate::history::{HISTORY_OBJECT, restorable_from};
use crate::machine::ListedObject;
use crate::object_name::{ObjectKind, ObjectName, parse_object_name};
use crate::timestamp::Timestamp;

/// What a restore of the past learns before it lists anything: whether the
/// bucket keeps versions, and how far back its history reaches.
#[derive(Debug)]
pub(super) struct Setup {
    asks: Vec<Ask>,
    pub versioned: Option<bool>,
    /// `Some(None)`: the bucket has no history marker.
    pub restorable_from: Option<Option<Timestamp>>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            asks: vec![Ask::ReadHistory, Ask::Versioning],
            versioned: None,
            restorable_from: None,
        }
    }
}

impl Setup {
    pub fn poll_ask(&mut self) -> Option<Ask> {
        self.asks.pop()
    }

    pub fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        match answer {
            Answer::Versioning { enabled } if self.versioned.is_none() => {
                self.versioned = Some(enabled);
            }
            Answer::History { bytes } if self.restorable_from.is_none() => {
                self.restorable_from = Some(read_history(bytes.as_deref())?);
            }
            other => return Err(unexpected(&other)),
        }
        Ok(())
    }
}

/// Refuses an instant later than `now` by more than the clock allowance. A
/// restore to it gave the newest state with exit 0, and a retrieval since
/// it nothing: a mistyped year or month, taken for the past asked for. Within the
/// allowance it is a clock that disagrees, and the newest state is what it
/// asks for.
pub fn check_instant(at: Timestamp, now: Timestamp) -> Result<(), String> {
    if at <= now + RESTORE_CLOCK_ALLOWANCE {
        return Ok(());
    }
    Err(format!(
        "{} is in the future (it is {} now)",
        at.rfc3339(),
        now.rfc3339()
    ))
}

/// Where the history marker fetched (`None`: there is none) says the
/// bucket's history starts; a marker that does not decode is corrupt.
pub(crate) fn read_history(bytes: Option<&[u8]>) -> Result<Option<Timestamp>, PlanError> {
    restorable_from(bytes).map_err(|e| PlanError::Corrupt {
        object: ObjectName::listed(HISTORY_OBJECT),
        why: e.to_string(),
    })
}

/// The instant restored to, and what the bucket said about its history.
#[derive(Debug)]
pub(super) struct Past {
    pub at: Timestamp,
    pub versioned: bool,
    restorable_from: Option<Timestamp>,
    /// Candidates fetched and found to hold changes after `at`.
    pub rejected: usize,
}

impl Past {
    pub fn new(at: Timestamp) -> Self {
        Past {
            at,
            versioned: false,
            restorable_from: None,
            rejected: 0,
        }
    }

    /// Takes in what [`Setup`] learnt; refuses an instant before the
    /// bucket's history.
    pub fn set_up(
        &mut self,
        versioned: bool,
        restorable_from: Option<Timestamp>,
    ) -> Result<(), PlanError> {
        self.versioned = versioned;
        self.restorable_from = restorable_from;
        match restorable_from {
            Some(from) if self.at < from => Err(PlanError::NotRestorable(format!(
                "{} is before the bucket's history: a prune kept what restores to {} and later",
                self.at.rfc3339(),
                from.rfc3339()
            ))),
            _ => Ok(()),
        }
    }

    /// The snapshots that may be the base: those uploaded by `at`, allowing
    /// for the store's clock.
    pub fn candidates(&self, listed: Vec<ListedObject>) -> Vec<ListedObject> {
        listed
            .into_iter()
            .filter(|o| parse_object_name(&o.name).is_ok_and(|p| p.kind == ObjectKind::Snapshot))
            .filter(|o| o.updated <= self.at + RESTORE_CLOCK_ALLOWANCE)
            .collect()
    }

    /// Whether a fetched snapshot whose newest change is `newest_change` may
    /// be the base.
    pub fn takes(&mut self, newest_change: Option<Timestamp>) -> bool {
        let takes = newest_change.is_none_or(|change| change <= self.at);
        if !takes {
            self.rejected += 1;
        }
        takes
    }

    /// With no base, the database is rebuilt from job objects alone: exact
    /// only if no prune has deleted any.
    pub fn may_start_from_nothing(&self) -> Result<(), PlanError> {
        match self.restorable_from {
            Some(from) => Err(PlanError::NotRestorable(format!(
                "no snapshot holds only changes up to {} ({} tried hold later ones), and a \
                 prune has deleted the job objects a restore without one needs; the bucket \
                 restores {} and later",
                self.at.rfc3339(),
                self.rejected,
                from.rfc3339()
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_instant_in_the_future_is_refused_beyond_the_clock_allowance() {
        let now = Timestamp::parse_rfc3339("2026-12-05T12:00:00Z").unwrap();
        assert_eq!(check_instant(now, now), Ok(()));
        assert_eq!(check_instant(now + RESTORE_CLOCK_ALLOWANCE, now), Ok(()));
        let typo = Timestamp::parse_rfc3339("2027-11-05T12:00:00Z").unwrap();
        let why = check_instant(typo, now).unwrap_err();
        assert!(
            why.starts_with("2027-11-05T12:00:00Z is in the future"),
            "{why}"
        );
        let just_past = now + RESTORE_CLOCK_ALLOWANCE + Duration::from_secs(1);
        assert!(check_instant(just_past, now).is_err());
    }
}
