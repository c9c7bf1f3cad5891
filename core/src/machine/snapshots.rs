//! Full snapshots: from trigger files, on request, owed, or on a schedule
//! ([`super::schedule`]).
//!
//! One snapshot runs at a time. A trigger is served in three steps, each a
//! command: record the attempt in the trigger file, take the snapshot, delete
//! the trigger (on success, or when the last attempt failed). Recording the
//! attempt first means an attempt is never made that the file does not count.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::Context;
use super::io::{Command, Failure, FailureKind, SnapshotOrder, SnapshotReason};
use super::owed::OwedSnapshot;
use super::schedule::{Attempts, Schedule};
use crate::Seq;
use crate::job_id::InvalidName;
use crate::object_name::{Framing, ObjectKind, ObjectName, snapshot_object};
use crate::timestamp::Timestamp;
use crate::trigger::{RETRY_COUNT, TriggerFile, TriggerName, sort_triggers};

/// The base name of an immediate snapshot: `<name>-HH:MM:SS` in UTC.
pub fn immediate_base_name(name: &str, now: Timestamp) -> String {
    format!("{name}-{}", now.clock_hms())
}

/// Plans a snapshot named `basename`, uploaded now. Its gzip mtime is the
/// incremental backup time, from which a restore retrieves later jobs.
pub fn plan_snapshot(
    basename: &str,
    reason: SnapshotReason,
    now: Timestamp,
    incremental_time: Timestamp,
) -> Result<SnapshotOrder, InvalidName> {
    let object = snapshot_object(now, basename)?;
    let framing = Framing::for_object(&object, incremental_time);
    Ok(SnapshotOrder {
        object,
        framing,
        reason,
    })
}

/// The answer to an immediate-backup request that arrives, or still waits,
/// when the machine stops.
pub(crate) fn refused_for_stopping(id: u64) -> Command {
    Command::ImmediateBackupDone {
        id,
        object: None,
        result: Err(Failure::new(
            FailureKind::Rejected,
            "jobvault is shutting down",
        )),
    }
}

#[derive(Debug, Default)]
enum Stage {
    #[default]
    Idle,
    Scanning,
    RecordingAttempt {
        name: TriggerName,
        attempt: u32,
    },
    Snapshotting {
        reason: SnapshotReason,
        /// [`Snapshots::epoch`] when it started.
        epoch: u64,
        /// The deletions of jobs no object name can carry read when it
        /// started, which its copy holds
        /// ([`super::incremental::Incremental::deletions_read_through`]).
        deletions_through: Seq,
        object: ObjectName,
        /// Asked to be dropped ([`Command::AbandonSnapshot`]).
        abandoned: bool,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    stage: Stage,
    /// Immediate-backup requests waiting for their turn: id and name.
    immediate: VecDeque<(u64, String)>,
    /// The base name of the last immediate snapshot, before any suffix, and
    /// how many were taken under it: names tell seconds, and eight requests
    /// in one second once wrote one object eight times.
    last_immediate: Option<(String, u32)>,
    /// Triggers served (snapshot taken or retries exhausted) but not yet
    /// deleted: never attempted again.
    served: BTreeSet<TriggerName>,
    deleting: BTreeSet<TriggerName>,
    quarantining: BTreeSet<TriggerName>,
    pub(crate) owed: OwedSnapshot,
    stopping: bool,
    /// Triggers whose last attempt failed, and when the next may start.
    retry_at: BTreeMap<TriggerName, Timestamp>,
    /// The wait after a first failed attempt ([`trigger_retry_wait`]).
    retry_wait: Duration,
    schedule: Schedule,
    /// The attempts at the schedule's last due instant.
    scheduled: Option<Attempts>,
    /// The due instant the last scheduled snapshot that landed served: not
    /// due again, even once a listing finds the snapshot deleted and the
    /// newest-snapshot time drops (the full snapshot the prefix is then owed
    /// refills it). The schedule took a fourth attempt at the instant after
    /// three that ended in one landing (simulator seed 312).
    served_due: Option<Timestamp>,
    /// The first listing is in: the newest snapshot is known.
    listed: bool,
    /// Moved on when the counter of a copy gone back is raised, and when a
    /// snapshot lands before it is: a snapshot started before the raise
    /// holds the database as it was, or the copy with its old counter, and
    /// must not pay the snapshot the prefix is owed ([`super::went_back`]).
    epoch: u64,
}

/// How long a trigger waits after its first failed attempt, for a daemon
/// that checks every `interval`: six intervals (a minute by default); the
/// wait doubles after the second. A local failure (no room in TMPDIR, a
/// locked database) used to spend all three attempts within two seconds,
/// where a failing store's retries spread them over minutes.
pub fn trigger_retry_wait(interval: Duration) -> Duration {
    interval * 6
}

/// The longest of the doublings.
const MAX_DOUBLINGS: u32 = 4;

impl Snapshots {
    pub fn new(interval: Duration, schedule: Schedule) -> Self {
        Snapshots {
            retry_wait: trigger_retry_wait(interval),
            schedule,
            ..Snapshots::default()
        }
    }

    /// The bucket's snapshots were listed once: the newest is known, and
    /// with it whether the schedule is due.
    pub fn listed(&mut self) {
        self.listed = true;
    }

    /// When a trigger whose attempt `attempt` failed at `now` may be tried
    /// again.
    fn retry_time(&self, now: Timestamp, attempt: u32) -> Timestamp {
        now + self.retry_wait * 2u32.pow(attempt.saturating_sub(1).min(MAX_DOUBLINGS))
    }

    pub fn is_quiet(&self) -> bool {
        matches!(self.stage, Stage::Idle)
            && self.deleting.is_empty()
            && self.quarantining.is_empty()
            && self.owed.is_quiet()
    }

    /// Starts nothing new. Requests still waiting are answered now: nobody
    /// would ever answer them after the driver exits.
    pub fn stop(&mut self, out: &mut VecDeque<Command>) {
        self.stopping = true;
        out.extend(
            self.immediate
                .drain(..)
                .map(|(id, _)| refused_for_stopping(id)),
        );
    }

    /// The daemon may not write any more (its lease lost, taken over, or
    /// not renewed for half its expiry): the snapshot under way is dropped
    /// before its upload is committed. It used to run to its end, and a
    /// snapshot of the old holder's database landed after the daemon that
    /// took the lease over had written, the newest a restore found (a
    /// hostile trial). Its report comes as a failure.
    pub fn abandon_under_way(&mut self, out: &mut VecDeque<Command>) {
        if let Stage::Snapshotting {
            object, abandoned, ..
        } = &mut self.stage
            && !*abandoned
        {
            *abandoned = true;
            warn!(snapshot = %object, "dropping the snapshot under way: jobvault may not write to the bucket any more");
            out.push_back(Command::AbandonSnapshot {
                object: object.clone(),
            });
        }
    }

    /// A stop's grace ran out with a snapshot under way: whoever asked for
    /// it hears now, as nobody would after the driver exits.
    pub fn abandon(&mut self, out: &mut VecDeque<Command>) {
        if let Stage::Snapshotting {
            reason: SnapshotReason::Immediate { id },
            ..
        } = self.stage
        {
            self.stage = Stage::Idle;
            out.push_back(Command::ImmediateBackupDone {
                id,
                object: None,
                result: Err(Failure::new(
                    FailureKind::Rejected,
                    "jobvault stopped before the snapshot finished: its grace ran out",
                )),
            });
        }
    }

    pub fn tick(&mut self, cx: &mut Context) {
        if self.stopping || !matches!(self.stage, Stage::Idle) {
            return;
        }
        self.owed.tick(cx.out);
        if !self.start_owed(cx) && !self.start_scheduled(cx) && !self.start_immediate(cx) {
            self.stage = Stage::Scanning;
            cx.out.push_back(Command::ScanTriggers);
        }
    }

    pub fn request_immediate(&mut self, cx: &mut Context, id: u64, name: String) {
        self.immediate.push_back((id, name));
        if matches!(self.stage, Stage::Idle) {
            self.start_immediate(cx);
        }
    }

    pub fn on_scanned(&mut self, cx: &mut Context, result: Result<Vec<TriggerFile>, Failure>) {
        if !matches!(self.stage, Stage::Scanning) {
            cx.unexpected(format_args!("trigger scan result with no scan outstanding"));
            return;
        }
        self.stage = Stage::Idle;
        let files = match result {
            Ok(files) => files,
            Err(failure) => {
                error!(error = %failure, "cannot check the trigger directory; incremental backups go on");
                return;
            }
        };
        cx.metrics.trigger_check_alive = Some(cx.now);
        let present: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
        self.served.retain(|name| present.contains(name.as_str()));
        self.retry_at
            .retain(|name, _| present.contains(name.as_str()));
        let sorted = sort_triggers(&files);
        for (name, why) in sorted.malformed {
            if self.quarantining.insert(name.clone()) {
                error!(trigger = %name, reason = %why, "malformed trigger file; moving it to the quarantine directory");
                cx.out
                    .push_back(Command::QuarantineTrigger { name, reason: why });
            }
        }
        for name in &self.served {
            if self.deleting.insert(name.clone()) {
                cx.out
                    .push_back(Command::DeleteTrigger { name: name.clone() });
            }
        }
        if self.start_owed(cx) {
            return;
        }
        for trigger in sorted.valid {
            if self.served.contains(&trigger.name) || self.waits(&trigger.name, cx.now) {
                continue;
            }
            if trigger.attempts >= RETRY_COUNT {
                error!(trigger = %trigger.name, attempts = trigger.attempts, "trigger already attempted {RETRY_COUNT} times; retries exhausted");
                cx.metrics.triggers_exhausted += 1;
                self.serve(cx, trigger.name);
                continue;
            }
            let attempt = trigger.attempts + 1;
            cx.out.push_back(Command::WriteTriggerAttempts {
                name: trigger.name.clone(),
                attempts: attempt,
            });
            self.stage = Stage::RecordingAttempt {
                name: trigger.name,
                attempt,
            };
            return;
        }
        self.start_immediate(cx);
    }

    pub fn on_attempts_written(
        &mut self,
        cx: &mut Context,
        name: &str,
        result: Result<(), Failure>,
    ) {
        let Stage::RecordingAttempt {
            name: recording,
            attempt,
        } = &self.stage
        else {
            cx.unexpected(format_args!(
                "trigger {name}: attempts written with none outstanding"
            ));
            return;
        };
        if recording.as_str() != name {
            cx.unexpected(format_args!(
                "trigger {name}: attempts written for another trigger"
            ));
            return;
        }
        let (name, attempt) = (recording.clone(), *attempt);
        self.stage = Stage::Idle;
        if let Err(failure) = result {
            error!(trigger = %name, error = %failure, "cannot record the attempt in the trigger file; not attempting the snapshot");
            return;
        }
        if attempt == 1 {
            info!(trigger = %name, "starting automatic snapshot");
        } else {
            info!(trigger = %name, attempt, "retrying automatic snapshot");
        }
        cx.metrics.trigger_attempts += 1;
        let reason = SnapshotReason::Trigger {
            name: name.clone(),
            attempt,
        };
        self.take_snapshot(cx, &name, reason);
    }

    /// A snapshot landed or failed; if it landed, the deletions of jobs no
    /// object name can carry that it holds: those read when it started.
    pub fn on_snapshot_taken(
        &mut self,
        cx: &mut Context,
        object: &ObjectName,
        result: Result<u64, Failure>,
    ) -> Option<Seq> {
        let (reason, epoch, deletions_through) = match std::mem::take(&mut self.stage) {
            Stage::Snapshotting {
                reason,
                epoch,
                deletions_through,
                ..
            } => (reason, epoch, deletions_through),
            other => {
                self.stage = other;
                cx.unexpected(format_args!(
                    "snapshot {object}: result with none outstanding"
                ));
                return None;
            }
        };
        let holds = (result.is_ok() && epoch == self.epoch).then_some(deletions_through);
        match &result {
            Ok(bytes) => {
                cx.metrics.uploads.add(ObjectKind::Snapshot, 1);
                cx.metrics.upload_bytes.add(ObjectKind::Snapshot, *bytes);
                cx.metrics.feed_resets_since_snapshot = 0;
                cx.metrics.last_snapshot = cx.metrics.last_snapshot.max(Some(cx.now));
                cx.ledger.record(object, cx.now);
                cx.metrics.snapshots_last_24h = cx.ledger.count_last_24h(cx.now);
                if epoch == self.epoch {
                    self.owed.landed(&reason, cx.out);
                } else {
                    info!(%object, "a snapshot started before the database went back landed: it pays nothing owed");
                }
            }
            Err(failure) => {
                cx.metrics.upload_errors.add(ObjectKind::Snapshot, 1);
                error!(%object, error = %failure, "snapshot failed");
            }
        }
        match reason {
            SnapshotReason::Trigger { name, attempt } => {
                if result.is_ok() {
                    debug!(trigger = %name, %object, "automatic snapshot complete");
                    self.serve(cx, name);
                } else if attempt >= RETRY_COUNT {
                    error!(trigger = %name, attempts = attempt, "automatic snapshot failed {attempt} times; retries exhausted");
                    cx.metrics.triggers_exhausted += 1;
                    self.serve(cx, name);
                } else {
                    let at = self.retry_time(cx.now, attempt);
                    info!(trigger = %name, attempt, retry_at = %at, "the next attempt waits");
                    self.retry_at.insert(name, at);
                }
            }
            SnapshotReason::Immediate { id } => {
                cx.out.push_back(Command::ImmediateBackupDone {
                    id,
                    object: Some(object.clone()),
                    result,
                });
            }
            SnapshotReason::Scheduled { due, attempt } => {
                let retry_at = self.retry_time(cx.now, attempt);
                match (&result, &mut self.scheduled) {
                    (Ok(_), _) => {
                        self.scheduled = None;
                        self.served_due = Some(due);
                    }
                    (Err(_), Some(attempts)) if attempts.due == due => {
                        if attempt >= RETRY_COUNT {
                            error!(due = %due, attempts = attempt, "scheduled snapshot failed {attempt} times; retries exhausted until the next due time");
                        } else {
                            info!(due = %due, attempt, retry_at = %retry_at, "the next attempt waits");
                            attempts.retry_at = Some(retry_at);
                        }
                    }
                    (Err(_), _) => {}
                }
            }
            SnapshotReason::Owed(_) => {
                if let Err(failure) = &result {
                    self.owed.failed(cx.now, failure);
                }
            }
        }
        self.start_next(cx);
        holds
    }

    pub fn on_deleted(&mut self, cx: &mut Context, name: &str, result: Result<(), Failure>) {
        if !self.deleting.remove(name) {
            cx.unexpected(format_args!(
                "trigger {name}: deleted with no delete outstanding"
            ));
            return;
        }
        match result {
            Ok(()) => {
                self.served.remove(name);
            }
            Err(failure) => {
                error!(trigger = %name, error = %failure, "cannot remove a served trigger file; it will not be served again while jobvault runs");
            }
        }
    }

    pub fn on_destination_recorded(&mut self, cx: &mut Context, result: Result<(), Failure>) {
        if !self.owed.on_recorded(result) {
            cx.unexpected(format_args!(
                "destination recorded with no record outstanding"
            ));
        }
    }

    pub fn on_quarantined(&mut self, cx: &mut Context, name: &str, result: Result<(), Failure>) {
        if !self.quarantining.remove(name) {
            cx.unexpected(format_args!(
                "trigger {name}: quarantined with none outstanding"
            ));
            return;
        }
        match result {
            Ok(()) => cx.metrics.triggers_quarantined += 1,
            Err(failure) => {
                error!(trigger = %name, error = %failure, "cannot move a malformed trigger file aside; other triggers are still served");
            }
        }
    }

    /// Whether the trigger's last attempt failed too recently to try again.
    /// A clock stepped back further than the longest wait frees it.
    fn waits(&self, name: &str, now: Timestamp) -> bool {
        let longest = self.retry_wait * 2u32.pow(MAX_DOUBLINGS);
        self.retry_at
            .get(name)
            .is_some_and(|&at| now < at && at <= now + longest)
    }

    /// Marks a trigger as done with and deletes it.
    fn serve(&mut self, cx: &mut Context, name: TriggerName) {
        self.retry_at.remove(&name);
        if self.deleting.insert(name.clone()) {
            cx.out
                .push_back(Command::DeleteTrigger { name: name.clone() });
        }
        self.served.insert(name);
    }

    /// A copy gone back has its counter raised, or is still to: no
    /// snapshot under way pays what is owed.
    pub fn went_back(&mut self) {
        self.epoch += 1;
    }

    /// Jobs no object name can carry were deleted, and no snapshot holds
    /// the deletions yet: one is owed (a snapshot under way pays for the
    /// deletions read before it started only).
    pub fn owe_after_deletion(&mut self, cx: &mut Context) {
        self.owed.owe_after_deletion(cx.now);
        self.start_next(cx);
    }

    /// Starts what waits, if the stage is idle: an owed snapshot that is
    /// due, else a requested one.
    pub fn start_next(&mut self, cx: &mut Context) {
        if !self.start_owed(cx) && !self.start_scheduled(cx) {
            self.start_immediate(cx);
        }
    }

    /// Starts the owed snapshot if it is due and the stage is idle.
    fn start_owed(&mut self, cx: &mut Context) -> bool {
        if self.stopping || !matches!(self.stage, Stage::Idle) {
            return false;
        }
        let Some(owed) = self.owed.due(cx.now) else {
            return false;
        };
        let basename = immediate_base_name(owed.base_name(), cx.now);
        self.owed.started(owed, cx.now);
        self.take_snapshot(cx, &basename, SnapshotReason::Owed(owed))
    }

    /// Starts the snapshot the schedule makes due, if the stage is idle
    /// and the attempts at its due instant allow.
    fn start_scheduled(&mut self, cx: &mut Context) -> bool {
        if self.stopping || !self.listed || !matches!(self.stage, Stage::Idle) {
            return false;
        }
        // Nothing due: the attempts at the last due instant are kept, for a
        // clock stepped back before it makes it due again, and it must not
        // count them from zero (found by seed 429). A snapshot that lands
        // clears them.
        let Some(due) = self
            .schedule
            .due(cx.now, cx.metrics.last_snapshot)
            .filter(|&due| Some(due) != self.served_due)
        else {
            return false;
        };
        let attempts = self.scheduled.filter(|a| a.due == due).unwrap_or(Attempts {
            due,
            made: 0,
            retry_at: None,
        });
        self.scheduled = Some(attempts);
        if !attempts.may_try(cx.now) {
            return false;
        }
        let attempt = attempts.made + 1;
        self.scheduled = Some(Attempts {
            made: attempt,
            retry_at: None,
            ..attempts
        });
        info!(due = %due, attempt, "starting scheduled snapshot");
        let basename = immediate_base_name("scheduled", cx.now);
        self.take_snapshot(cx, &basename, SnapshotReason::Scheduled { due, attempt })
    }

    /// Starts a requested immediate snapshot if the stage is idle.
    fn start_immediate(&mut self, cx: &mut Context) -> bool {
        if self.stopping || !matches!(self.stage, Stage::Idle) {
            return false;
        }
        let Some((id, name)) = self.immediate.pop_front() else {
            return false;
        };
        let basename = self.unique(immediate_base_name(&name, cx.now));
        self.take_snapshot(cx, &basename, SnapshotReason::Immediate { id })
    }

    /// `basename`, or, if the last immediate snapshot was taken under it in
    /// the same second, `basename.N` for the Nth.
    fn unique(&mut self, basename: String) -> String {
        match &mut self.last_immediate {
            Some((last, taken)) if *last == basename => {
                *taken += 1;
                format!("{basename}.{taken}")
            }
            _ => {
                self.last_immediate = Some((basename.clone(), 1));
                basename
            }
        }
    }

    /// Starts a snapshot; returns whether it started (its name may be invalid).
    fn take_snapshot(&mut self, cx: &mut Context, basename: &str, reason: SnapshotReason) -> bool {
        match plan_snapshot(basename, reason.clone(), cx.now, cx.incremental_time) {
            Ok(order) => {
                self.stage = Stage::Snapshotting {
                    reason,
                    epoch: self.epoch,
                    deletions_through: cx.deletions_through,
                    object: order.object.clone(),
                    abandoned: false,
                };
                cx.out.push_back(Command::TakeSnapshot(order));
                true
            }
            Err(invalid) => {
                error!(error = %invalid, "cannot name the snapshot");
                if let SnapshotReason::Immediate { id } = reason {
                    cx.out.push_back(Command::ImmediateBackupDone {
                        id,
                        object: None,
                        result: Err(Failure::new(FailureKind::Rejected, invalid.to_string())),
                    });
                }
                false
            }
        }
    }
}
