//! Planning a retrieval: which day folders to list, which objects to fetch,
//! and which version of each job wins.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::envelope::Envelope;
use crate::job_id::JobId;
use crate::machine::ListedObject;
use crate::object_name::{ObjectKind, day_prefix, parse_object_name};
use crate::timestamp::Timestamp;

const DAY: Duration = Duration::from_secs(86_400);

/// The day folders of `kind` that can hold objects uploaded between `since`
/// and `now`, newest first. Empty when `since` is after `now`.
pub fn day_prefixes(kind: ObjectKind, since: Timestamp, now: Timestamp) -> Vec<String> {
    let first = since.start_of_day();
    let mut day = now.start_of_day();
    let mut prefixes = Vec::new();
    while day >= first {
        prefixes.push(day_prefix(kind, day));
        day = day - DAY;
    }
    prefixes
}

/// Beyond this many days, listing each day folder costs more requests than
/// discovering the folders that exist (years, then months, then days).
pub const MAX_DAYS_LISTED_DIRECTLY: usize = 31;

/// How to find the day folders to list for a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingPlan {
    /// List these day folders, newest first.
    Days(Vec<String>),
    /// List `<dir>/` with a delimiter and descend into the year, month and
    /// day folders for which [`folder_in_range`] holds.
    Discover,
}

/// Plans the listing of `kind`'s objects uploaded between `since` and `now`.
pub fn plan_listing(kind: ObjectKind, since: Timestamp, now: Timestamp) -> ListingPlan {
    let days = (now.start_of_day().unix_seconds() - since.start_of_day().unix_seconds()) / 86_400;
    if days < MAX_DAYS_LISTED_DIRECTLY as i64 {
        ListingPlan::Days(day_prefixes(kind, since, now))
    } else {
        ListingPlan::Discover
    }
}

/// Whether a folder found by discovery — `<dir>/YYYY/`, `<dir>/YYYY/MM/` or
/// `<dir>/YYYY/MM/DD/` — can hold objects uploaded between `since` and `now`.
/// Folders that are not dates are skipped.
pub fn folder_in_range(kind: ObjectKind, folder: &str, since: Timestamp, now: Timestamp) -> bool {
    let Some(rest) = folder
        .strip_prefix(kind.dir())
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return false;
    };
    let parts: Option<Vec<u32>> = rest
        .trim_end_matches('/')
        .split('/')
        .map(|part| {
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        })
        .collect();
    let Some(parts) = parts.filter(|p| (1..=3).contains(&p.len())) else {
        return false;
    };
    let ymd = |t: Timestamp| {
        let date = t.to_offset_date_time().date();
        [
            date.year() as u32,
            u32::from(u8::from(date.month())),
            u32::from(date.day()),
        ]
    };
    let (first, last) = (ymd(since), ymd(now));
    let n = parts.len();
    first[..n] <= parts[..] && parts[..] <= last[..n]
}

/// The newest of some listed objects: the latest upload, then the greatest
/// name. Objects that are not of `kind` are ignored.
pub fn newest_object(kind: ObjectKind, objects: &[ListedObject]) -> Option<&ListedObject> {
    objects
        .iter()
        .filter(|object| parse_object_name(&object.name).is_ok_and(|parsed| parsed.kind == kind))
        .max_by(|a, b| (a.updated, &a.name).cmp(&(b.updated, &b.name)))
}

/// Whether a listed object is worth fetching: it was uploaded at or after
/// `since`, so the version it holds may be one that `since` asks for.
pub fn uploaded_since(updated: Timestamp, since: Timestamp) -> bool {
    updated >= since
}

/// Keeps the newest change to each job, by the change sequence inside the
/// object, whatever order the objects arrive in. A tombstone is a change like
/// any other: it wins over older bodies and loses to a newer one (a job
/// deleted and written again).
#[derive(Debug, Default)]
pub struct NewestWins {
    by_id: BTreeMap<JobId, Envelope>,
}

impl NewestWins {
    pub fn new() -> Self {
        NewestWins::default()
    }

    /// Offers one version; keeps it if it is newer than the one held.
    /// Returns whether it was kept.
    pub fn offer(&mut self, envelope: Envelope) -> bool {
        match self.by_id.get(&envelope.id) {
            Some(held) if held.seq >= envelope.seq => false,
            _ => {
                self.by_id.insert(envelope.id.clone(), envelope);
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: &JobId) -> Option<&Envelope> {
        self.by_id.get(id)
    }

    /// The winners, sorted by job id.
    pub fn into_sorted(self) -> Vec<Envelope> {
        self.by_id.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn version(id: &str, seq: u64) -> Envelope {
        let body = format!(r#"{{"id":"{id}","name":"v{seq}"}}"#);
        Envelope::written(
            JobId::new(id).unwrap(),
            seq,
            Timestamp::from_unix_seconds(seq as i64),
            body,
        )
    }

    #[test]
    fn lists_today_back_to_the_day_of_since() {
        let prefixes = day_prefixes(
            ObjectKind::Job,
            at("2016-11-14T23:59:59Z"),
            at("2016-11-16T00:00:01Z"),
        );
        assert_eq!(
            prefixes,
            [
                "job-backup/2016/11/16/",
                "job-backup/2016/11/15/",
                "job-backup/2016/11/14/"
            ]
        );
    }

    #[test]
    fn crosses_month_and_year_ends() {
        let prefixes = day_prefixes(
            ObjectKind::Snapshot,
            at("2016-12-31T12:00:00Z"),
            at("2017-01-01T01:00:00Z"),
        );
        assert_eq!(prefixes, ["db-backup/2017/01/01/", "db-backup/2016/12/31/"]);
    }

    #[test]
    fn since_in_the_future_lists_nothing() {
        assert!(
            day_prefixes(
                ObjectKind::Job,
                at("2016-11-17T00:00:00Z"),
                at("2016-11-16T00:00:00Z")
            )
            .is_empty()
        );
    }

    #[test]
    fn short_ranges_list_days_long_ones_discover() {
        let now = at("2016-11-16T12:00:00Z");
        assert_eq!(
            plan_listing(ObjectKind::Job, at("2016-11-15T00:00:00Z"), now),
            ListingPlan::Days(vec![
                "job-backup/2016/11/16/".into(),
                "job-backup/2016/11/15/".into()
            ])
        );
        assert_eq!(
            plan_listing(ObjectKind::Job, Timestamp::UNIX_EPOCH, now),
            ListingPlan::Discover
        );
    }

    #[test]
    fn discovery_keeps_the_folders_that_overlap_the_range() {
        let (since, now) = (at("2015-12-30T10:00:00Z"), at("2016-02-03T10:00:00Z"));
        let kept = |folder: &str| folder_in_range(ObjectKind::Job, folder, since, now);
        for folder in [
            "job-backup/2015/",
            "job-backup/2016/",
            "job-backup/2015/12/",
            "job-backup/2016/02/",
            "job-backup/2015/12/30/",
            "job-backup/2016/02/03/",
            "job-backup/2016/01/17/",
        ] {
            assert!(kept(folder), "{folder}");
        }
        for folder in [
            "job-backup/2014/",
            "job-backup/2017/",
            "job-backup/2015/11/",
            "job-backup/2016/03/",
            "job-backup/2015/12/29/",
            "job-backup/2016/02/04/",
            "job-backup/notes/",
            "db-backup/2016/",
            "job-backup/2016/1x/",
        ] {
            assert!(!kept(folder), "{folder}");
        }
    }

    #[test]
    fn the_newest_object_is_the_latest_upload() {
        let listed = |name: &str, secs: i64| ListedObject {
            name: crate::object_name::ObjectName::listed(name),
            updated: Timestamp::from_unix_seconds(secs),
            size: 1,
            generation: None,
            sealed: false,
        };
        let objects = [
            listed("db-backup/2016/11/16/a.bdb", 20),
            listed("db-backup/2016/11/16/c.bdb", 10),
            listed("db-backup/2016/11/16/b.bdb", 20),
            listed("job-backup/2016/11/16/j.job", 99),
            listed("db-backup/2016/11/16/notes.txt", 99),
        ];
        let newest = newest_object(ObjectKind::Snapshot, &objects).unwrap();
        assert_eq!(newest.name, "db-backup/2016/11/16/b.bdb");
        assert!(newest_object(ObjectKind::Snapshot, &objects[3..]).is_none());
    }

    #[test]
    fn the_newest_version_wins_in_any_order() {
        let mut merge = NewestWins::new();
        assert!(merge.offer(version("a", 5)));
        assert!(!merge.offer(version("a", 3)));
        assert!(merge.offer(version("a", 9)));
        assert!(!merge.offer(version("a", 9)));
        assert!(merge.offer(version("b", 1)));
        let winners: Vec<_> = merge
            .into_sorted()
            .iter()
            .map(|e| (e.id.to_string(), e.seq))
            .collect();
        assert_eq!(winners, [("a".to_owned(), 9), ("b".to_owned(), 1)]);
    }

    proptest! {
        #[test]
        fn merge_order_does_not_matter(
            versions in proptest::collection::vec((0usize..4, 0u64..50), 0..40),
            seed in any::<u64>(),
        ) {
            let ids = ["a", "b", "c.d", "e"];
            let build = |list: &[(usize, u64)]| {
                let mut merge = NewestWins::new();
                for &(i, seq) in list {
                    merge.offer(version(ids[i], seq));
                }
                merge.into_sorted().into_iter().map(|e| (e.id, e.seq)).collect::<Vec<_>>()
            };
            let mut shuffled = versions.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let winners = build(&versions);
            prop_assert_eq!(&winners, &build(&shuffled));
            for (id, seq) in winners {
                let newest = versions.iter().filter(|(i, _)| ids[*i] == id.as_str()).map(|(_, s)| *s).max();
                prop_assert_eq!(Some(seq), newest);
            }
        }

        #[test]
        fn every_day_between_is_listed_once(
            since in 0i64..2_000_000_000,
            span in 0i64..40 * 86_400,
        ) {
            let since = Timestamp::from_unix_seconds(since);
            let now = Timestamp::from_unix_seconds(since.unix_seconds() + span);
            let prefixes = day_prefixes(ObjectKind::Job, since, now);
            prop_assert_eq!(prefixes.first().cloned(), Some(day_prefix(ObjectKind::Job, now)));
            prop_assert_eq!(prefixes.last().cloned(), Some(day_prefix(ObjectKind::Job, since)));
            let days = (now.start_of_day().unix_seconds() - since.start_of_day().unix_seconds()) / 86_400;
            prop_assert_eq!(prefixes.len() as i64, days + 1);
        }
    }
}
