//! Object names in the bucket, and the framing every object is uploaded with.
//!
//! ```text
//! db-backup/YYYY/MM/DD/<basename>.bdb   gzip of a SQLite database file
//! job-backup/YYYY/MM/DD/<id>.job        gzip of one job envelope
//! ```
//!
//! The date is the UTC day of the upload. Names here are relative to the
//! store's optional prefix, which the store adds and strips itself.

use crate::job_id::{InvalidName, JobId, check_base_name};
use crate::timestamp::Timestamp;

pub const SNAPSHOT_DIR: &str = "db-backup";
pub const SNAPSHOT_EXTENSION: &str = "bdb";
pub const JOB_DIR: &str = "job-backup";
pub const JOB_EXTENSION: &str = "job";

/// What an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Snapshot,
    Job,
}

impl ObjectKind {
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => SNAPSHOT_DIR,
            ObjectKind::Job => JOB_DIR,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => SNAPSHOT_EXTENSION,
            ObjectKind::Job => JOB_EXTENSION,
        }
    }

    /// A lower-case label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Job => "job",
        }
    }
}

/// The name of an object in the bucket, relative to the store's prefix:
/// one jobvault made ([`snapshot_object`], [`job_object`]), one a listing
/// found (which may be anyone's), or one a user named (`restore
/// --snapshot`), taken as given ([`ObjectName::listed`]). A type of its own so that a command's
/// object cannot be mixed up with a trigger's name, a job id or a
/// location; it reads as the `str` it is.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ObjectName(String);

impl ObjectName {
    /// A name as the store listed it.
    pub fn listed(name: impl Into<String>) -> Self {
        ObjectName(name.into())
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

reads_as_str!(ObjectName);

impl PartialEq<str> for ObjectName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for ObjectName {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl PartialEq<&str> for ObjectName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The folder holding the objects of `kind` uploaded on `day`'s UTC day,
/// with a trailing slash: `job-backup/2016/11/16/`.
pub fn day_prefix(kind: ObjectKind, day: Timestamp) -> String {
    format!("{}/{}/", kind.dir(), day.day_path())
}

/// `db-backup/YYYY/MM/DD/<basename>.bdb` for a snapshot uploaded at `at`.
pub fn snapshot_object(at: Timestamp, basename: &str) -> Result<ObjectName, InvalidName> {
    check_base_name("snapshot name", basename)?;
    Ok(ObjectName(format!(
        "{}{basename}.{SNAPSHOT_EXTENSION}",
        day_prefix(ObjectKind::Snapshot, at)
    )))
}

/// `job-backup/YYYY/MM/DD/<id>.job` for a job uploaded at `at`.
pub fn job_object(at: Timestamp, id: &JobId) -> ObjectName {
    ObjectName(format!(
        "{}{id}.{JOB_EXTENSION}",
        day_prefix(ObjectKind::Job, at)
    ))
}

/// Whether the object `name` holds jobs (a job object or a snapshot): what
/// `run --encrypt-to` encrypts. jobvault's own objects beside them (the
/// lease, the destination and history markers) hold none, and stay
/// readable without a key to `status` and to the daemon's retention.
pub fn holds_jobs(name: &str) -> bool {
    parse_object_name(name).is_ok()
}

/// An object name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedObject {
    pub kind: ObjectKind,
    /// Midnight UTC of the day in the name.
    pub day: Timestamp,
    /// The snapshot's base name or the job id, without the extension.
    pub base: String,
}

/// Why a name is not one of jobvault's object names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object {name:?} is not named like a jobvault backup: {why}")]
pub struct ObjectNameError {
    name: String,
    why: String,
}

/// Takes an object name apart. The inverse of [`snapshot_object`] and
/// [`job_object`].
pub fn parse_object_name(name: &str) -> Result<ParsedObject, ObjectNameError> {
    let fail = |why: &str| ObjectNameError {
        name: name.to_owned(),
        why: why.to_owned(),
    };
    let mut parts = name.splitn(5, '/');
    let (Some(dir), Some(year), Some(month), Some(day), Some(file)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(fail("expected <dir>/YYYY/MM/DD/<file>"));
    };
    let kind = match dir {
        SNAPSHOT_DIR => ObjectKind::Snapshot,
        JOB_DIR => ObjectKind::Job,
        _ => return Err(fail("the first folder is neither db-backup nor job-backup")),
    };
    let day = parse_day(year, month, day).ok_or_else(|| fail("YYYY/MM/DD is not a date"))?;
    let base = file
        .strip_suffix(kind.extension())
        .and_then(|stem| stem.strip_suffix('.'))
        .ok_or_else(|| {
            fail(&format!(
                "the file name does not end in .{}",
                kind.extension()
            ))
        })?;
    let what = match kind {
        ObjectKind::Snapshot => "snapshot name",
        ObjectKind::Job => "job id",
    };
    check_base_name(what, base).map_err(|e| fail(&e.to_string()))?;
    Ok(ParsedObject {
        kind,
        day,
        base: base.to_owned(),
    })
}

fn parse_day(year: &str, month: &str, day: &str) -> Option<Timestamp> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(year, 4) && digits(month, 2) && digits(day, 2)) {
        return None;
    }
    let month = time::Month::try_from(month.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
    Some(Timestamp::from_offset_date_time(
        date.midnight().assume_utc(),
    ))
}

/// How an object is framed on upload: the gzip header and the object metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    /// The gzip header's file name: the object's base name with extension.
    pub gzip_name: String,
    /// The gzip header's modification time.
    pub gzip_mtime: Timestamp,
    /// The gzip member goes up encrypted, as an age file: the store must
    /// neither be told it is gzip nor asked to transcode it.
    pub sealed: bool,
}

impl Framing {
    pub const CONTENT_TYPE: &'static str = "application/octet-stream";
    pub const CONTENT_ENCODING: &'static str = "gzip";
    /// The content type of an encrypted object.
    pub const SEALED_CONTENT_TYPE: &'static str = "application/x-age-encryption";
    /// The custom metadata field that names an encrypted object's format,
    /// and its value.
    pub const ENCRYPTION_FIELD: &'static str = "jobvault-encryption";
    pub const ENCRYPTION_FORMAT: &'static str = "age-v1";

    /// Framing for `object` with the given gzip modification time.
    pub fn for_object(object: &str, gzip_mtime: Timestamp) -> Self {
        let base = object.rsplit('/').next().unwrap_or(object);
        Framing {
            gzip_name: base.to_owned(),
            gzip_mtime,
            sealed: false,
        }
    }

    /// The same framing, for the object encrypted.
    pub fn sealed(self) -> Self {
        Framing {
            sealed: true,
            ..self
        }
    }

    pub fn content_type(&self) -> &'static str {
        if self.sealed {
            Self::SEALED_CONTENT_TYPE
        } else {
            Self::CONTENT_TYPE
        }
    }

    /// `gzip`, unless the object is encrypted: a store that transcoded it
    /// would try to gunzip an age file.
    pub fn content_encoding(&self) -> Option<&'static str> {
        (!self.sealed).then_some(Self::CONTENT_ENCODING)
    }

    /// `attachment; filename="<base name>"`, so a browser download keeps the name.
    pub fn content_disposition(&self) -> String {
        format!("attachment; filename=\"{}\"", self.gzip_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn job_objects_and_snapshots_hold_jobs_and_jobvaults_own_objects_do_not() {
        let day = at("2026-12-05T03:00:00Z");
        let id = JobId::new("j1").unwrap();
        assert!(holds_jobs(&job_object(day, &id)));
        assert!(holds_jobs(&snapshot_object(day, "nightly").unwrap()));
        for own in [
            crate::lease::LEASE_OBJECT,
            crate::history::HISTORY_OBJECT,
            crate::destination::DESTINATION_OBJECT,
        ] {
            assert!(!holds_jobs(own), "{own}");
        }
    }

    #[test]
    fn names_over_a_table_of_dates_and_ids() {
        let dates = [
            "2016-11-16T22:04:25.634818978Z",
            "2016-12-31T23:59:59.999999999Z",
            "2017-01-01T00:00:00Z",
            "2020-02-29T12:00:00+09:00",
            "1999-03-04T05:06:07-08:00",
        ];
        let ids = [
            "20161116T220425.634818978Z_0000000000001e88",
            "a.b.c",
            "plain",
            "x.job",
        ];
        let mut table = String::new();
        for date in dates {
            let t = at(date);
            table.push_str(&format!("{date}\n"));
            table.push_str(&format!(
                "  {}\n",
                snapshot_object(t, "task-scheduler-22:04:25").unwrap()
            ));
            for id in ids {
                table.push_str(&format!("  {}\n", job_object(t, &JobId::new(id).unwrap())));
            }
        }
        insta::assert_snapshot!(table);
    }

    #[test]
    fn framing_names_the_base_file() {
        let framing = Framing::for_object(
            "db-backup/2016/11/16/nightly.bdb",
            at("2016-11-16T00:00:00Z"),
        );
        assert_eq!(framing.gzip_name, "nightly.bdb");
        assert_eq!(
            framing.content_disposition(),
            "attachment; filename=\"nightly.bdb\""
        );
    }

    #[test]
    fn parses_what_it_formats() {
        let t = at("2016-11-16T22:04:25Z");
        let id = JobId::new("x.job").unwrap();
        let parsed = parse_object_name(&job_object(t, &id)).unwrap();
        assert_eq!(parsed.kind, ObjectKind::Job);
        assert_eq!(parsed.base, "x.job");
        assert_eq!(parsed.day, t.start_of_day());
    }

    #[test]
    fn rejects_foreign_and_malformed_names() {
        for (name, why) in [
            ("job-backup/2016/11/16", "expected <dir>"),
            ("other/2016/11/16/a.job", "neither db-backup nor job-backup"),
            ("job-backup/2016/13/16/a.job", "not a date"),
            ("job-backup/16/11/16/a.job", "not a date"),
            ("job-backup/2016/11/16/a.bdb", "does not end in .job"),
            ("job-backup/2016/11/16/a/b.job", "contains '/'"),
            ("job-backup/2016/11/16/.job", "job id is empty"),
        ] {
            let err = parse_object_name(name).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
        }
    }

    #[test]
    fn rejects_unsafe_snapshot_names() {
        assert!(snapshot_object(Timestamp::UNIX_EPOCH, "../x").is_err());
    }

    proptest! {
        #[test]
        fn job_names_round_trip(
            id in "[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}",
            nanos in 0i64..4_102_444_800_000_000_000,
        ) {
            prop_assume!(!id.contains(".."));
            let id = JobId::new(id).unwrap();
            let t = Timestamp::from_unix_nanos(nanos);
            let parsed = parse_object_name(&job_object(t, &id)).unwrap();
            prop_assert_eq!(parsed.kind, ObjectKind::Job);
            prop_assert_eq!(parsed.base, id.as_str());
            prop_assert_eq!(parsed.day, t.start_of_day());
        }

        #[test]
        fn snapshot_names_round_trip(
            base in "[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}",
            nanos in 0i64..4_102_444_800_000_000_000,
        ) {
            prop_assume!(!base.contains(".."));
            let t = Timestamp::from_unix_nanos(nanos);
            let parsed = parse_object_name(&snapshot_object(t, &base).unwrap()).unwrap();
            prop_assert_eq!(parsed.kind, ObjectKind::Snapshot);
            prop_assert_eq!(parsed.base, base);
            prop_assert_eq!(parsed.day, t.start_of_day());
        }

        #[test]
        fn whatever_parses_formats_back_to_itself(
            name in "(job-backup|db-backup|x)/[0-9]{4}/[0-9]{2}/[0-9]{2}/\\PC{0,20}"
        ) {
            if let Ok(parsed) = parse_object_name(&name) {
                let again = match parsed.kind {
                    ObjectKind::Job => job_object(parsed.day, &JobId::new(parsed.base).unwrap()),
                    ObjectKind::Snapshot => snapshot_object(parsed.day, &parsed.base).unwrap(),
                };
                prop_assert_eq!(again, name);
            }
        }
    }
}
