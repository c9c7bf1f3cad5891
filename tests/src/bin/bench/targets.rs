//! Every figure `bench` judges, and its target: one table, so a target is
//! changed in one place and the verdict, the README and DESIGN §7 can be
//! read against it. A figure a section prints without a row here is
//! informative only.

use std::fmt;

/// A figure with a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Figure {
    UploadConcurrencyGain,
    UploadCpuPer10k,
    DaemonVersusLoop,
    SnapshotVersusGzip,
    SnapshotPeakMib,
    RetrieveConcurrencyGain,
    RecoveryPointP90,
    IdleCpu,
    RestoreSeconds,
    ScaleRestoreSeconds,
    ScaleRestorePeakMib,
    ScaleRestoreFaultyRatio,
    WritesVersusFirstRelease,
    WritesVersusSelfNumbered,
    VersusLagP90,
    VersusIdleCpuRatio,
    VersusLoadCpuRatio,
    VersusIdleWritesRatio,
    VersusSnapshotSeconds,
    EncryptedUploadCpu,
    EncryptedSnapshot,
    EncryptedRestore,
}

/// Which side of its bound a figure must be on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Bound::AtMost(limit) => value <= limit,
            Bound::AtLeast(limit) => value >= limit,
        }
    }

    /// The same bound at another value, as `--target` sets it.
    pub fn at(self, value: f64) -> Bound {
        match self {
            Bound::AtMost(_) => Bound::AtMost(value),
            Bound::AtLeast(_) => Bound::AtLeast(value),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::AtMost(limit) => write!(f, "<= {limit}"),
            Bound::AtLeast(limit) => write!(f, ">= {limit}"),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub figure: Figure,
    /// What `--target` calls it.
    pub name: &'static str,
    /// What it is, with its unit.
    pub what: &'static str,
    pub bound: Bound,
}

const fn row(figure: Figure, name: &'static str, what: &'static str, bound: Bound) -> Target {
    Target {
        figure,
        name,
        what,
        bound,
    }
}

use Bound::{AtLeast, AtMost};
use Figure::*;

/// The targets, section by section.
#[rustfmt::skip]
pub const TARGETS: &[Target] = &[
    row(UploadConcurrencyGain, "upload-concurrency-gain", "job uploads, concurrency 32 vs 1, 20 ms latency (x)", AtLeast(10.0)),
    row(UploadCpuPer10k, "upload-cpu", "daemon CPU per 10,000 job uploads, 20 ms latency (s)", AtMost(1.0)),
    row(DaemonVersusLoop, "daemon-vs-loop", "daemon vs a bare loop of 32 concurrent uploads, no latency (x)", AtLeast(0.8)),
    row(SnapshotVersusGzip, "snapshot-vs-gzip", "snapshot of the database vs gzip -6 alone (x)", AtMost(1.3)),
    row(SnapshotPeakMib, "snapshot-peak", "snapshot's peak memory (MiB)", AtMost(64.0)),
    row(RetrieveConcurrencyGain, "retrieve-concurrency-gain", "retrieve 10,000 jobs, concurrent vs one at a time, 20 ms (x)", AtLeast(10.0)),
    row(RecoveryPointP90, "recovery-point", "commit to bucket p90, defaults, 20 ms latency (s)", AtMost(0.2)),
    row(IdleCpu, "idle-cpu", "CPU of an idle daemon, defaults (% of a core)", AtMost(0.5)),
    row(RestoreSeconds, "restore", "restore of the database (s)", AtMost(3.0)),
    row(ScaleRestoreSeconds, "scale-restore", "restore 1 GiB + 100,000 job objects, 20 ms, defaults (s)", AtMost(30.0)),
    row(ScaleRestorePeakMib, "scale-restore-peak", "the same restore's peak memory (MiB)", AtMost(256.0)),
    row(ScaleRestoreFaultyRatio, "scale-restore-faulty", "the same, 2% of requests failing, vs clean (x)", AtMost(1.2)),
    row(WritesVersusFirstRelease, "writes-vs-first-release", "jobs put of new jobs, triggers vs the first release (x)", AtMost(1.3)),
    row(WritesVersusSelfNumbered, "writes-vs-self-numbered", "jobs put of new jobs, triggers vs the writer numbering rows (x)", AtMost(1.3)),
    row(VersusLagP90, "versus-lag", "commit to bucket p90 beside Litestream, 20 ms (s)", AtMost(0.1)),
    row(VersusIdleCpuRatio, "versus-idle-cpu", "CPU while idle, jobvault / Litestream (x)", AtMost(0.5)),
    row(VersusLoadCpuRatio, "versus-load-cpu", "CPU at 50 updates/s, jobvault / Litestream (x)", AtMost(1.0)),
    row(VersusIdleWritesRatio, "versus-idle-writes", "store writes while idle, jobvault / Litestream (x)", AtMost(1.0)),
    row(VersusSnapshotSeconds, "versus-snapshot", "snapshot end to end beside Litestream (s)", AtMost(3.5)),
    row(EncryptedUploadCpu, "encrypted-upload-cpu", "daemon CPU per job upload, encrypted vs plain (x)", AtMost(1.1)),
    row(EncryptedSnapshot, "encrypted-snapshot", "snapshot end to end, encrypted vs plain (x)", AtMost(1.1)),
    row(EncryptedRestore, "encrypted-restore", "restore of that snapshot, encrypted vs plain (x)", AtMost(1.1)),
];

/// The row of `figure`.
pub fn target(figure: Figure) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.figure == figure)
        .expect("every figure has a row")
}

/// Reads `--target NAME=VALUE`.
pub fn parse_override(text: &str) -> Result<(Figure, f64), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    let figure = TARGETS
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
            format!(
                "no figure is called `{name}`; the figures: {}",
                names.join(", ")
            )
        })?
        .figure;
    let value = value
        .parse::<f64>()
        .map_err(|e| format!("`{value}` is not a number: {e}"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{value}` is not a finite number of at least 0"));
    }
    Ok((figure, value))
}
