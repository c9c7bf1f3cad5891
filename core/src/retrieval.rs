//! Planning a retrieval: which day folders to list, which objects to fetch,
//! and which version of each job wins.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::envelope::Envelope;
use crate::job_id::JobId;
use crate::object_name::{ObjectKind, day_prefix};
use crate::timestamp::Timestamp;

const DAY: Duration = Duration::from_secs(86_400);

/// How far a restore reaches back before the snapshot's time, to allow for
/// the store's clock running behind ours. Fetching a few extra versions costs
/// little: the newest-wins merge discards them.
pub const RESTORE_CLOCK_ALLOWANCE: Duration = Duration::from_secs(10 * 60);

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

/// Whether a listed object is worth fetching: it was uploaded at or after
/// `since`, so the version it holds may be one that `since` asks for.
pub fn uploaded_since(updated: Timestamp, since: Timestamp) -> bool {
    updated >= since
}

/// Keeps the newest version of each job, by the change sequence inside the
/// object, whatever order the objects arrive in.
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
        match self.by_id.get(&envelope.job.id) {
            Some(held) if held.seq >= envelope.seq => false,
            _ => {
                self.by_id.insert(envelope.job.id.clone(), envelope);
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
    use crate::job::Job;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn version(id: &str, seq: u64) -> Envelope {
        let job = Job::new(JobId::new(id).unwrap(), format!("v{seq}"));
        Envelope::new(seq, Timestamp::from_unix_seconds(seq as i64), job)
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
            .map(|e| (e.job.id.to_string(), e.seq))
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
                merge.into_sorted().into_iter().map(|e| (e.job.id, e.seq)).collect::<Vec<_>>()
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
