//! Finding the newest object of a kind without listing the whole bucket:
//! walk the year, month and day folders from the newest back, and stop at the
//! first day that holds one (the original listed every snapshot ever written).

use std::collections::BTreeSet;

use super::ask::{Answer, Ask, Listing, PlanError, Planner, unexpected};
use crate::machine::ListedObject;
use crate::object_name::{ObjectKind, ObjectName};
use crate::retrieval::{folder_in_range, newest_object};
use crate::timestamp::Timestamp;

/// The next older day folder after the first that holds one is listed too,
/// in case a clock step put the newest upload there.
const DAYS_LISTED_AFTER_THE_FIRST_HIT: u32 = 1;

/// Searches for the newest object of one kind.
#[derive(Debug)]
pub struct NewestSearch {
    kind: ObjectKind,
    /// Folders still to visit, by depth: years, then months, then days; each
    /// sorted so that the newest is last.
    levels: Vec<Vec<String>>,
    asked: Option<Ask>,
    /// The listing in flight.
    outstanding: Option<Listing>,
    /// The pages of the day folder being listed.
    day: Vec<ListedObject>,
    found: Vec<ListedObject>,
    /// Days listed since (and including) the first that held one.
    days_with_hits: u32,
    /// Objects passed over as if absent: snapshots found unusable.
    excluded: BTreeSet<ObjectName>,
}

impl NewestSearch {
    pub fn new(kind: ObjectKind) -> Self {
        NewestSearch {
            kind,
            levels: Vec::new(),
            asked: Some(Ask::ListFolders {
                folder: format!("{}/", kind.dir()),
                versions: false,
            }),
            outstanding: None,
            day: Vec::new(),
            found: Vec::new(),
            days_with_hits: 0,
            excluded: BTreeSet::new(),
        }
    }

    /// Searches for the newest object of `kind` that is not one of
    /// `excluded`: the next older one once the newest proved unusable.
    pub fn excluding(kind: ObjectKind, excluded: BTreeSet<ObjectName>) -> Self {
        NewestSearch {
            excluded,
            ..NewestSearch::new(kind)
        }
    }

    /// The newest object found: the latest upload, then the greatest name.
    pub fn newest(&self) -> Option<&ListedObject> {
        newest_object(self.kind, &self.found)
    }

    pub fn into_newest(self) -> Option<ListedObject> {
        self.newest().cloned()
    }

    fn done(&self) -> bool {
        self.days_with_hits > DAYS_LISTED_AFTER_THE_FIRST_HIT
    }

    /// Asks for the newest folder not visited yet, if any.
    fn advance(&mut self) {
        while let Some(level) = self.levels.last_mut() {
            let Some(folder) = level.pop() else {
                self.levels.pop();
                continue;
            };
            // The third level holds day folders: list their objects.
            self.asked = Some(if self.levels.len() == 3 {
                Ask::ListObjects {
                    prefix: folder,
                    versions: false,
                }
            } else {
                Ask::ListFolders {
                    folder,
                    versions: false,
                }
            });
            return;
        }
    }
}

impl Planner for NewestSearch {
    fn poll_ask(&mut self) -> Option<Ask> {
        let ask = self.asked.take()?;
        self.outstanding = ask.listing();
        Some(ask)
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        if answer.listing().is_none() || answer.listing() != self.outstanding {
            return Err(unexpected(&answer));
        }
        match answer {
            Answer::Folders { mut folders, .. } if self.levels.len() < 3 => {
                // Only date folders hold backups; anything else (a `manual/`
                // folder someone made) would be walked first, for nothing.
                folders.retain(|folder| is_date_folder(self.kind, folder));
                folders.sort_unstable();
                self.levels.push(folders);
            }
            Answer::Objects { objects, more, .. } if self.levels.len() == 3 => {
                self.day.extend(objects);
                if more {
                    return Ok(());
                }
                let mut objects = std::mem::take(&mut self.day);
                objects.retain(|o| !self.excluded.contains(&o.name));
                if self.days_with_hits > 0 || newest_object(self.kind, &objects).is_some() {
                    self.found.extend(objects);
                    self.days_with_hits += 1;
                }
            }
            other => return Err(unexpected(&other)),
        }
        self.outstanding = None;
        if !self.done() {
            self.advance();
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.outstanding.is_none() && self.asked.is_none()
    }
}

/// Whether `folder` is `<dir>/YYYY/`, `<dir>/YYYY/MM/` or `<dir>/YYYY/MM/DD/`.
fn is_date_folder(kind: ObjectKind, folder: &str) -> bool {
    folder_in_range(
        kind,
        folder,
        Timestamp::UNIX_EPOCH,
        Timestamp::from_unix_nanos(i64::MAX),
    )
}
