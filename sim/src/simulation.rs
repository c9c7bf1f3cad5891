//! One simulated day: the core driven through a seeded, faulty world.
//!
//! The world runs on true time; each daemon sees its host's clock, which
//! may be stepped by up to five minutes either way (half the restore
//! allowance), and a second host's clock differs from the first's by up to
//! [`MAX_HOST_SKEW`]. Every command a core emits is executed against the
//! world with a drawn latency and outcome (`operations.rs`); daemons start,
//! crash, stop and are cut off as `lifecycle.rs` decides. At the end of the
//! day the faults stop and the system is left to quiesce; then a restore
//! from the bucket must equal the database.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use jobvault_core::commit_watch::{NOTICED_FALLBACK, NextLook, next_look};
use jobvault_core::lease::LeaseState;
use jobvault_core::machine::{NEW_DESTINATION_BASE, SNAPSHOT_DEADLINE};
use jobvault_core::restore_plan::PlanError;
use jobvault_core::{Config, Input, JobId, Seq, Timestamp};

use crate::faults::{DayPlan, FaultCounts, FaultKind};
use crate::history::History;
use crate::invariants::{Checkers, Observation};
use crate::lifecycle::Ending;
use crate::node::{Node, NodeId, PendingLook};
use crate::operations::{Fate, Op, describe_input};
use crate::restore::{Failed, ReadFaults, Restored, restore};
use crate::rng::Streams;
use crate::settings::{MAX_HOST_SKEW, Settings, Topology};
use crate::world::{Statement, World};

pub(crate) const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(86_400);
/// How long the system gets to catch up after the faults stop: a snapshot
/// that hung just before may hold the triggers until its deadline.
const QUIESCE_LIMIT: Duration = SNAPSHOT_DEADLINE.saturating_add(HOUR);
/// A day takes well under a million events; many more means a livelock.
const MAX_EVENTS: u64 = 10_000_000;
/// How soon after a write the OS's notice wakes a daemon's watcher.
const NOTICE_LATENCY: Duration = Duration::from_millis(1);

/// What one seed did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    pub events: u64,
    pub faults: FaultCounts,
    pub jobs: u64,
    /// Changes written: not the counter, which a copy gone back takes
    /// back and its daemon raises.
    pub versions: u64,
    /// Changes that deleted a job.
    pub deletes: u64,
    pub job_uploads: u64,
    pub snapshots: u64,
    pub checks: u64,
    /// Daemons that ran in the day.
    pub daemons: u64,
    /// Times a daemon took the lease over from another process.
    pub takeovers: u64,
    /// Graceful stops that drained, and that ran out of grace.
    pub stops: Stops,
    pub violations: Vec<String>,
    /// A hash of every event and command, in order: equal for equal seeds.
    pub fingerprint: u64,
    pub trace: Vec<String>,
}

/// How graceful stops ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stops {
    pub drained: u64,
    /// Drained, but rows set aside are not in the bucket.
    pub set_aside: u64,
    /// Drained, but the prefix could not be vouched for.
    pub unvouched: u64,
    pub grace_over: u64,
}

/// Runs one simulated day for `seed` with every kind of fault. With `trace`,
/// every event and command is recorded in [`Outcome::trace`].
pub fn run(seed: u64, trace: bool) -> Outcome {
    run_with(seed, trace, &FaultKind::all().iter().copied().collect())
}

/// Runs one simulated day for `seed` with only the `enabled` kinds of fault.
pub fn run_with(seed: u64, trace: bool, enabled: &BTreeSet<FaultKind>) -> Outcome {
    Simulation::new(seed, trace, enabled).run()
}

#[derive(Debug)]
pub(crate) enum Event {
    /// A core asked to be woken (the token tells stale wake-ups apart).
    Wake(NodeId, u64),
    Done {
        node: NodeId,
        generation: u64,
        id: u64,
        op: Box<Op>,
        fate: Fate,
    },
    /// The driver answers a command that has not answered by its deadline.
    Deadline {
        node: NodeId,
        generation: u64,
        id: u64,
    },
    /// The commit watcher of this core generation looks, and reports the
    /// commits it noticed.
    WatcherLooks(NodeId, u64),
    /// A report on its way back to the core: the operation already took
    /// effect, and other reports may overtake this one.
    Deliver {
        node: NodeId,
        generation: u64,
        input: Box<Input>,
    },
    /// The service writes one job, new or recent, and plans its next write.
    Write,
    /// The service rewrites the n-th most recently created job.
    Rewrite(usize),
    /// The systemd timer drops a trigger file.
    Timer,
    /// A stopping jobvault that has not exited by now is killed.
    GraceOver(NodeId, u64),
    /// The daemon starts, if it is not running.
    Restart(NodeId),
    /// A one-off fault of the day's plan.
    Fault(FaultKind),
    TriggerDirBack,
    Immediate,
    /// `jobvault backup` asks this core generation for a snapshot.
    ImmediateOf(NodeId, u64),
    HourlyCheck,
    EndOfDay,
}

/// Records a trace line when tracing; formats nothing otherwise.
macro_rules! note {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.tracing {
            let what = format!($($arg)*);
            $sim.push_note(what);
        }
    };
}
pub(crate) use note;

pub(crate) struct Scheduled {
    at: Timestamp,
    order: u64,
    pub(crate) event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

pub(crate) struct Simulation {
    pub(crate) seed: u64,
    pub(crate) rng: Streams,
    pub(crate) plan: DayPlan,
    pub(crate) history: History,
    pub(crate) config: Config,
    pub(crate) topology: Topology,
    /// True time.
    pub(crate) now: Timestamp,
    queue: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    pub(crate) world: World,
    pub(crate) nodes: Vec<Node>,
    /// Ids of operations and requests.
    pub(crate) next_op: u64,
    pub(crate) checkers: Checkers,
    pub(crate) quiescing: bool,
    deadline: Timestamp,
    triggers_dropped: u64,
    pub(crate) outcome: Outcome,
    pub(crate) hasher: DefaultHasher,
    pub(crate) tracing: bool,
}

impl Simulation {
    fn new(seed: u64, tracing: bool, enabled: &BTreeSet<FaultKind>) -> Self {
        let mut rng = Streams::new(seed);
        let settings = Settings::draw(seed, &mut rng.plan, enabled);
        let calm = settings.plan.is_calm();
        let mut world = World::default();
        world.store.versioned = settings.history.versioned;
        let skew = |rng: &mut fastrand::Rng| {
            let max = MAX_HOST_SKEW.as_nanos() as i64;
            rng.i64(-max..=max)
        };
        let mut nodes = vec![Node::new(0, "vm-a", 0, true)];
        match settings.topology {
            Topology::One => {}
            Topology::TwoOnPrefix { .. } => {
                nodes.push(Node::new(1, "vm-b", skew(&mut rng.lifecycle), true));
            }
            Topology::TwoOnHost { .. } => nodes.push(Node::new(1, "vm-a", 0, false)),
        }
        let start = settings.start;
        Simulation {
            seed,
            rng,
            checkers: Checkers::new(&settings.config, calm),
            plan: settings.plan,
            history: settings.history,
            config: settings.config,
            topology: settings.topology,
            now: start,
            queue: BinaryHeap::new(),
            order: 0,
            world,
            nodes,
            next_op: 0,
            quiescing: false,
            deadline: start + DAY + QUIESCE_LIMIT,
            triggers_dropped: 0,
            outcome: Outcome {
                seed,
                ..Outcome::default()
            },
            hasher: DefaultHasher::new(),
            tracing,
        }
    }

    fn run(mut self) -> Outcome {
        note!(
            self,
            "seed {} plan {:?} topology {:?} concurrency {} max_pending {} ({} bytes) versioning {} keep {:?}",
            self.seed,
            self.plan,
            self.topology,
            self.config.concurrency,
            self.config.max_pending,
            self.config.max_pending_bytes,
            self.history.versioned,
            self.history.keep
        );
        self.schedule_day();
        self.start_core(0);
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at > self.deadline {
                self.violation(format_args!(
                    "the system did not quiesce within {QUIESCE_LIMIT:?} after the faults stopped"
                ));
                break;
            }
            if self.outcome.events >= MAX_EVENTS {
                self.violation(format_args!(
                    "livelock: {MAX_EVENTS} events and the day is not over"
                ));
                break;
            }
            self.now = next.at;
            self.outcome.events += 1;
            next.at.hash(&mut self.hasher);
            self.handle(next.event);
            for node in 0..self.nodes.len() {
                self.pump(node);
            }
            if self.quiescing && self.is_quiescent() {
                // A last look at the past, then the newest state.
                let now = self.world.local(self.now);
                let faults = self.read_faults();
                self.history
                    .check(&self.world, now, faults, &mut self.checkers);
                let counted = self.holder_metrics().map_or(0, |m| m.jobs_set_aside);
                self.observe(Observation::SetAsideCounted { counted });
                if let Some((caught_up, stored)) = self.holder_caught_up() {
                    self.observe(Observation::QuietHolder { caught_up, stored });
                }
                if let Some(restored) = self.restore_newest(true) {
                    self.observe(Observation::Quiesced(&restored));
                }
                break;
            }
        }
        self.outcome.checks = self.checkers.verdicts.checks;
        self.outcome.violations = std::mem::take(&mut self.checkers.verdicts.violations);
        self.outcome.jobs = self.world.db.living().len() as u64;
        self.outcome.deletes = self.world.db.deletes;
        self.outcome.job_uploads = self.world.store.job_writes;
        self.outcome.snapshots = self.world.store.snapshot_writes;
        self.outcome.fingerprint = self.hasher.finish();
        self.outcome
    }

    /// What node `node`'s clock reads now.
    /// The time node `node`'s core is called with, now: its clock's.
    pub(crate) fn call_time(&mut self, node: NodeId) -> Timestamp {
        let local = self.local_now(node);
        self.nodes[node].process.called = (local, self.now);
        local
    }

    pub(crate) fn local_now(&self, node: NodeId) -> Timestamp {
        let local = self.world.local(self.now);
        Timestamp::from_unix_nanos(local.unix_nanos() + self.nodes[node].skew)
    }

    /// A restore of the newest state, as `jobvault restore` makes it; one
    /// that fails is a violation, but for one refusing, before the `last`
    /// check once quiet, a bucket that holds job objects and no snapshot (a
    /// wiped bucket not refilled yet: an hourly check just after the
    /// faults stopped found one), or whose newest snapshot, drawn unusable, is where
    /// the backups started again (a retried owed snapshot that landed twice
    /// looks the same as a database swapped in: the restore cannot tell,
    /// and refuses to fall back past it).
    fn restore_newest(&mut self, last: bool) -> Option<Restored> {
        let faults = ReadFaults {
            unusable: self.plan.rate(FaultKind::SnapshotUnusable),
            ..self.read_faults()
        };
        let now = self.world.local(self.now);
        let restored = restore(&self.world.store, now, faults, &mut self.rng.restore);
        match restored {
            Ok(restored) => {
                for _ in 0..restored.served_decompressed {
                    self.outcome.faults.add(FaultKind::SnapshotDecompressed);
                }
                for _ in &restored.unusable {
                    self.outcome.faults.add(FaultKind::SnapshotUnusable);
                }
                self.count_failed_reads(restored.failed_reads);
                Some(restored)
            }
            Err(Failed::Plan(PlanError::NoUsableSnapshot(_)))
                if !last && self.newest_snapshot_is_none_or_a_restart() =>
            {
                None
            }
            Err(e) => {
                self.violation(format_args!("a restore of the newest state failed: {e}"));
                None
            }
        }
    }

    fn newest_snapshot_is_none_or_a_restart(&self) -> bool {
        let restart = format!("/{NEW_DESTINATION_BASE}-");
        self.world
            .store
            .newest_snapshot
            .as_ref()
            .is_none_or(|name| name.as_str().contains(&restart))
    }

    /// At the day's `every-snapshot-unusable` rate, a restore of the newest
    /// state that finds every snapshot unusable. Refusing is right; one that
    /// rebuilds from the job objects alone is judged as any restore is.
    fn restore_without_snapshot(&mut self) -> Option<Restored> {
        let rate = self.plan.rate(FaultKind::EverySnapshotUnusable);
        if self.rng.without_snapshot.f64() >= rate {
            return None;
        }
        self.outcome.faults.add(FaultKind::EverySnapshotUnusable);
        let faults = ReadFaults {
            every_unusable: true,
            ..self.read_faults()
        };
        let now = self.world.local(self.now);
        match restore(
            &self.world.store,
            now,
            faults,
            &mut self.rng.without_snapshot,
        ) {
            Ok(restored) => Some(restored),
            Err(Failed::Plan(PlanError::NoUsableSnapshot(_) | PlanError::NothingToRestore(_))) => {
                None
            }
            Err(e) => {
                self.violation(format_args!(
                    "a restore with every snapshot unusable failed otherwise than refusing: {e}"
                ));
                None
            }
        }
    }

    /// What the reads of a restore or prune meet today. A snapshot found
    /// unusable is one of the newest state's faults only (see
    /// [`Simulation::restore_newest`]).
    pub(crate) fn read_faults(&self) -> ReadFaults {
        ReadFaults {
            failing: self.plan.rate(FaultKind::StoreReadFailure),
            decompressed: self.plan.rate(FaultKind::SnapshotDecompressed),
            unusable: 0.0,
            every_unusable: false,
        }
    }

    pub(crate) fn count_failed_reads(&mut self, failed: u64) {
        for _ in 0..failed {
            self.outcome.faults.add(FaultKind::StoreReadFailure);
        }
    }

    /// Tells every checker what just happened.
    pub(crate) fn observe(&mut self, seen: Observation) {
        self.checkers.observe(seen, &self.world);
    }

    fn at(&mut self, at: Timestamp, event: Event) {
        self.order += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            order: self.order,
            event,
        }));
    }

    pub(crate) fn after(&mut self, delay: Duration, event: Event) {
        self.at(self.now + delay, event);
    }

    /// Every event scheduled, for a crash to sort out what of its own
    /// lands; [`Simulation::put_queue`] puts back what stays.
    pub(crate) fn take_queue(&mut self) -> BinaryHeap<Reverse<Scheduled>> {
        std::mem::take(&mut self.queue)
    }

    pub(crate) fn put_queue(&mut self, queue: BinaryHeap<Reverse<Scheduled>>) {
        self.queue = queue;
    }

    fn random_time_in_day(&mut self) -> Duration {
        Duration::from_millis(self.rng.workload.u64(0..DAY.as_millis() as u64))
    }

    fn schedule_day(&mut self) {
        let plan = self.plan.clone();
        for (kind, count) in plan.one_offs() {
            for _ in 0..count {
                // Drawn apart, so that the seeds' other events stay where
                // they were before the fault was added.
                let delay = match kind {
                    FaultKind::DatabaseWentBack => {
                        Duration::from_millis(self.rng.went_back.u64(0..DAY.as_millis() as u64))
                    }
                    _ => self.random_time_in_day(),
                };
                self.after(delay, Event::Fault(kind));
            }
        }
        for _ in 0..plan.immediate_requests {
            let delay = self.random_time_in_day();
            self.after(delay, Event::Immediate);
        }
        for _ in 0..self.rng.workload.u32(1..=2) {
            let delay = self.random_time_in_day();
            self.after(delay, Event::Timer);
        }
        // Bursts rewrite a few recent jobs many times within seconds, so that
        // jobs change again while their upload is in flight.
        for _ in 0..plan.bursts {
            let start = self.random_time_in_day();
            let ids = self.rng.workload.usize(1..=8);
            for _ in 0..self.rng.workload.u32(20..=300) {
                let jitter = Duration::from_millis(self.rng.workload.u64(0..5_000));
                let recent = self.rng.workload.usize(0..ids);
                self.after(start + jitter, Event::Rewrite(recent));
            }
        }
        if let Topology::TwoOnPrefix { second_start } | Topology::TwoOnHost { second_start } =
            self.topology
        {
            self.after(second_start, Event::Restart(1));
        }
        self.after(Duration::ZERO, Event::Write);
        self.after(HOUR, Event::HourlyCheck);
        self.after(DAY, Event::EndOfDay);
    }

    /// Executes every command node `node`'s core has for us, exits it once
    /// it is done, and re-arms its wake-up.
    fn pump(&mut self, node: NodeId) {
        while let Some(command) = self.nodes[node]
            .process
            .core
            .as_mut()
            .and_then(|core| core.poll_command())
        {
            self.execute(node, command);
        }
        let Some(core) = self.nodes[node].process.core.as_ref() else {
            return;
        };
        let ending = match (core.stopped(), core.lease_ended()) {
            _ if core.database_replaced() => core.is_quiet().then_some(Ending::Replaced),
            (Some(stopped), _) => Some(Ending::Stopped(stopped)),
            (None, Some(ended)) if core.is_quiet() => Some(Ending::Lease(ended.to_string())),
            _ => None,
        };
        if let Some(ending) = ending {
            self.exited(node, ending);
            return;
        }
        // Someone runs `jobvault backup` as the daemon stops for its lease:
        // it is answered, not left to an exit that drops it (a lost lease
        // never halted the core, and a request then waited for the exit).
        if core.lease_ended().is_some() && !self.nodes[node].process.asked_after_lease_ended {
            self.nodes[node].process.asked_after_lease_ended = true;
            self.request_immediate_of(node);
            return self.pump(node);
        }
        if let Some(due) = core.poll_timeout() {
            let (local, true_time) = self.nodes[node].process.called;
            let ahead = due.unix_nanos() - local.unix_nanos();
            let due = self
                .now
                .max(true_time + Duration::from_nanos(ahead.max(0) as u64));
            if self.nodes[node]
                .process
                .wake
                .is_none_or(|(at, _)| at != due)
            {
                self.order += 1;
                let token = self.order;
                self.nodes[node].process.wake = Some((due, token));
                self.at(due, Event::Wake(node, token));
            }
        }
    }

    /// Whether node `node` runs the process of `generation`.
    fn runs(&self, node: NodeId, generation: u64) -> bool {
        let process = &self.nodes[node].process;
        process.generation == generation && process.core.is_some()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Wake(node, token) => {
                let process = &mut self.nodes[node].process;
                if process.wake.is_some_and(|(_, t)| t == token) {
                    process.wake = None;
                    let now = self.call_time(node);
                    if let Some(core) = self.nodes[node].process.core.as_mut() {
                        core.handle_timeout(now);
                        let said = core.metrics().incremental_alive;
                        self.says_caught_up(node, said);
                    }
                }
            }
            Event::Done {
                node,
                generation,
                id,
                op,
                fate,
            } => {
                if self.runs(node, generation)
                    && self.nodes[node].process.unanswered.remove(&id).is_some()
                {
                    if matches!(*op, Op::Upload(_)) {
                        self.nodes[node].process.uploads_in_flight -= 1;
                    }
                    let input = self.complete(node, *op, fate);
                    // Most reports arrive at once; some linger on the way
                    // (a busy channel, a descheduled thread).
                    if self.rng.delivery.u8(0..4) == 0 {
                        let lag = Duration::from_micros(self.rng.delivery.u64(1..20_000));
                        let input = Box::new(input);
                        self.after(
                            lag,
                            Event::Deliver {
                                node,
                                generation,
                                input,
                            },
                        );
                    } else {
                        self.deliver(node, input);
                    }
                }
            }
            Event::Deadline {
                node,
                generation,
                id,
            } => {
                let process = &mut self.nodes[node].process;
                if process.generation == generation
                    && let Some(answer) = process.unanswered.remove(&id)
                {
                    if matches!(answer, Input::JobUploaded { .. }) {
                        process.uploads_in_flight -= 1;
                    }
                    self.deliver(node, answer);
                }
            }
            Event::Deliver {
                node,
                generation,
                input,
            } => {
                if self.runs(node, generation) {
                    self.deliver(node, *input);
                }
            }
            Event::WatcherLooks(node, generation) => {
                if self.runs(node, generation)
                    && let Some(pending) = self.nodes[node].process.look_pending.take()
                {
                    self.nodes[node].process.looked = Some(self.now);
                    self.observe(Observation::CommitLooked {
                        waited: self.now.duration_since(pending.since),
                        watch: self.plan.watch,
                        prompt: pending.prompt,
                    });
                    self.report_commit(node);
                }
            }
            Event::Write => self.write_job(),
            Event::Rewrite(recent) => self.rewrite_job(recent),
            Event::Timer => self.drop_trigger(),
            Event::Fault(kind) => self.inject(kind),
            Event::TriggerDirBack => self.world.dir.exists = true,
            Event::Immediate => self.request_immediate(),
            Event::ImmediateOf(node, generation) => {
                if self.runs(node, generation) {
                    self.request_immediate_of(node);
                }
            }
            Event::HourlyCheck => {
                if let Some(restored) = self.restore_newest(false) {
                    self.observe(Observation::Restored(&restored));
                }
                if let Some(restored) = self.restore_without_snapshot() {
                    self.observe(Observation::Restored(&restored));
                }
                let now = self.world.local(self.now);
                let faults = self.read_faults();
                self.history
                    .check(&self.world, now, faults, &mut self.checkers);
                if !self.quiescing {
                    self.after(HOUR, Event::HourlyCheck);
                }
            }
            Event::EndOfDay => self.end_of_day(),
            Event::GraceOver(node, generation) => {
                if self.runs(node, generation) && self.nodes[node].process.stopping.is_some() {
                    self.crash(node, FaultKind::Shutdown);
                }
            }
            Event::Restart(node) => {
                if !self.nodes[node].is_running() {
                    self.start_core(node);
                }
            }
        }
    }

    fn end_of_day(&mut self) {
        note!(self, "end of day: faults stop");
        self.quiescing = true;
        self.plan.calm();
        self.world.outage_until = None;
        self.world.refusing_until = None;
        self.world.dir.exists = true;
        for node in 0..self.nodes.len() {
            self.nodes[node].cut_off_until = None;
            if self.nodes[node].restarts && !self.nodes[node].is_running() {
                self.after(SECOND, Event::Restart(node));
            }
        }
    }

    pub(crate) fn deliver(&mut self, node: NodeId, input: Input) {
        note!(self, "node {node} input {}", describe_input(&input));
        let now = self.call_time(node);
        let Some(core) = self.nodes[node].process.core.as_mut() else {
            return;
        };
        let resets_before = core.metrics().feed_resets_since_snapshot;
        let lease_trouble = matches!(
            input,
            Input::LeaseRead(Err(_)) | Input::LeaseWritten(Err(_)) | Input::LeaseReleased(Err(_))
        );
        core.handle_input(input, now);
        let metrics = core.metrics();
        let said = progress(&core.lease_content());
        self.says_caught_up(node, metrics.incremental_alive);
        self.observe(Observation::Reported {
            unexpected: metrics.unexpected_reports,
        });
        let writer = self.nodes[node].holder();
        self.observe(Observation::LeaseKept {
            writer: &writer,
            progress: said,
            lease_trouble,
            true_time: self.now,
        });
        if metrics.feed_resets_since_snapshot > resets_before {
            let process = &mut self.nodes[node].process;
            let explained = process.unexplained_rewinds > 0;
            process.unexplained_rewinds = process.unexplained_rewinds.saturating_sub(1);
            self.observe(Observation::FeedReset { explained });
        }
    }

    /// Tells the invariants what node `node`'s caught-up figure claims
    /// after a call: by the clock as it reads now, which a step moves
    /// under a figure that stands still.
    fn says_caught_up(&mut self, node: NodeId, said: Option<Timestamp>) {
        // Until its watcher sees a file renamed over its database (within
        // a second), a daemon speaks of the file it has open; it then halts.
        let renamed_away = self.nodes[node].process.opened.is_some();
        if let Some(local) = said.filter(|_| !renamed_away) {
            let local_now = self.local_now(node);
            self.observe(Observation::SaidCaughtUp {
                local,
                local_now,
                true_time: self.now,
            });
        }
    }

    /// A writer's statement: a new job (inserted, or upserted as the
    /// library does) or a change to a recent one by any statement of the
    /// writer contract, as a service in any language would run it.
    fn write_job(&mut self) {
        if self.quiescing {
            return;
        }
        let (id, statement) = if self.world.db.ids.is_empty() || self.rng.workload.u8(0..10) < 3 {
            let id = JobId::new(format!("{:08x}", self.world.db.counter + 1))
                .expect("hex ids are valid");
            if self.rng.workload.f64() < self.plan.rate(FaultKind::NamelessId) {
                self.outcome.faults.add(FaultKind::NamelessId);
                self.world.db.nameless.insert(id.clone());
            }
            let statement = [Statement::Insert, Statement::Upsert][self.rng.workload.usize(0..2)];
            (id, statement)
        } else {
            let recent = self.world.db.ids.len().min(64);
            let pick = self.world.db.ids.len() - 1 - self.rng.workload.usize(0..recent);
            let statement = match self.rng.workload.u8(0..20) {
                0..8 => Statement::Update,
                8..15 => Statement::Upsert,
                15..17 => Statement::Delete,
                _ => Statement::Insert,
            };
            (self.world.db.ids[pick].clone(), statement)
        };
        self.run_statement(statement, id);
        let gap = self.plan.write_interval.as_secs_f64() * -(1.0 - self.rng.workload.f64()).ln();
        self.after(Duration::from_secs_f64(gap), Event::Write);
    }

    /// A burst's write: mostly changes, now and then a delete, so that jobs
    /// are deleted and written again while their uploads are in flight.
    fn rewrite_job(&mut self, recent: usize) {
        if self.quiescing || self.world.db.ids.is_empty() {
            return;
        }
        let id = self.world.db.ids[self.world.db.ids.len() - 1 - recent % self.world.db.ids.len()]
            .clone();
        let statement = match self.rng.workload.u8(0..10) {
            0 => Statement::Delete,
            1..5 => Statement::Update,
            _ => Statement::Upsert,
        };
        self.run_statement(statement, id);
    }

    fn run_statement(&mut self, statement: Statement, id: JobId) {
        let modified = self.world.local(self.now);
        let bad = statement != Statement::Delete
            && self.rng.workload.f64() < self.plan.rate(FaultKind::BadRow);
        if self
            .world
            .db
            .run(statement, id.clone(), modified, self.now, bad)
        {
            self.outcome.versions += 1;
            if bad {
                self.outcome.faults.add(FaultKind::BadRow);
            }
            note!(
                self,
                "{statement:?} {id}{}",
                if bad { " (a bad row)" } else { "" }
            );
            self.commit_seen();
        }
    }

    /// Something committed to the database: each running core's watcher
    /// reports it at its next look, which the core's [`next_look`] places.
    /// With notices from the OS the look follows the notice at once, or
    /// the rest after the last look that found a commit (every look here
    /// finds one); a
    /// missed commit is a notice the OS dropped (the look comes at the
    /// fallback) or, while polling, a look that failed (the interval's read
    /// finds it).
    pub(crate) fn commit_seen(&mut self) {
        for node in 0..self.nodes.len() {
            if self.nodes[node].process.core.is_none() {
                continue;
            }
            let missed = self.rng.watch.f64() < self.plan.rate(FaultKind::MissedCommit);
            if missed {
                self.outcome.faults.add(FaultKind::MissedCommit);
            }
            let within = |longest: Duration| longest.as_micros() as u64;
            let process = &mut self.nodes[node].process;
            // After a second with no notice the watcher has taken its
            // fallback look, and rests no more.
            let resting = process
                .looked
                .filter(|&looked| self.now < looked + NOTICED_FALLBACK);
            let (rest, wait) = match next_look(self.plan.watch, None, resting.is_some()) {
                NextLook::After(_) if missed => continue,
                NextLook::After(poll) => (Duration::ZERO, within(poll)),
                NextLook::AtNotice { rest, or_after, .. } if missed => (rest, within(or_after)),
                NextLook::AtNotice { rest, settle, .. } => (rest, within(settle + NOTICE_LATENCY)),
            };
            let rested = resting.map_or(self.now, |looked| self.now.max(looked + rest));
            let look = rested + Duration::from_micros(self.rng.watch.u64(1..=wait));
            match &mut process.look_pending {
                // Whether the look is prompt is the first commit's: a later
                // one can only bring it forward.
                Some(pending) => {
                    if pending.due <= look {
                        continue;
                    }
                    pending.due = look;
                }
                None => {
                    process.look_pending = Some(PendingLook {
                        since: self.now,
                        due: look,
                        prompt: !missed,
                    });
                }
            }
            let generation = process.generation;
            self.at(look, Event::WatcherLooks(node, generation));
        }
    }

    fn drop_trigger(&mut self) {
        if !self.world.dir.exists {
            return;
        }
        self.triggers_dropped += 1;
        let name = format!("db-backup-{}", self.triggers_dropped);
        let modified = self.world.local(self.now);
        note!(self, "timer drops trigger {name}");
        self.world.dir.files.insert(name, (modified, Vec::new()));
    }

    /// The metrics of the daemon that holds the lease, if one runs.
    fn holder_metrics(&self) -> Option<jobvault_core::Metrics> {
        let (lease, _) = self.world.store.lease.as_ref()?;
        self.nodes
            .iter()
            .find(|node| node.holder() == lease.holder)
            .and_then(|node| node.process.core.as_ref())
            .map(|core| core.metrics())
    }

    /// As of when the holder says it is caught up, and its stored cursor's
    /// time, by its clock; `None` while its work is out.
    fn holder_caught_up(&self) -> Option<(Option<Timestamp>, Timestamp)> {
        let (lease, _) = self.world.store.lease.as_ref()?;
        let node = self
            .nodes
            .iter()
            .find(|node| node.holder() == lease.holder)?;
        let core = node.process.core.as_ref().filter(|core| core.is_quiet())?;
        Some((core.metrics().incremental_alive, core.stored_cursor().time))
    }

    /// Quiet at the end of the day: one daemon holds the lease, is caught up
    /// with a database whose cursor speaks for the bucket, and every trigger
    /// is served.
    fn is_quiescent(&self) -> bool {
        let holder = self
            .world
            .store
            .lease
            .as_ref()
            .map(|(lease, _)| &lease.holder);
        self.nodes.iter().any(|node| {
            let process = &node.process;
            let Some(core) = &process.core else {
                return false;
            };
            process.stopping.is_none()
                && holder == Some(&node.holder())
                && process.uploads_in_flight == 0
                && core.metrics().pending_jobs == 0
                && self.world.db.stored.seq == self.world.db.counter
                && core.stored_cursor() == self.world.db.stored
        }) && self.world.dir.unserved().next().is_none()
            && self.world.vouched().is_some()
    }

    pub(crate) fn violation(&mut self, what: std::fmt::Arguments) {
        self.checkers.verdicts.violation(what.to_string());
    }

    pub(crate) fn push_note(&mut self, what: String) {
        let line = format!("{} (local {}) {what}", self.now, self.world.local(self.now));
        self.outcome.trace.push(line);
    }
}

/// A lease's cursor and the highest change it says the bucket may hold.
pub(crate) fn progress(state: &LeaseState) -> (Seq, Seq) {
    (state.cursor_seq, state.highest_seq)
}
