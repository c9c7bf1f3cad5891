//! `jobvault demo`: the whole story on a local directory, in under a minute.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use jobvault::clock;
use jobvault::daemon::{Daemon, Ending};
use jobvault::db::JobDb;
use jobvault::metrics::UploadTimes;
use jobvault::restore::{RestoreOptions, restore};
use jobvault::sample;
use jobvault::store::{BucketUrl, Store};
use jobvault::triggers::TriggerDir;
use jobvault_core::object_name::snapshot_object;
use jobvault_core::{Config, JobId, Metrics, Stopped};
use tokio::sync::{mpsc, oneshot, watch};

/// Run the whole story on a local directory (no cloud account): a job
/// database under load, the daemon backing it up, a snapshot, the database
/// lost, restored, and compared job by job.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files here [default: a temporary directory, removed at the end].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

const INITIAL_JOBS: usize = 500;
const PATIENCE: Duration = Duration::from_secs(30);

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temporary;
    let dir = match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            if dir.join("jobs.db").exists() || dir.join("bucket").exists() {
                bail!(
                    "{} already holds a demo; give an empty directory",
                    dir.display()
                );
            }
            dir
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("jobvault-demo-")
                .tempdir()?;
            temporary.path().to_owned()
        }
    };
    let started = Instant::now();
    let db_path = dir.join("jobs.db");
    let bucket = BucketUrl::File {
        root: dir.join("bucket"),
    };
    println!("jobvault demo in {}", dir.display());
    println!("  bucket {bucket} (a local directory standing in for gs://)");

    let (mut db, _) = JobDb::init(&db_path, clock::now())?;
    let mut rng = fastrand::Rng::new();
    let mut ids: Vec<JobId> = (0..INITIAL_JOBS)
        .map(|n| sample::scheduler_id(clock::now(), n))
        .collect();
    let initial: Vec<_> = ids
        .iter()
        .map(|id| sample::body(id.clone(), clock::now(), &mut rng))
        .collect();
    db.put(&initial)?;
    println!("1. created {} with {INITIAL_JOBS} jobs", db_path.display());

    // The bucket exists before the daemon starts, as a real one would.
    std::fs::create_dir_all(dir.join("bucket"))?;
    let store = Arc::new(Store::connect(bucket.clone()).await?);
    let triggers = TriggerDir::new(&dir.join("work"));
    triggers.create()?;
    let daemon = Daemon {
        db_path: db_path.clone(),
        db,
        store: store.clone(),
        triggers: triggers.clone(),
        config: Config {
            interval: Duration::from_millis(500),
            ..Config::default()
        },
        grace: Duration::from_secs(10),
        upload_times: UploadTimes::new(),
        // The demo's directory is its own: no other daemon writes it.
        lease: None,
    };
    let (stop_daemon, stopped) = oneshot::channel::<()>();
    let (metrics, _) = watch::channel(Metrics::default());
    let (_no_requests, requests) = mpsc::channel(1);
    let running = tokio::spawn(daemon.run(metrics, requests, async {
        let _ = stopped.await;
    }));
    println!(
        "2. started the daemon (checking every 500ms; a new bucket gets a full snapshot at once) \
         and a writer changing jobs all the time"
    );

    let writing = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicU64::new(INITIAL_JOBS as u64));
    let deleted = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db_path, writing) = (db_path.clone(), writing.clone());
        let (written, deleted) = (written.clone(), deleted.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut db = JobDb::open(&db_path)?;
            let mut rng = fastrand::Rng::new();
            while writing.load(Ordering::Relaxed) {
                // Five existing jobs change (a new status, a new revision),
                // one new job arrives and, now and then, an old one is deleted.
                let mut batch: Vec<_> = (0..5)
                    .map(|_| {
                        sample::body(ids[rng.usize(..ids.len())].clone(), clock::now(), &mut rng)
                    })
                    .collect();
                let id = sample::scheduler_id(clock::now(), ids.len());
                ids.push(id.clone());
                batch.push(sample::body(id, clock::now(), &mut rng));
                written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                db.put(&batch)?;
                if rng.u8(..4) == 0 {
                    let gone = ids.swap_remove(rng.usize(..ids.len() / 2));
                    deleted.fetch_add(db.delete(&[gone])? as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            Ok(())
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let trigger_time = clock::now();
    triggers.drop_trigger("demo-snapshot")?;
    let snapshot = snapshot_object(trigger_time, "demo-snapshot")?;
    println!("3. dropped a trigger file, as the daily systemd timer does");
    let size = wait_for(&store, &snapshot).await?;
    println!("   snapshot {snapshot} uploaded ({size} bytes)");

    tokio::time::sleep(Duration::from_secs(3)).await;
    writing.store(false, Ordering::Relaxed);
    writer.await??;
    let versions = written.load(Ordering::Relaxed);
    let deletions = deleted.load(Ordering::Relaxed);
    println!(
        "4. kept changing, adding and deleting jobs: {versions} job versions written, {deletions} jobs deleted"
    );
    let _ = stop_daemon.send(());
    let drained = match running.await? {
        Ending::Stopped(Stopped::Drained { changes, .. }) => changes,
        ending => bail!("the daemon's stop did not drain: {ending:?}"),
    };
    let db = JobDb::open(&db_path)?;
    let (counter, cursor) = (db.newest_seq()?, db.cursor()?.seq);
    if cursor < counter {
        bail!(
            "the daemon stopped with its cursor at change {cursor}, before the last change {counter}"
        );
    }
    drop(db);
    println!(
        "   stopped the daemon at once: it uploaded the {drained} changes still pending (cursor at change {counter})"
    );

    let before = JobDb::open(&db_path)?.list()?;
    remove_database(&db_path)?;
    println!(
        "5. the disaster: deleted {} ({} jobs)",
        db_path.display(),
        before.len()
    );

    let report = restore(&store, &db_path, RestoreOptions::newest(32), clock::now())
        .await
        .context("restore failed")?;
    let after = JobDb::open(&db_path)?.list()?;
    let matched = before.iter().zip(&after).filter(|(b, a)| b == a).count();
    let lost = before.len() - matched.min(before.len());
    let job_objects = store.list("job-backup/").await?.len();
    let snapshots = store.list("db-backup/").await?.len();
    println!(
        "6. restored from the snapshot plus {} newer changes in {:.2} s",
        report.applied,
        report.elapsed.as_secs_f64()
    );
    println!();
    println!("  job versions written    {versions}");
    println!(
        "  objects in the bucket   {job_objects} job, {snapshots} snapshot (the daemon's own \
         first one of a new bucket, then the triggered one)"
    );
    println!("  snapshot size           {size} bytes");
    println!(
        "  restore time            {:.2} s",
        report.elapsed.as_secs_f64()
    );
    println!(
        "  whole demo              {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("  restored {matched}/{} jobs, {lost} lost", before.len());
    if after.len() == before.len() && lost == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        for (b, a) in before.iter().zip(&after).filter(|(b, a)| b != a).take(5) {
            eprintln!(
                "jobvault: demo: {} differs: seq {} before, {} restored",
                b.id, b.seq, a.seq
            );
        }
        eprintln!("jobvault: error: the restored database differs from the one lost");
        Ok(ExitCode::FAILURE)
    }
}

async fn wait_for(store: &Store, object: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + PATIENCE;
    let folder = &object[..=object.rfind('/').expect("object names have folders")];
    loop {
        if let Some(found) = store
            .list(folder)
            .await?
            .into_iter()
            .find(|o| o.name == object)
        {
            return Ok(found.size);
        }
        if Instant::now() > deadline {
            bail!("the snapshot {object} did not appear within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes the database and its WAL and shared-memory files: the disaster.
fn remove_database(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("cannot remove {}", PathBuf::from(file).display()));
            }
            _ => {}
        }
    }
    Ok(())
}
