//! jobvault as the simulation runs it: the core and its process, which
//! crashes, stops and restarts, apart from the world it works on.

use std::collections::{BTreeMap, BTreeSet};

use jobvault_core::destination::DestinationId;
use jobvault_core::{Backup, Command, Config, Cursor, Timestamp};

/// The running process, if any, and what it has in flight.
#[derive(Debug, Default)]
pub struct Node {
    pub core: Option<Backup>,
    /// Changes at every start of the core; results of older ones are dropped.
    pub generation: u64,
    /// The wake-up the core asked for, and its token.
    pub wake: Option<(Timestamp, u64)>,
    /// Asked to stop, and given a grace period.
    pub stopping: bool,
    pub uploads_in_flight: usize,
    /// Commands issued and not answered yet, by operation id: each is
    /// answered exactly once, by its result or at its deadline.
    pub unanswered: BTreeMap<u64, Command>,
    /// Immediate-backup requests the running core has not answered.
    pub immediate_waiting: BTreeSet<u64>,
    /// Rewinds of the stored cursor the running core has not reacted to yet:
    /// the only reason for it to reset its change feed.
    pub unexplained_rewinds: u64,
    /// The commit watcher has seen a commit and reports it at its next look.
    pub commit_noticed: bool,
}

impl Node {
    /// Starts a new process from the durable cursor; nothing of the last
    /// one's is in flight any more.
    pub fn start(
        &mut self,
        config: &Config,
        stored: Cursor,
        recorded: Option<DestinationId>,
        now: Timestamp,
    ) {
        *self = Node {
            core: Some(Backup::new(config.clone(), stored, now).recorded(recorded)),
            generation: self.generation + 1,
            ..Node::default()
        };
    }

    /// The process is gone: whoever waited on it saw the connection drop.
    pub fn exit(&mut self) {
        *self = Node {
            generation: self.generation + 1,
            ..Node::default()
        };
    }
}
