//! `jobvault snapshots`: which snapshots the bucket holds.

use std::process::ExitCode;

use clap::Args;
use jobvault::clock;
use jobvault::inventory::inventory;
use jobvault::logging::{Said, say};
use jobvault::nothing::{NOTHING_FOUND_EXIT, NothingFound};
use jobvault::store::Store;
use jobvault_core::restore_plan::InventoryEntry;
use serde::Serialize;

use super::{BucketArg, ReadArgs, unless_missing};

/// List every snapshot in the bucket, newest upload first: when it was
/// uploaded, the time inside it (the incremental backup time its gzip
/// header holds: every job change before it is in the snapshot or in a job
/// object), its size as stored, its generation, and, on a bucket with
/// object versioning, its noncurrent generations too. `restore --snapshot
/// NAME` restores from a live one.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    reads: ReadArgs,
}

/// One snapshot as `--json` prints it.
#[derive(Debug, Serialize)]
struct Listed<'a> {
    /// The object's name, as `restore --snapshot` takes it.
    name: &'a str,
    location: String,
    generation: Option<i64>,
    uploaded: String,
    /// `null` when the header holds none (or came decompressed).
    time_inside: Option<String>,
    /// Bytes stored (gzip, maybe encrypted).
    size: u64,
    live: bool,
}

pub async fn snapshots(args: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket).await?;
    let reads = args.reads.reads()?;
    if let Some(missing) = unless_missing(&store, &reads).await? {
        return Ok(missing);
    }
    let found = inventory(&store, clock::now(), args.reads.concurrency(), &reads).await?;
    if found.is_empty() {
        let why = "no snapshot found (looked under db-backup/)".to_owned();
        let nothing = NothingFound::in_store(&store, &reads, why).await;
        say(Said::Error, &nothing.to_string());
        return Ok(ExitCode::from(NOTHING_FOUND_EXIT));
    }
    let listed: Vec<Listed> = found.iter().map(|e| listed(&store, e)).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<30}  {:<30}  {:>12}  {:>18}  {:<10}  name",
        "uploaded", "time inside", "size", "generation", "state"
    );
    for entry in &listed {
        println!(
            "{:<30}  {:<30}  {:>12}  {:>18}  {:<10}  {}",
            entry.uploaded,
            entry.time_inside.as_deref().unwrap_or("unknown"),
            entry.size,
            entry
                .generation
                .map_or_else(|| "-".to_owned(), |g| g.to_string()),
            if entry.live { "live" } else { "noncurrent" },
            entry.name
        );
    }
    let mut unknown: Vec<&str> = found
        .iter()
        .filter(|entry| entry.time.is_none())
        .map(|entry| why_no_time(entry, !reads.keyring().fingerprints().is_empty()))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    for why in unknown {
        say(
            Said::Notice,
            &format!("a snapshot's time inside is unknown: {why}"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Why the time inside `entry` could not be read.
fn why_no_time(entry: &InventoryEntry, identities: bool) -> &'static str {
    match (entry.size, entry.sealed, identities) {
        (0, _, _) => "the object is empty",
        (_, true, false) => "it is encrypted; give its identity with --identity",
        (_, true, true) => "it is encrypted, and no --identity given opens it, or it is damaged",
        (_, false, _) => {
            "the store served its header decompressed, or it is encrypted (a store that keeps \
             no content type cannot say) and no --identity given opens it"
        }
    }
}

fn listed<'a>(store: &Store, entry: &'a InventoryEntry) -> Listed<'a> {
    Listed {
        name: &entry.object,
        location: store.location(&entry.object),
        generation: entry.generation,
        uploaded: entry.uploaded.rfc3339(),
        time_inside: entry.time.map(|t| t.rfc3339()),
        size: entry.size,
        live: entry.live,
    }
}
