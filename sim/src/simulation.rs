//! One simulated day: the core driven through a seeded, faulty world.
//!
//! The world runs on true time; the core sees a local clock that may be
//! stepped by up to five minutes either way (half the restore allowance).
//! Every command the core emits is executed against the world with a drawn
//! latency and outcome. At the end of the day the faults stop and the system
//! is left to quiesce; then a restore from the bucket must equal the database.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use jobvault_core::destination::{DestinationId, DestinationMarker};
use jobvault_core::machine::{
    CHANGE_POLL, ChangeBatch, FoundDestination, JobUpload, Pruned, SNAPSHOT_DEADLINE,
    SnapshotOrder, SnapshotReason,
};
use jobvault_core::{Command, Config, Cursor, Failure, FailureKind, Input, JobId, Seq, Timestamp};

use crate::faults::{FaultCounts, FaultKind, FaultPlan};
use crate::history::History;
use crate::invariants::{Checkers, MAX_CLOCK_ERROR, Observation};
use crate::node::Node;
use crate::restore::{ReadFaults, Restored, carry_out_prune, plan_prune, restore};
use crate::rng::Streams;
use crate::world::{Body, Held, Statement, World};

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// How long the system gets to catch up after the faults stop: a snapshot
/// that hung just before may hold the triggers until its deadline.
const QUIESCE_LIMIT: Duration = SNAPSHOT_DEADLINE.saturating_add(HOUR);
/// A day takes well under a million events; many more means a livelock.
const MAX_EVENTS: u64 = 10_000_000;
/// How long a stopping jobvault is given before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What one seed did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    pub events: u64,
    pub faults: FaultCounts,
    pub jobs: u64,
    pub versions: u64,
    /// Changes that deleted a job.
    pub deletes: u64,
    pub job_uploads: u64,
    pub snapshots: u64,
    pub checks: u64,
    pub violations: Vec<String>,
    /// A hash of every event and command, in order: equal for equal seeds.
    pub fingerprint: u64,
    pub trace: Vec<String>,
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

/// The result the world will report for an operation, decided when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ok,
    /// Fails with no effect.
    Fail(FailureKind, &'static str),
    /// Reported failed, but the effect happened.
    Ambiguous,
    /// Never answers; the effect happened or not (`true`: it did).
    Hang(bool),
}

/// An operation in flight in the world.
#[derive(Debug)]
enum Op {
    Scan,
    WriteTrigger {
        name: String,
        attempts: u32,
    },
    DeleteTrigger {
        name: String,
    },
    Quarantine {
        name: String,
    },
    Snapshot {
        order: SnapshotOrder,
        versions: Arc<BTreeMap<JobId, Held>>,
        stored: Cursor,
    },
    Read {
        after: Seq,
        limit: usize,
    },
    Upload(JobUpload),
    Save {
        expected: Cursor,
        new: Cursor,
    },
    List {
        prefixes: Vec<String>,
    },
    Prune {
        keep: Duration,
    },
    CheckDestination,
    RecordDestination {
        id: DestinationId,
    },
}

#[derive(Debug)]
enum Event {
    /// The core asked to be woken (the token tells stale wake-ups apart).
    Wake(u64),
    Done {
        generation: u64,
        id: u64,
        op: Box<Op>,
        fate: Fate,
    },
    /// The driver answers a command that has not answered by its deadline.
    Deadline {
        generation: u64,
        id: u64,
    },
    /// The commit watcher of this core generation looks, and reports the
    /// commits it noticed.
    WatcherLooks(u64),
    /// A report on its way back to the core: the operation already took
    /// effect, and other reports may overtake this one.
    Deliver {
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
    GraceOver(u64),
    Restart,
    /// A one-off fault of the day's plan.
    Fault(FaultKind),
    TriggerDirBack,
    Immediate,
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

struct Scheduled {
    at: Timestamp,
    order: u64,
    event: Event,
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

struct Simulation {
    seed: u64,
    rng: Streams,
    plan: FaultPlan,
    history: History,
    config: Config,
    /// True time.
    now: Timestamp,
    queue: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    world: World,
    node: Node,
    /// Ids of operations and requests.
    next_op: u64,
    checkers: Checkers,
    quiescing: bool,
    deadline: Timestamp,
    triggers_dropped: u64,
    outcome: Outcome,
    hasher: DefaultHasher,
    tracing: bool,
}

impl Simulation {
    fn new(seed: u64, tracing: bool, enabled: &BTreeSet<FaultKind>) -> Self {
        let mut rng = Streams::new(seed);
        let plan = FaultPlan::draw(seed, &mut rng.plan, enabled);
        let concurrency = rng.plan.usize(1..=32);
        let max_pending = rng.plan.usize(16..=512);
        let start = Timestamp::from_unix_seconds(1_700_000_000 + rng.plan.i64(0..86_400 * 365));
        let history = History::draw(crate::rng::stream(seed, "history"), start);
        let config = Config {
            concurrency,
            max_pending,
            keep: history.keep,
            ..Config::default()
        };
        let calm = plan.is_calm();
        let mut world = World::default();
        world.store.versioned = history.versioned;
        Simulation {
            seed,
            rng,
            plan,
            history,
            checkers: Checkers::new(&config, calm),
            config,
            now: start,
            queue: BinaryHeap::new(),
            order: 0,
            world,
            node: Node::default(),
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
            "seed {} plan {:?} concurrency {} max_pending {} versioning {} keep {:?}",
            self.seed,
            self.plan,
            self.config.concurrency,
            self.config.max_pending,
            self.history.versioned,
            self.history.keep
        );
        self.schedule_day();
        self.start_core();
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
            self.pump();
            if self.quiescing && self.is_quiescent() {
                // A last look at the past, then the newest state.
                let now = self.local_now();
                let faults = self.read_faults();
                self.history
                    .check(&self.world, now, faults, &mut self.checkers);
                if let Some(restored) = self.restore_newest() {
                    self.observe(Observation::Quiesced(&restored));
                }
                break;
            }
        }
        self.outcome.checks = self.checkers.verdicts.checks;
        self.outcome.violations = std::mem::take(&mut self.checkers.verdicts.violations);
        self.outcome.jobs = self.world.db.living().len() as u64;
        self.outcome.versions = self.world.db.counter;
        self.outcome.deletes = self.world.db.deletes;
        self.outcome.job_uploads = self.world.store.job_writes;
        self.outcome.snapshots = self.world.store.snapshot_writes;
        self.outcome.fingerprint = self.hasher.finish();
        self.outcome
    }

    fn local_now(&self) -> Timestamp {
        self.world.local(self.now)
    }

    /// Tells every checker what just happened.
    /// A restore of the newest state, as `jobvault restore` makes it; one
    /// that fails is a violation.
    fn restore_newest(&mut self) -> Option<Restored> {
        let faults = ReadFaults {
            unusable: self.plan.rate(FaultKind::SnapshotUnusable),
            ..self.read_faults()
        };
        let restored = restore(
            &self.world.store,
            self.local_now(),
            faults,
            &mut self.rng.restore,
        );
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
            Err(e) => {
                self.violation(format_args!("a restore of the newest state failed: {e}"));
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
        }
    }

    fn count_failed_reads(&mut self, failed: u64) {
        for _ in 0..failed {
            self.outcome.faults.add(FaultKind::StoreReadFailure);
        }
    }

    fn observe(&mut self, seen: Observation) {
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

    fn after(&mut self, delay: Duration, event: Event) {
        self.at(self.now + delay, event);
    }

    fn random_time_in_day(&mut self) -> Duration {
        Duration::from_millis(self.rng.workload.u64(0..DAY.as_millis() as u64))
    }

    fn schedule_day(&mut self) {
        let plan = self.plan.clone();
        for (kind, count) in plan.one_offs() {
            for _ in 0..count {
                let delay = self.random_time_in_day();
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
        self.after(Duration::ZERO, Event::Write);
        self.after(HOUR, Event::HourlyCheck);
        self.after(DAY, Event::EndOfDay);
    }

    fn start_core(&mut self) {
        let now = self.local_now();
        note!(self, "start core at cursor {:?}", self.world.db.stored);
        let db = &self.world.db;
        self.node
            .start(&self.config, db.stored, db.destination, now);
        self.observe(Observation::CoreStarted);
    }

    /// Executes every command the core has for us and re-arms its wake-up.
    fn pump(&mut self) {
        loop {
            let Some(core) = self.node.core.as_mut() else {
                return;
            };
            match core.poll_command() {
                Some(command) => self.execute(command),
                None => break,
            }
        }
        let core = self.node.core.as_ref().expect("checked above");
        if self.node.stopping && core.is_quiet() {
            note!(self, "core exited after a graceful stop");
            let unanswered = std::mem::take(&mut self.node.immediate_waiting);
            self.observe(Observation::Exited {
                unanswered: &unanswered,
            });
            self.node.exit();
            let delay = Duration::from_millis(self.rng.lifecycle.u64(100..60_000));
            self.after(delay, Event::Restart);
            return;
        }
        if let Some(due) = core.poll_timeout() {
            let due =
                Timestamp::from_unix_nanos(due.unix_nanos() - self.world.clock_error).max(self.now);
            if self.node.wake.is_none_or(|(at, _)| at != due) {
                self.order += 1;
                let token = self.order;
                self.node.wake = Some((due, token));
                self.at(due, Event::Wake(token));
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Wake(token) => {
                if self.node.wake.is_some_and(|(_, t)| t == token) {
                    self.node.wake = None;
                    let now = self.local_now();
                    if let Some(core) = self.node.core.as_mut() {
                        core.handle_timeout(now);
                    }
                }
            }
            Event::Done {
                generation,
                id,
                op,
                fate,
            } => {
                if generation == self.node.generation
                    && self.node.core.is_some()
                    && self.node.unanswered.remove(&id).is_some()
                {
                    if matches!(*op, Op::Upload(_)) {
                        self.node.uploads_in_flight -= 1;
                    }
                    let input = self.complete(*op, fate);
                    // Most reports arrive at once; some linger on the way
                    // (a busy channel, a descheduled thread).
                    if self.rng.delivery.u8(0..4) == 0 {
                        let lag = Duration::from_micros(self.rng.delivery.u64(1..20_000));
                        self.after(
                            lag,
                            Event::Deliver {
                                generation,
                                input: Box::new(input),
                            },
                        );
                    } else {
                        self.deliver(input);
                    }
                }
            }
            Event::Deadline { generation, id } => {
                if generation == self.node.generation
                    && let Some(command) = self.node.unanswered.remove(&id)
                {
                    if matches!(command, Command::UploadJob(_)) {
                        self.node.uploads_in_flight -= 1;
                    }
                    let failure = Failure::new(FailureKind::Timeout, "no answer by the deadline");
                    let input = command
                        .failed(failure)
                        .expect("answered commands have deadlines");
                    self.deliver(input);
                }
            }
            Event::Deliver { generation, input } => {
                if generation == self.node.generation && self.node.core.is_some() {
                    self.deliver(*input);
                }
            }
            Event::WatcherLooks(generation) => {
                if generation == self.node.generation && self.node.core.is_some() {
                    self.node.commit_noticed = false;
                    self.deliver(Input::DatabaseChanged);
                }
            }
            Event::Write => self.write_job(),
            Event::Rewrite(recent) => self.rewrite_job(recent),
            Event::Timer => self.drop_trigger(),
            Event::Fault(kind) => self.inject(kind),
            Event::TriggerDirBack => self.world.dir.exists = true,
            Event::Immediate => self.request_immediate(),
            Event::HourlyCheck => {
                if let Some(restored) = self.restore_newest() {
                    self.observe(Observation::Restored(&restored));
                }
                let now = self.local_now();
                let faults = self.read_faults();
                self.history
                    .check(&self.world, now, faults, &mut self.checkers);
                if !self.quiescing {
                    self.after(HOUR, Event::HourlyCheck);
                }
            }
            Event::EndOfDay => {
                note!(self, "end of day: faults stop");
                self.quiescing = true;
                self.plan.calm();
                self.world.outage_until = None;
                self.world.refusing_until = None;
                self.world.dir.exists = true;
                if self.node.core.is_none() {
                    self.after(SECOND, Event::Restart);
                }
            }
            Event::GraceOver(generation) => {
                if generation == self.node.generation
                    && self.node.core.is_some()
                    && self.node.stopping
                {
                    self.crash(FaultKind::Shutdown);
                }
            }
            Event::Restart => {
                if self.node.core.is_none() {
                    self.start_core();
                }
            }
        }
    }

    /// `jobvault backup` asks the running core for a snapshot.
    fn request_immediate(&mut self) {
        let now = self.local_now();
        if let Some(core) = self.node.core.as_mut() {
            let id = self.next_op;
            self.next_op += 1;
            self.node.immediate_waiting.insert(id);
            let name = "task-scheduler".to_owned();
            core.handle_input(Input::ImmediateBackupRequested { id, name }, now);
        }
    }

    /// Injects a one-off fault.
    fn inject(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::Crash => self.crash(FaultKind::Crash),
            FaultKind::Shutdown => {
                if self.node.core.is_some() && !self.node.stopping {
                    self.outcome.faults.add(FaultKind::Shutdown);
                    // An operator takes a last backup or two as they stop
                    // the service: requests still waiting at the stop.
                    for _ in 0..self.rng.lifecycle.u8(0..3) {
                        self.request_immediate();
                    }
                    note!(self, "graceful stop requested");
                    self.node.core.as_mut().expect("checked").stop();
                    self.node.stopping = true;
                    self.after(SHUTDOWN_GRACE, Event::GraceOver(self.node.generation));
                }
            }
            FaultKind::ClockStep => {
                self.outcome.faults.add(FaultKind::ClockStep);
                let max = MAX_CLOCK_ERROR.as_nanos() as i64;
                self.world.clock_error = self.rng.lifecycle.i64(-max..=max);
                note!(self, "local clock error now {} ns", self.world.clock_error);
                self.node.wake = None;
            }
            FaultKind::FeedReset => {
                if self.world.db.stored.seq > 0 {
                    self.outcome.faults.add(FaultKind::FeedReset);
                    let stored = self.world.db.stored;
                    self.world.db.stored = Cursor {
                        seq: self.rng.lifecycle.u64(0..stored.seq),
                        time: stored.time - Duration::from_secs(self.rng.lifecycle.u64(0..3600)),
                    };
                    if self.node.core.is_some() {
                        self.node.unexplained_rewinds += 1;
                    }
                    note!(self, "cursor rewound to {:?}", self.world.db.stored);
                    self.commit_seen();
                }
            }
            FaultKind::MalformedTrigger => {
                self.outcome.faults.add(FaultKind::MalformedTrigger);
                let n = self.rng.workload.u32(..);
                let modified = self.local_now();
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
            FaultKind::BucketWiped => {
                note!(self, "the bucket is wiped");
                self.world.store.wipe();
                self.history.restart(None);
                // The daemon's next lease renewal finds its lease gone, and
                // it stops; systemd starts it again.
                self.crash(FaultKind::BucketWiped);
            }
            FaultKind::StoreRefusing => {
                let length = Duration::from_secs(self.rng.lifecycle.u64(600..7200));
                note!(self, "the store refuses jobvault for {length:?}");
                self.world.refusing_until = Some(self.now + length);
            }
            // `FaultPlan::one_offs` yields only counts; a rate is applied
            // where the operations it hits are carried out.
            rate => unreachable!("{rate:?} is a rate, applied to each operation it can hit"),
        }
    }

    fn deliver(&mut self, input: Input) {
        note!(self, "input {}", describe_input(&input));
        let now = self.local_now();
        let Some(core) = self.node.core.as_mut() else {
            return;
        };
        let resets_before = core.metrics().feed_resets_since_snapshot;
        core.handle_input(input, now);
        let metrics = core.metrics();
        self.observe(Observation::Reported {
            unexpected: metrics.unexpected_reports,
        });
        if metrics.feed_resets_since_snapshot > resets_before {
            let explained = self.node.unexplained_rewinds > 0;
            self.observe(Observation::FeedReset { explained });
            self.node.unexplained_rewinds = self.node.unexplained_rewinds.saturating_sub(1);
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
        let modified = self.local_now();
        if self.world.db.run(statement, id.clone(), modified, self.now) {
            note!(self, "{statement:?} {id}");
            self.commit_seen();
        }
    }

    /// Something committed to the database: the running core's watcher
    /// reports it at its next look, unless it misses it.
    fn commit_seen(&mut self) {
        if self.node.core.is_none() || self.node.commit_noticed {
            return;
        }
        if self.rng.watch.f64() < self.plan.rate(FaultKind::MissedCommit) {
            self.outcome.faults.add(FaultKind::MissedCommit);
            return;
        }
        self.node.commit_noticed = true;
        let look = Duration::from_micros(self.rng.watch.u64(1..=CHANGE_POLL.as_micros() as u64));
        let generation = self.node.generation;
        self.after(look, Event::WatcherLooks(generation));
    }

    fn drop_trigger(&mut self) {
        if !self.world.dir.exists {
            return;
        }
        self.triggers_dropped += 1;
        let name = format!("db-backup-{}", self.triggers_dropped);
        let modified = self.local_now();
        note!(self, "timer drops trigger {name}");
        self.world.dir.files.insert(name, (modified, Vec::new()));
    }

    /// Kills jobvault: each operation in flight either takes effect now or
    /// never, and nothing reports back.
    fn crash(&mut self, kind: FaultKind) {
        if self.node.core.is_none() {
            return;
        }
        self.outcome.faults.add(kind);
        note!(self, "jobvault killed");
        let generation = self.node.generation;
        let mut kept = BinaryHeap::new();
        // In time order, so that which work lands does not depend on how the
        // heap happens to lay out its entries.
        for Reverse(scheduled) in std::mem::take(&mut self.queue)
            .into_sorted_vec()
            .into_iter()
            .rev()
        {
            match scheduled.event {
                Event::Done {
                    generation: g,
                    op,
                    fate,
                    ..
                } if g == generation => {
                    if !matches!(fate, Fate::Fail(..)) && self.rng.lifecycle.bool() {
                        self.complete(*op, Fate::Ok);
                    }
                }
                _ => kept.push(Reverse(scheduled)),
            }
        }
        self.queue = kept;
        self.node.exit();
        let delay = Duration::from_millis(self.rng.lifecycle.u64(1_000..120_000));
        self.after(delay, Event::Restart);
    }

    fn is_quiescent(&self) -> bool {
        let Some(core) = &self.node.core else {
            return false;
        };
        !self.node.stopping
            && self.node.uploads_in_flight == 0
            && core.metrics().pending_jobs == 0
            && self.world.db.stored.seq == self.world.db.counter
            && core.stored_cursor() == self.world.db.stored
            && self.world.dir.unserved().next().is_none()
            && self.world.vouched().is_some()
    }

    fn store_fate(&mut self) -> Fate {
        if self.world.refusing(self.now) {
            self.outcome.faults.add(FaultKind::StoreRefusing);
            return Fate::Fail(
                FailureKind::Permission,
                "403 Forbidden: jobvault@project.iam.gserviceaccount.com does not have storage.objects.create access",
            );
        }
        if self
            .world
            .outage_until
            .is_some_and(|until| self.now < until)
        {
            self.outcome.faults.add(FaultKind::StoreOutage);
            return Fate::Fail(FailureKind::Transient, "503 Service Unavailable (outage)");
        }
        let draw = self.rng.fate.f64();
        let transient = self.plan.rate(FaultKind::StoreTransient);
        let throttled = transient + self.plan.rate(FaultKind::StoreThrottled);
        let ambiguous = throttled + self.plan.rate(FaultKind::StoreAmbiguous);
        if draw < transient {
            self.outcome.faults.add(FaultKind::StoreTransient);
            Fate::Fail(FailureKind::Transient, "503 Service Unavailable")
        } else if draw < throttled {
            self.outcome.faults.add(FaultKind::StoreThrottled);
            Fate::Fail(FailureKind::Transient, "429 Too Many Requests")
        } else if draw < ambiguous {
            self.outcome.faults.add(FaultKind::StoreAmbiguous);
            Fate::Ambiguous
        } else if draw < ambiguous + self.plan.rate(FaultKind::Hang) {
            self.outcome.faults.add(FaultKind::Hang);
            Fate::Hang(self.rng.fate.bool())
        } else {
            Fate::Ok
        }
    }

    /// The fate of a database or trigger directory operation: it fails as
    /// `kind` at that kind's rate, or hangs, with no effect (a statement that
    /// never got its lock).
    fn rate_fate(&mut self, kind: FaultKind, why: &'static str) -> Fate {
        let draw = self.rng.fate.f64();
        let rate = self.plan.rate(kind);
        if draw < rate {
            self.outcome.faults.add(kind);
            Fate::Fail(FailureKind::Transient, why)
        } else if draw < rate + self.plan.rate(FaultKind::Hang) {
            self.outcome.faults.add(FaultKind::Hang);
            Fate::Hang(false)
        } else {
            Fate::Ok
        }
    }

    fn dir_fate(&mut self) -> Fate {
        if !self.world.dir.exists {
            return Fate::Fail(
                FailureKind::NotFound,
                "trigger directory: No such file or directory",
            );
        }
        self.rate_fate(
            FaultKind::TriggerDir,
            "trigger directory: Input/output error",
        )
    }

    fn store_latency(&mut self) -> Duration {
        let base = self.plan.store_latency;
        if self.rng.latency.u8(0..50) == 0 {
            base * self.rng.latency.u32(10..100)
        } else {
            base.mul_f64(0.5 + self.rng.latency.f64())
        }
    }

    fn execute(&mut self, command: Command) {
        hash_command(&mut self.hasher, &command);
        note!(self, "command {}", describe_command(&command));
        let db_latency = Duration::from_micros(self.rng.latency.u64(200..5_000));
        let (deadline, answered) = (command.deadline(), command.clone());
        let (op, fate, latency) = match command {
            Command::ScanTriggers => (Op::Scan, self.dir_fate(), db_latency),
            Command::WriteTriggerAttempts { name, attempts } => (
                Op::WriteTrigger { name, attempts },
                self.dir_fate(),
                db_latency,
            ),
            Command::DeleteTrigger { name } => {
                (Op::DeleteTrigger { name }, self.dir_fate(), db_latency)
            }
            Command::QuarantineTrigger { name, .. } => {
                (Op::Quarantine { name }, self.dir_fate(), db_latency)
            }
            Command::TakeSnapshot(order) => {
                if let SnapshotReason::Trigger { name, .. } = &order.reason {
                    self.checkers
                        .observe(Observation::TriggerAttempt { trigger: name }, &self.world);
                }
                let versions = Arc::new(self.world.db.versions());
                let latency = Duration::from_millis(self.rng.latency.u64(500..30_000));
                let fate = self.store_fate();
                let stored = self.world.db.stored;
                let op = Op::Snapshot {
                    order,
                    versions,
                    stored,
                };
                (op, fate, latency)
            }
            Command::ReadChanges { after, limit } => {
                let (local, true_time) = (self.local_now(), self.now);
                self.observe(Observation::FeedRead { local, true_time });
                let fate = self.rate_fate(FaultKind::DbRead, "database is locked");
                (Op::Read { after, limit }, fate, db_latency)
            }
            Command::UploadJob(upload) => {
                self.node.uploads_in_flight += 1;
                let core = self.node.core.as_ref();
                let pending = core
                    .expect("commands come from a running core")
                    .metrics()
                    .pending_jobs;
                self.observe(Observation::UploadStarted {
                    object: &upload.object,
                    true_time: self.now,
                    in_flight: self.node.uploads_in_flight,
                    pending: pending as usize,
                });
                let latency = self.store_latency();
                (Op::Upload(upload), self.store_fate(), latency)
            }
            Command::SaveCursor { expected, new } => {
                let fate = self.rate_fate(FaultKind::DbWrite, "disk I/O error");
                (Op::Save { expected, new }, fate, db_latency)
            }
            Command::CheckDestination => {
                let latency = self.store_latency();
                (Op::CheckDestination, self.store_fate(), latency)
            }
            Command::RecordDestination { id } => {
                let fate = self.rate_fate(FaultKind::DbWrite, "disk I/O error");
                (Op::RecordDestination { id }, fate, db_latency)
            }
            Command::ListSnapshots { prefixes } => {
                let latency = self.store_latency();
                let fate = match self.store_fate() {
                    Fate::Ambiguous => Fate::Ok,
                    fate => fate,
                };
                (Op::List { prefixes }, fate, latency)
            }
            Command::Prune { keep } => {
                let latency = self.store_latency();
                (Op::Prune { keep }, self.store_fate(), latency)
            }
            Command::ImmediateBackupDone { id, object, result } => {
                note!(self, "immediate backup {id} {object}: {result:?}");
                let waiting = self.node.immediate_waiting.remove(&id);
                self.observe(Observation::ImmediateAnswered { id, waiting });
                return;
            }
        };
        let (generation, id) = (self.node.generation, self.next_op);
        self.next_op += 1;
        if let Some(deadline) = deadline {
            self.node.unanswered.insert(id, answered);
            self.after(deadline, Event::Deadline { generation, id });
        }
        match fate {
            Fate::Hang(landed) => {
                note!(self, "operation {id} hangs (landed: {landed})");
                if landed {
                    // The report of a call that never answers is never seen.
                    let _ = self.complete(op, Fate::Ok);
                }
            }
            fate => {
                let op = Box::new(op);
                self.after(
                    latency,
                    Event::Done {
                        generation,
                        id,
                        op,
                        fate,
                    },
                );
            }
        }
    }

    /// Carries out an operation's effect (unless it failed outright) and
    /// builds the report the core gets.
    fn complete(&mut self, op: Op, fate: Fate) -> Input {
        let error = match fate {
            Fate::Ok => None,
            Fate::Fail(kind, why) => Some((kind, why)),
            Fate::Ambiguous => Some((
                FailureKind::Transient,
                "connection reset after the request was sent",
            )),
            Fate::Hang(_) => unreachable!("a call that hangs is answered at its deadline"),
        };
        let effective = !matches!(fate, Fate::Fail(..));
        let result = |error: Option<(FailureKind, &str)>| match error {
            None => Ok(()),
            Some((kind, why)) => Err(Failure::new(kind, why)),
        };
        match op {
            Op::Scan => Input::TriggersScanned(result(error).map(|()| self.world.dir.scan())),
            Op::WriteTrigger { name, attempts } => {
                let error = error.or_else(|| {
                    (!self.world.dir.files.contains_key(&name))
                        .then_some((FailureKind::NotFound, "trigger file vanished"))
                });
                if error.is_none()
                    && let Some(file) = self.world.dir.files.get_mut(&name)
                {
                    file.1 = attempts.to_string().into_bytes();
                }
                Input::TriggerAttemptsWritten {
                    name,
                    result: result(error),
                }
            }
            Op::DeleteTrigger { name } => {
                if effective {
                    self.world.dir.files.remove(&name);
                }
                Input::TriggerDeleted {
                    name,
                    result: result(error),
                }
            }
            Op::Quarantine { name } => {
                if effective && self.world.dir.files.remove(&name).is_some() {
                    self.world.dir.quarantined.insert(name.clone());
                }
                Input::TriggerQuarantined {
                    name,
                    result: result(error),
                }
            }
            Op::Snapshot {
                order,
                versions,
                stored,
            } => {
                if effective {
                    let body = Body::Snapshot {
                        versions,
                        gzip_mtime: order.framing.gzip_mtime,
                        stored,
                    };
                    self.world.store.put(order.object.clone(), body, self.now);
                }
                Input::SnapshotTaken {
                    object: order.object,
                    result: result(error).map(|()| 1),
                }
            }
            Op::Read { after, limit } => Input::ChangesRead(result(error).map(|()| ChangeBatch {
                stored: self.world.db.stored,
                jobs: self.world.db.changes(after, limit),
            })),
            Op::Upload(upload) => {
                let id = upload.envelope.id.clone();
                let seq = upload.envelope.seq;
                if effective {
                    let body = Body::Job {
                        id: id.clone(),
                        held: Held {
                            seq,
                            body: upload.envelope.body().map(Arc::from),
                            modified: upload.envelope.modified,
                        },
                    };
                    let replaced = self.world.store.put(upload.object.clone(), body, self.now);
                    let object = &upload.object;
                    self.observe(Observation::JobWritten {
                        object,
                        seq,
                        replaced,
                    });
                }
                Input::JobUploaded {
                    id,
                    seq,
                    result: result(error).map(|()| 1),
                }
            }
            Op::Save { expected, new } => {
                let unchanged = self.world.db.stored == expected;
                if effective && unchanged {
                    self.observe(Observation::CursorSaving { expected, new });
                    self.world.db.stored = new;
                    self.commit_seen();
                }
                let error = error
                    .or((!unchanged)
                        .then_some((FailureKind::Conflict, "the stored cursor changed")));
                Input::CursorSaved(result(error))
            }
            Op::List { prefixes } => {
                Input::SnapshotsListed(result(error).map(|()| self.world.store.list(&prefixes)))
            }
            Op::CheckDestination => {
                let found = effective.then(|| self.find_or_create_destination());
                Input::DestinationChecked(result(error).map(|()| found.expect("effective")))
            }
            Op::RecordDestination { id } => {
                if effective {
                    note!(self, "the database records destination {id}");
                    self.world.db.destination = Some(id);
                    if self.world.vouched() == Some(id) {
                        self.history.restart(Some(self.local_now()));
                    }
                }
                Input::DestinationRecorded(result(error))
            }
            Op::Prune { keep } => {
                let (planned, failed_reads) = plan_prune(
                    &self.world.store,
                    self.local_now(),
                    keep,
                    self.read_faults(),
                    &mut self.rng.prune,
                );
                self.count_failed_reads(failed_reads);
                let plan = match planned {
                    Ok(plan) => plan,
                    Err(e) => {
                        note!(self, "prune: its plan failed: {e}");
                        let why = format!("the prune's plan failed: {e}");
                        return Input::Pruned(Err(Failure::new(FailureKind::Transient, why)));
                    }
                };
                // A prune that failed stopped somewhere: after the marker,
                // a few deletions, or before anything.
                let steps = if effective {
                    usize::MAX
                } else {
                    self.rng.prune.usize(0..=plan.delete.len() + 1)
                };
                carry_out_prune(&mut self.world.store, &plan, steps);
                let done = if effective {
                    "all".to_owned()
                } else {
                    format!("{steps} steps")
                };
                note!(
                    self,
                    "prune: {} objects to delete, {done} carried out",
                    plan.delete.len()
                );
                let pruned = Pruned {
                    deleted: plan.delete.len() as u64,
                    oldest_restorable: plan.oldest_restorable(),
                };
                Input::Pruned(result(error).map(|()| pruned))
            }
        }
    }

    /// The prefix's marker, created with a fresh id if there is none, as the
    /// daemon's driver does.
    fn find_or_create_destination(&mut self) -> FoundDestination {
        if let Some(marker) = &self.world.store.destination {
            return FoundDestination {
                marker: marker.clone(),
                created: false,
            };
        }
        let id = DestinationId::new(self.rng.fate.u64(1..=i64::MAX as u64)).expect("in range");
        let marker = DestinationMarker::new(id, self.local_now());
        note!(self, "destination marker {id} created");
        self.world.store.destination = Some(marker.clone());
        FoundDestination {
            marker,
            created: true,
        }
    }

    fn violation(&mut self, what: std::fmt::Arguments) {
        self.checkers.verdicts.violation(what.to_string());
    }

    fn push_note(&mut self, what: String) {
        let line = format!("{} (local {}) {what}", self.now, self.local_now());
        self.outcome.trace.push(line);
    }
}

fn hash_command(hasher: &mut DefaultHasher, command: &Command) {
    match command {
        Command::ScanTriggers => 0u8.hash(hasher),
        Command::WriteTriggerAttempts { name, attempts } => (1u8, name, attempts).hash(hasher),
        Command::DeleteTrigger { name } => (2u8, name).hash(hasher),
        Command::QuarantineTrigger { name, .. } => (3u8, name).hash(hasher),
        Command::TakeSnapshot(order) => (4u8, &order.object, order.framing.gzip_mtime).hash(hasher),
        Command::ReadChanges { after, limit } => (5u8, after, limit).hash(hasher),
        Command::UploadJob(upload) => (6u8, &upload.object, upload.envelope.seq).hash(hasher),
        Command::SaveCursor { new, .. } => (7u8, new.seq, new.time).hash(hasher),
        Command::ListSnapshots { prefixes } => (8u8, prefixes).hash(hasher),
        Command::Prune { keep } => (10u8, keep).hash(hasher),
        Command::CheckDestination => 11u8.hash(hasher),
        Command::RecordDestination { id } => (12u8, id).hash(hasher),
        Command::ImmediateBackupDone { object, .. } => (9u8, object).hash(hasher),
    }
}

fn describe_command(command: &Command) -> String {
    match command {
        Command::UploadJob(upload) => {
            format!("UploadJob {} seq {}", upload.object, upload.envelope.seq)
        }
        Command::TakeSnapshot(order) => format!(
            "TakeSnapshot {} mtime {} ({:?})",
            order.object, order.framing.gzip_mtime, order.reason
        ),
        other => format!("{other:?}"),
    }
}

fn describe_input(input: &Input) -> String {
    match input {
        Input::ChangesRead(Ok(batch)) => {
            let seqs: Vec<_> = batch.jobs.iter().map(|e| e.seq).collect();
            format!("ChangesRead stored {:?} seqs {seqs:?}", batch.stored)
        }
        Input::TriggersScanned(Ok(files)) => {
            let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
            format!("TriggersScanned {names:?}")
        }
        other => format!("{other:?}"),
    }
}
