//! `jobvault run`: the daemon.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use clap::builder::PathBufValueParser;
use jobvault::control::{BackupDesk, ControlSocket};
use jobvault::daemon::{Daemon, Ending};
use jobvault::db::JobDb;
use jobvault::db_lock::{DbLock, LockHolder};
use jobvault::lease;
use jobvault::leftovers::{self, Leftover};
use jobvault::metrics::{self, UploadTimes};
use jobvault::status::counted;
use jobvault::store::Store;
use jobvault::triggers::TriggerDir;
use jobvault_core::lease::{LEASE_OBJECT, LeaseEnded, LeaseMachine};
use jobvault_core::machine::{Schedule, Unvouched, parse_time_of_day};
use jobvault_core::{Config, Metrics, Stopped};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::backup::parse_name;
use super::duration::{Keep, parse_duration, parse_interval, parse_keep};
use super::{BucketArg, DbArg, EncryptArgs, NoKeys, stop_signal};

/// Back up continuously: a snapshot for every trigger file, every changed job
/// in the bucket within an interval, metrics for alerting.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    bucket: BucketArg,
    #[command(flatten)]
    encrypt: EncryptArgs,
    /// Work directory; trigger files are read from <DIR>/trigger-backup/.
    #[arg(long, value_name = "DIR", env = "JOBVAULT_WORKDIR", value_parser = NoKeys(PathBufValueParser::new()))]
    workdir: PathBuf,
    /// Names the database in the metrics' `database` label.
    #[arg(long, default_value = "task-scheduler", value_parser = NoKeys(parse_name), env = "JOBVAULT_NAME")]
    name: String,
    /// How often triggers are checked and the change feed is read whether or
    /// not a commit was noticed.
    #[arg(long, default_value = "10s", value_parser = parse_interval, env = "JOBVAULT_INTERVAL")]
    interval: Duration,
    /// Job uploads in flight at most.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024), env = "JOBVAULT_CONCURRENCY")]
    concurrency: u16,
    /// Where to serve Prometheus metrics (/metrics).
    #[arg(long, default_value = "127.0.0.1:9464", env = "JOBVAULT_METRICS_ADDR")]
    metrics_addr: SocketAddr,
    /// Take the bucket prefix's lease even if another daemon holds it: only
    /// when that daemon is gone for good (its host is down). The one flag not
    /// read from the environment: left set, every restart would take over.
    #[arg(long)]
    takeover: bool,
    /// Prune what no restore to an instant this far back needs, after every
    /// snapshot (as `jobvault prune --keep` does); `off` never deletes.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_keep, env = "JOBVAULT_KEEP")]
    keep: Keep,
    /// Take a snapshot every day at this time, UTC (HH:MM), with no trigger
    /// file; a time missed while the daemon was down is made up at start.
    #[arg(long, value_name = "HH:MM", value_parser = parse_snapshot_at, env = "JOBVAULT_SNAPSHOT_AT")]
    snapshot_at: Option<u32>,
    /// Take a snapshot once the newest is this old (at least 1min), with no
    /// trigger file; with --snapshot-at too, whichever is due first.
    #[arg(long, value_name = "DURATION", value_parser = parse_snapshot_every, env = "JOBVAULT_SNAPSHOT_EVERY")]
    snapshot_every: Option<Duration>,
    /// After SIGTERM or SIGINT, how long the daemon has to upload every
    /// change committed before the signal; if that is not enough it says how
    /// many are left and exits 1.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "JOBVAULT_GRACE")]
    grace: Duration,
}

/// The fingerprints of the keys objects are encrypted to, or `none`.
fn encrypted_to(store: &Store) -> String {
    let fingerprints = store.encrypted_to();
    if fingerprints.is_empty() {
        "none".to_owned()
    } else {
        fingerprints.join(",")
    }
}

/// Starts in an order where a failure leaves nothing behind: the database
/// opened and locked, the trigger directory made, the metrics listener bound
/// and the address file written, all before the core takes the lease; the
/// core gives it back at a stop.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let stop = stop_signal();
    let db_path = args.db.db;
    let mut db = JobDb::open(&db_path)?;
    let canonical = std::fs::canonicalize(&db_path)
        .with_context(|| format!("cannot resolve {}", db_path.display()))?;
    let store = Arc::new(
        args.encrypt
            .apply(Store::connect(args.bucket.bucket).await?)?,
    );
    let me = lease::me(&canonical);
    let _one_daemon = DbLock::take(
        &canonical,
        &LockHolder {
            host: me.host.clone(),
            pid: me.pid,
            destination: store.url().to_string(),
        },
    )?;
    let schema = db.upgrade(jobvault::clock::now())?;
    if schema.changed() {
        info!(
            db = %db_path.display(),
            from = schema.from,
            to = schema.to,
            "upgraded the job database's schema; every writer's change is tracked from now on"
        );
    }
    leftovers::clear(Leftover::SnapshotCopy, &std::env::temp_dir());
    let triggers = TriggerDir::new(&args.workdir);
    triggers.create()?;
    let (metrics_tx, metrics_rx) = watch::channel(Metrics::default());
    let (requests_tx, requests) = mpsc::channel(16);
    let desk = BackupDesk {
        db: canonical.clone(),
        bucket: store.url().to_string(),
        encrypted_to: store.encrypted_to(),
        requests: requests_tx,
    };
    let upload_times = UploadTimes::new();
    let metrics_addr = metrics::serve(
        args.metrics_addr,
        args.name.clone(),
        metrics_rx,
        upload_times.clone(),
    )
    .await
    .with_context(|| format!("cannot serve metrics on {}", args.metrics_addr))?;
    // Without it `backup` takes its snapshots itself: backups go on.
    let control = ControlSocket::bind(&canonical, desk)
        .inspect_err(|e| {
            warn!(error = %e, "cannot listen beside the database for `jobvault backup`; it will take its snapshots itself");
        })
        .ok();
    if let Err(e) = store.check().await {
        // The bucket may come back; the lease is taken once it does.
        error!(error = %e, "the bucket cannot be reached; waiting for it");
    }
    info!(
        db = %db_path.display(),
        bucket = %store.url(),
        triggers = %triggers.path().display(),
        schedule = %schedule_text(args.snapshot_at, args.snapshot_every),
        interval_seconds = args.interval.as_secs_f64(),
        metrics = %format!("http://{metrics_addr}/metrics"),
        encrypted_to = %encrypted_to(&store),
        control = %control.as_ref().map_or(Cow::Borrowed("none"), |c| c.path().to_string_lossy()),
        "jobvault running"
    );
    let lease_location = store.location(LEASE_OBJECT);
    let encrypts = store.sealer().is_some();
    let daemon = Daemon {
        db_path: db_path.clone(),
        db,
        store,
        triggers,
        config: Config {
            interval: args.interval,
            concurrency: usize::from(args.concurrency),
            keep: args.keep.0,
            schedule: Schedule {
                daily_at: args.snapshot_at,
                every: args.snapshot_every,
            },
            encrypts,
            ..Config::default()
        },
        grace: args.grace,
        upload_times,
        lease: Some(LeaseMachine::new(
            me,
            args.interval,
            args.takeover,
            env!("CARGO_PKG_VERSION"),
            jobvault::clock::now(),
        )),
    };
    match daemon.run(metrics_tx, requests, stop).await {
        Ending::Stopped(stopped) => stop_outcome(stopped, &db_path),
        Ending::Lease(LeaseEnded::Released) => Ok(ExitCode::SUCCESS),
        Ending::Lease(ended) => anyhow::bail!("{lease_location} {ended}"),
        Ending::Replaced if !db_path.exists() => anyhow::bail!(
            "job database {} was removed while jobvault ran: `jobvault restore --to {}` brings it \
             back from the bucket",
            db_path.display(),
            db_path.display()
        ),
        Ending::Replaced => anyhow::bail!(
            "job database {} was replaced while jobvault ran (a file renamed over it), and the \
             jobs written to the file now there were not being backed up: start jobvault run \
             again to back that file up (systemd's Restart= does). Changes to the old file not \
             yet uploaded stay in it only. If its -wal and -shm are still beside the new file, \
             SQLite reads them as the new file's: stop every writer and move them away first",
            db_path.display()
        ),
    }
}

/// The schedule in a few words, for the start's log line.
fn schedule_text(at: Option<u32>, every: Option<Duration>) -> String {
    let at = at.map(|s| format!("daily at {:02}:{:02} UTC", s / 3600, s % 3600 / 60));
    let every = every.map(|d| format!("every {}", duration_text(d)));
    let parts: Vec<String> = [at, every].into_iter().flatten().collect();
    if parts.is_empty() {
        "trigger files only".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A duration as the flags write it (`90min`, `6h`, `45s`): humantime's
/// `1m` is the very unit they refuse.
fn duration_text(d: Duration) -> String {
    match d.as_secs() {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}min", s / 60),
        s => format!("{s}s"),
    }
}

/// Why a drained stop's prefix may not restore database `db`, and what
/// mends it.
fn unvouched(why: Unvouched, db: &Path) -> String {
    let refilled = "the prefix may not restore the database; the next start takes a full snapshot \
                    if the prefix is new to the database";
    match why {
        Unvouched::NewDestination => format!(
            "the bucket prefix is new to this database (new, wiped or another's) and the full \
             snapshot owed to it has not landed: {refilled}"
        ),
        Unvouched::LeaseGone => format!(
            "the lease was found gone or replaced, or could not be given back: the prefix may have \
             been wiped, or another daemon taken it: {refilled}"
        ),
        Unvouched::SetAside { rows } => format!(
            "{} of {} no backup can hold are set aside (not UTF-8, over the size limit, or \
             an id no object name can carry): a restore does not give them; `sqlite3 {} 'SELECT id, \
             seq, why FROM set_aside_jobs'` names them, and a writer's fix or delete of each clears it",
            counted(rows, "row"),
            db.display(),
            db.display()
        ),
        Unvouched::DeletionsUnsnapshotted { rows } => format!(
            "{} of {} whose ids no object name can carry deleted, and the snapshot owed for them \
             has not landed: a restore gives them back until one does; `jobvault backup` takes \
             one now",
            counted(rows, "job"),
            db.display()
        ),
    }
}

fn parse_snapshot_at(text: &str) -> Result<u32, String> {
    parse_time_of_day(text).map_err(|e| e.to_string())
}

/// Under a minute, a large database's snapshot would not finish before the
/// next was due.
fn parse_snapshot_every(text: &str) -> Result<Duration, String> {
    let every = parse_duration(text)?;
    if every < Duration::from_secs(60) {
        return Err(format!("`{text}` is under the floor of 1min"));
    }
    Ok(every)
}

/// Logs how the stop's drain went; exit 0 only if every change committed
/// before the stop is in the bucket, and every row of database `db` has a
/// backup.
fn stop_outcome(stopped: Stopped, db: &Path) -> anyhow::Result<ExitCode> {
    match stopped {
        Stopped::Drained {
            changes,
            saved,
            released,
        } => {
            info!(
                drained = changes,
                "stopped: every change committed before the stop is in the bucket"
            );
            if !saved {
                warn!("the cursor could not be saved past them: the next start uploads them again");
            }
            if !released {
                warn!(
                    "the grace ran out on other work (a snapshot is taken again at the next start); \
                     the lease is left to expire"
                );
            }
        }
        Stopped::Unvouched { changes, why } => anyhow::bail!(
            "stopped with every change committed before the stop uploaded ({changes} drained), but \
             {}",
            unvouched(why, db)
        ),
        Stopped::GraceOver {
            changes,
            left,
            read_after_stop,
        } => {
            if !read_after_stop {
                anyhow::bail!(
                    "the grace ran out before the change feed was read after the stop (the lease was \
                     not held, the daemon it was taken over from could still write, or the database \
                     did not answer): changes committed before the stop may not be in the bucket \
                     ({left} were known to be pending, {changes} drained); the next start uploads them"
                );
            }
            anyhow::bail!(
                "the grace ran out: {left} changes committed before the stop are not in the bucket \
                 ({changes} drained); the next start uploads them (a longer --grace gives them time)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
