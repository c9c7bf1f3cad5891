//! `jobvault restore`: the bucket back into a working job database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use clap::builder::PathBufValueParser;
use jobvault::clock;
use jobvault::logging::{Said, say};
use jobvault::nothing::{NOTHING_FOUND_EXIT, NothingFound, check_store};
use jobvault::restore::{
    RestoreError, RestoreFrom, RestoreOptions, RestoredSnapshot, restore as restore_database,
};
use jobvault::store::Store;
use jobvault_core::Timestamp;
use jobvault_core::object_name::ObjectName;
use jobvault_core::restore_plan::WithoutSnapshot;

use super::duration::parse_instant;
use super::{BucketArg, NoKeys, ReadArgs, on_corrupt, until_signal};

/// Rebuild the job database from the bucket: the newest snapshot, then every
/// job uploaded since it, applied where newer. `jobvault run` can continue
/// from the result. PATH appears only complete and checked; a restore that
/// fails or is stopped (Ctrl-C, SIGTERM) leaves nothing behind.
///
/// One killed outright (kill -9) leaves its temporary file beside PATH,
/// readable by its owner only, and the next restore into that folder
/// removes it. With no usable snapshot it fails rather than rebuild from
/// job objects alone (see --from-job-objects).
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// Where to write the database.
    #[arg(long, value_name = "PATH", value_parser = NoKeys(PathBufValueParser::new()))]
    to: PathBuf,
    /// Replace PATH if it exists (stop whatever uses it first); the new
    /// file keeps the replaced one's mode and owner.
    #[arg(long)]
    force: bool,
    /// If the bucket prefix holds no backup at all, say so and exit 0
    /// instead of 3 (for a container's first start). A bucket that does not
    /// exist still exits 3.
    #[arg(long)]
    if_replica_exists: bool,
    /// If PATH exists, say so and exit 0 without restoring.
    #[arg(long, conflicts_with = "force")]
    if_db_not_exists: bool,
    /// Warn about corrupt job objects and go on, instead of failing.
    #[arg(long)]
    skip_corrupt: bool,
    /// When no snapshot is usable (every one damaged, or none in the
    /// bucket; with --at, none from by then), rebuild from the job objects
    /// alone instead of failing. They lack every job unchanged since this
    /// prefix's first snapshot if the database came to it already backed up
    /// (restored, moved, or a wiped bucket refilled): compare the job count
    /// with what you expect.
    #[arg(long, conflicts_with = "snapshot")]
    from_job_objects: bool,
    /// Restore the database as it was at this instant (RFC 3339, e.g.
    /// 2026-11-30T13:59:00Z, or a duration ago: 2h, 1d) rather than its
    /// newest state. Needs object versioning on the bucket for any instant
    /// before the newest upload. One more than 10 minutes ahead of this
    /// host's clock is refused (within that, the clocks may disagree).
    #[arg(long, value_name = "TIME", value_parser = parse_instant, conflicts_with = "snapshot")]
    at: Option<Timestamp>,
    /// Start from this snapshot (a name `jobvault snapshots` lists, e.g.
    /// db-backup/2026/12/04/nightly.bdb, or its full location) rather than
    /// the newest, for when the newest is suspect. Every job object uploaded
    /// since it is still applied: the result is the newest state (--at
    /// restores an earlier one).
    #[arg(long, value_name = "NAME")]
    snapshot: Option<String>,
    #[command(flatten)]
    reads: ReadArgs,
}

/// Says that nothing was found, and exits 3, or 0 if the prefix holds no
/// backup at all and `--if-replica-exists` allows that.
fn nothing_restored(nothing: &NothingFound, args: &RestoreArgs) -> ExitCode {
    // A missing bucket is a mistake to report, not an empty replica: a
    // container would start on an empty database.
    if nothing.empty && !nothing.no_bucket && args.if_replica_exists {
        println!("{nothing}; nothing restored (--if-replica-exists)");
        return ExitCode::SUCCESS;
    }
    let to = args.to.display();
    say(
        Said::Error,
        &format!("{nothing}; nothing was written to {to}"),
    );
    ExitCode::from(NOTHING_FOUND_EXIT)
}

/// A snapshot's object name, from itself or its full location.
/// The name under the prefix: as `snapshots` lists it, or with the
/// prefix as `backup` prints it, or the full location.
fn snapshot_name(store: &Store, name: &str) -> ObjectName {
    let (location, in_bucket) = (store.location(""), store.object_name(""));
    let relative = name.strip_prefix(&location).or_else(|| {
        name.strip_prefix(&in_bucket)
            .filter(|_| !in_bucket.is_empty())
    });
    ObjectName::listed(relative.unwrap_or(name))
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    if args.if_db_not_exists && std::fs::symlink_metadata(&args.to).is_ok() {
        println!(
            "{} exists; nothing restored (--if-db-not-exists)",
            args.to.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::connect(args.bucket.bucket.clone()).await?;
    let reads = args.reads.reads()?;
    if let Err(nothing) = check_store(&store, &reads).await? {
        return Ok(nothing_restored(&nothing, &args));
    }
    let start = match (args.at, &args.snapshot) {
        (Some(at), _) => RestoreFrom::Instant(at),
        (None, Some(name)) => RestoreFrom::Snapshot(snapshot_name(&store, name)),
        (None, None) => RestoreFrom::Newest,
    };
    let options = RestoreOptions {
        force: args.force,
        concurrency: args.reads.concurrency(),
        on_corrupt: on_corrupt(args.skip_corrupt),
        without_snapshot: if args.from_job_objects {
            WithoutSnapshot::FromJobObjects
        } else {
            WithoutSnapshot::Refuse
        },
        from: start,
        reads,
    };
    let restored = until_signal(restore_database(&store, &args.to, options, clock::now())).await;
    let report =
        match restored.with_context(|| format!("restore to {} failed", args.to.display()))? {
            Err(RestoreError::NothingFound(nothing)) => {
                return Ok(nothing_restored(&nothing, &args));
            }
            other => other.with_context(|| format!("restore to {} failed", args.to.display()))?,
        };
    let instead = match &report.snapshot {
        Some(snapshot) => format!(
            "restored from {} and the job objects since it instead",
            located(&store, snapshot)
        ),
        None => "rebuilt from the job objects alone instead".to_owned(),
    };
    for unusable in &report.unusable {
        say(
            Said::Warning,
            &format!("unusable snapshot {unusable}; {instead}"),
        );
    }
    for skipped in &report.skipped {
        say(Said::Warning, &format!("skipped corrupt object {skipped}"));
    }
    if report.snapshot.is_none() && args.at.is_none() {
        say(
            Said::Warning,
            "no usable snapshot: rebuilt from job objects alone (--from-job-objects). They hold \
             every job only if this prefix has had the database's backups since its first job; if \
             a daemon started here on a database backed up before (elsewhere, or restored), the \
             jobs that did not change since are missing. Compare the job count with what you \
             expect",
        );
    }
    match args.at {
        Some(at) => println!("restored {} as it was at {at}", report.path.display()),
        None => println!("restored {}", report.path.display()),
    }
    match &report.snapshot {
        Some(snapshot) => {
            println!(
                "  snapshot      {} ({} bytes)",
                located(&store, snapshot),
                snapshot.bytes
            );
            println!(
                "  time inside   {} (uploaded {})",
                snapshot.time, snapshot.uploaded
            );
        }
        None if report.unusable.is_empty() => {
            println!("  snapshot      none in the bucket; rebuilt from job objects alone");
        }
        None => println!(
            "  snapshot      none usable ({} passed over); rebuilt from job objects alone",
            report.unusable.len()
        ),
    }
    let over = match report.snapshot {
        Some(_) => "newer than the snapshot",
        None => "from job objects",
    };
    println!(
        "  applied       {} {over}, deletions included",
        counted(report.applied, "change")
    );
    println!("  total jobs    {}", report.total_jobs);
    if args.at.is_some() {
        println!(
            "  written again {} changed since, as new changes: start `jobvault run` on it \
             so that a later restore gives this state, not what came after",
            counted(report.written_again, "job")
        );
    }
    println!("  took          {:.2} s", report.elapsed.as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// The snapshot's location, with `#GENERATION` where one was read (as
/// `gcloud storage` names a generation).
fn located(store: &Store, snapshot: &RestoredSnapshot) -> String {
    let location = store.location(&snapshot.object);
    match snapshot.generation {
        Some(generation) => format!("{location}#{generation}"),
        None => location,
    }
}

/// `1 job`, `2 jobs`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
