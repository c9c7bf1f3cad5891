//! What goes wrong in a simulated day, drawn from the seed.
//!
//! Each seed gets its own mix: some days are calm, some have a store that
//! fails one request in five, some crash jobvault four times. Rates apply to
//! every operation; scheduled faults happen once, at a drawn time.

use std::fmt;
use std::time::Duration;

/// The kinds of fault the world injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// A store request fails and has no effect.
    StoreTransient,
    /// A store request fails because the store is down for a while.
    StoreOutage,
    /// A store request is reported failed but the object landed.
    StoreAmbiguous,
    /// A database read fails.
    DbRead,
    /// A database write fails.
    DbWrite,
    /// A trigger directory operation fails, or the directory is gone.
    TriggerDir,
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
}

impl FaultKind {
    pub const ALL: [FaultKind; 11] = [
        FaultKind::StoreTransient,
        FaultKind::StoreOutage,
        FaultKind::StoreAmbiguous,
        FaultKind::DbRead,
        FaultKind::DbWrite,
        FaultKind::TriggerDir,
        FaultKind::Crash,
        FaultKind::Shutdown,
        FaultKind::ClockStep,
        FaultKind::FeedReset,
        FaultKind::MalformedTrigger,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::StoreTransient => "store-transient",
            FaultKind::StoreOutage => "store-outage",
            FaultKind::StoreAmbiguous => "store-ambiguous",
            FaultKind::DbRead => "db-read",
            FaultKind::DbWrite => "db-write",
            FaultKind::TriggerDir => "trigger-dir",
            FaultKind::Crash => "crash",
            FaultKind::Shutdown => "shutdown",
            FaultKind::ClockStep => "clock-step",
            FaultKind::FeedReset => "feed-reset",
            FaultKind::MalformedTrigger => "malformed-trigger",
        }
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts([u64; FaultKind::ALL.len()]);

impl FaultCounts {
    pub fn add(&mut self, kind: FaultKind) {
        self.0[kind as usize] += 1;
    }

    pub fn get(&self, kind: FaultKind) -> u64 {
        self.0[kind as usize]
    }

    pub fn merge(&mut self, other: &FaultCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, kind) in FaultKind::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", kind.label(), self.get(*kind))?;
        }
        Ok(())
    }
}

/// Per-operation fault rates and the number of one-off faults for one seed.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub store_transient: f64,
    pub store_ambiguous: f64,
    pub db_read: f64,
    pub db_write: f64,
    pub trigger_dir: f64,
    /// Typical store round trip.
    pub store_latency: Duration,
    pub outages: u32,
    pub crashes: u32,
    pub shutdowns: u32,
    pub clock_steps: u32,
    pub feed_resets: u32,
    pub malformed_triggers: u32,
    pub trigger_dir_removals: u32,
    pub immediate_requests: u32,
    /// Mean time between job writes outside bursts.
    pub write_interval: Duration,
    pub bursts: u32,
}

impl FaultPlan {
    /// Draws a plan. About one seed in eight is calm, so that the fault-free
    /// paths are exercised as often as the faulty ones.
    pub fn draw(rng: &mut fastrand::Rng) -> Self {
        let calm = rng.u8(0..8) == 0;
        let rate = |rng: &mut fastrand::Rng, max: f64| if calm { 0.0 } else { rng.f64() * max };
        let count = |rng: &mut fastrand::Rng, max: u32| if calm { 0 } else { rng.u32(0..=max) };
        FaultPlan {
            store_transient: rate(rng, 0.2),
            store_ambiguous: rate(rng, 0.05),
            db_read: rate(rng, 0.05),
            db_write: rate(rng, 0.05),
            trigger_dir: rate(rng, 0.1),
            store_latency: Duration::from_millis(rng.u64(5..120)),
            outages: count(rng, 3),
            crashes: count(rng, 4),
            shutdowns: count(rng, 2),
            clock_steps: count(rng, 3),
            feed_resets: count(rng, 2),
            malformed_triggers: count(rng, 2),
            trigger_dir_removals: count(rng, 1),
            immediate_requests: rng.u32(0..=2),
            write_interval: Duration::from_millis(rng.u64(2_000..60_000)),
            bursts: rng.u32(0..=4),
        }
    }

    /// No faults at all: the world after the simulated day, while the system
    /// is left to quiesce.
    pub fn calm(&mut self) {
        self.store_transient = 0.0;
        self.store_ambiguous = 0.0;
        self.db_read = 0.0;
        self.db_write = 0.0;
        self.trigger_dir = 0.0;
    }
}
