//! The daemon: drives the core's state machine against the real world.
//!
//! One loop owns the [`Backup`] machine. It executes each command the machine
//! emits as a task of its own, and feeds every result back as an input, in
//! whatever order they complete. No backup decision is taken here: this
//! module only moves bytes and reports what happened.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobvault_core::commit_watch::Watch;
use jobvault_core::job_object::{JobObjectEncoder, encode_job_object};
use jobvault_core::lease::{LeaseEnded, LeaseMachine};
use jobvault_core::machine::JobUpload;
use jobvault_core::object_name::{ObjectKind, ObjectName};
use jobvault_core::restore_plan::{Ask, OneAsk};
use jobvault_core::{
    Backup, Command, Config, Cursor, Failure, FailureKind, Input, Metrics, Stopped,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, error, info, warn};

use crate::clock;
use crate::commit_watch::{self, StandingRead};
use crate::control::{BackupRequest, BackupTaken};
use crate::db::JobDb;
use crate::destination;
use crate::drive::Driver;
use crate::failure::ToFailure;
use crate::lease;
use crate::metrics::UploadTimes;
use crate::prune;
use crate::reads::Reads;
use crate::snapshot::execute_order;
use crate::store::{Store, error_chain};
use crate::triggers::TriggerDir;

/// Everything the daemon works on.
#[derive(Debug)]
pub struct Daemon {
    pub db_path: PathBuf,
    pub db: JobDb,
    pub store: Arc<Store>,
    pub triggers: TriggerDir,
    pub config: Config,
    /// How long a stop may take to drain: to upload every change committed
    /// before the signal.
    pub grace: Duration,
    pub upload_times: UploadTimes,
    /// The bucket prefix's lease, which the core takes, keeps and gives
    /// back; `None` for a store this process owns alone (the demo's).
    pub lease: Option<LeaseMachine>,
}

/// Why the daemon returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Asked to stop; the core says how far the drain got.
    Stopped(Stopped),
    /// The lease was refused or lost, and the work in flight reported.
    Lease(LeaseEnded),
    /// The database's path names another file now, and the work in flight
    /// reported.
    Replaced,
}

/// What the daemon shares with the tasks that execute commands.
#[derive(Clone)]
struct Executor {
    db_path: PathBuf,
    db: Arc<Mutex<JobDb>>,
    store: Arc<Store>,
    triggers: TriggerDir,
    inputs: mpsc::UnboundedSender<Input>,
    upload_times: UploadTimes,
    encoder: Arc<Mutex<JobObjectEncoder>>,
    /// The snapshot under way, to drop at [`Command::AbandonSnapshot`].
    snapshot: Arc<Mutex<Option<AbortHandle>>>,
    /// The job uploads under way, to drop at [`Command::AbandonUploads`].
    uploads: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Daemon {
    /// Runs until `shutdown` completes and the core's stop is over (it
    /// drains, within the grace), or until the core stops by itself (its
    /// lease refused or lost) and its work in flight has reported. Work the
    /// core gives up on is abandoned; the cursor was never advanced over it.
    /// Immediate snapshots asked for on `requests` go through the core like
    /// triggered ones.
    pub async fn run(
        self,
        metrics: watch::Sender<Metrics>,
        mut requests: mpsc::Receiver<BackupRequest>,
        shutdown: impl Future<Output = ()>,
    ) -> Ending {
        let stored = self.db.cursor().unwrap_or_else(|e| {
            error!(error = %error_chain(&e), "cannot read the incremental cursor; starting from the beginning of the change feed");
            Cursor::UNREAD
        });
        let recorded = self.db.recorded_destination().unwrap_or_else(|e| {
            error!(error = %error_chain(&e), "cannot read which destination the cursor belongs to; treating the destination as new");
            None
        });
        let set_aside = self.db.set_aside().map_or_else(
            |e| {
                error!(error = %error_chain(&e), "cannot count the rows set aside; counting from the first read of the change feed");
                0
            },
            |(count, _)| count,
        );
        let mut core = Backup::new(self.config.clone(), stored, clock::now())
            .recorded(recorded)
            .set_aside(set_aside);
        if let Some(lease) = self.lease {
            core = core.leased(lease);
        }
        let (inputs, mut reports) = mpsc::unbounded_channel();
        let standing = StandingRead::default();
        let watching = match commit_watch::spawn(&self.db_path, inputs.clone(), standing.clone()) {
            Ok(watching) => {
                match watching.watch {
                    Watch::Notified => {
                        info!("watching the job database for commits: told by the OS")
                    }
                    Watch::Polled => {
                        info!("watching the job database for commits: looking every 50 ms")
                    }
                }
                Some(watching)
            }
            Err(e) => {
                warn!(error = %error_chain(&e), "cannot watch the job database for commits; changes are read at each interval");
                None
            }
        };
        let executor = Executor {
            db_path: self.db_path,
            db: Arc::new(Mutex::new(self.db)),
            store: self.store,
            triggers: self.triggers,
            inputs,
            upload_times: self.upload_times,
            encoder: Default::default(),
            snapshot: Default::default(),
            uploads: Default::default(),
        };
        tokio::pin!(shutdown);
        let mut asked_to_stop = false;
        let mut waiting = Waiting::default();
        let mut called = clock::LastCall::starting();
        let ending = loop {
            while let Some(command) = core.poll_command() {
                match command {
                    Command::ImmediateBackupDone { id, object, result } => {
                        waiting.answer(id, object, result);
                    }
                    Command::AbandonSnapshot { .. } => executor.abandon_snapshot(),
                    Command::AbandonUploads => executor.abandon_uploads(),
                    command => executor.execute(command),
                }
            }
            *standing
                .lock()
                .expect("the standing read is never left poisoned") = core.read_at_next_commit();
            metrics.send_replace(core.metrics());
            // Before the stop's outcome or the lease: a stop under way when
            // the file was replaced ends as this, its drain abandoned.
            if core.database_replaced() && core.is_quiet() {
                break Ending::Replaced;
            }
            if let Some(stopped) = core.stopped() {
                break Ending::Stopped(stopped);
            }
            // The lease refused or lost: work in flight is bounded by its
            // commands' deadlines.
            if let Some(ended) = core.lease_ended().filter(|_| core.is_quiet()) {
                info!("all work in flight finished; exiting");
                break Ending::Lease(ended.clone());
            }
            let wake = core.poll_timeout().map(|at| called.wake_at(at));
            tokio::select! {
                Some(input) = reports.recv() => core.handle_input(input, called.now()),
                Some(request) = requests.recv() => {
                    let id = waiting.add(request.reply);
                    let input = Input::ImmediateBackupRequested { id, name: request.name };
                    core.handle_input(input, called.now());
                }
                () = sleep_until(wake) => core.handle_timeout(called.now()),
                () = &mut shutdown, if !asked_to_stop => {
                    info!(grace_seconds = self.grace.as_secs_f64(), "stopping: no new work; uploading every change committed before the stop");
                    core.stop(called.now(), self.grace);
                    asked_to_stop = true;
                }
            }
        };
        // SQLite checkpoints the WAL into the database and removes it when
        // the last connection closes. A daemon that exited with its two
        // open left `jobs.db-wal` behind after a clean stop, and a restored
        // file moved into place, as the runbook says, read it as its own:
        // a hostile trial's restore came back as the state it undid.
        drop(reports);
        drop(executor);
        if let Some(watching) = watching {
            watching.finish().await;
        }
        ending
    }
}

/// Whoever waits for an immediate snapshot, by request id.
#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    replies: std::collections::BTreeMap<u64, oneshot::Sender<Result<BackupTaken, Failure>>>,
}

impl Waiting {
    fn add(&mut self, reply: oneshot::Sender<Result<BackupTaken, Failure>>) -> u64 {
        self.next += 1;
        self.replies.insert(self.next, reply);
        self.next
    }

    fn answer(&mut self, id: u64, object: Option<ObjectName>, result: Result<u64, Failure>) {
        let named = object.as_ref().map(ObjectName::as_str).unwrap_or_default();
        match &result {
            Ok(bytes) => info!(object = named, bytes, "immediate snapshot done"),
            Err(e) => error!(object = named, error = %e, "immediate snapshot failed"),
        }
        let taken = result.and_then(|bytes| {
            let object = object.ok_or_else(|| {
                Failure::new(FailureKind::Internal, "a snapshot taken without a name")
            })?;
            Ok(BackupTaken { object, bytes })
        });
        match self.replies.remove(&id) {
            // The requester may have gone away; the snapshot stands.
            Some(reply) => drop(reply.send(taken)),
            None => warn!(id, "an immediate snapshot answered a request nobody made"),
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Executor {
    fn report(&self, input: Input) {
        // The receiver only goes away when the daemon has returned.
        let _ = self.inputs.send(input);
    }

    /// The daemon's database connection; only blocking tasks take it.
    fn db(&self) -> std::sync::MutexGuard<'_, JobDb> {
        // A task that panicked holding the lock was answered with a failure;
        // the connection itself is still sound.
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs blocking work (SQLite, the trigger directory) off the runtime.
    fn blocking(
        &self,
        work: impl FnOnce(&Executor) -> Input + Send + 'static,
    ) -> JoinHandle<Input> {
        let executor = self.clone();
        tokio::task::spawn_blocking(move || work(&executor))
    }

    /// Carries out `command` and reports exactly one answer: its result, or
    /// a failure when its task panics or misses the command's deadline.
    fn execute(&self, command: Command) {
        let Some(deadline) = command.deadline() else {
            unreachable!("only immediate-backup answers have no deadline; the loop takes them")
        };
        let work = self.start(command.clone());
        match command {
            Command::TakeSnapshot(_) => {
                *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(work.abort_handle());
            }
            Command::UploadJob(_) => {
                let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
                uploads.retain(|upload| !upload.is_finished());
                uploads.push(work.abort_handle());
            }
            _ => {}
        }
        let executor = self.clone();
        tokio::spawn(async move {
            executor.report(supervise(&command, deadline, work).await);
        });
    }

    /// Drops the snapshot under way: its supervisor answers it as
    /// abandoned, unless it was done first.
    fn abandon_snapshot(&self) {
        if let Some(task) = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// Drops every job upload under way: their supervisors answer them as
    /// abandoned, unless they were done first.
    fn abandon_uploads(&self) {
        let uploads = std::mem::take(&mut *self.uploads.lock().unwrap_or_else(|p| p.into_inner()));
        for upload in uploads {
            upload.abort();
        }
    }

    fn start(&self, command: Command) -> JoinHandle<Input> {
        match command {
            Command::ScanTriggers => self.blocking(|x| {
                Input::TriggersScanned(x.triggers.scan().map_err(|e| e.to_failure()))
            }),
            Command::WriteTriggerAttempts { name, attempts } => self.blocking(move |x| {
                let result = x.triggers.write_attempts(&name, attempts);
                Input::TriggerAttemptsWritten {
                    name,
                    result: result.map_err(|e| e.to_failure()),
                }
            }),
            Command::DeleteTrigger { name } => self.blocking(move |x| {
                let result = x.triggers.delete(&name).map_err(|e| e.to_failure());
                Input::TriggerDeleted { name, result }
            }),
            Command::QuarantineTrigger { name, reason } => self.blocking(move |x| {
                let result = x.triggers.quarantine(&name);
                if let Ok(to) = &result {
                    info!(trigger = %name, reason = %reason, to = %to.display(), "malformed trigger moved aside");
                }
                Input::TriggerQuarantined {
                    name,
                    result: result.map(drop).map_err(|e| e.to_failure()),
                }
            }),
            Command::ReadChanges {
                after,
                limit,
                max_bytes,
            } => self.blocking(move |x| {
                let read = x.db().changes(after, limit, max_bytes);
                Input::ChangesRead(read.map_err(|e| e.to_failure()))
            }),
            Command::SaveCursor {
                expected,
                new,
                set_aside,
            } => self.blocking(move |x| {
                let saved = x.db().save_cursor(expected, new, &set_aside);
                Input::CursorSaved(saved.map_err(|e| e.to_failure()))
            }),
            Command::RecordDestination { id } => self.blocking(move |x| {
                let recorded = x.db().record_destination(id);
                Input::DestinationRecorded(recorded.map_err(|e| e.to_failure()))
            }),
            Command::RaiseCounter { past } => self.blocking(move |x| {
                let raised = x.db().raise_counter(past);
                Input::CounterRaised(raised.map_err(|e| e.to_failure()))
            }),
            Command::ReadLease => {
                let executor = self.clone();
                tokio::spawn(async move { Input::LeaseRead(lease::find(&executor.store).await) })
            }
            Command::WriteLease {
                lease: written,
                if_generation,
            } => {
                let executor = self.clone();
                tokio::spawn(async move {
                    Input::LeaseWritten(
                        lease::write(&executor.store, &written, if_generation).await,
                    )
                })
            }
            Command::ReleaseLease {
                lease: given_back,
                if_generation,
            } => {
                let executor = self.clone();
                tokio::spawn(async move {
                    let written = lease::write(&executor.store, &given_back, if_generation).await;
                    Input::LeaseReleased(written.map(drop))
                })
            }
            Command::CheckDestination { keep } => {
                let executor = self.clone();
                tokio::spawn(async move {
                    Input::DestinationChecked(destination::check(&executor.store, keep).await)
                })
            }
            Command::TakeSnapshot(order) => {
                let executor = self.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let input =
                        execute_order(&executor.db_path, &executor.store, order, None).await;
                    if matches!(input, Input::SnapshotTaken { result: Ok(_), .. }) {
                        executor
                            .upload_times
                            .observe(ObjectKind::Snapshot, started.elapsed());
                    }
                    input
                })
            }
            Command::UploadJob(upload) => {
                let executor = self.clone();
                tokio::spawn(async move { executor.upload_job(upload).await })
            }
            Command::ListSnapshots { prefixes } => {
                let executor = self.clone();
                tokio::spawn(async move { executor.list(prefixes).await })
            }
            Command::ReadBucket(ask) => {
                let executor = self.clone();
                tokio::spawn(async move { executor.read_bucket(ask).await })
            }
            Command::WriteHistory(marker) => {
                let executor = self.clone();
                tokio::spawn(async move {
                    let written = prune::write_marker(&executor.store, &marker).await;
                    Input::HistoryWritten(written.map_err(|e| e.to_failure()))
                })
            }
            Command::DeleteObject { object } => {
                let executor = self.clone();
                tokio::spawn(async move {
                    let deleted = executor.store.delete(&object).await;
                    let result = deleted.map_err(|e| e.to_failure());
                    Input::ObjectDeleted { object, result }
                })
            }
            Command::ImmediateBackupDone { .. }
            | Command::AbandonSnapshot { .. }
            | Command::AbandonUploads => {
                unreachable!("a command with no answer has no deadline and is not started")
            }
        }
    }

    /// One read of a prune's plan, its reads made again as the core's
    /// read retry decides, a listing gathered whole.
    async fn read_bucket(&self, ask: Ask) -> Input {
        let mut one = OneAsk::new(ask.clone());
        let driven = Driver::new(&self.store, 1, &Reads::default())
            .drive(&mut one)
            .await;
        let result = driven.map_err(|e| e.to_failure()).and_then(|()| {
            one.into_answer()
                .ok_or_else(|| Failure::new(FailureKind::Internal, "the read ended with no answer"))
        });
        Input::BucketRead { ask, result }
    }

    async fn list(&self, prefixes: Vec<String>) -> Input {
        let mut listed = Vec::new();
        for prefix in &prefixes {
            match self.store.list(prefix).await {
                Ok(objects) => listed.extend(objects),
                Err(e) => return Input::SnapshotsListed(Err(e.to_failure())),
            }
        }
        Input::SnapshotsListed(Ok(listed))
    }

    /// Encodes a job object here, or, for a large body, on a blocking
    /// thread: the daemon runs on one thread, and compressing megabytes
    /// there would hold up every upload, the lease and `/metrics`.
    async fn encode(&self, upload: &JobUpload) -> Vec<u8> {
        const ENCODED_IN_PLACE_BYTES: usize = 64 << 10;
        if upload.envelope.body().map_or(0, str::len) <= ENCODED_IN_PLACE_BYTES {
            return self
                .encoder
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .encode(&upload.envelope, &upload.framing);
        }
        let (envelope, framing) = (upload.envelope.clone(), upload.framing.clone());
        tokio::task::spawn_blocking(move || encode_job_object(&envelope, &framing))
            .await
            .expect("encoding a job object does not panic")
    }

    async fn upload_job(&self, upload: JobUpload) -> Input {
        let started = Instant::now();
        let body = self.encode(&upload).await;
        let bytes = body.len() as u64;
        let result = self.store.put(&upload.object, body, &upload.framing).await;
        let id = upload.envelope.id.clone();
        let seq = upload.envelope.seq;
        if result.is_ok() {
            let took = started.elapsed();
            self.upload_times.observe(ObjectKind::Job, took);
            debug!(object = %upload.object, seq, bytes, seconds = took.as_secs_f64(), "job uploaded");
        }
        Input::JobUploaded {
            id,
            seq,
            result: result.map(|()| bytes).map_err(|e| e.to_failure()),
        }
    }
}

/// Waits for the task carrying out `command`, up to `deadline`. A task that
/// panicked, or that is still running at the deadline, is answered with a
/// failure of the matching kind; a late result is dropped with the task, so
/// the core hears exactly one answer.
async fn supervise(command: &Command, deadline: Duration, mut work: JoinHandle<Input>) -> Input {
    let failure = match tokio::time::timeout(deadline, &mut work).await {
        Ok(Ok(input)) => return input,
        Ok(Err(e)) if e.is_cancelled() => Failure::new(
            FailureKind::Transient,
            "abandoned before its upload was committed: jobvault may not write to the bucket any \
             more (its lease was taken over, lost, or not renewed)",
        ),
        Ok(Err(e)) => Failure::new(
            FailureKind::Internal,
            format!("the task carrying out the command failed: {e}"),
        ),
        Err(_) => {
            work.abort();
            Failure::new(
                FailureKind::Timeout,
                format!("no answer within {}", humantime::format_duration(deadline)),
            )
        }
    };
    warn!(command = %describe(command), error = %failure, "command answered by its supervisor");
    command
        .failed(failure)
        .expect("only commands that expect an answer are supervised")
}

/// A command in a few words, naming what it works on.
fn describe(command: &Command) -> String {
    match command {
        Command::ScanTriggers => "scan the trigger directory".to_owned(),
        Command::WriteTriggerAttempts { name, .. } => {
            format!("record an attempt in trigger {name}")
        }
        Command::DeleteTrigger { name } => format!("delete trigger {name}"),
        Command::QuarantineTrigger { name, .. } => format!("quarantine trigger {name}"),
        Command::TakeSnapshot(order) => format!("take snapshot {}", order.object),
        Command::AbandonSnapshot { object } => format!("abandon snapshot {object}"),
        Command::AbandonUploads => "abandon the job uploads under way".to_owned(),
        Command::ReadChanges { after, .. } => format!("read the changes after {after}"),
        Command::UploadJob(upload) => format!("upload {}", upload.object),
        Command::SaveCursor { new, .. } => format!("save the cursor at {}", new.seq),
        Command::ListSnapshots { .. } => "list snapshots".to_owned(),
        Command::CheckDestination { .. } => "read the destination marker".to_owned(),
        Command::ReadLease => "read the lease".to_owned(),
        Command::WriteLease { if_generation, .. } => {
            format!("write the lease at generation {if_generation}")
        }
        Command::ReleaseLease { .. } => "give the lease back".to_owned(),
        Command::RecordDestination { id } => format!("record destination {id}"),
        Command::RaiseCounter { past } => format!("raise the change counter to {past}"),
        Command::ReadBucket(ask) => format!("read the bucket for a prune: {ask:?}"),
        Command::WriteHistory(_) => "write the history marker".to_owned(),
        Command::DeleteObject { object } => format!("delete {object}"),
        Command::ImmediateBackupDone { id, .. } => format!("answer backup request {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tasks below stand in for a store or database call: no real one
    // hangs or panics on demand.

    #[tokio::test]
    async fn a_command_that_never_answers_is_answered_with_a_timeout() {
        let command = Command::ReadChanges {
            after: 0,
            limit: 1,
            max_bytes: 1,
        };
        let work = tokio::spawn(std::future::pending::<Input>());
        let answer = supervise(&command, Duration::from_millis(20), work).await;
        let Input::ChangesRead(Err(failure)) = answer else {
            panic!("not a failed read: {answer:?}");
        };
        assert_eq!(failure.kind, FailureKind::Timeout);
    }

    #[tokio::test]
    async fn a_command_whose_task_panics_is_answered_with_a_failure() {
        let command = Command::DeleteTrigger {
            name: jobvault_core::trigger::TriggerName::found("nightly"),
        };
        let work = tokio::spawn(async { panic!("the task failed on purpose") });
        let answer = supervise(&command, Duration::from_secs(60), work).await;
        let Input::TriggerDeleted {
            name,
            result: Err(failure),
        } = answer
        else {
            panic!("not a failed delete: {answer:?}");
        };
        assert_eq!(
            (name.as_str(), failure.kind),
            ("nightly", FailureKind::Internal)
        );
    }

    #[tokio::test]
    async fn a_command_that_answers_in_time_is_answered_by_itself() {
        let command = Command::ReadChanges {
            after: 0,
            limit: 1,
            max_bytes: 1,
        };
        let work = tokio::spawn(async { Input::CursorSaved(Ok(0)) });
        let answer = supervise(&command, Duration::from_secs(60), work).await;
        assert_eq!(answer, Input::CursorSaved(Ok(0)));
    }
}
