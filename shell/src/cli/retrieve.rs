//! `jobvault retrieve`: the newest version of every job since a time.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jobvault::clock;
use jobvault::logging::{Said, say};
use jobvault::nothing::{NOTHING_FOUND_EXIT, NothingFound, holds_backups};
use jobvault::progress;
use jobvault::retrieve::retrieve as retrieve_jobs;
use jobvault::store::Store;
use jobvault_core::{Envelope, Timestamp};

use super::duration::parse_instant;
use super::{BucketArg, ReadArgs, on_corrupt, print_bodies, unless_missing};

/// Print the newest version of every job uploaded since a time, as JSON
/// lines sorted by id.
#[derive(Debug, Args)]
pub struct RetrieveArgs {
    #[command(flatten)]
    bucket: BucketArg,
    /// Jobs uploaded at or after this time: RFC 3339 (2026-11-25T03:00:00Z)
    /// or a duration ago (2h, 1d). Jobs deleted since are left out unless
    /// --deleted is given.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    since: Timestamp,
    /// Warn about corrupt objects and go on, instead of failing.
    #[arg(long)]
    skip_corrupt: bool,
    /// Also print each job deleted since, as {"id": ..., "deleted": true,
    /// "modified": ...}, in id order with the others.
    #[arg(long)]
    deleted: bool,
    #[command(flatten)]
    reads: ReadArgs,
}

pub async fn retrieve(args: RetrieveArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.bucket.bucket).await?;
    let reads = args.reads.reads()?;
    if let Some(missing) = unless_missing(&store, &reads).await? {
        return Ok(missing);
    }
    let bar = progress::items("jobs", None);
    let retrieval = retrieve_jobs(
        &store,
        args.since,
        clock::now(),
        args.reads.concurrency(),
        on_corrupt(args.skip_corrupt),
        &reads,
        &bar,
    )
    .await
    .context("retrieve failed")?;
    if retrieval.jobs.is_empty()
        && retrieval.skipped.is_empty()
        && !holds_backups(&store, &reads).await?
    {
        let why = "no job object found (looked under job-backup/)".to_owned();
        let nothing = NothingFound::in_store(&store, &reads, why).await;
        say(Said::Error, &nothing.to_string());
        return Ok(ExitCode::from(NOTHING_FOUND_EXIT));
    }
    let deleted = retrieval.jobs.iter().filter(|j| j.body().is_none()).count();
    if args.deleted {
        print_changes(&retrieval.jobs)?;
    } else {
        print_bodies(&retrieval.jobs)?;
        if deleted > 0 {
            say(
                Said::Notice,
                &format!("deleted jobs left out: {deleted} (--deleted prints them)"),
            );
        }
    }
    for skipped in &retrieval.skipped {
        say(Said::Warning, &format!("skipped corrupt object {skipped}"));
    }
    if !retrieval.skipped.is_empty() {
        let skipped = retrieval.skipped.len();
        say(Said::Warning, &format!("{skipped} corrupt objects skipped"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every job's newest change, one JSON line each in id order: its body, or
/// for a deletion a line that says so.
fn print_changes(jobs: &[Envelope]) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for job in jobs {
        match job.body() {
            Some(body) => writeln!(out, "{}", body.replace(['\n', '\r'], " "))?,
            None => writeln!(
                out,
                "{}",
                serde_json::json!({
                    "id": job.id.as_str(),
                    "deleted": true,
                    "modified": job.modified.rfc3339(),
                })
            )?,
        }
    }
    out.flush()?;
    Ok(())
}
