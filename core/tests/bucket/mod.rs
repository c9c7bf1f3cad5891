//! A bucket held in a map, answering planners in the order asked or
//! shuffled. With versioning on, a write or delete keeps the replaced
//! generation as noncurrent, as GCS does.

// Each test file that shares this uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::ObjectName;
use jobvault_core::restore_plan::{Answer, Ask, PlanError, Planner};
use jobvault_core::{Cursor, Envelope, JobId, Timestamp};

pub fn version(id: &str, seq: u64) -> Envelope {
    version_at(id, seq, Timestamp::UNIX_EPOCH)
}

pub fn version_at(id: &str, seq: u64, modified: Timestamp) -> Envelope {
    let body = format!(r#"{{"id":"{id}","name":"v{seq}"}}"#);
    Envelope::written(JobId::new(id).unwrap(), seq, modified, body)
}

pub fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

pub fn snapshot(mtime: &str) -> Content {
    Content::Snapshot {
        gzip_mtime: Some(at(mtime)),
        stored: Cursor::default(),
        newest_change: None,
    }
}

#[derive(Clone)]
pub enum Content {
    Snapshot {
        gzip_mtime: Option<Timestamp>,
        stored: Cursor,
        newest_change: Option<Timestamp>,
    },
    /// A snapshot whose header reads, and whose whole download does not
    /// hold a sound database.
    Unusable {
        gzip_mtime: Timestamp,
    },
    Job(u64),
    /// A version committed at a known instant.
    JobAt(u64, Timestamp),
    Deleted(u64),
    Garbage,
}

#[derive(Clone)]
struct Generation {
    generation: i64,
    updated: Timestamp,
    content: Content,
}

/// Every generation of one object, oldest first.
#[derive(Default, Clone)]
struct Generations {
    all: Vec<Generation>,
    /// The newest generation is live (not deleted).
    live: bool,
}

#[derive(Default)]
pub struct Bucket {
    objects: BTreeMap<String, Generations>,
    pub versioned: bool,
    pub marker: Option<Vec<u8>>,
    pub asks: Vec<Ask>,
    /// Whole snapshots are served with this gzip mtime instead of their
    /// own (`Some(None)`: decompressed), as if replaced after their header
    /// was read.
    pub download_mtime: Option<Option<Timestamp>>,
    next_generation: i64,
}

impl Bucket {
    pub fn put(&mut self, name: &str, updated: &str, content: Content) {
        self.next_generation += 1;
        let generation = Generation {
            generation: self.next_generation,
            updated: at(updated),
            content,
        };
        let object = self.objects.entry(name.to_owned()).or_default();
        if !self.versioned {
            object.all.clear();
        }
        object.all.push(generation);
        object.live = true;
    }

    pub fn job(&mut self, id: &str, day: &str, updated: &str, seq: u64) {
        self.put(
            &format!("job-backup/{day}/{id}.job"),
            updated,
            Content::Job(seq),
        );
    }

    pub fn deleted(&mut self, id: &str, day: &str, updated: &str, seq: u64) {
        self.put(
            &format!("job-backup/{day}/{id}.job"),
            updated,
            Content::Deleted(seq),
        );
    }

    /// Deletes the live object, as `gcloud storage rm` would.
    pub fn delete(&mut self, name: &str) {
        if self.versioned {
            self.objects.get_mut(name).expect("there to delete").live = false;
        } else {
            self.objects.remove(name);
        }
    }

    /// The names of the live objects.
    pub fn live(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(_, g)| g.live)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn listed(&self, prefix: &str, versions: bool) -> Vec<ListedObject> {
        let mut listed = Vec::new();
        for (name, object) in self.objects.range(prefix.to_owned()..) {
            if !name.starts_with(prefix) {
                break;
            }
            let shown = if versions {
                &object.all[..]
            } else if object.live {
                &object.all[object.all.len() - 1..]
            } else {
                &[]
            };
            listed.extend(shown.iter().map(|g| ListedObject {
                name: ObjectName::listed(name.clone()),
                updated: g.updated,
                size: 1,
                generation: versions.then_some(g.generation),
                sealed: false,
            }));
        }
        listed
    }

    fn content(&self, object: &str, generation: Option<i64>) -> &Content {
        let all = &self.objects[object];
        let found = match generation {
            Some(wanted) => all.all.iter().find(|g| g.generation == wanted),
            None => all.live.then(|| all.all.last()).flatten(),
        };
        &found
            .unwrap_or_else(|| panic!("{object} has no such generation"))
            .content
    }

    /// With `versions`, the folders of deleted objects too, as GCS lists
    /// them.
    fn folders(&self, folder: &str, versions: bool) -> Vec<String> {
        let names: Vec<String> = if versions {
            self.objects.keys().cloned().collect()
        } else {
            self.live()
        };
        let mut folders: Vec<String> = names
            .iter()
            .filter_map(|name| name.strip_prefix(folder))
            .filter_map(|rest| {
                rest.find('/')
                    .map(|end| format!("{folder}{}", &rest[..=end]))
            })
            .collect();
        folders.dedup();
        folders
    }

    pub fn answer(&mut self, ask: Ask) -> Answer {
        self.asks.push(ask.clone());
        match ask {
            Ask::ListFolders { folder, versions } => Answer::Folders {
                folders: self.folders(&folder, versions),
                folder,
            },
            Ask::ListObjects { prefix, versions } => Answer::Objects {
                objects: self.listed(&prefix, versions),
                prefix,
                more: false,
            },
            Ask::FetchSnapshot {
                object, generation, ..
            } => match self.content(&object, generation) {
                Content::Snapshot {
                    gzip_mtime,
                    stored,
                    newest_change,
                } => Answer::SnapshotFetched {
                    gzip_mtime: self.download_mtime.unwrap_or(*gzip_mtime),
                    stored_cursor: *stored,
                    newest_change: *newest_change,
                    object,
                },
                Content::Unusable { .. } => Answer::SnapshotUnusable {
                    object,
                    why: "incomplete deflate stream".to_owned(),
                },
                _ => panic!("{object} is not a snapshot"),
            },
            Ask::SnapshotTime { object, generation } => match self.content(&object, generation) {
                Content::Snapshot { gzip_mtime, .. } => Answer::SnapshotTime {
                    gzip_mtime: *gzip_mtime,
                    object,
                    generation,
                },
                Content::Unusable { gzip_mtime } => Answer::SnapshotTime {
                    gzip_mtime: Some(*gzip_mtime),
                    object,
                    generation,
                },
                _ => panic!("{object} is not a snapshot"),
            },
            Ask::FetchJob { object, generation } => {
                let id = object.rsplit('/').next().unwrap().trim_end_matches(".job");
                let result = match self.content(&object, generation) {
                    Content::Job(seq) => Ok(version(id, *seq)),
                    Content::JobAt(seq, modified) => Ok(version_at(id, *seq, *modified)),
                    Content::Deleted(seq) => Ok(Envelope::deleted(
                        JobId::new(id).unwrap(),
                        *seq,
                        Timestamp::UNIX_EPOCH,
                    )),
                    _ => Err("gzip stream is corrupt".to_owned()),
                };
                Answer::JobFetched {
                    object,
                    generation,
                    result,
                }
            }
            Ask::Versioning => Answer::Versioning {
                enabled: self.versioned,
            },
            Ask::ReadHistory => Answer::History {
                bytes: self.marker.clone(),
            },
        }
    }

    /// Answers every ask; with `reverse`, the newest ask first.
    pub fn drive(&mut self, planner: &mut impl Planner, reverse: bool) -> Result<(), PlanError> {
        let mut asked = Vec::new();
        loop {
            asked.extend(std::iter::from_fn(|| planner.poll_ask()));
            let next = if reverse {
                asked.pop()
            } else {
                (!asked.is_empty()).then(|| asked.remove(0))
            };
            let Some(ask) = next else { break };
            for page in pages(self.answer(ask)) {
                planner.handle_answer(page)?;
            }
        }
        assert!(planner.is_complete());
        Ok(())
    }
}

/// Objects a page holds in [`Bucket::drive`]: small, so that every listing
/// of more than one object comes in several pages.
const PAGE: usize = 2;

/// An answer as a paging store gives it: a listing in pages of [`PAGE`].
fn pages(answer: Answer) -> Vec<Answer> {
    let Answer::Objects {
        prefix, objects, ..
    } = answer
    else {
        return vec![answer];
    };
    let mut chunks: Vec<Vec<ListedObject>> = objects.chunks(PAGE).map(<[_]>::to_vec).collect();
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, objects)| Answer::Objects {
            prefix: prefix.clone(),
            objects,
            more: i < last,
        })
        .collect()
}
