//! One duration syntax for every flag: `10s`, `30min`, `1h30min`, `30d`, `2w`.
//!
//! Each flag used to take whatever `humantime` reads, where `m` is a minute
//! and `M` a month, while restic reads `1m` as a month: `prune --keep 1m`
//! deleted two daily snapshots on a test bucket that meant to keep a month.
//! Here a unit cannot be misread: `m` is refused with a hint, months and
//! years are not units at all, and a number without a unit is refused.

use std::time::Duration;

use jobvault_core::Timestamp;
use jobvault_core::restore_plan::check_instant;

/// The units a duration may use, and what each is worth in seconds
/// (milliseconds are handled on their own).
const UNITS: &[(&[&str], u64)] = &[
    (&["s", "sec", "secs", "second", "seconds"], 1),
    (&["min", "mins", "minute", "minutes"], 60),
    (&["h", "hr", "hrs", "hour", "hours"], 3600),
    (&["d", "day", "days"], 86_400),
    (&["w", "week", "weeks"], 7 * 86_400),
];

const KNOWN: &str = "ms, s, min, h, d or w";

/// Reads a duration such as `90s`, `15min`, `1h30min`, `30d` or `2w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(format!("a duration needs a number and a unit ({KNOWN})"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}`: expected a number at `{rest}`"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: {} is too large", &rest[..digits]))?;
        rest = rest[digits..].trim_start();
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let part = in_unit(number, &rest[..letters], text)?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{text}` is too long"))?;
        rest = rest[letters..].trim_start();
    }
    Ok(total)
}

fn in_unit(number: u64, unit: &str, text: &str) -> Result<Duration, String> {
    match unit {
        "" => Err(format!("`{text}` has no unit: add one of {KNOWN}")),
        "m" | "M" => Err(format!(
            "`{text}`: `{unit}` could be minutes or months; write `min` for minutes \
             (months are not a unit: use `d`)"
        )),
        "ms" => Ok(Duration::from_millis(number)),
        unit => {
            let (_, seconds) = UNITS
                .iter()
                .find(|(names, _)| names.contains(&unit))
                .ok_or_else(|| format!("`{text}`: unknown unit `{unit}`; use {KNOWN}"))?;
            number
                .checked_mul(*seconds)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("`{text}` is too long"))
        }
    }
}

/// How far back restores must keep working: a duration of at least an hour,
/// or `off` (never prune). The same for `run --keep` and `prune --keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep(pub Option<Duration>);

/// A window shorter than an hour would delete what the last snapshot's
/// restores still read.
const KEEP_FLOOR: Duration = Duration::from_secs(3600);

pub fn parse_keep(text: &str) -> Result<Keep, String> {
    if text.trim() == "off" {
        return Ok(Keep(None));
    }
    let keep = parse_duration(text).map_err(|e| format!("{e} (or `off`)"))?;
    if keep < KEEP_FLOOR {
        return Err(format!(
            "`{text}` is under the floor of 1h; or `off` to keep everything"
        ));
    }
    Ok(Keep(Some(keep)))
}

/// Reads an instant: RFC 3339 (`2026-11-25T03:00:00Z`), or a duration
/// ago (`2h`, `1d12h`), from now; not one in the future
/// ([`check_instant`]).
pub fn parse_instant(text: &str) -> Result<Timestamp, String> {
    if let Ok(at) = Timestamp::parse_rfc3339(text) {
        check_instant(at, jobvault::clock::now())?;
        return Ok(at);
    }
    let ago = parse_duration(text).map_err(|why| {
        format!(
            "`{text}` is neither an RFC 3339 time (2026-11-25T03:00:00Z) nor a duration ago ({why})"
        )
    })?;
    Ok(jobvault::clock::now().saturating_sub(ago))
}

/// How often the daemon looks: 100 ms at least, 1 h at most.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if interval < Duration::from_millis(100) {
        return Err(format!("`{text}` is under the floor of 100ms"));
    }
    // The waits derived from it (a trigger's retry is six intervals,
    // doubled up to four times) must stay durations, and a backup that
    // looks once a day is no continuous backup.
    if interval > Duration::from_secs(3600) {
        return Err(format!("`{text}` is over the ceiling of 1h"));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_sums_of_them_read() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("10s", Duration::from_secs(10)),
            ("15min", Duration::from_secs(900)),
            ("1h30min", Duration::from_secs(5400)),
            ("1h 30min", Duration::from_secs(5400)),
            ("30d", Duration::from_secs(30 * 86_400)),
            ("2w", Duration::from_secs(14 * 86_400)),
            ("3 hours", Duration::from_secs(3 * 3600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn a_unit_that_could_be_misread_is_refused_with_a_hint() {
        for text in ["1m", "1M", "5m30s"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("write `min` for minutes"), "{text}: {error}");
        }
        assert!(
            parse_duration("1y")
                .unwrap_err()
                .contains("unknown unit `y`")
        );
        assert!(
            parse_duration("1mo")
                .unwrap_err()
                .contains("unknown unit `mo`")
        );
    }

    #[test]
    fn a_number_without_a_unit_or_junk_is_refused() {
        assert!(parse_duration("0").unwrap_err().contains("has no unit"));
        assert!(parse_duration("30").unwrap_err().contains("has no unit"));
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("-1h")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(
            parse_duration("99999999999999999w")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn keep_has_one_floor_and_off() {
        assert_eq!(parse_keep("off"), Ok(Keep(None)));
        assert_eq!(
            parse_keep("30d"),
            Ok(Keep(Some(Duration::from_secs(30 * 86_400))))
        );
        assert!(parse_keep("59min").unwrap_err().contains("floor of 1h"));
        assert!(parse_keep("0").unwrap_err().contains("has no unit"));
        assert!(
            parse_interval("50ms")
                .unwrap_err()
                .contains("floor of 100ms")
        );
        assert!(
            parse_interval("18446744073709551615s")
                .unwrap_err()
                .contains("ceiling of 1h"),
            "it once overflowed the retry wait and panicked"
        );
    }
}
