//! The simulated world outside the core: the job database, the bucket and the
//! trigger directory. Plain data with the operations the driver performs on
//! them; faults and timing live in the simulation that drives them.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, RangeInclusive};
use std::sync::Arc;

use jobvault_core::destination::{DestinationId, DestinationMarker};
use jobvault_core::lease::{Holder, Lease};
use jobvault_core::machine::{ChangeBatch, ListedObject, RowId, Unreadable};
use jobvault_core::object_name::ObjectName;
use jobvault_core::trigger::TriggerFile;
use jobvault_core::trigger::TriggerName;
use jobvault_core::{Cursor, Envelope, JobId, Seq, Timestamp};

/// One change to one job as the database holds it: a body, or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobVersion {
    pub seq: Seq,
    /// `None`: the job was deleted.
    pub body: Option<Arc<str>>,
    /// The local clock's stamp of the commit, as the envelope carries it.
    pub modified: Timestamp,
    /// No job object can hold it (a body that is not UTF-8, written by a
    /// writer without the database's rules): the daemon sets it aside.
    pub bad: bool,
}

/// The newest change to one job.
#[derive(Debug, Clone)]
pub struct Row {
    pub held: JobVersion,
    /// True (simulation) time of the commit.
    pub committed: Timestamp,
}

/// A statement of the writer contract, as any writer runs it: jobvault's
/// library, the `sqlite3` CLI or a service in another language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// `INSERT`: fails (changes nothing) if the job exists.
    Insert,
    /// `UPDATE`: changes nothing if the job does not exist.
    Update,
    /// `INSERT ... ON CONFLICT(id) DO UPDATE`: what the library runs.
    Upsert,
    /// `DELETE`: changes nothing if the job does not exist.
    Delete,
}

/// The job database: the newest change to every job, the change counter and
/// the stored cursor. The sequence of each change is assigned as the
/// database's triggers assign it (`shell/src/db/schema.rs`).
#[derive(Debug, Default, Clone)]
pub struct Db {
    /// Every job ever written: its row, or its tombstone.
    pub rows: BTreeMap<JobId, Row>,
    /// Rows and tombstones by change sequence: the change feed.
    pub by_seq: BTreeMap<Seq, JobId>,
    /// Rows and tombstones by true commit time.
    pub by_commit: BTreeMap<(Timestamp, Seq), JobId>,
    pub counter: Seq,
    pub stored: Cursor,
    /// The destination the stored cursor belongs to.
    pub destination: Option<DestinationId>,
    /// `set_aside_jobs`: the rows the daemon recorded as set aside, by id.
    /// A writer's next change to the job deletes its record.
    pub set_aside: BTreeMap<JobId, Seq>,
    /// `meta.went_back_at`: when a daemon found the database gone back to
    /// an older copy, on the writers' clock.
    pub went_back_at: Option<Timestamp>,
    /// Every id ever written, to pick jobs to modify.
    pub ids: Vec<JobId>,
    /// The ids among them that no object name can carry
    /// ([`crate::faults::FaultKind::NamelessId`]): every row of such a job
    /// is bad, and so is its tombstone, which the feed gives as deleted.
    pub nameless: BTreeSet<JobId>,
    /// Bodies written so far; each body is unlike every other.
    pub bodies: u64,
    /// Changes that deleted a job.
    pub deletes: u64,
    /// Every change ever committed, in commit order: what the database was
    /// at any instant.
    pub history: Vec<(JobId, JobVersion)>,
}

impl Db {
    /// Runs `statement` on job `id` at true time `committed`, stamped with
    /// the local clock's `modified`; a body it writes is `bad` if so.
    /// Returns whether it changed anything.
    pub fn run(
        &mut self,
        statement: Statement,
        id: JobId,
        modified: Timestamp,
        committed: Timestamp,
        bad: bool,
    ) -> bool {
        let exists = self
            .rows
            .get(&id)
            .is_some_and(|row| row.held.body.is_some());
        let body = match (statement, exists) {
            (Statement::Insert, true) | (Statement::Update | Statement::Delete, false) => {
                return false;
            }
            (Statement::Delete, true) => {
                self.deletes += 1;
                None
            }
            _ => {
                self.bodies += 1;
                Some(Arc::from(format!(
                    r#"{{"id":"{id}","body":{}}}"#,
                    self.bodies
                )))
            }
        };
        self.counter += 1;
        let seq = self.counter;
        if let Some(old) = self.rows.get(&id) {
            self.by_seq.remove(&old.held.seq);
            self.by_commit.remove(&(old.committed, old.held.seq));
        } else {
            self.ids.push(id.clone());
        }
        self.by_seq.insert(seq, id.clone());
        self.by_commit.insert((committed, seq), id.clone());
        let held = JobVersion {
            seq,
            bad: (bad || self.nameless.contains(&id)) && body.is_some(),
            body,
            modified,
        };
        self.set_aside.remove(&id);
        self.history.push((id.clone(), held.clone()));
        self.rows.insert(id, Row { held, committed });
        true
    }

    /// Every row and tombstone as they were at local time `at`: of each job,
    /// the newest change stamped at or before it (what `restore --at` is
    /// documented to give).
    pub fn versions_at(&self, at: Timestamp) -> BTreeMap<JobId, JobVersion> {
        let mut then: BTreeMap<JobId, JobVersion> = BTreeMap::new();
        for (id, held) in self.history.iter().filter(|(_, h)| h.modified <= at) {
            if then.get(id).is_none_or(|had| had.seq < held.seq) {
                then.insert(id.clone(), held.clone());
            }
        }
        then
    }

    /// The change feed as `jobvault`'s database reads it: changes after
    /// `after`, in sequence order, up to `limit` of them and `max_bytes` of
    /// bodies (but at least one), bad rows apart.
    pub fn changes(&self, after: Seq, limit: usize, max_bytes: u64) -> ChangeBatch {
        let mut batch = ChangeBatch {
            stored: self.stored,
            jobs: Vec::new(),
            unreadable: Vec::new(),
            set_aside: self.set_aside.len() as u64,
            newest: self.counter,
            complete: true,
        };
        let (mut read, mut bytes) = (0, 0);
        for (_, id) in self
            .by_seq
            .range((Bound::Excluded(after), Bound::Unbounded))
        {
            let held = &self.rows[id].held;
            bytes += held.body.as_ref().map_or(0, |body| body.len() as u64);
            if read == limit || (read > 0 && bytes > max_bytes) {
                batch.complete = false;
                break;
            }
            read += 1;
            let nameless = self.nameless.contains(id);
            match &held.body {
                _ if held.bad || nameless => batch.unreadable.push(Unreadable {
                    seq: held.seq,
                    id: RowId(id.as_str().as_bytes().to_vec()),
                    why: if nameless {
                        "its id names no object"
                    } else {
                        "its body is not UTF-8 text"
                    }
                    .to_owned(),
                    deleted: held.body.is_none(),
                }),
                Some(body) => batch.jobs.push(Envelope::written(
                    id.clone(),
                    held.seq,
                    held.modified,
                    &**body,
                )),
                None => batch
                    .jobs
                    .push(Envelope::deleted(id.clone(), held.seq, held.modified)),
            }
        }
        batch
    }

    /// Records the rows a cursor save sets aside, each only if the database
    /// still holds that version of it.
    pub fn record_set_aside(&mut self, rows: &[Unreadable]) {
        for row in rows {
            let id = std::str::from_utf8(&row.id.0)
                .ok()
                .and_then(|id| JobId::new(id).ok())
                .expect("the simulated database's ids are valid");
            if self.rows.get(&id).is_some_and(|r| r.held.seq == row.seq) {
                self.set_aside.insert(id, row.seq);
            }
        }
    }

    /// The current rows no job object can hold.
    pub fn bad_rows(&self) -> impl Iterator<Item = (&JobId, Seq)> {
        self.rows
            .iter()
            .filter(|(_, row)| row.held.bad)
            .map(|(id, row)| (id, row.held.seq))
    }

    /// Every row and tombstone: what a snapshot holds.
    pub fn versions(&self) -> BTreeMap<JobId, JobVersion> {
        self.rows
            .iter()
            .map(|(id, row)| (id.clone(), row.held.clone()))
            .collect()
    }

    /// The jobs that exist, with their bodies.
    pub fn living(&self) -> BTreeMap<&JobId, &Arc<str>> {
        living(self.rows.iter().map(|(id, row)| (id, &row.held)))
    }
}

/// The jobs among `held` that exist, with their bodies.
pub fn living<'a>(
    held: impl Iterator<Item = (&'a JobId, &'a JobVersion)>,
) -> BTreeMap<&'a JobId, &'a Arc<str>> {
    held.filter_map(|(id, held)| held.body.as_ref().map(|body| (id, body)))
        .collect()
}

/// What an object in the bucket holds.
#[derive(Debug, Clone)]
pub enum Body {
    Snapshot {
        versions: Arc<BTreeMap<JobId, JobVersion>>,
        gzip_mtime: Timestamp,
        /// The cursor stored in the database when it was copied.
        stored: Cursor,
        /// The database's change counter when it was copied.
        counter: Seq,
        /// When the database went back to an older copy, as it recorded.
        went_back_at: Option<Timestamp>,
    },
    Job {
        id: JobId,
        held: JobVersion,
    },
}

#[derive(Debug, Clone)]
pub struct Object {
    pub body: Body,
    /// True time of the write: the store's own clock.
    pub updated: Timestamp,
    pub generation: i64,
}

/// The bucket.
#[derive(Debug, Default)]
pub struct Store {
    /// The live objects.
    pub objects: BTreeMap<ObjectName, Object>,
    /// With versioning on: every replaced or deleted generation, oldest
    /// first.
    pub noncurrent: BTreeMap<ObjectName, Vec<Object>>,
    pub versioned: bool,
    /// The history marker's bytes.
    pub marker: Option<Vec<u8>>,
    /// The destination marker.
    pub destination: Option<DestinationMarker>,
    /// The lease object and its generation.
    pub lease: Option<(Lease, i64)>,
    /// Every job version that ever landed in a job object.
    pub landed: BTreeSet<(JobId, Seq)>,
    generations: i64,
    /// The newest version of each job in any object.
    pub newest: BTreeMap<JobId, Seq>,
    pub job_writes: u64,
    pub snapshot_writes: u64,
    /// The snapshot the store wrote last, in true time.
    pub newest_snapshot: Option<ObjectName>,
    /// Its backups were deleted under its marker, when the database's
    /// change counter stood here: the marker vouches for nothing until a
    /// fresh one is written, or a snapshot copied at or past that counter
    /// holds every version the deleted objects held.
    pub emptied_under_marker: Option<Seq>,
}

impl Store {
    /// Writes an object. Returns the sequence of the job version it
    /// replaced, if it replaced one.
    pub fn put(&mut self, name: ObjectName, body: Body, updated: Timestamp) -> Option<Seq> {
        let mut replaced = None;
        if let Body::Job { id, held } = &body {
            let seq = &held.seq;
            self.job_writes += 1;
            if let Some(Object {
                body: Body::Job { held: old, .. },
                ..
            }) = self.objects.get(&name)
            {
                replaced = Some(old.seq);
            }
            let newest = self.newest.entry(id.clone()).or_default();
            *newest = (*newest).max(*seq);
            self.landed.insert((id.clone(), *seq));
        } else if let Body::Snapshot {
            versions, counter, ..
        } = &body
        {
            self.snapshot_writes += 1;
            if self.emptied_under_marker.is_some_and(|at| *counter >= at) {
                self.emptied_under_marker = None;
            }
            self.newest_snapshot = Some(name.clone());
            for (id, held) in versions.iter() {
                let newest = self.newest.entry(id.clone()).or_default();
                *newest = (*newest).max(held.seq);
            }
        }
        let object = Object {
            body,
            updated,
            generation: self.next_generation(),
        };
        if let Some(old) = self.objects.insert(name.clone(), object) {
            self.keep_noncurrent(name, old);
        }
        replaced
    }

    /// A generation number no write used before.
    pub fn next_generation(&mut self) -> i64 {
        self.generations += 1;
        self.generations
    }

    /// Deletes the live object, as a prune does.
    pub fn delete(&mut self, name: &ObjectName) {
        if let Some(old) = self.objects.remove(name) {
            self.keep_noncurrent(name.clone(), old);
        }
    }

    fn keep_noncurrent(&mut self, name: ObjectName, old: Object) {
        if self.versioned {
            self.noncurrent.entry(name).or_default().push(old);
        }
    }

    /// The live object, or the given generation of it.
    pub fn generation(&self, name: &str, generation: Option<i64>) -> Option<&Object> {
        let live = self.objects.get(name);
        match generation {
            None => live,
            Some(wanted) => live
                .into_iter()
                .chain(self.noncurrent.get(name).into_iter().flatten())
                .find(|o| o.generation == wanted),
        }
    }

    /// Empties the bucket, every generation and marker with it, as deleting
    /// and recreating it does; its versioning setting stays.
    pub fn wipe(&mut self) {
        *self = Store {
            versioned: self.versioned,
            job_writes: self.job_writes,
            snapshot_writes: self.snapshot_writes,
            generations: self.generations,
            ..Store::default()
        };
    }

    /// Deletes every backup, keeping the lease, the destination marker and
    /// the history marker, when the database's change counter is `counter`.
    pub fn delete_backups(&mut self, counter: Seq) {
        let kept = (
            self.marker.take(),
            self.destination.take(),
            self.lease.take(),
        );
        self.wipe();
        (self.marker, self.destination, self.lease) = kept;
        self.emptied_under_marker = Some(counter);
    }

    /// Objects whose names start with `prefix`.
    pub fn under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectName, &'a Object)> {
        self.objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(name, _)| name.starts_with(prefix))
    }

    pub fn list(&self, prefixes: &[String]) -> Vec<ListedObject> {
        self.list_generations(prefixes, false)
    }

    /// Like [`Store::list`]; with `versions`, the noncurrent generations too.
    pub fn list_generations(&self, prefixes: &[String], versions: bool) -> Vec<ListedObject> {
        let listed = |name: &ObjectName, object: &Object| ListedObject {
            name: name.clone(),
            updated: object.updated,
            size: 1,
            generation: versions.then_some(object.generation),
            sealed: false,
        };
        let mut found: Vec<ListedObject> = prefixes
            .iter()
            .flat_map(|prefix| self.under(prefix))
            .map(|(name, object)| listed(name, object))
            .collect();
        if versions {
            for prefix in prefixes {
                let old = self
                    .noncurrent
                    .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                    .take_while(|(name, _)| name.starts_with(prefix.as_str()));
                for (name, generations) in old {
                    found.extend(generations.iter().map(|object| listed(name, object)));
                }
            }
        }
        found
    }

    /// The folders directly under `folder`, as a delimiter listing gives
    /// them: with `versions`, those holding only noncurrent generations too.
    pub fn folders(&self, folder: &str, versions: bool) -> Vec<String> {
        // Without versions the noncurrent names are not walked at all.
        let noncurrent = versions
            .then(|| self.noncurrent.keys().map(ObjectName::as_str))
            .into_iter()
            .flatten()
            .filter(|name| name.starts_with(folder));
        let found: BTreeSet<String> = self
            .under(folder)
            .map(|(name, _)| name.as_str())
            .chain(noncurrent)
            .filter_map(|name| {
                let rest = &name[folder.len()..];
                rest.find('/')
                    .map(|end| format!("{folder}{}", &rest[..=end]))
            })
            .collect();
        found.into_iter().collect()
    }

    /// Whether the bucket holds version `seq` of `id` or a newer one, in a
    /// job object or a snapshot.
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
                name: TriggerName::found(name.clone()),
                name_is_text: true,
                modified: *modified,
                content: Ok(content.clone()),
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
    /// The store refuses jobvault (403) until then.
    pub refusing_until: Option<Timestamp>,
    /// When the bucket was last wiped.
    pub wiped_at: Option<Timestamp>,
    /// The last lease taken from a holder that had not given it back: whose
    /// it was, and when (true time).
    pub taken_from: Option<(Holder, Timestamp)>,
    /// A copy of the database taken by hand, to be written back over it.
    pub copy: Option<Db>,
    /// The sequences the database left behind when a copy went back over
    /// it: the versions numbered there in the bucket are no one's newest.
    pub abandoned: Vec<RangeInclusive<Seq>>,
    /// The database went back (a copy, a cursor rewound) and no daemon has
    /// raised its counter since: a start may find it again, having found it
    /// once and been stopped before its raise.
    pub raise_owed: bool,
}

impl World {
    /// The destination the database's cursor speaks for: the one it records,
    /// if the bucket's marker names it and still holds its backups. From a
    /// deletion of the backups under the marker until a daemon writes a
    /// fresh one, none: no daemon can know before its next listing.
    pub fn vouched(&self) -> Option<DestinationId> {
        let marker = self.store.destination.as_ref();
        self.db
            .destination
            .filter(|id| marker.is_some_and(|m| m.id == *id))
            .filter(|_| self.store.emptied_under_marker.is_none())
    }

    /// Whether the store refuses jobvault at true time `now`.
    pub fn refusing(&self, now: Timestamp) -> bool {
        self.refusing_until.is_some_and(|until| now < until)
    }

    /// What the local clock reads at true time `now`.
    pub fn local(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_unix_nanos(now.unix_nanos() + self.clock_error)
    }
}
