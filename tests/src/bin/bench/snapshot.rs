//! `bench snapshot`: `jobvault backup` of a database (copy, gzip on the
//! cores, write) against `gzip -6` of the same file alone, and its peak
//! memory at two sizes: it should not grow with the database.

use std::process::Command;

use jobvault_tests::{Workspace, jobvault};

use super::setup::{database_of_size, timed};
use super::targets::Figure;
use super::verdict::Measured;

pub fn run(mib: u64) -> Measured {
    println!("== snapshot: a {mib} MiB database");
    let mut measured = Vec::new();
    let mut peaks = Vec::new();
    for size in [mib / 4, mib] {
        let workspace = Workspace::new();
        database_of_size(&workspace, size);
        let bytes = std::fs::metadata(workspace.db()).unwrap().len();
        let bucket = workspace.path().join("bucket");
        let mut backup = jobvault(None);
        backup
            .args([
                "backup",
                "--bucket",
                &format!("file://{}", bucket.display()),
                "--db",
            ])
            .arg(workspace.db());
        let (ours, peak) = timed(backup);
        let mut gzip = Command::new("sh");
        gzip.arg("-c").arg(format!(
            "gzip -6 -c {} > /dev/null",
            workspace.db().display()
        ));
        let (plain, _) = timed(gzip);
        let peak_mib = peak as f64 / 1024.0;
        println!(
            "  {:.0} MiB: jobvault backup {ours:.2} s (copy, gzip, write), gzip -6 alone {plain:.2} s: {:.2}x; peak memory {peak_mib:.0} MiB",
            bytes as f64 / (1 << 20) as f64,
            ours / plain,
        );
        peaks.push(peak_mib);
        measured = vec![
            (Figure::SnapshotVersusGzip, ours / plain),
            (Figure::SnapshotPeakMib, peak_mib),
        ];
    }
    println!(
        "  peak memory for 4x the data: {:.2}x (independent of size: about 1)",
        peaks[1] / peaks[0]
    );
    measured
}
