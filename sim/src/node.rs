//! jobvault as the simulation runs it: daemons on hosts, each a process
//! that crashes, stops and restarts, apart from the world it works on.

use std::collections::{BTreeMap, BTreeSet};

use jobvault_core::destination::DestinationId;
use jobvault_core::lease::{Holder, LeaseMachine};
use jobvault_core::{Backup, Config, Cursor, Input, Seq, Timestamp};

use crate::world::Db;

/// Which daemon: an index into the simulation's nodes.
pub type NodeId = usize;

/// The database's path, as every daemon names it in its lease.
const DB: &str = "/var/lib/task-scheduler/jobs.db";

/// One daemon's host and its process, if one runs.
#[derive(Debug)]
pub struct Node {
    pub id: NodeId,
    /// The host's name, also its machine id.
    pub host: String,
    /// Its clock minus the database host's, in nanoseconds: 0 on that host.
    pub skew: i64,
    /// Store requests from this host fail until then (a partition).
    pub cut_off_until: Option<Timestamp>,
    /// Its link to the store is slow until then: an upload takes minutes.
    pub slow_until: Option<Timestamp>,
    /// Restarted after it exits or crashes, as systemd does; a daemon an
    /// admin started by hand is not.
    pub restarts: bool,
    /// The pid of the process that runs, or ran last.
    pub pid: u32,
    pub process: Process,
}

/// What one process has: its core and what it has in flight.
#[derive(Debug, Default)]
pub struct Process {
    pub core: Option<Backup>,
    /// Changes at every start of the core; results of older ones are dropped.
    pub generation: u64,
    /// The wake-up the core asked for, and its token.
    pub wake: Option<(Timestamp, u64)>,
    /// The core's latest call: its clock's reading, and the true time. A
    /// wake-up is timed from it, as the daemon times it on the monotonic
    /// clock, not from the clock as it reads when the wake-up is set.
    pub called: (Timestamp, Timestamp),
    /// Asked to stop at this true time, when the database's change counter
    /// stood here, and given a grace period.
    pub stopping: Option<(Timestamp, Seq)>,
    pub uploads_in_flight: usize,
    /// Commands issued and not answered yet, by operation id, each with the
    /// answer its deadline gives: each is answered exactly once, by its
    /// result or at its deadline.
    pub unanswered: BTreeMap<u64, Input>,
    /// Immediate-backup requests the running core has not answered.
    pub immediate_waiting: BTreeSet<u64>,
    /// Someone asked for a snapshot once the core's lease had ended.
    pub asked_after_lease_ended: bool,
    /// Changes of the stored cursor by someone else (a rewind, another
    /// daemon's save, a copy written back) the node's daemon has not
    /// reacted to yet: the only reasons for it to reset its change feed. A
    /// restart finds one through the lease, so the count outlives the
    /// process.
    pub unexplained_rewinds: u64,
    /// The watcher's next look, for the commits it has not looked at.
    pub look_pending: Option<PendingLook>,
    /// When the watcher last looked and found a commit.
    pub looked: Option<Timestamp>,
    /// The database file this process opened, once another was renamed
    /// over its path: the process reads and writes it, and nobody else.
    pub opened: Option<Db>,
}

/// A look the watcher will take: it reports the commits since then.
#[derive(Debug, Clone, Copy)]
pub struct PendingLook {
    /// The first commit it has not looked at.
    pub since: Timestamp,
    pub due: Timestamp,
    /// The first commit was not missed: the OS gave notice of it, or the
    /// poll looked.
    pub prompt: bool,
}

impl Node {
    pub fn new(id: NodeId, host: &str, skew: i64, restarts: bool) -> Self {
        Node {
            id,
            host: host.to_owned(),
            skew,
            cut_off_until: None,
            slow_until: None,
            restarts,
            pid: 100 * (id as u32 + 1),
            process: Process::default(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.process.core.is_some()
    }

    /// The process as its lease names it.
    pub fn holder(&self) -> Holder {
        Holder {
            host: self.host.clone(),
            machine: self.host.clone(),
            boot: "boot".to_owned(),
            pid: self.pid,
            db: DB.to_owned(),
            started: Timestamp::UNIX_EPOCH,
        }
    }

    /// Starts a new process from the durable cursor, with a lease to take
    /// (over a live holder with `takeover`); nothing of the last one's is in
    /// flight any more.
    pub fn start(
        &mut self,
        config: &Config,
        (stored, recorded): (Cursor, Option<DestinationId>),
        set_aside: u64,
        takeover: bool,
        now: Timestamp,
    ) {
        self.pid += 1;
        let lease = LeaseMachine::new(self.holder(), config.interval, takeover, "sim", now);
        let core = Backup::new(config.clone(), stored, now)
            .recorded(recorded)
            .set_aside(set_aside)
            .leased(lease);
        self.process = Process {
            core: Some(core),
            generation: self.process.generation + 1,
            unexplained_rewinds: self.process.unexplained_rewinds,
            ..Process::default()
        };
    }

    /// The process is gone: whoever waited on it saw the connection drop.
    pub fn exit(&mut self) {
        self.process = Process {
            generation: self.process.generation + 1,
            unexplained_rewinds: self.process.unexplained_rewinds,
            ..Process::default()
        };
    }
}
