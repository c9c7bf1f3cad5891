//! Listing the objects of a kind uploaded between two times: each day
//! folder when there are few, or, for long ranges, discovering the year,
//! month and day folders that exist and listing only those.

use std::collections::{BTreeSet, VecDeque};

use super::ask::{Answer, Ask, Listing, PlanError, Planner, unexpected};
use crate::machine::ListedObject;
use crate::object_name::ObjectKind;
use crate::retrieval::{ListingPlan, folder_in_range, plan_listing};
use crate::timestamp::Timestamp;

/// Lists every object of `kind` in the day folders between `since` and
/// `now`. Each listing's objects are handed out as it arrives, so that
/// whoever uses them can start before the last listing is in.
#[derive(Debug)]
pub struct RangeListing {
    kind: ObjectKind,
    since: Timestamp,
    now: Timestamp,
    /// Every generation of each object is listed, not only the live one.
    versions: bool,
    queue: VecDeque<Ask>,
    /// Listings queued or in flight.
    outstanding: BTreeSet<Listing>,
    /// What listings found, when driven as a [`Planner`].
    listed: Vec<ListedObject>,
}

impl RangeListing {
    pub fn new(kind: ObjectKind, since: Timestamp, now: Timestamp) -> Self {
        RangeListing::listing(kind, since, now, false)
    }

    /// Like [`RangeListing::new`], listing noncurrent generations too.
    pub fn with_versions(kind: ObjectKind, since: Timestamp, now: Timestamp) -> Self {
        RangeListing::listing(kind, since, now, true)
    }

    fn listing(kind: ObjectKind, since: Timestamp, now: Timestamp, versions: bool) -> Self {
        let queue: VecDeque<Ask> = match plan_listing(kind, since, now) {
            ListingPlan::Days(days) => days
                .into_iter()
                .map(|prefix| Ask::ListObjects { prefix, versions })
                .collect(),
            // A folder holding only noncurrent generations (its objects
            // deleted or overwritten since) is in a listing of versions
            // only: `snapshots` did not see them, nor `--at`.
            ListingPlan::Discover => [Ask::ListFolders {
                folder: format!("{}/", kind.dir()),
                versions,
            }]
            .into(),
        };
        RangeListing {
            kind,
            since,
            now,
            versions,
            outstanding: queue.iter().filter_map(Ask::listing).collect(),
            queue,
            listed: Vec::new(),
        }
    }

    /// Every object listed so far, when driven as a [`Planner`].
    pub fn into_objects(self) -> Vec<ListedObject> {
        self.listed
    }

    /// Takes in one answer (a listing, or one page of it); returns the
    /// objects it found, without keeping them.
    pub fn take_answer(&mut self, answer: Answer) -> Result<Vec<ListedObject>, PlanError> {
        let Some(listing) = answer
            .listing()
            .filter(|listing| self.outstanding.contains(listing))
        else {
            return Err(unexpected(&answer));
        };
        if answer.ends_listing() {
            self.outstanding.remove(&listing);
        }
        match answer {
            Answer::Folders { folder, folders } => {
                // `<dir>/YYYY/MM/` holds day folders: list their objects.
                let holds_days = folder.matches('/').count() == 3;
                for found in folders {
                    if folder_in_range(self.kind, &found, self.since, self.now) {
                        let ask = if holds_days {
                            Ask::ListObjects {
                                prefix: found,
                                versions: self.versions,
                            }
                        } else {
                            Ask::ListFolders {
                                folder: found,
                                versions: self.versions,
                            }
                        };
                        self.outstanding.extend(ask.listing());
                        self.queue.push_back(ask);
                    }
                }
                Ok(Vec::new())
            }
            Answer::Objects { objects, .. } => Ok(objects),
            _ => unreachable!("only listings get this far"),
        }
    }
}

impl Planner for RangeListing {
    fn poll_ask(&mut self) -> Option<Ask> {
        self.queue.pop_front()
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        let objects = self.take_answer(answer)?;
        self.listed.extend(objects);
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.outstanding.is_empty()
    }
}
