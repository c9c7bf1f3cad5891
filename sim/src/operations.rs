//! What a core's commands do to the world: each is an operation with a
//! drawn latency and fate, carried out against the store, the database or
//! the trigger directory when it completes.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use jobvault_core::destination::{DestinationId, DestinationMarker};
use jobvault_core::history::HistoryMarker;
use jobvault_core::lease::{FoundLease, Lease};
use jobvault_core::machine::{
    FoundDestination, JobUpload, SnapshotOrder, SnapshotReason, Unreadable,
};
use jobvault_core::object_name::ObjectName;
use jobvault_core::restore_plan::Ask;
use jobvault_core::trigger::TriggerName;
use jobvault_core::{Command, Cursor, Failure, FailureKind, Input, JobId, Seq, Timestamp};

use crate::faults::FaultKind;
use crate::invariants::Observation;
use crate::node::NodeId;
use crate::restore::read_one;
use crate::simulation::{Event, Simulation, note};
use crate::world::{Body, Db, JobVersion};

/// The result the world will report for an operation, decided when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
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
pub(crate) enum Op {
    Scan,
    WriteTrigger {
        name: TriggerName,
        attempts: u32,
    },
    DeleteTrigger {
        name: TriggerName,
    },
    Quarantine {
        name: TriggerName,
    },
    Snapshot {
        order: SnapshotOrder,
        versions: Arc<BTreeMap<JobId, JobVersion>>,
        stored: Cursor,
        counter: Seq,
        went_back_at: Option<Timestamp>,
    },
    Read {
        after: Seq,
        limit: usize,
        max_bytes: u64,
    },
    Upload(JobUpload),
    Save {
        expected: Cursor,
        new: Cursor,
        set_aside: Vec<Unreadable>,
    },
    List {
        prefixes: Vec<String>,
    },
    ReadBucket(Ask),
    WriteHistory(HistoryMarker),
    DeleteObject {
        object: ObjectName,
    },
    CheckDestination {
        keep: Option<DestinationId>,
    },
    RecordDestination {
        id: DestinationId,
    },
    RaiseCounter {
        past: Seq,
    },
    ReadLease,
    WriteLease {
        lease: Lease,
        if_generation: i64,
    },
    ReleaseLease {
        lease: Lease,
        if_generation: i64,
    },
}

impl Simulation {
    /// Issues `command` of node `node`'s core: draws its fate and latency
    /// and schedules its completion (and its deadline).
    pub(crate) fn execute(&mut self, node: NodeId, command: Command) {
        hash_command(&mut self.hasher, &command);
        note!(self, "node {node} command {}", describe_command(&command));
        if command.needs_lease() {
            let writer = self.nodes[node].holder();
            self.observe(Observation::SharedWrite {
                writer: &writer,
                command: &command,
                true_time: self.now,
            });
        }
        if let Command::WriteLease { lease, .. } | Command::ReleaseLease { lease, .. } = &command {
            let writer = self.nodes[node].holder();
            self.observe(Observation::LeaseWriteIssued {
                writer: &writer,
                progress: crate::simulation::progress(&lease.state),
                true_time: self.now,
            });
        }
        // What the deadline answers, made now: cheaper than keeping a copy of
        // the command (an upload's whole body).
        let deadline = command.deadline().map(|deadline| {
            let failure = Failure::new(FailureKind::Timeout, "no answer by the deadline");
            let answer = command
                .failed(failure)
                .expect("commands with deadlines expect answers");
            (deadline, answer)
        });
        let Some((op, fate, latency)) = self.operation(node, command) else {
            return;
        };
        let generation = self.nodes[node].process.generation;
        let id = self.next_op;
        self.next_op += 1;
        if let Some((deadline, answer)) = deadline {
            self.nodes[node].process.unanswered.insert(id, answer);
            self.after(
                deadline,
                Event::Deadline {
                    node,
                    generation,
                    id,
                },
            );
        }
        match fate {
            Fate::Hang(landed) => {
                note!(self, "operation {id} hangs (landed: {landed})");
                if landed {
                    // The report of a call that never answers is never seen.
                    let _ = self.complete(node, op, Fate::Ok);
                }
            }
            fate => {
                let op = Box::new(op);
                let done = Event::Done {
                    node,
                    generation,
                    id,
                    op,
                    fate,
                };
                self.after(latency, done);
            }
        }
    }

    /// The driver drops the tasks of the commands whose answers `taken`
    /// picks: their supervisors answer them now, as abandoned, and none is
    /// committed (their completions find them answered). One that landed
    /// first (a hang that landed) stays. Returns how many.
    fn abandon(&mut self, node: NodeId, taken: impl Fn(&Input) -> bool) -> usize {
        let process = &mut self.nodes[node].process;
        let ids: Vec<u64> = process
            .unanswered
            .iter()
            .filter(|(_, answer)| taken(answer))
            .map(|(id, _)| *id)
            .collect();
        let answers: Vec<Input> = ids
            .iter()
            .filter_map(|id| process.unanswered.remove(id))
            .collect();
        let generation = process.generation;
        for answer in &answers {
            let deliver = Event::Deliver {
                node,
                generation,
                input: Box::new(abandoned(answer)),
            };
            self.after(Duration::from_millis(1), deliver);
        }
        answers.len()
    }

    /// The operation that carries out `command`, its fate and its latency;
    /// `None` for a command that is only a report to its requester.
    fn operation(&mut self, node: NodeId, command: Command) -> Option<(Op, Fate, Duration)> {
        let db_latency = Duration::from_micros(self.rng.latency.u64(200..5_000));
        Some(match command {
            Command::AbandonSnapshot { object } => {
                let abandoned = self.abandon(node, |answer| {
                    matches!(answer, Input::SnapshotTaken { object: o, .. } if *o == object)
                });
                note!(
                    self,
                    "node {node}: snapshot {object} abandoned ({abandoned})"
                );
                return None;
            }
            Command::AbandonUploads => {
                let abandoned =
                    self.abandon(node, |answer| matches!(answer, Input::JobUploaded { .. }));
                self.nodes[node].process.uploads_in_flight -= abandoned;
                note!(self, "node {node}: {abandoned} uploads abandoned");
                return None;
            }
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
                let process = (node, self.nodes[node].process.generation);
                // A scheduled snapshot's attempts are counted per process
                // and due instant: a restart is a new chance.
                let trigger = match &order.reason {
                    SnapshotReason::Trigger { name, .. } => Some(name.to_string()),
                    SnapshotReason::Scheduled { due, .. } => {
                        Some(format!("scheduled for {due} by {process:?}"))
                    }
                    _ => None,
                };
                if let Some(trigger) = &trigger {
                    let attempt = Observation::TriggerAttempt {
                        trigger,
                        process,
                        local: self.local_now(node),
                    };
                    self.checkers.observe(attempt, &self.world);
                }
                let versions = Arc::new(self.db_of(node).versions());
                // One in ten is of a large database: up to five minutes,
                // past a takeover's wait.
                let latency = if self.rng.latency.u8(0..10) == 0 {
                    Duration::from_secs(self.rng.latency.u64(60..300))
                } else {
                    Duration::from_millis(self.rng.latency.u64(500..30_000))
                };
                let fate = self.store_fate(node);
                let db = self.db_of(node);
                let (stored, counter, went_back_at) = (db.stored, db.counter, db.went_back_at);
                let op = Op::Snapshot {
                    order,
                    versions,
                    stored,
                    counter,
                    went_back_at,
                };
                (op, fate, latency)
            }
            Command::ReadChanges {
                after,
                limit,
                max_bytes,
            } => {
                let (local, true_time) = (self.local_now(node), self.now);
                self.observe(Observation::FeedRead { local, true_time });
                let fate = self.rate_fate(FaultKind::DbRead, "database is locked");
                let op = Op::Read {
                    after,
                    limit,
                    max_bytes,
                };
                (op, fate, db_latency)
            }
            Command::UploadJob(upload) => {
                let process = &mut self.nodes[node].process;
                process.uploads_in_flight += 1;
                let in_flight = process.uploads_in_flight;
                let core = process.core.as_ref();
                let held = core.expect("commands come from a running core").held();
                self.observe(Observation::UploadStarted {
                    node,
                    object: &upload.object,
                    true_time: self.now,
                    in_flight,
                    held,
                });
                // On a slow link (a large body): up to five minutes, past a
                // takeover's wait.
                let latency = if self.nodes[node]
                    .slow_until
                    .is_some_and(|until| self.now < until)
                {
                    Duration::from_secs(self.rng.latency.u64(60..300))
                } else {
                    self.store_latency()
                };
                (Op::Upload(upload), self.store_fate(node), latency)
            }
            Command::SaveCursor {
                expected,
                new,
                set_aside,
            } => {
                let fate = self.rate_fate(FaultKind::DbWrite, "disk I/O error");
                let op = Op::Save {
                    expected,
                    new,
                    set_aside,
                };
                (op, fate, db_latency)
            }
            Command::ListSnapshots { prefixes } => {
                let latency = self.store_latency();
                let fate = match self.store_fate(node) {
                    Fate::Ambiguous => Fate::Ok,
                    fate => fate,
                };
                (Op::List { prefixes }, fate, latency)
            }
            Command::ReadBucket(ask) => {
                let latency = self.store_latency();
                let fate = match self.store_fate(node) {
                    Fate::Ambiguous => Fate::Ok,
                    fate => fate,
                };
                (Op::ReadBucket(ask), fate, latency)
            }
            Command::WriteHistory(marker) => {
                let latency = self.store_latency();
                (Op::WriteHistory(marker), self.store_fate(node), latency)
            }
            Command::DeleteObject { object } => {
                let latency = self.store_latency();
                (Op::DeleteObject { object }, self.store_fate(node), latency)
            }
            Command::CheckDestination { keep } => {
                let latency = self.store_latency();
                (
                    Op::CheckDestination { keep },
                    self.store_fate(node),
                    latency,
                )
            }
            Command::RecordDestination { id } => {
                let fate = self.rate_fate(FaultKind::DbWrite, "disk I/O error");
                (Op::RecordDestination { id }, fate, db_latency)
            }
            Command::RaiseCounter { past } => {
                let fate = self.rate_fate(FaultKind::DbWrite, "disk I/O error");
                (Op::RaiseCounter { past }, fate, db_latency)
            }
            Command::ReadLease => {
                let latency = self.store_latency();
                let fate = match self.store_fate(node) {
                    Fate::Ambiguous => Fate::Ok,
                    fate => fate,
                };
                (Op::ReadLease, fate, latency)
            }
            Command::WriteLease {
                lease,
                if_generation,
            } => {
                let latency = self.store_latency();
                let op = Op::WriteLease {
                    lease,
                    if_generation,
                };
                (op, self.store_fate(node), latency)
            }
            Command::ReleaseLease {
                lease,
                if_generation,
            } => {
                let latency = self.store_latency();
                let op = Op::ReleaseLease {
                    lease,
                    if_generation,
                };
                (op, self.store_fate(node), latency)
            }
            Command::ImmediateBackupDone { id, object, result } => {
                note!(self, "immediate backup {id} {object:?}: {result:?}");
                let waiting = self.nodes[node].process.immediate_waiting.remove(&id);
                self.observe(Observation::ImmediateAnswered { id, waiting });
                return None;
            }
        })
    }

    /// Carries out an operation's effect (unless it failed outright) and
    /// builds the report the core gets.
    pub(crate) fn complete(&mut self, node: NodeId, op: Op, fate: Fate) -> Input {
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
        match op {
            Op::Scan => Input::TriggersScanned(result(error).map(|()| self.world.dir.scan())),
            Op::WriteTrigger { name, attempts } => {
                let error = error.or_else(|| {
                    (!self.world.dir.files.contains_key(name.as_str()))
                        .then_some((FailureKind::NotFound, "trigger file vanished"))
                });
                if error.is_none()
                    && let Some(file) = self.world.dir.files.get_mut(name.as_str())
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
                    self.world.dir.files.remove(name.as_str());
                }
                Input::TriggerDeleted {
                    name,
                    result: result(error),
                }
            }
            Op::Quarantine { name } => {
                if effective && self.world.dir.files.remove(name.as_str()).is_some() {
                    self.world.dir.quarantined.insert(name.to_string());
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
                counter,
                went_back_at,
            } => {
                if effective {
                    let body = Body::Snapshot {
                        versions,
                        gzip_mtime: order.framing.gzip_mtime,
                        stored,
                        counter,
                        went_back_at,
                    };
                    self.world.store.put(order.object.clone(), body, self.now);
                    let writer = self.nodes[node].holder();
                    self.observe(Observation::Landed {
                        writer: &writer,
                        object: order.object.as_str(),
                    });
                }
                Input::SnapshotTaken {
                    object: order.object,
                    result: result(error).map(|()| 1),
                }
            }
            Op::Read {
                after,
                limit,
                max_bytes,
            } => Input::ChangesRead(
                result(error).map(|()| self.db_of(node).changes(after, limit, max_bytes)),
            ),
            Op::Upload(upload) => self.uploaded(node, upload, effective, error),
            Op::Save {
                expected,
                new,
                set_aside,
            } => self.cursor_saved(node, (expected, new), &set_aside, effective, error),
            Op::List { prefixes } => {
                Input::SnapshotsListed(result(error).map(|()| self.world.store.list(&prefixes)))
            }
            Op::ReadBucket(ask) => self.read_bucket(node, ask, error),
            Op::WriteHistory(marker) => {
                if effective {
                    self.world.store.marker = Some(marker.encode());
                }
                Input::HistoryWritten(result(error))
            }
            Op::DeleteObject { object } => {
                let found = self.world.store.objects.contains_key(&object);
                if effective {
                    self.world.store.delete(&object);
                }
                let error =
                    error.or((!found).then_some((FailureKind::NotFound, "404 No such object")));
                note!(self, "delete {object}: {error:?}");
                Input::ObjectDeleted {
                    object,
                    result: result(error),
                }
            }
            Op::CheckDestination { keep } => {
                let found = effective.then(|| self.check_destination(node, keep));
                Input::DestinationChecked(result(error).map(|()| found.expect("effective")))
            }
            Op::RaiseCounter { past } => {
                if effective {
                    let local = self.world.local(self.now);
                    let db = self.db_of(node);
                    db.counter = db.counter.max(past);
                    db.destination = None;
                    db.went_back_at = Some(local);
                    self.world.raise_owed = false;
                }
                Input::CounterRaised(result(error))
            }
            Op::RecordDestination { id } if self.nodes[node].process.opened.is_some() => {
                if effective {
                    self.db_of(node).destination = Some(id);
                }
                Input::DestinationRecorded(result(error))
            }
            Op::RecordDestination { id } => {
                if effective {
                    note!(self, "the database records destination {id}");
                    self.world.db.destination = Some(id);
                    if self.world.vouched() == Some(id) {
                        self.history.restart(Some(self.world.local(self.now)));
                    }
                }
                Input::DestinationRecorded(result(error))
            }
            Op::ReadLease => Input::LeaseRead(result(error).map(|()| self.found_lease(node))),
            Op::WriteLease {
                lease,
                if_generation,
            } => {
                let written = effective.then(|| self.write_lease(node, lease, if_generation));
                Input::LeaseWritten(lease_written(written, error))
            }
            Op::ReleaseLease {
                lease,
                if_generation,
            } => {
                let written = effective.then(|| self.write_lease(node, lease, if_generation));
                Input::LeaseReleased(lease_written(written, error).map(drop))
            }
        }
    }

    fn uploaded(
        &mut self,
        node: NodeId,
        upload: JobUpload,
        effective: bool,
        error: Option<(FailureKind, &str)>,
    ) -> Input {
        let id = upload.envelope.id.clone();
        let seq = upload.envelope.seq;
        if effective {
            let body = Body::Job {
                id: id.clone(),
                held: JobVersion {
                    seq,
                    body: upload.envelope.body().map(Arc::from),
                    modified: upload.envelope.modified,
                    bad: false,
                },
            };
            let replaced = self.world.store.put(upload.object.clone(), body, self.now);
            let object = &upload.object;
            self.observe(Observation::JobWritten {
                object,
                seq,
                replaced,
            });
            let writer = self.nodes[node].holder();
            self.observe(Observation::Landed {
                writer: &writer,
                object,
            });
        }
        Input::JobUploaded {
            id,
            seq,
            result: result(error).map(|()| 1),
        }
    }

    /// A cursor save lands if the database still holds `expected`. For every
    /// other running daemon on the database it is someone else's change.
    fn cursor_saved(
        &mut self,
        node: NodeId,
        (expected, new): (Cursor, Cursor),
        set_aside: &[Unreadable],
        effective: bool,
        error: Option<(FailureKind, &str)>,
    ) -> Input {
        if let Some(opened) = &mut self.nodes[node].process.opened {
            return saved_in_replaced(opened, (expected, new), set_aside, effective, error);
        }
        let unchanged = self.world.db.stored == expected;
        if effective && unchanged {
            self.world.db.record_set_aside(set_aside);
            self.observe(Observation::CursorSaving { expected, new });
            self.world.db.stored = new;
            for other in self
                .nodes
                .iter_mut()
                .filter(|n| n.id != node && n.is_running())
            {
                other.process.unexplained_rewinds += 1;
            }
            self.commit_seen();
        }
        let error =
            error.or((!unchanged).then_some((FailureKind::Conflict, "the stored cursor changed")));
        let set_aside = self.world.db.set_aside.len() as u64;
        Input::CursorSaved(result(error).map(|()| set_aside))
    }

    /// The database node `node`'s process reads and writes: the world's,
    /// unless another file was renamed over it since the process opened it.
    pub(crate) fn db_of(&mut self, node: NodeId) -> &mut Db {
        let process = &mut self.nodes[node].process;
        process.opened.as_mut().unwrap_or(&mut self.world.db)
    }

    /// A read of a prune's plan, made against the bucket as it is now.
    fn read_bucket(&mut self, node: NodeId, ask: Ask, error: Option<(FailureKind, &str)>) -> Input {
        if let Some((kind, why)) = error {
            let result = Err(Failure::new(kind, why));
            return Input::BucketRead { ask, result };
        }
        let (answered, failed_reads) = read_one(
            &self.world.store,
            ask.clone(),
            self.local_now(node),
            self.read_faults(),
            &mut self.rng.prune,
        );
        self.count_failed_reads(failed_reads);
        let result = answered.map_err(|e| Failure::new(FailureKind::Transient, e.to_string()));
        Input::BucketRead { ask, result }
    }

    /// The prefix's marker, created with a fresh id if there is none, as the
    /// daemon's driver does.
    /// The marker, made the database's: unless it names `keep`, a fresh
    /// one in its place.
    fn check_destination(&mut self, node: NodeId, keep: Option<DestinationId>) -> FoundDestination {
        let found = self.world.store.destination.clone();
        if let Some(marker) = found.as_ref().filter(|m| Some(m.id) == keep) {
            return FoundDestination {
                marker: marker.clone(),
                created: false,
                replaced: None,
            };
        }
        let id = DestinationId::new(self.rng.fate.u64(1..=i64::MAX as u64)).expect("in range");
        let marker = DestinationMarker::new(id, self.local_now(node));
        note!(self, "destination marker {id} written over {found:?}");
        self.world.store.destination = Some(marker.clone());
        self.world.store.emptied_under_marker = None;
        FoundDestination {
            marker,
            created: true,
            replaced: found.map(|m| m.id),
        }
    }

    /// The lease as stored, and whether its holder runs, when it ran on the
    /// reader's host.
    fn found_lease(&self, node: NodeId) -> FoundLease {
        let lease = self.world.store.lease.clone();
        let host = &self.nodes[node].host;
        let holder_runs = lease
            .as_ref()
            .filter(|(lease, _)| lease.holder.machine == *host)
            .map(|(lease, _)| {
                self.nodes
                    .iter()
                    .any(|n| n.host == *host && n.pid == lease.holder.pid && n.is_running())
            });
        FoundLease {
            lease,
            holder_runs,
            unreadable: None,
        }
    }

    /// Writes the lease if it is at `if_generation` (0: if there is none),
    /// as GCS's `ifGenerationMatch` does; its new generation, or a conflict.
    fn write_lease(
        &mut self,
        node: NodeId,
        lease: Lease,
        if_generation: i64,
    ) -> Result<i64, Failure> {
        let current = self.world.store.lease.as_ref().map_or(0, |(_, g)| *g);
        if current != if_generation {
            return Err(Failure::new(
                FailureKind::Conflict,
                "412 Precondition Failed (the lease changed)",
            ));
        }
        let held_by = self
            .world
            .store
            .lease
            .as_ref()
            .filter(|(l, _)| l.released.is_none())
            .map(|(l, _)| l.holder.clone());
        if let Some(from) = held_by.filter(|p| *p != lease.holder) {
            self.outcome.takeovers += 1;
            note!(self, "node {node} takes the lease over");
            self.world.taken_from = Some((from, self.now));
        }
        let generation = self.world.store.next_generation();
        self.world.store.lease = Some((lease, generation));
        Ok(generation)
    }

    /// The fate of a store request from node `node`: refused, down, cut off
    /// from this host, or drawn from the day's rates.
    fn store_fate(&mut self, node: NodeId) -> Fate {
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
        if self.nodes[node]
            .cut_off_until
            .is_some_and(|until| self.now < until)
        {
            return Fate::Fail(
                FailureKind::Transient,
                "connection timed out (host cut off)",
            );
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
    pub(crate) fn rate_fate(&mut self, kind: FaultKind, why: &'static str) -> Fate {
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
}

/// What a write of the lease answers: its precondition's refusal, the
/// fate's failure, or the generation written (`written` is `None` when the
/// write had no effect, which only a failed one has).
fn lease_written(
    written: Option<Result<i64, Failure>>,
    error: Option<(FailureKind, &str)>,
) -> Result<i64, Failure> {
    match (written, error) {
        (Some(Err(conflict)), _) => Err(conflict),
        (_, Some((kind, why))) => Err(Failure::new(kind, why)),
        (Some(Ok(generation)), None) => Ok(generation),
        (None, None) => unreachable!("only a failed write has no effect"),
    }
}

fn result(error: Option<(FailureKind, &str)>) -> Result<(), Failure> {
    match error {
        None => Ok(()),
        Some((kind, why)) => Err(Failure::new(kind, why)),
    }
}

/// What the driver answers for a task it dropped: as the shell's supervisor
/// does, a transient failure.
fn abandoned(answer: &Input) -> Input {
    let failure = Failure::new(FailureKind::Transient, "abandoned");
    match answer {
        Input::SnapshotTaken { object, .. } => Input::SnapshotTaken {
            object: object.clone(),
            result: Err(failure),
        },
        Input::JobUploaded { id, seq, .. } => Input::JobUploaded {
            id: id.clone(),
            seq: *seq,
            result: Err(failure),
        },
        _ => unreachable!("only snapshots and job uploads are abandoned"),
    }
}

pub(crate) fn hash_command(hasher: &mut DefaultHasher, command: &Command) {
    match command {
        Command::ScanTriggers => 0u8.hash(hasher),
        Command::WriteTriggerAttempts { name, attempts } => (1u8, name, attempts).hash(hasher),
        Command::DeleteTrigger { name } => (2u8, name).hash(hasher),
        Command::QuarantineTrigger { name, .. } => (3u8, name).hash(hasher),
        Command::TakeSnapshot(order) => (4u8, &order.object, order.framing.gzip_mtime).hash(hasher),
        Command::ReadChanges {
            after,
            limit,
            max_bytes,
        } => (5u8, after, limit, max_bytes).hash(hasher),
        Command::UploadJob(upload) => (6u8, &upload.object, upload.envelope.seq).hash(hasher),
        Command::SaveCursor { new, .. } => (7u8, new.seq, new.time).hash(hasher),
        Command::ListSnapshots { prefixes } => (8u8, prefixes).hash(hasher),
        Command::ReadBucket(ask) => (10u8, format!("{ask:?}")).hash(hasher),
        Command::WriteHistory(marker) => (16u8, marker.restorable_from).hash(hasher),
        Command::DeleteObject { object } => (17u8, object).hash(hasher),
        Command::CheckDestination { keep } => {
            11u8.hash(hasher);
            keep.map(DestinationId::get).hash(hasher);
        }
        Command::RecordDestination { id } => (12u8, id).hash(hasher),
        Command::RaiseCounter { past } => (18u8, past).hash(hasher),
        Command::ReadLease => 13u8.hash(hasher),
        Command::WriteLease {
            lease,
            if_generation,
        } => (14u8, lease.renewed, if_generation).hash(hasher),
        Command::ReleaseLease {
            lease,
            if_generation,
        } => (15u8, lease.renewed, if_generation).hash(hasher),
        Command::ImmediateBackupDone { object, .. } => (9u8, object).hash(hasher),
        Command::AbandonSnapshot { object } => (19u8, object).hash(hasher),
        Command::AbandonUploads => 20u8.hash(hasher),
    }
}

pub(crate) fn describe_command(command: &Command) -> String {
    match command {
        Command::UploadJob(upload) => {
            format!("UploadJob {} seq {}", upload.object, upload.envelope.seq)
        }
        Command::TakeSnapshot(order) => format!(
            "TakeSnapshot {} mtime {} ({:?})",
            order.object, order.framing.gzip_mtime, order.reason
        ),
        Command::WriteLease {
            lease,
            if_generation,
        } => format!(
            "WriteLease {} pid {} renewed {} if generation {if_generation}",
            lease.holder.host, lease.holder.pid, lease.renewed
        ),
        other => format!("{other:?}"),
    }
}

pub(crate) fn describe_input(input: &Input) -> String {
    match input {
        Input::ChangesRead(Ok(batch)) => {
            let seqs: Vec<_> = batch.jobs.iter().map(|e| e.seq).collect();
            format!("ChangesRead stored {:?} seqs {seqs:?}", batch.stored)
        }
        Input::CommitRead {
            order,
            began,
            batch,
        } => {
            let seqs: Vec<_> = batch.jobs.iter().map(|e| e.seq).collect();
            format!(
                "CommitRead after {} began {began} stored {:?} seqs {seqs:?}",
                order.after, batch.stored
            )
        }
        Input::TriggersScanned(Ok(files)) => {
            let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
            format!("TriggersScanned {names:?}")
        }
        other => format!("{other:?}"),
    }
}

/// A cursor save into a file renamed over since: nobody else reads it, and
/// what the checkers watch is the file at the path.
fn saved_in_replaced(
    opened: &mut Db,
    (expected, new): (Cursor, Cursor),
    set_aside: &[Unreadable],
    effective: bool,
    error: Option<(FailureKind, &str)>,
) -> Input {
    let unchanged = opened.stored == expected;
    if effective && unchanged {
        opened.record_set_aside(set_aside);
        opened.stored = new;
    }
    let error =
        error.or((!unchanged).then_some((FailureKind::Conflict, "the stored cursor changed")));
    let set_aside = opened.set_aside.len() as u64;
    Input::CursorSaved(result(error).map(|()| set_aside))
}
