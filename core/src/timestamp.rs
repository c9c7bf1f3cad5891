//! Wall-clock time as the core sees it: a number the caller hands in.
//!
//! The core never reads a clock. Every instant it works with arrives as a
//! [`Timestamp`], which keeps the state machine deterministic and lets the
//! simulator jump the clock at will.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An instant in UTC, as nanoseconds since the Unix epoch.
///
/// Serialized as an RFC 3339 string in human-readable formats (JSON) and as a
/// plain integer in binary ones (the postcard job envelope), so the envelope's
/// wire format does not depend on any date library.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// Why a piece of text is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 time such as 2016-11-16T22:04:25Z")]
pub struct TimestampError {
    text: String,
}

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Timestamp(seconds.saturating_mul(1_000_000_000))
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded towards the past.
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    /// The same instant with the sub-second part dropped.
    pub const fn whole_seconds(self) -> Self {
        Timestamp::from_unix_seconds(self.unix_seconds())
    }

    /// Midnight UTC of this instant's day.
    pub const fn start_of_day(self) -> Self {
        Timestamp::from_unix_seconds(self.unix_seconds().div_euclid(86_400) * 86_400)
    }

    pub fn from_offset_date_time(at: OffsetDateTime) -> Self {
        let nanos = at.unix_timestamp_nanos();
        Timestamp(nanos.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }

    pub fn to_offset_date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .expect("every i64 nanosecond count is a valid date")
    }

    /// Parses RFC 3339 text with any offset; the result is UTC.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        OffsetDateTime::parse(text.trim(), &Rfc3339)
            .map(Timestamp::from_offset_date_time)
            .map_err(|_| TimestampError {
                text: text.to_owned(),
            })
    }

    /// RFC 3339 in UTC, with as many fractional digits as needed.
    pub fn rfc3339(self) -> String {
        self.to_offset_date_time()
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.0.to_string())
    }

    /// `YYYY/MM/DD` in UTC: the day part of every object name.
    pub fn day_path(self) -> String {
        let date = self.to_offset_date_time().date();
        format!(
            "{:04}/{:02}/{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        )
    }

    /// `HH:MM:SS` in UTC, sub-seconds dropped.
    pub fn clock_hms(self) -> String {
        let t = self.to_offset_date_time().time();
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }

    /// Seconds since the epoch as the gzip header stores them (an unsigned
    /// 32-bit field; instants outside its range are clamped).
    pub fn gzip_mtime(self) -> u32 {
        self.unix_seconds().clamp(0, i64::from(u32::MAX)) as u32
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_nanos(d)))
    }

    pub fn saturating_sub(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(duration_nanos(d)))
    }

    /// How long after `earlier` this instant is; zero if it is not after.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        let nanos = self.0.saturating_sub(earlier.0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.rfc3339())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.rfc3339())
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Timestamp::parse_rfc3339(&text).map_err(D::Error::custom)
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_days_and_clock_in_utc() {
        let t = Timestamp::parse_rfc3339("2016-11-16T22:04:25.634818978-05:00").unwrap();
        assert_eq!(t.day_path(), "2016/11/17");
        assert_eq!(t.clock_hms(), "03:04:25");
        assert_eq!(t.rfc3339(), "2016-11-17T03:04:25.634818978Z");
    }

    #[test]
    fn days_before_the_epoch_round_towards_the_past() {
        let t = Timestamp::from_unix_nanos(-1);
        assert_eq!(t.day_path(), "1969/12/31");
        assert_eq!(t.start_of_day(), Timestamp::from_unix_seconds(-86_400));
    }

    #[test]
    fn rejects_text_that_is_not_rfc3339() {
        let err = Timestamp::parse_rfc3339("yesterday").unwrap_err();
        assert!(err.to_string().contains("\"yesterday\""), "{err}");
    }

    #[test]
    fn gzip_mtime_clamps_to_the_header_field() {
        assert_eq!(Timestamp::from_unix_seconds(-5).gzip_mtime(), 0);
        assert_eq!(Timestamp::from_unix_seconds(1 << 40).gzip_mtime(), u32::MAX);
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(nanos in any::<i64>()) {
            let t = Timestamp::from_unix_nanos(nanos);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339()).unwrap(), t);
        }

        #[test]
        fn json_and_postcard_round_trip(nanos in any::<i64>()) {
            let t = Timestamp::from_unix_nanos(nanos);
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
            let bytes = postcard::to_allocvec(&t).unwrap();
            prop_assert_eq!(postcard::from_bytes::<Timestamp>(&bytes).unwrap(), t);
        }

        #[test]
        fn start_of_day_keeps_the_day(nanos in any::<i64>()) {
            let t = Timestamp::from_unix_nanos(nanos);
            prop_assert_eq!(t.start_of_day().day_path(), t.day_path());
            prop_assert!(t.start_of_day() <= t);
        }
    }
}
