//! Daemons coming and going: starts (refused by the database's lock while
//! another runs on its host), exits, crashes, graceful stops, and the
//! day's one-off faults.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use jobvault_core::Stopped;
use jobvault_core::machine::Unvouched;
use jobvault_core::{Cursor, Input};

use crate::faults::FaultKind;
use crate::invariants::{MAX_CLOCK_ERROR, Observation};
use crate::node::NodeId;
use crate::settings::MAX_HOST_SKEW;
use crate::simulation::{Event, Simulation, note};
use crate::world::Db;

/// How long a stopping jobvault has to drain (its `--grace`).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How a daemon's process ended by itself.
#[derive(Debug, Clone)]
pub enum Ending {
    /// A stop, drained or not.
    Stopped(Stopped),
    /// Its lease refused or lost (as it says), its work in flight reported.
    Lease(String),
    /// Its database's path named another file, its work in flight reported.
    Replaced,
}

/// How long systemd waits for it before it kills it (`TimeoutStopSec`).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl Simulation {
    /// Starts node `node`'s daemon, unless another runs on its host (the
    /// database's lock refuses it: `run` exits 1).
    pub(crate) fn start_core(&mut self, node: NodeId) {
        self.start_core_with(node, false);
    }

    /// The same, taking the lease over a live holder with `takeover`.
    fn start_core_with(&mut self, node: NodeId, takeover: bool) {
        let host = self.nodes[node].host.clone();
        if let Some(other) = self
            .nodes
            .iter()
            .find(|n| n.id != node && n.host == host && n.is_running())
        {
            note!(
                self,
                "node {node}: the database is locked by node {}",
                other.id
            );
            self.after_exit(node);
            return;
        }
        let now = self.local_now(node);
        let called = (now, self.now);
        let (stored, recorded) = (self.world.db.stored, self.world.db.destination);
        note!(self, "node {node}: start core at cursor {stored:?}");
        let behind_lease = self.world.store.lease.as_ref().is_some_and(|(lease, _)| {
            lease.state.cursor_seq > stored.seq && self.world.db.went_back_at.is_some()
        });
        if self.world.raise_owed || behind_lease {
            // Found before, by a daemon stopped before its raise, or after
            // it but before its cursor passed the lease's again (a grace
            // cut, a crash): found again, a full snapshot more.
            self.nodes[node].process.unexplained_rewinds += 1;
        }
        let set_aside = self.world.db.set_aside.len() as u64;
        self.nodes[node].start(&self.config, (stored, recorded), set_aside, takeover, now);
        self.nodes[node].process.called = called;
        self.outcome.daemons += 1;
        let running_here = self
            .nodes
            .iter()
            .filter(|n| n.host == host && n.is_running())
            .count();
        self.observe(Observation::CoreStarted { running_here });
    }

    /// The daemon's process ended by itself: a graceful stop, or a lease
    /// refused or lost. systemd starts it again.
    pub(crate) fn exited(&mut self, node: NodeId, ended: Ending) {
        // A stop over rows set aside, or over deletions no snapshot holds
        // yet, drained all the same.
        let gave_back = matches!(
            ended,
            Ending::Stopped(
                Stopped::Drained { .. }
                    | Stopped::Unvouched {
                        why: Unvouched::SetAside { .. } | Unvouched::DeletionsUnsnapshotted { .. },
                        ..
                    }
            )
        ) && self.world.store.lease.as_ref().is_some_and(|(lease, _)| {
            lease.released.is_some() && lease.holder == self.nodes[node].holder()
        });
        match ended {
            Ending::Stopped(outcome) => {
                note!(self, "node {node}: core stopped ({outcome:?})");
                match outcome {
                    Stopped::Drained { .. } => self.outcome.stops.drained += 1,
                    Stopped::Unvouched {
                        why: Unvouched::SetAside { .. },
                        ..
                    } => self.outcome.stops.set_aside += 1,
                    Stopped::Unvouched { .. } => self.outcome.stops.unvouched += 1,
                    Stopped::GraceOver { .. } => self.outcome.stops.grace_over += 1,
                }
                let (asked_at, counter) = self.nodes[node]
                    .process
                    .stopping
                    .expect("a core stops only when asked to");
                self.observe(Observation::Stopped {
                    asked_at,
                    counter,
                    outcome,
                });
            }
            Ending::Lease(why) => note!(self, "node {node}: core exited: the lease {why}"),
            Ending::Replaced => note!(self, "node {node}: core exited: its database was replaced"),
        }
        let unanswered = std::mem::take(&mut self.nodes[node].process.immediate_waiting);
        self.observe(Observation::Exited {
            unanswered: &unanswered,
        });
        self.nodes[node].exit();
        if gave_back {
            self.copy_back_after_stop(node);
        }
        self.after_exit(node);
    }

    fn after_exit(&mut self, node: NodeId) {
        if self.nodes[node].restarts {
            let delay = Duration::from_millis(self.rng.lifecycle.u64(1_000..120_000));
            self.after(delay, Event::Restart(node));
        }
    }

    /// `jobvault backup` asks a running daemon for a snapshot.
    pub(crate) fn request_immediate(&mut self) {
        if let Some(node) = self.pick_running() {
            self.request_immediate_of(node);
        }
    }

    /// `jobvault backup` asks node `node`'s running daemon for a snapshot.
    pub(crate) fn request_immediate_of(&mut self, node: NodeId) {
        let now = self.call_time(node);
        let id = self.next_op;
        self.next_op += 1;
        let process = &mut self.nodes[node].process;
        process.immediate_waiting.insert(id);
        let name = "task-scheduler".to_owned();
        let core = process.core.as_mut().expect("picked a running node");
        core.handle_input(Input::ImmediateBackupRequested { id, name }, now);
    }

    /// A running daemon drawn at random, if any runs.
    fn pick_running(&mut self) -> Option<NodeId> {
        let running: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect();
        (!running.is_empty()).then(|| running[self.rng.lifecycle.usize(0..running.len())])
    }

    /// Injects a one-off fault.
    pub(crate) fn inject(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::Crash => {
                if let Some(node) = self.pick_running() {
                    self.crash(node, FaultKind::Crash);
                }
            }
            FaultKind::Shutdown => {
                if let Some(node) = self.pick_running() {
                    self.shut_down(node);
                }
            }
            FaultKind::ClockStep => self.step_clocks(),
            FaultKind::FeedReset => self.rewind_cursor(),
            FaultKind::MalformedTrigger => {
                self.outcome.faults.add(FaultKind::MalformedTrigger);
                let n = self.rng.workload.u32(..);
                let modified = self.world.local(self.now);
                self.world
                    .dir
                    .files
                    .insert(format!("bad-{n}"), (modified, b"not a number".to_vec()));
                self.world
                    .dir
                    .files
                    .insert(format!(".editor-{n}.swp"), (modified, b"junk".to_vec()));
            }
            FaultKind::TriggerDirLost => {
                self.outcome.faults.add(FaultKind::TriggerDirLost);
                self.world.dir.exists = false;
                let back = Duration::from_secs(self.rng.lifecycle.u64(60..3600));
                self.after(back, Event::TriggerDirBack);
            }
            FaultKind::StoreOutage => {
                let length = Duration::from_secs(self.rng.lifecycle.u64(60..1800));
                note!(self, "store outage for {length:?}");
                self.world.outage_until = Some(self.now + length);
            }
            FaultKind::StoreRefusing => {
                let length = Duration::from_secs(self.rng.lifecycle.u64(600..7200));
                note!(self, "the store refuses jobvault for {length:?}");
                self.world.refusing_until = Some(self.now + length);
            }
            FaultKind::BucketWiped => {
                self.outcome.faults.add(FaultKind::BucketWiped);
                note!(self, "the bucket is wiped");
                self.world.store.wipe();
                self.world.wiped_at = Some(self.now);
                self.history.restart(None);
            }
            FaultKind::BackupsDeleted => {
                self.outcome.faults.add(FaultKind::BackupsDeleted);
                note!(self, "every backup is deleted, the lease and marker kept");
                self.world.store.delete_backups(self.world.db.counter);
                self.history.restart(None);
            }
            FaultKind::DatabaseReplaced => self.replace_database(),
            FaultKind::DatabaseWentBack => self.database_went_back(),
            FaultKind::Takeover => self.take_over(),
            FaultKind::HostCutOff => {
                self.outcome.faults.add(FaultKind::HostCutOff);
                let node = self.rng.lifecycle.usize(0..self.nodes.len());
                let length = Duration::from_secs(self.rng.lifecycle.u64(60..900));
                note!(self, "node {node} cut off from the store for {length:?}");
                self.nodes[node].cut_off_until = Some(self.now + length);
            }
            // `DayPlan::one_offs` yields only counts; a rate is applied
            // where the operations it hits are carried out.
            rate => unreachable!("{rate:?} is a rate, applied to each operation it can hit"),
        }
    }

    /// Starts a stopped daemon of another host with `--takeover` while the
    /// lease's holder runs, and has `jobvault backup` ask the old holder for
    /// a snapshot within the next half minute.
    fn take_over(&mut self) {
        let Some((lease, _)) = self
            .world
            .store
            .lease
            .as_ref()
            .filter(|(l, _)| l.released.is_none())
        else {
            return;
        };
        let Some(old) = self
            .nodes
            .iter()
            .find(|n| n.is_running() && n.holder() == lease.holder)
            .map(|n| n.id)
        else {
            return;
        };
        let Some(new) = self
            .nodes
            .iter()
            .find(|n| n.host != self.nodes[old].host && !n.is_running())
            .map(|n| n.id)
        else {
            return;
        };
        self.outcome.faults.add(FaultKind::Takeover);
        note!(
            self,
            "node {new} started with --takeover while node {old} holds the lease"
        );
        // In one of two, the old holder's link to the store turns slow: its
        // uploads in flight outlast the new holder's wait.
        if self.rng.lifecycle.bool() {
            self.nodes[old].slow_until = Some(self.now + Duration::from_secs(60));
        }
        self.start_core_with(new, true);
        let asked = Duration::from_millis(self.rng.lifecycle.u64(0..30_000));
        self.after(
            asked,
            Event::ImmediateOf(old, self.nodes[old].process.generation),
        );
    }

    fn shut_down(&mut self, node: NodeId) {
        if self.nodes[node].process.stopping.is_some() {
            return;
        }
        self.outcome.faults.add(FaultKind::Shutdown);
        // An operator takes a last backup or two as they stop the
        // service: requests still waiting at the stop.
        for _ in 0..self.rng.lifecycle.u8(0..3) {
            self.request_immediate();
        }
        note!(self, "node {node}: graceful stop requested");
        let now = self.call_time(node);
        let process = &mut self.nodes[node].process;
        let core = process.core.as_mut().expect("picked a running node");
        core.stop(now, SHUTDOWN_GRACE);
        process.stopping = Some((self.now, self.world.db.counter));
        let generation = process.generation;
        self.after(STOP_TIMEOUT, Event::GraceOver(node, generation));
    }

    /// Steps the database host's clock (within the restore's allowance),
    /// and another host's against it (within what `check` allows).
    fn step_clocks(&mut self) {
        self.outcome.faults.add(FaultKind::ClockStep);
        let max = MAX_CLOCK_ERROR.as_nanos() as i64;
        self.world.clock_error = self.rng.lifecycle.i64(-max..=max);
        let skew = MAX_HOST_SKEW.as_nanos() as i64;
        for node in 1..self.nodes.len() {
            if self.nodes[node].host != self.nodes[0].host {
                self.nodes[node].skew = self.rng.lifecycle.i64(-skew..=skew);
            }
        }
        note!(self, "local clock error now {} ns", self.world.clock_error);
        for node in &mut self.nodes {
            node.process.wake = None;
        }
    }

    /// Someone renames a file over the database: a restore of it (which
    /// records no destination) or a copy (which records the same). Each
    /// running daemon keeps the file it opened, and its watcher says so at
    /// its next look.
    fn replace_database(&mut self) {
        self.outcome.faults.add(FaultKind::DatabaseReplaced);
        let restored = self.rng.lifecycle.bool();
        note!(
            self,
            "a file is renamed over the database (a restore: {restored})"
        );
        for node in 0..self.nodes.len() {
            if !self.nodes[node].is_running() {
                continue;
            }
            let process = &mut self.nodes[node].process;
            process.opened.get_or_insert_with(|| self.world.db.clone());
            let (generation, look) = (process.generation, self.rng.lifecycle.u64(0..1_000));
            let input = Box::new(Input::DatabaseReplaced);
            let event = Event::Deliver {
                node,
                generation,
                input,
            };
            self.after(Duration::from_millis(look), event);
        }
        if restored {
            self.world.db.destination = None;
        }
        // The daemon saves its cursor into the file renamed away until it
        // halts, and gives the lease back with it: the file at the path
        // may hold an older cursor, which the restart takes for a copy
        // gone back (the prefix started over: a full snapshot, never a
        // change lost).
        for node in &mut self.nodes {
            node.process.unexplained_rewinds += 1;
        }
    }

    /// Someone copies the database aside, and later writes the copy back
    /// over it in place: while every node's daemon runs on the database's
    /// own file (one reading a file renamed away is stopping), which a
    /// daemon notices at its next read of the feed; or, in one case of
    /// two, once the service is stopped ([`Self::copy_back_after_stop`]),
    /// which its start finds through the lease the stop gave back.
    fn database_went_back(&mut self) {
        let Some(copy) = self.world.copy.take() else {
            self.world.copy = Some(self.world.db.clone());
            let back = Duration::from_secs(self.rng.went_back.u64(60..7200));
            note!(self, "a copy of the database is taken");
            self.after(back, Event::Fault(FaultKind::DatabaseWentBack));
            return;
        };
        let all_on_it = self
            .nodes
            .iter()
            .all(|node| node.is_running() && node.process.opened.is_none());
        if !all_on_it || copy.counter == self.world.db.counter {
            return;
        }
        if self.rng.went_back.bool() {
            note!(
                self,
                "the copy is written over the database under its daemons"
            );
            self.put_copy_back(copy);
        } else {
            note!(
                self,
                "the service is stopped, to put the copy back while it is down"
            );
            self.world.copy = Some(copy);
            for node in 0..self.nodes.len() {
                self.shut_down(node);
            }
        }
    }

    /// After a drained stop that gave the lease back, with no other daemon
    /// running, the copy taken earlier, if any, is put back before the
    /// service starts again, as a disk restored from an image is. The lease
    /// given back holds the cursor and the highest change the stop left,
    /// which the start compares the copy with ([`Self::copy_back_after_crash`]
    /// for a lease a crash left).
    fn copy_back_after_stop(&mut self, node: NodeId) {
        self.copy_back_while_none_runs(node, "while no daemon runs");
    }

    /// After a crash, with no daemon running, the copy taken earlier, if
    /// any, is put back in one case of two, when the lease left behind says
    /// the bucket may hold a change the copy lacks, or a cursor past the
    /// copy's: what the next start must find. A copy taken in the seconds
    /// the lease had not caught up with is not put back (DESIGN's "not
    /// covered"); `LeaseFollowsCursor` bounds those seconds.
    fn copy_back_after_crash(&mut self, node: NodeId) {
        let Some((lease, _)) = &self.world.store.lease else {
            return;
        };
        let found = |copy: &Db| {
            copy.counter < lease.state.bucket_may_hold() || copy.stored.seq < lease.state.cursor_seq
        };
        if self.nodes.iter().any(|n| n.is_running())
            || !self.world.copy.as_ref().is_some_and(found)
            || !self.rng.went_back.bool()
        {
            return;
        }
        self.copy_back_while_none_runs(node, "after the crash, while no daemon runs");
    }

    /// With no daemon running, puts the copy taken earlier back over the
    /// database, if there is one and the database has moved on from it.
    fn copy_back_while_none_runs(&mut self, node: NodeId, when: &str) {
        let counter = self.world.db.counter;
        if self.nodes.iter().any(|n| n.is_running()) {
            return;
        }
        if let Some(copy) = self.world.copy.take_if(|copy| copy.counter != counter) {
            note!(self, "node {node}: the copy is put back {when}");
            self.put_copy_back(copy);
        }
    }

    fn put_copy_back(&mut self, copy: Db) {
        self.outcome.faults.add(FaultKind::DatabaseWentBack);
        note!(
            self,
            "the copy is written over the database: counter {} back to {}",
            self.world.db.counter,
            copy.counter
        );
        self.world
            .abandoned
            .push(copy.counter + 1..=self.world.db.counter);
        self.world.raise_owed = true;
        self.world.db = copy;
        self.history.restart(None);
        for node in &mut self.nodes {
            node.process.unexplained_rewinds += 1;
        }
        self.commit_seen();
    }

    /// Someone rewinds the cursor stored in the database.
    fn rewind_cursor(&mut self) {
        if self.world.db.stored.seq == 0 {
            return;
        }
        self.outcome.faults.add(FaultKind::FeedReset);
        let stored = self.world.db.stored;
        self.world.db.stored = Cursor {
            seq: self.rng.lifecycle.u64(0..stored.seq),
            time: stored.time - Duration::from_secs(self.rng.lifecycle.u64(0..3600)),
        };
        // A stopped daemon may find it at its start, through its lease.
        for node in &mut self.nodes {
            node.process.unexplained_rewinds += 1;
        }
        self.world.raise_owed = true;
        note!(self, "cursor rewound to {:?}", self.world.db.stored);
        self.commit_seen();
    }

    /// Kills node `node`'s daemon: each of its operations in flight either
    /// takes effect now or never, and nothing reports back.
    pub(crate) fn crash(&mut self, node: NodeId, kind: FaultKind) {
        if !self.nodes[node].is_running() {
            return;
        }
        self.outcome.faults.add(kind);
        note!(self, "node {node}: jobvault killed");
        let generation = self.nodes[node].process.generation;
        let mut kept = BinaryHeap::new();
        // In time order, so that which work lands does not depend on how the
        // heap happens to lay out its entries.
        for Reverse(scheduled) in self.take_queue().into_sorted_vec().into_iter().rev() {
            match scheduled.event {
                Event::Done {
                    node: n,
                    generation: g,
                    op,
                    fate,
                    ..
                } if n == node && g == generation => {
                    if !matches!(fate, crate::operations::Fate::Fail(..))
                        && self.rng.lifecycle.bool()
                    {
                        self.complete(node, *op, crate::operations::Fate::Ok);
                    }
                }
                _ => kept.push(Reverse(scheduled)),
            }
        }
        self.put_queue(kept);
        self.nodes[node].exit();
        self.copy_back_after_crash(node);
        let delay = Duration::from_millis(self.rng.lifecycle.u64(1_000..120_000));
        if self.nodes[node].restarts {
            self.after(delay, Event::Restart(node));
        }
    }
}
