//! Snapshots on a schedule, with no timer outside: daily at a UTC time
//! (`run --snapshot-at HH:MM`), every so often (`--snapshot-every`), or both.
//!
//! The original took a snapshot only when a trigger file appeared, and only
//! systemd's timer dropped one: a container, a laptop or a host without
//! systemd got none. Here the core decides. A schedule is due when the
//! newest snapshot the bucket holds is older than its last due instant, so a
//! due time missed while the daemon was down is taken once the first
//! listing shows it missing, and a snapshot taken for any reason (a
//! trigger, a request) counts. A failed attempt is retried as a trigger's
//! is: at most [`RETRY_COUNT`] attempts per due instant, the waits between
//! them doubling from [`super::trigger_retry_wait`]; the next due instant
//! (the next day's time, the next interval) starts a new count. The count
//! lives in memory: a restart is a new chance, as it is for a trigger whose
//! count could not be written.

use std::time::Duration;

use crate::timestamp::Timestamp;
use crate::trigger::RETRY_COUNT;

const DAY_SECONDS: i64 = 86_400;

/// When scheduled snapshots are due; the default schedules none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schedule {
    /// Seconds after midnight UTC, daily.
    pub daily_at: Option<u32>,
    /// This long after the newest snapshot.
    pub every: Option<Duration>,
}

/// A `--snapshot-at` value that is not `HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time of day as HH:MM (UTC, 00:00 to 23:59)")]
pub struct NotATimeOfDay(pub String);

/// Reads `HH:MM` as seconds after midnight.
pub fn parse_time_of_day(text: &str) -> Result<u32, NotATimeOfDay> {
    let bad = || NotATimeOfDay(text.to_owned());
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    let two_digits = |part: &str| {
        (part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u32>().ok())
            .flatten()
    };
    match (two_digits(hours), two_digits(minutes)) {
        (Some(h), Some(m)) if h < 24 && m < 60 => Ok(h * 3600 + m * 60),
        _ => Err(bad()),
    }
}

impl Schedule {
    /// The latest due instant at or before `now` that a snapshot landed at
    /// `newest` does not meet, if any.
    pub fn due(&self, now: Timestamp, newest: Option<Timestamp>) -> Option<Timestamp> {
        let daily = self.daily_at.map(|at| {
            let today = now.start_of_day() + Duration::from_secs(u64::from(at));
            if today <= now {
                today
            } else {
                Timestamp::from_unix_seconds(today.unix_seconds() - DAY_SECONDS)
            }
        });
        // The last whole interval after the newest, so that attempts that
        // ran out have a new due instant an interval later; with no
        // snapshot known, overdue since ever: one instant, whose attempts
        // are counted.
        let every = self.every.map(|every| match newest {
            Some(newest) if newest <= now => {
                let intervals = now.duration_since(newest).as_nanos() / every.as_nanos().max(1);
                let since = every.as_nanos() * intervals.max(1);
                newest + Duration::from_nanos(u64::try_from(since).unwrap_or(u64::MAX))
            }
            _ => Timestamp::UNIX_EPOCH,
        });
        [daily, every]
            .into_iter()
            .flatten()
            .filter(|due| *due <= now && newest.is_none_or(|newest| newest < *due))
            .max()
    }
}

/// The attempts at one due instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempts {
    pub due: Timestamp,
    pub made: u32,
    /// The next attempt waits until then.
    pub retry_at: Option<Timestamp>,
}

impl Attempts {
    /// Whether another attempt may start at `now`.
    pub fn may_try(&self, now: Timestamp) -> bool {
        self.made < RETRY_COUNT && self.retry_at.is_none_or(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn times_of_day_are_hh_mm() {
        assert_eq!(parse_time_of_day("03:00"), Ok(3 * 3600));
        assert_eq!(parse_time_of_day("23:59"), Ok(23 * 3600 + 59 * 60));
        for bad in [
            "3:00", "24:00", "12:60", "12", "12:00:00", "ab:cd", "+1:00", "",
        ] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_daily_schedule_is_due_until_a_snapshot_lands_after_its_time() {
        let daily = Schedule {
            daily_at: Some(3 * 3600),
            every: None,
        };
        let now = at("2026-12-04T10:00:00Z");
        let due = at("2026-12-04T03:00:00Z");
        assert_eq!(daily.due(now, None), Some(due));
        assert_eq!(daily.due(now, Some(at("2026-12-03T23:00:00Z"))), Some(due));
        assert_eq!(daily.due(now, Some(at("2026-12-04T03:00:01Z"))), None);
        // Before today's time, yesterday's is the one due.
        let early = at("2026-12-04T02:00:00Z");
        assert_eq!(
            daily.due(early, Some(at("2026-12-02T05:00:00Z"))),
            Some(at("2026-12-03T03:00:00Z"))
        );
        assert_eq!(daily.due(early, Some(at("2026-12-03T04:00:00Z"))), None);
    }

    #[test]
    fn an_interval_schedule_is_due_that_long_after_the_newest_snapshot() {
        let every = Schedule {
            daily_at: None,
            every: Some(Duration::from_secs(6 * 3600)),
        };
        let now = at("2026-12-04T10:00:00Z");
        assert_eq!(every.due(now, None), Some(Timestamp::UNIX_EPOCH));
        assert_eq!(every.due(now, Some(at("2026-12-04T05:00:00Z"))), None);
        assert_eq!(
            every.due(now, Some(at("2026-12-04T03:00:00Z"))),
            Some(at("2026-12-04T09:00:00Z"))
        );
        // Attempts that ran out at 09:00 get a new instant at 15:00.
        assert_eq!(
            every.due(at("2026-12-04T15:30:00Z"), Some(at("2026-12-04T03:00:00Z"))),
            Some(at("2026-12-04T15:00:00Z"))
        );
        assert_eq!(Schedule::default().due(now, None), None);
    }
}
