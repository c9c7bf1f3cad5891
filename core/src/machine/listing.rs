//! A listing of the snapshots, and what it says of backups deleted under
//! the daemon while the prefix's markers stayed.
//!
//! A cleanup that deleted every object under `db-backup/` and `job-backup/`
//! but left `jobvault-destination.json` and the lease went unnoticed: the
//! marker check and the lease renewals found both as they were, the
//! caught-up figure kept moving for 11 minutes, the newest-snapshot metric
//! kept the deleted snapshot, and a stop exited 0 over an empty prefix (a
//! hostile trial). Now each listing (every 10 minutes) looks for the newest
//! snapshot the daemon knew of when it was issued. Missing from a folder
//! the listing covered, the prefix no longer holds the database: the
//! daemon starts over as for a copy gone back, with a fresh marker and a
//! full snapshot, its caught-up figure silent and a stop exiting 1 until
//! that lands. No prune, ours or another's, deletes the newest snapshot, so
//! none is taken for such a deletion.

use super::io::ListedObject;
use crate::object_name::ObjectName;
use crate::timestamp::Timestamp;

/// A listing of the snapshots in flight.
#[derive(Debug)]
pub(crate) struct Listing {
    pub issued_at: Timestamp,
    /// The day folders it lists.
    prefixes: Vec<String>,
    /// The newest snapshot known when it was issued.
    newest_known: Option<ObjectName>,
}

impl Listing {
    pub fn new(
        issued_at: Timestamp,
        prefixes: Vec<String>,
        newest_known: Option<ObjectName>,
    ) -> Self {
        Listing {
            issued_at,
            prefixes,
            newest_known,
        }
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// The newest snapshot known when it was issued, if it lists that
    /// snapshot's folder and did not find it there.
    pub fn lost(&self, listed: &[ListedObject]) -> Option<&ObjectName> {
        self.newest_known.as_ref().filter(|known| {
            self.prefixes.iter().any(|p| known.starts_with(p.as_str()))
                && !listed.iter().any(|object| object.name == **known)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_name::{ObjectKind, day_prefix, snapshot_object};

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn listed(name: &ObjectName) -> ListedObject {
        ListedObject {
            name: name.clone(),
            updated: at("2026-12-06T03:00:00Z"),
            size: 1,
            generation: None,
            sealed: false,
        }
    }

    #[test]
    fn only_a_snapshot_missing_from_a_folder_listed_is_lost() {
        let today = at("2026-12-06T12:00:00Z");
        let newest = snapshot_object(at("2026-12-06T03:00:00Z"), "task-scheduler").unwrap();
        let older = snapshot_object(at("2026-12-01T03:00:00Z"), "task-scheduler").unwrap();
        let prefixes = vec![day_prefix(ObjectKind::Snapshot, today)];
        let listing = Listing::new(today, prefixes.clone(), Some(newest.clone()));
        assert_eq!(listing.lost(&[]), Some(&newest));
        assert_eq!(listing.lost(&[listed(&newest)]), None);
        let outside = Listing::new(today, prefixes.clone(), Some(older));
        assert_eq!(outside.lost(&[]), None, "its folder was not listed");
        assert_eq!(Listing::new(today, prefixes, None).lost(&[]), None);
    }
}
