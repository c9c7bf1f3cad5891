//! What goes wrong in a simulated day, drawn from the seed.
//!
//! Each seed gets its own mix: some days are calm, some have a store that
//! fails one request in five, some crash jobvault four times. A fault is
//! either a rate, applied to every operation it can hit, or a count of
//! one-off events at drawn times.
//!
//! Adding a kind takes three places: the variant below, its arm in
//! [`FaultKind::draw`] (the compiler asks for it), and where the simulation
//! injects it: its arm in `Simulation::inject` for a one-off (one without it
//! panics on the first seed that draws it, and the seeds test draws every
//! kind), or the operation it hits for a rate. Labels, `--faults`, counts and
//! the summary follow from the variant.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use clap::ValueEnum;
use jobvault_core::commit_watch::Watch;

use crate::rng::stream;

/// The kinds of fault the world injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum FaultKind {
    /// A store request fails and has no effect.
    StoreTransient,
    /// A store request fails because the store is down for a while.
    StoreOutage,
    /// The store answers a request with 429 Too Many Requests.
    StoreThrottled,
    /// The store refuses jobvault for a while: 403, a role taken away and
    /// given back.
    StoreRefusing,
    /// A store request is reported failed but the object landed.
    StoreAmbiguous,
    /// A database read fails.
    DbRead,
    /// A database write fails.
    DbWrite,
    /// A trigger directory operation fails.
    TriggerDir,
    /// The trigger directory disappears for a while.
    TriggerDirLost,
    /// jobvault is killed; what was in flight lands or not, at random.
    Crash,
    /// jobvault is asked to stop and is given a grace period.
    Shutdown,
    /// The local clock is stepped (within the documented allowance).
    ClockStep,
    /// Someone rewinds the cursor stored in the database.
    FeedReset,
    /// A malformed trigger file appears.
    MalformedTrigger,
    /// A store or database call never answers; a store write may have
    /// landed. The driver answers it at the command's deadline.
    Hang,
    /// The watcher misses a commit: with notices from the OS, the OS dropped
    /// the notice and the watcher's fallback look finds it; while polling,
    /// the look failed and the change waits for a later look or the next
    /// interval.
    MissedCommit,
    /// The store serves a snapshot a restore reads decompressed, without
    /// its gzip header (GCS's decompressive transcoding): its time is then
    /// the cursor stored inside. Each read of a header or a whole snapshot
    /// is hit on its own. The same input stands for an encrypted snapshot
    /// read without an identity, as the daemon's retention reads them: the
    /// core sees no time in its header either.
    SnapshotDecompressed,
    /// A read of a restore or a prune fails: a 5xx or 429, a body cut part
    /// way, or no byte until the idle timeout. It is made again as the
    /// core's read retry decides.
    StoreReadFailure,
    /// The bucket prefix is emptied under the running daemon (deleted and
    /// recreated, or wiped by hand), its lease and destination marker with
    /// it. The daemon finds its lease gone at its next renewal and stops;
    /// it is restarted.
    BucketWiped,
    /// Every backup under the prefix is deleted (a cleanup script, a
    /// lifecycle rule), its lease and destination marker kept: the daemon
    /// finds both as they were, and must notice from its listings that the
    /// prefix no longer holds the database, and refill it.
    BackupsDeleted,
    /// A host is cut off from the store for a while: every request of its
    /// daemon fails, while another daemon may take the lease over.
    HostCutOff,
    /// An operator starts the daemon of another host with `--takeover`
    /// while the lease's holder still runs, and asks the old holder for a
    /// snapshot soon after (`jobvault backup` on its host): it learns of the
    /// takeover only at its next renewal. In one of two, the old holder's
    /// link turns slow for a minute: its uploads then take minutes.
    Takeover,
    /// The first snapshot a restore of the newest state downloads is
    /// unusable (cut short, a bad CRC), while another remains: the restore
    /// falls back to the next older one.
    SnapshotUnusable,
    /// Every snapshot an extra restore of the newest state downloads is
    /// unusable. It must refuse, not rebuild from the job objects alone:
    /// after a wiped bucket is refilled, a job unchanged since is in the
    /// refill's snapshot only.
    EverySnapshotUnusable,
    /// A file is renamed over the job database under the running daemons
    /// (a restore or a copy moved into place by hand): writers write the
    /// new file, while each daemon reads the one it opened until its
    /// watcher's next look says the path names another file. It must stop,
    /// and its restart back the new file up.
    DatabaseReplaced,
    /// A copy of the database taken earlier in the day is written over it
    /// in place under the running daemons (`cp`, `sqlite3 .restore`): the
    /// same file, its change counter back where the copy had it. A daemon
    /// must raise the counter past what it read and start the prefix over,
    /// so that no sequence names two versions and a restore gives the
    /// copy, not the versions it left behind.
    DatabaseWentBack,
    /// A writer without the database's rules (an older schema, triggers
    /// dropped) writes a row no job object can hold, among good ones: the
    /// daemon sets it aside and goes on.
    BadRow,
    /// Such a writer inserts a job whose id no object name can carry: each
    /// of its rows is set aside, and its deletion, which no job object can
    /// record, reaches the bucket only in a snapshot taken after it. A
    /// restore from an older one brought the job back after a stop that
    /// exited 0 (a hostile trial).
    NamelessId,
}

/// How much of one fault a day gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dose {
    /// The chance that each operation it can hit fails this way.
    Rate(f64),
    /// How many times it happens, at drawn times of the day.
    Count(u32),
}

impl Dose {
    fn none(self) -> Dose {
        match self {
            Dose::Rate(_) => Dose::Rate(0.0),
            Dose::Count(_) => Dose::Count(0),
        }
    }
}

impl FaultKind {
    pub fn all() -> &'static [FaultKind] {
        FaultKind::value_variants()
    }

    /// The kebab-case name used by `--faults` and in summaries.
    pub fn label(self) -> String {
        self.to_possible_value()
            .expect("no variant is skipped")
            .get_name()
            .to_owned()
    }

    /// Draws this fault's dose for one day.
    fn draw(self, rng: &mut fastrand::Rng) -> Dose {
        let rate = |rng: &mut fastrand::Rng, max: f64| Dose::Rate(rng.f64() * max);
        let count = |rng: &mut fastrand::Rng, max: u32| Dose::Count(rng.u32(0..=max));
        match self {
            FaultKind::StoreTransient => rate(rng, 0.2),
            FaultKind::StoreOutage => count(rng, 3),
            FaultKind::StoreThrottled => rate(rng, 0.2),
            FaultKind::StoreRefusing => count(rng, 2),
            FaultKind::StoreAmbiguous => rate(rng, 0.05),
            FaultKind::DbRead => rate(rng, 0.05),
            FaultKind::DbWrite => rate(rng, 0.05),
            FaultKind::TriggerDir => rate(rng, 0.1),
            FaultKind::TriggerDirLost => count(rng, 1),
            FaultKind::Crash => count(rng, 4),
            FaultKind::Shutdown => count(rng, 2),
            FaultKind::ClockStep => count(rng, 3),
            FaultKind::FeedReset => count(rng, 2),
            FaultKind::MalformedTrigger => count(rng, 2),
            FaultKind::Hang => rate(rng, 0.01),
            FaultKind::MissedCommit => rate(rng, 0.5),
            FaultKind::SnapshotDecompressed => rate(rng, 0.5),
            FaultKind::StoreReadFailure => rate(rng, 0.3),
            FaultKind::SnapshotUnusable => rate(rng, 0.5),
            FaultKind::EverySnapshotUnusable => rate(rng, 0.5),
            FaultKind::BadRow => rate(rng, 0.05),
            FaultKind::NamelessId => rate(rng, 0.05),
            FaultKind::BucketWiped => count(rng, 1),
            FaultKind::BackupsDeleted => count(rng, 1),
            FaultKind::HostCutOff => count(rng, 2),
            FaultKind::Takeover => count(rng, 2),
            FaultKind::DatabaseReplaced => count(rng, 1),
            FaultKind::DatabaseWentBack => count(rng, 1),
        }
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts(BTreeMap<FaultKind, u64>);

impl FaultCounts {
    pub fn add(&mut self, kind: FaultKind) {
        *self.0.entry(kind).or_default() += 1;
    }

    pub fn get(&self, kind: FaultKind) -> u64 {
        self.0.get(&kind).copied().unwrap_or_default()
    }

    pub fn merge(&mut self, other: &FaultCounts) {
        for (kind, n) in &other.0 {
            *self.0.entry(*kind).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, kind) in FaultKind::all().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", kind.label(), self.get(*kind))?;
        }
        Ok(())
    }
}

/// The faults and the workload of one seed.
#[derive(Debug, Clone)]
pub struct DayPlan {
    doses: BTreeMap<FaultKind, Dose>,
    /// Typical store round trip.
    pub store_latency: Duration,
    pub immediate_requests: u32,
    /// Mean time between job writes outside bursts.
    pub write_interval: Duration,
    pub bursts: u32,
    /// How the daemons learn of commits: in one seed in four the OS gives
    /// no notices and they poll.
    pub watch: Watch,
}

impl DayPlan {
    /// Draws the plan of `seed` with only the `enabled` kinds of fault. About
    /// one seed in eight is calm, so that the fault-free paths are exercised
    /// as often as the faulty ones. Each kind draws its dose from a stream of
    /// its own, so adding, enabling or disabling one changes no other.
    pub fn draw(seed: u64, rng: &mut fastrand::Rng, enabled: &BTreeSet<FaultKind>) -> Self {
        let calm = rng.u8(0..8) == 0;
        let doses = FaultKind::all()
            .iter()
            .map(|&kind| {
                let dose = kind.draw(&mut stream(seed, &format!("fault {}", kind.label())));
                let on = !calm && enabled.contains(&kind);
                (kind, if on { dose } else { dose.none() })
            })
            .collect();
        DayPlan {
            doses,
            store_latency: Duration::from_millis(rng.u64(5..120)),
            immediate_requests: rng.u32(0..=2),
            write_interval: Duration::from_millis(rng.u64(2_000..60_000)),
            bursts: rng.u32(0..=4),
            watch: if stream(seed, "watch").u8(0..4) == 0 {
                Watch::Polled
            } else {
                Watch::Notified
            },
        }
    }

    /// The chance that an operation `kind` can hit fails that way.
    /// Whether the day injects no fault of any kind.
    pub fn is_calm(&self) -> bool {
        self.doses.values().all(|dose| match *dose {
            Dose::Rate(rate) => rate <= 0.0,
            Dose::Count(count) => count == 0,
        })
    }

    pub fn rate(&self, kind: FaultKind) -> f64 {
        match self.doses[&kind] {
            Dose::Rate(rate) => rate,
            Dose::Count(_) => 0.0,
        }
    }

    /// The one-off faults of the day, each kind with its count.
    pub fn one_offs(&self) -> impl Iterator<Item = (FaultKind, u32)> + '_ {
        self.doses.iter().filter_map(|(kind, dose)| match dose {
            Dose::Count(n) => Some((*kind, *n)),
            Dose::Rate(_) => None,
        })
    }

    /// No faults at all: the world after the simulated day, while the system
    /// is left to quiesce.
    pub fn calm(&mut self) {
        for dose in self.doses.values_mut() {
            *dose = dose.none();
        }
    }
}
