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

use jobvault_core::job_object::encode_job_object;
use jobvault_core::machine::{ChangeBatch, JobUpload, SnapshotOrder};
use jobvault_core::{Backup, Command, Config, Failure, Input, Metrics};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::clock;
use crate::db::JobDb;
use crate::snapshot::take_snapshot;
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
    /// How long in-flight work may take to finish after a stop signal.
    pub grace: Duration,
}

/// What the daemon shares with the tasks that execute commands.
#[derive(Clone)]
struct Executor {
    db_path: PathBuf,
    db: Arc<Mutex<JobDb>>,
    store: Arc<Store>,
    triggers: TriggerDir,
    inputs: mpsc::UnboundedSender<Input>,
}

impl Daemon {
    /// Runs until `shutdown` completes, then stops taking work and waits up to
    /// the grace period for work in flight. Work still unfinished then is
    /// abandoned; the cursor was never advanced over it.
    pub async fn run(self, metrics: watch::Sender<Metrics>, shutdown: impl Future<Output = ()>) {
        let stored = match self.db.cursor() {
            Ok(cursor) => cursor,
            Err(e) => {
                error!(error = %error_chain(&e), "cannot read the incremental cursor; starting from the beginning of the change feed");
                Default::default()
            }
        };
        let mut core = Backup::new(self.config.clone(), stored, clock::now());
        let (inputs, mut reports) = mpsc::unbounded_channel();
        let executor = Executor {
            db_path: self.db_path,
            db: Arc::new(Mutex::new(self.db)),
            store: self.store,
            triggers: self.triggers,
            inputs,
        };
        tokio::pin!(shutdown);
        let mut grace_ends: Option<tokio::time::Instant> = None;
        loop {
            while let Some(command) = core.poll_command() {
                executor.execute(command);
            }
            metrics.send_replace(core.metrics());
            if grace_ends.is_some() && core.is_quiet() {
                info!("all work in flight finished; exiting");
                return;
            }
            let wake = core
                .poll_timeout()
                .map(|at| tokio::time::Instant::now() + at.duration_since(clock::now()));
            tokio::select! {
                Some(input) = reports.recv() => core.handle_input(input, clock::now()),
                () = sleep_until(wake) => core.handle_timeout(clock::now()),
                () = &mut shutdown, if grace_ends.is_none() => {
                    info!(grace = ?self.grace, "stopping: no new work; waiting for work in flight");
                    core.stop();
                    grace_ends = Some(tokio::time::Instant::now() + self.grace);
                }
                () = sleep_until(grace_ends) => {
                    warn!(pending_jobs = core.metrics().pending_jobs, "grace period over; abandoning work in flight (the cursor does not cover it)");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn failure(error: &dyn std::error::Error) -> Failure {
    Failure(error_chain(error))
}

impl Executor {
    fn report(&self, input: Input) {
        // The receiver only goes away when the daemon has returned.
        let _ = self.inputs.send(input);
    }

    /// The daemon's database connection; only blocking tasks take it.
    fn db(&self) -> std::sync::MutexGuard<'_, JobDb> {
        self.db.lock().expect("no task panics holding the database")
    }

    /// Runs blocking work (SQLite, the trigger directory) off the runtime and
    /// reports its result.
    fn blocking(&self, work: impl FnOnce(&Executor) -> Input + Send + 'static) {
        let executor = self.clone();
        tokio::task::spawn_blocking(move || executor.report(work(&executor)));
    }

    fn execute(&self, command: Command) {
        match command {
            Command::ScanTriggers => self
                .blocking(|x| Input::TriggersScanned(x.triggers.scan().map_err(|e| failure(&e)))),
            Command::WriteTriggerAttempts { name, attempts } => self.blocking(move |x| {
                let result = x
                    .triggers
                    .write_attempts(&name, attempts)
                    .map_err(|e| failure(&e));
                Input::TriggerAttemptsWritten { name, result }
            }),
            Command::DeleteTrigger { name } => self.blocking(move |x| {
                let result = x.triggers.delete(&name).map_err(|e| failure(&e));
                Input::TriggerDeleted { name, result }
            }),
            Command::QuarantineTrigger { name, .. } => self.blocking(move |x| {
                let result = x.triggers.quarantine(&name).map_err(|e| failure(&e));
                if let Ok(to) = &result {
                    info!(trigger = %name, to = %to.display(), "malformed trigger moved aside");
                }
                Input::TriggerQuarantined {
                    name,
                    result: result.map(drop),
                }
            }),
            Command::TakeSnapshot(order) => {
                let executor = self.clone();
                tokio::spawn(async move { executor.snapshot(order).await });
            }
            Command::ReadChanges { after, limit } => self.blocking(move |x| {
                let read = x.db().changes(after, limit);
                Input::ChangesRead(
                    read.map(|(stored, jobs)| ChangeBatch { stored, jobs })
                        .map_err(|e| failure(&e)),
                )
            }),
            Command::UploadJob(upload) => {
                let executor = self.clone();
                tokio::spawn(async move { executor.upload_job(upload).await });
            }
            Command::SaveCursor { expected, new } => self.blocking(move |x| {
                let saved = x.db().save_cursor(expected, new);
                Input::CursorSaved(saved.map_err(|e| failure(&e)))
            }),
            Command::ListSnapshots { prefixes } => {
                let executor = self.clone();
                tokio::spawn(async move {
                    let mut listed = Vec::new();
                    for prefix in &prefixes {
                        match executor.store.list(prefix).await {
                            Ok(objects) => listed.extend(objects),
                            Err(e) => {
                                executor.report(Input::SnapshotsListed(Err(failure(&e))));
                                return;
                            }
                        }
                    }
                    executor.report(Input::SnapshotsListed(Ok(listed)));
                });
            }
            Command::ImmediateBackupDone { object, result } => match result {
                Ok(bytes) => info!(object, bytes, "immediate snapshot done"),
                Err(e) => error!(object, error = %e, "immediate snapshot failed"),
            },
        }
    }

    async fn snapshot(&self, order: SnapshotOrder) {
        let result = take_snapshot(&self.db_path, &self.store, &order, None).await;
        let result = match result {
            Ok(report) => {
                info!(
                    object = %self.store.location(&report.object),
                    bytes = report.object_bytes,
                    database_bytes = report.database_bytes,
                    seconds = format_args!("{:.2}", report.elapsed.as_secs_f64()),
                    "snapshot uploaded"
                );
                Ok(report.object_bytes)
            }
            Err(e) => Err(failure(&e)),
        };
        self.report(Input::SnapshotTaken {
            object: order.object,
            result,
        });
    }

    async fn upload_job(&self, upload: JobUpload) {
        let started = Instant::now();
        let body = encode_job_object(&upload.envelope, &upload.framing);
        let bytes = body.len() as u64;
        let result = self.store.put(&upload.object, body, &upload.framing).await;
        let id = upload.envelope.job.id.clone();
        let seq = upload.envelope.seq;
        if result.is_ok() {
            debug!(object = %upload.object, seq, bytes, seconds = started.elapsed().as_secs_f64(), "job uploaded");
        }
        self.report(Input::JobUploaded {
            id,
            seq,
            result: result.map(|()| bytes).map_err(|e| failure(&e)),
        });
    }
}
