//! Running many seeds and adding up what they did.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::faults::{FaultCounts, FaultKind};
use crate::simulation::{Outcome, Stops, run_with};

/// What a set of seeds did, and which of them broke an invariant.
#[derive(Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub events: u64,
    pub faults: FaultCounts,
    pub jobs: u64,
    pub versions: u64,
    pub deletes: u64,
    pub job_uploads: u64,
    pub snapshots: u64,
    pub checks: u64,
    pub stops: Stops,
    /// Failing seeds with their violations, in seed order.
    pub failures: Vec<(u64, Vec<String>)>,
}

impl From<Outcome> for Summary {
    /// The summary of one seed.
    fn from(outcome: Outcome) -> Self {
        let failed = !outcome.violations.is_empty();
        Summary {
            seeds: 1,
            events: outcome.events,
            faults: outcome.faults,
            jobs: outcome.jobs,
            versions: outcome.versions,
            deletes: outcome.deletes,
            job_uploads: outcome.job_uploads,
            snapshots: outcome.snapshots,
            checks: outcome.checks,
            stops: outcome.stops,
            failures: if failed {
                vec![(outcome.seed, outcome.violations)]
            } else {
                Vec::new()
            },
        }
    }
}

impl Summary {
    /// Runs every seed in `seeds` on `threads` threads, with every kind of
    /// fault.
    pub fn run(seeds: Range<u64>, threads: usize) -> Summary {
        Summary::run_with(seeds, threads, &FaultKind::all().iter().copied().collect())
    }

    /// Runs every seed in `seeds` on `threads` threads, with only the
    /// `enabled` kinds of fault.
    pub fn run_with(seeds: Range<u64>, threads: usize, enabled: &BTreeSet<FaultKind>) -> Summary {
        let next = AtomicU64::new(seeds.start);
        let total = Mutex::new(Summary::default());
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| {
                    let mut mine = Summary::default();
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= seeds.end {
                            break;
                        }
                        mine.merge(run_with(seed, false, enabled).into());
                    }
                    total
                        .lock()
                        .expect("no thread panics holding it")
                        .merge(mine);
                });
            }
        });
        let mut total = total.into_inner().expect("no thread panicked holding it");
        total.failures.sort_by_key(|(seed, _)| *seed);
        total
    }

    fn merge(&mut self, other: Summary) {
        self.seeds += other.seeds;
        self.events += other.events;
        self.faults.merge(&other.faults);
        self.jobs += other.jobs;
        self.versions += other.versions;
        self.deletes += other.deletes;
        self.job_uploads += other.job_uploads;
        self.snapshots += other.snapshots;
        self.checks += other.checks;
        self.stops.drained += other.stops.drained;
        self.stops.grace_over += other.stops.grace_over;
        self.stops.set_aside += other.stops.set_aside;
        self.stops.unvouched += other.stops.unvouched;
        self.failures.extend(other.failures);
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seeds            {}", self.seeds)?;
        writeln!(f, "events           {}", self.events)?;
        writeln!(
            f,
            "faults injected  {} ({})",
            self.faults.total(),
            self.faults
        )?;
        writeln!(
            f,
            "jobs             {} ({} changes written, {} of them deletes)",
            self.jobs, self.versions, self.deletes
        )?;
        writeln!(
            f,
            "objects written  {} job, {} snapshot",
            self.job_uploads, self.snapshots
        )?;
        writeln!(
            f,
            "graceful stops   {} drained, {} drained but for rows set aside, {} drained to a \
             prefix not vouched for, {} out of grace",
            self.stops.drained, self.stops.set_aside, self.stops.unvouched, self.stops.grace_over
        )?;
        writeln!(f, "invariant checks {}", self.checks)?;
        write!(f, "failing seeds    {}", self.failures.len())
    }
}
