//! `jobvault backup`: one snapshot, now.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::Args;
use jobvault::cleartext::recent_snapshots;
use jobvault::clock;
use jobvault::control::{Asked, BackupAsk, BackupTaken, ask_daemon, check_immediate_name};
use jobvault::db::JobDb;
use jobvault::destination;
use jobvault::immediate::snapshot_here;
use jobvault::lease;
use jobvault::leftovers::{self, Leftover};
use jobvault::progress;
use jobvault::store::Store;
use jobvault_core::Failure;
use jobvault_core::cleartext::plain_writer_beside;
use jobvault_core::destination::{Destination, assess};
use jobvault_core::job_id::{InvalidName, check_base_name};
use jobvault_core::lease::{LEASE_OBJECT, Lease, behind_lease, held_for_another};
use tracing::{info, warn};

use super::{BucketArg, DbArg, EncryptArgs, NoKeys, until_signal};

/// Take a snapshot now and print its object name.
///
/// While a daemon runs for the database and bucket, it takes the snapshot
/// (after any triggered one in progress, and counted in its metrics);
/// otherwise this command does.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    bucket: BucketArg,
    #[command(flatten)]
    encrypt: EncryptArgs,
    /// The snapshot is named <NAME>-HH:MM:SS (UTC).
    #[arg(long, default_value = "task-scheduler", value_parser = NoKeys(parse_snapshot_name))]
    name: String,
}

pub(super) fn parse_name(name: &str) -> Result<String, InvalidName> {
    check_base_name("name", name)?;
    Ok(name.to_owned())
}

fn parse_snapshot_name(name: &str) -> Result<String, InvalidName> {
    check_immediate_name(name)?;
    Ok(name.to_owned())
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let db_path = args.db.db;
    JobDb::open(&db_path)?;
    let canonical = std::fs::canonicalize(&db_path)
        .with_context(|| format!("job database {} cannot be opened", db_path.display()))?;
    let store = args
        .encrypt
        .apply(Store::connect(args.bucket.bucket).await?)?;
    let ask = BackupAsk {
        db: canonical,
        bucket: store.url().to_string(),
        name: args.name,
        encrypted_to: store.encrypted_to(),
    };
    let taken = match ask_daemon(&ask).await {
        Asked::Answered(taken) => taken,
        Asked::NoDaemon(why) => {
            before_taking_here(&store, &ask).await?;
            info!("taking the snapshot here: {why}");
            let taken = take_here(&db_path, &store, &ask.name).await?;
            if taken.is_ok() {
                // Unclaimed, a daemon of another database that backed the
                // prefix up goes on on top of this snapshot at its next
                // start; said, not failed: the snapshot landed.
                if let Err(e) = claim_destination(&db_path, &store).await {
                    warn!(error = %format!("{e:#}"), "the snapshot landed, but the prefix's destination marker cannot be made this database's");
                }
            }
            taken
        }
        Asked::Unreached(why) => {
            before_taking_here(&store, &ask).await?;
            warn!("taking the snapshot here, beside the daemon: {why}");
            take_here(&db_path, &store, &ask.name).await?
        }
    };
    let taken = taken
        .map_err(|failure| anyhow!(failure.message))
        .with_context(|| format!("snapshot of {} failed", db_path.display()))?;
    println!("{}", store.object_name(&taken.object));
    Ok(ExitCode::SUCCESS)
}

/// What the prefix says before this process takes the snapshot itself: it
/// refuses a prefix another database's daemon holds, and warns of a plain
/// snapshot among encrypted ones.
async fn before_taking_here(store: &Store, ask: &BackupAsk) -> anyhow::Result<()> {
    refuse_if_held_or_behind(store, &ask.db).await?;
    say_if_plain_beside_sealed(store, ask.encrypted_to.is_empty()).await;
    Ok(())
}

/// Makes the prefix's destination marker this database's, once its
/// snapshot landed, as a daemon's start does
/// ([`jobvault_core::destination`]), and records a new one in the
/// database. Another database's snapshot taken here with no daemon running
/// became the prefix's newest, and the first database's daemon, back, found
/// the marker its own and went on uploading changes on top of it: a restore
/// gave the other database's jobs, exit 0. With the marker written over,
/// that daemon takes its full snapshot again.
async fn claim_destination(db: &Path, store: &Store) -> anyhow::Result<()> {
    let mut db = JobDb::open(db)?;
    let recorded = db.recorded_destination()?;
    let found = destination::check(store, recorded)
        .await
        .map_err(|failure| anyhow!(failure.message))?;
    if let Destination::New { id, .. } = assess(&found, recorded) {
        db.record_destination(id)?;
    }
    Ok(())
}

/// Refuses a snapshot into a prefix that a live daemon of another database
/// holds (see [`held_for_another`]), or of a database behind what the
/// prefix's lease says the bucket holds (see [`behind_lease`]), or whose
/// lease cannot be read or is not a lease, as `run` does: unchecked, a
/// hostile trial's copy behind a lease edited by hand was snapshotted, and
/// a restore then gave jobs the copy never held, exit 0.
async fn refuse_if_held_or_behind(store: &Store, db: &Path) -> anyhow::Result<()> {
    let lease_object = store.location(LEASE_OBJECT);
    let found = lease::find(store).await.map_err(|failure| {
        anyhow!(
            "cannot read {lease_object} ({}), so this database cannot be checked against what \
             the bucket holds; not taking a snapshot",
            failure.message
        )
    })?;
    if let Some((_, why)) = &found.unreadable {
        anyhow::bail!(
            "{lease_object} holds something that is not a jobvault lease ({why}), so this \
             database cannot be checked against what the bucket holds; not taking a snapshot \
             (`jobvault run --takeover` replaces it)"
        );
    }
    let lease = found
        .lease
        .as_ref()
        .map(|(lease, generation)| (lease, *generation));
    // Held first: a live holder is the more precise why, and the lease of a
    // daemon that has renewed since its first upload is ahead of any other
    // database too.
    match held_for_another(lease, &lease::me(db), clock::now(), found.holder_runs) {
        None => refuse_if_behind(store, db, lease.map(|(lease, _)| lease)),
        Some(held) => Err(anyhow!(
            "{} backs up another database: {} is held by jobvault on host {} (pid {}) for {}. \
             A snapshot of {} there would be restored in place of that database's backups: give \
             this database a prefix of its own",
            store.url(),
            store.location(LEASE_OBJECT),
            held.holder.host,
            held.holder.pid,
            held.holder.db,
            db.display()
        )),
    }
}

/// Refuses a snapshot of a database whose change counter is below the
/// highest change the prefix's lease says the bucket may hold, or whose
/// cursor is below the lease's: an older copy put back, or another
/// database. Its snapshot, with its old counter, would be restored with the
/// newer versions applied on top.
fn refuse_if_behind(store: &Store, path: &Path, lease: Option<&Lease>) -> anyhow::Result<()> {
    let db = JobDb::open(path)?;
    let (counter, cursor) = (db.counter()?, db.cursor()?);
    let Some(holds) = behind_lease(lease, counter, cursor.seq) else {
        return Ok(());
    };
    Err(anyhow!(
        "{} is behind what {} holds: its change counter is {counter} and its cursor {}, and \
         {} says the bucket may hold changes up to {holds}. It is an older copy put back (or \
         another database), and a snapshot of it here would be restored with the newer versions \
         on top: start `jobvault run` on it, which numbers its changes past the bucket's and \
         takes a full snapshot, or restore from the bucket first, or give it a prefix of its own",
        path.display(),
        store.url(),
        cursor.seq,
        store.location(LEASE_OBJECT)
    ))
}

/// Warns when this snapshot would go up in the clear to a prefix holding
/// encrypted ones: `--encrypt-to` most likely lost on the way here. It is
/// taken all the same, as the daemon writes on (see
/// [`jobvault_core::cleartext`]).
async fn say_if_plain_beside_sealed(store: &Store, plain: bool) {
    if !plain {
        return;
    }
    // A listing that fails says nothing here: the upload meets the same
    // store and says why.
    let Ok(listed) = recent_snapshots(store, clock::now()).await else {
        return;
    };
    if let Some(sealed) = plain_writer_beside(false, &listed) {
        warn!(
            "{} is encrypted, but this snapshot is written in the clear: is --encrypt-to \
             (JOBVAULT_ENCRYPT_TO) missing?",
            store.location(&sealed.name)
        );
    }
}

/// The snapshot taken in this process, with a progress bar on a terminal.
/// Its copy of the database in TMPDIR (in the clear, whatever the upload)
/// is removed however it ends, a signal included; those of killed processes
/// are removed first.
async fn take_here(
    db_path: &Path,
    store: &Store,
    name: &str,
) -> anyhow::Result<Result<BackupTaken, Failure>> {
    leftovers::clear(Leftover::SnapshotCopy, &std::env::temp_dir());
    let size = std::fs::metadata(db_path).map(|m| m.len()).ok();
    let bar = progress::bytes("snapshot", size);
    let shown = bar.clone();
    let progress = Arc::new(move |n| shown.set_position(n));
    let taken = until_signal(snapshot_here(db_path, store, name, progress)).await;
    bar.finish_and_clear();
    taken
}
