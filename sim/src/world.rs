//! The simulated world outside the core: the job database, the bucket and the
//! trigger directory. Plain data with the operations the driver performs on
//! them; faults and timing live in the simulation that drives them.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use jobvault_core::machine::ListedObject;
use jobvault_core::trigger::TriggerFile;
use jobvault_core::{Cursor, Envelope, Job, JobId, Seq, Timestamp};

/// The current version of one job.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: Seq,
    pub modified: Timestamp,
    /// True (simulation) time of the commit.
    pub committed: Timestamp,
    pub job: Job,
}

/// The job database: current rows, the change counter and the stored cursor.
#[derive(Debug, Default)]
pub struct Db {
    pub rows: BTreeMap<JobId, Row>,
    /// Current rows by change sequence: the change feed.
    pub by_seq: BTreeMap<Seq, JobId>,
    /// Current rows by true commit time.
    pub by_commit: BTreeMap<(Timestamp, Seq), JobId>,
    pub counter: Seq,
    pub stored: Cursor,
    /// Every id ever written, to pick jobs to modify.
    pub ids: Vec<JobId>,
}

impl Db {
    /// Writes a new version of `id` at true time `committed`, stamped with
    /// the local clock's `modified`.
    pub fn write(&mut self, id: JobId, modified: Timestamp, committed: Timestamp) {
        self.counter += 1;
        let seq = self.counter;
        let mut job = Job::new(id.clone(), format!("v{seq}"));
        job.db_modified = modified;
        if let Some(old) = self.rows.get(&id) {
            self.by_seq.remove(&old.seq);
            self.by_commit.remove(&(old.committed, old.seq));
        } else {
            self.ids.push(id.clone());
        }
        self.by_seq.insert(seq, id.clone());
        self.by_commit.insert((committed, seq), id.clone());
        self.rows.insert(
            id,
            Row {
                seq,
                modified,
                committed,
                job,
            },
        );
    }

    /// The change feed: current versions after `after`, in sequence order.
    pub fn changes(&self, after: Seq, limit: usize) -> Vec<Envelope> {
        self.by_seq
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(_, id)| {
                let row = &self.rows[id];
                Envelope::new(row.seq, row.modified, row.job.clone())
            })
            .collect()
    }

    /// Id → sequence of every current row: what a snapshot holds.
    pub fn versions(&self) -> BTreeMap<JobId, Seq> {
        self.rows
            .iter()
            .map(|(id, row)| (id.clone(), row.seq))
            .collect()
    }
}

/// What an object in the bucket holds.
#[derive(Debug, Clone)]
pub enum Body {
    Snapshot {
        versions: Arc<BTreeMap<JobId, Seq>>,
        gzip_mtime: Timestamp,
        /// The cursor stored in the database when it was copied.
        stored: Cursor,
    },
    Job {
        id: JobId,
        seq: Seq,
    },
}

#[derive(Debug, Clone)]
pub struct Object {
    pub body: Body,
    /// True time of the write: the store's own clock.
    pub updated: Timestamp,
}

/// The bucket.
#[derive(Debug, Default)]
pub struct Store {
    pub objects: BTreeMap<String, Object>,
    /// The newest version of each job in any object.
    pub newest: BTreeMap<JobId, Seq>,
    pub job_writes: u64,
    pub snapshot_writes: u64,
    /// The snapshot the store wrote last, in true time.
    pub newest_snapshot: Option<String>,
}

impl Store {
    /// Writes an object. Returns the sequence of the job version it
    /// replaced, if it replaced one.
    pub fn put(&mut self, name: String, body: Body, updated: Timestamp) -> Option<Seq> {
        let mut replaced = None;
        if let Body::Job { id, seq } = &body {
            self.job_writes += 1;
            if let Some(Object {
                body: Body::Job { seq: old, .. },
                ..
            }) = self.objects.get(&name)
            {
                replaced = Some(*old);
            }
            let newest = self.newest.entry(id.clone()).or_default();
            *newest = (*newest).max(*seq);
        } else {
            self.snapshot_writes += 1;
            self.newest_snapshot = Some(name.clone());
        }
        self.objects.insert(name, Object { body, updated });
        replaced
    }

    /// Objects whose names start with `prefix`.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Object)> {
        self.objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(name, _)| name.starts_with(prefix))
    }

    pub fn list(&self, prefixes: &[String]) -> Vec<ListedObject> {
        prefixes
            .iter()
            .flat_map(|prefix| self.under(prefix))
            .map(|(name, object)| ListedObject {
                name: name.clone(),
                updated: object.updated,
                size: 1,
            })
            .collect()
    }

    /// The folders directly under `folder`, as a delimiter listing gives them.
    pub fn folders(&self, folder: &str) -> Vec<String> {
        let found: BTreeSet<String> = self
            .under(folder)
            .filter_map(|(name, _)| {
                let rest = &name[folder.len()..];
                rest.find('/')
                    .map(|end| format!("{folder}{}", &rest[..=end]))
            })
            .collect();
        found.into_iter().collect()
    }

    /// Whether the bucket holds version `seq` of `id` or a newer one.
    pub fn covers(&self, id: &JobId, seq: Seq) -> bool {
        self.newest.get(id).is_some_and(|newest| *newest >= seq)
    }
}

/// The trigger directory.
#[derive(Debug)]
pub struct TriggerDir {
    pub exists: bool,
    pub files: BTreeMap<String, (Timestamp, Vec<u8>)>,
    pub quarantined: BTreeSet<String>,
}

impl Default for TriggerDir {
    fn default() -> Self {
        TriggerDir {
            exists: true,
            files: BTreeMap::new(),
            quarantined: BTreeSet::new(),
        }
    }
}

impl TriggerDir {
    pub fn scan(&self) -> Vec<TriggerFile> {
        self.files
            .iter()
            .map(|(name, (modified, content))| TriggerFile {
                name: name.clone(),
                modified: *modified,
                content: content.clone(),
            })
            .collect()
    }

    /// Files that still wait to be served or quarantined.
    pub fn unserved(&self) -> impl Iterator<Item = &String> {
        self.files.keys().filter(|name| !name.starts_with('.'))
    }
}

/// Everything outside jobvault, on true time: what the checkers may look at.
#[derive(Debug, Default)]
pub struct World {
    pub db: Db,
    pub store: Store,
    pub dir: TriggerDir,
    /// The local clock minus true time, in nanoseconds.
    pub clock_error: i64,
    /// The store fails every request until then.
    pub outage_until: Option<Timestamp>,
}

impl World {
    /// What the local clock reads at true time `now`.
    pub fn local(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_unix_nanos(now.unix_nanos() + self.clock_error)
    }
}
