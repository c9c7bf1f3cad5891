//! The six figures the speed work was judged by, gathered from the
//! sections of one `bench all` run and printed together at its end, each
//! beside its target, so that the table in the README comes from one run.

use super::versus::{Figures, UPDATES_PER_SECOND};
use super::{Args, LATENCY, ScaleFigures};

/// What the sections measured; a section that did not run leaves its
/// figures out.
#[derive(Debug, Default)]
pub struct Summary {
    /// jobvault, then Litestream, from `versus-litestream`.
    pub versus: Option<(Figures, Figures)>,
    /// `restore-at-scale`'s restores at the default concurrency.
    pub restore_at_scale: Option<ScaleFigures>,
    /// CPU seconds of the daemon for 10,000 uploads through the proxy,
    /// from `incremental`.
    pub upload_cpu: Option<f64>,
}

impl Summary {
    /// Prints the table, naming the sizes `args` gave the sections.
    pub fn print(&self, args: &Args) {
        println!("== summary: the targets of the speed work, from this run");
        println!("| figure | target | this run |");
        println!("| --- | --- | --- |");
        if let Some((ours, theirs)) = &self.versus {
            versus_rows(ours, theirs, args.database_mib);
        }
        if let Some(ScaleFigures { clean, faulty }) = self.restore_at_scale {
            println!(
                "| restore {} MiB + {} job objects, {LATENCY:?}, default settings | <= 30 s, peak RSS <= 256 MiB | {:.1} s, peak {:.0} MiB |",
                args.scale_mib, args.scale_jobs, clean.0, clean.1
            );
            println!(
                "| the same, 2% of requests failing (503, 429) | <= 1.2x the clean restore | {:.1} s ({:.2}x), peak {:.0} MiB |",
                faulty.0,
                faulty.0 / clean.0,
                faulty.1
            );
        }
        if let Some(cpu) = self.upload_cpu {
            println!("| CPU per 10,000 job uploads | <= 1 s | {cpu:.2} s |");
        }
    }
}

fn versus_rows(ours: &Figures, theirs: &Figures, database_mib: u64) {
    println!(
        "| commit to bucket, defaults, {LATENCY:?} store latency | p90 <= 0.2 s (Litestream here: {:.3} s) | p90 {:.3} s (p50 {:.3}, max {:.3}) |",
        theirs.lag[1], ours.lag[1], ours.lag[0], ours.lag[2]
    );
    println!(
        "| CPU while idle (no changes), defaults | <= 0.5% of a core | {:.2}% of a core |",
        ours.idle_cpu
    );
    println!(
        "| CPU at {UPDATES_PER_SECOND} updates/s | <= Litestream's ({:.2}% of a core) | {:.2}% of a core ({:.2}x) |",
        theirs.load_cpu,
        ours.load_cpu,
        ours.load_cpu / theirs.load_cpu
    );
    println!(
        "| snapshot {database_mib} MiB end to end | <= 3.5 s (Litestream here: {:.2} s) | {:.2} s |",
        theirs.snapshot_seconds, ours.snapshot_seconds
    );
}
