//! What one seed fixes before its day starts, drawn once: the fault plan,
//! the configuration, where the daemons run, and the start of the day.

use std::collections::BTreeSet;
use std::time::Duration;

use jobvault_core::machine::Schedule;
use jobvault_core::{Config, Timestamp};

use crate::faults::{DayPlan, FaultKind};
use crate::history::History;

/// How far apart two hosts' clocks may be: `check` holds each to 5 s of the
/// store's, and the lease relies on it.
pub const MAX_HOST_SKEW: Duration = Duration::from_secs(5);

/// Where jobvault runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One daemon.
    One,
    /// A second daemon on another host, on the same database (shared
    /// storage moved between hosts) and the same prefix: only the lease
    /// keeps them apart. It starts at `second_start` into the day, and both
    /// restart when they exit.
    TwoOnPrefix { second_start: Duration },
    /// A second daemon started by hand on the database's own host at
    /// `second_start`: the database's lock refuses it while the first runs.
    TwoOnHost { second_start: Duration },
}

/// The seed's settings.
#[derive(Debug)]
pub struct Settings {
    pub plan: DayPlan,
    pub config: Config,
    pub history: History,
    pub topology: Topology,
    /// True time at the start of the day.
    pub start: Timestamp,
}

impl Settings {
    pub fn draw(seed: u64, rng: &mut fastrand::Rng, enabled: &BTreeSet<FaultKind>) -> Self {
        let plan = DayPlan::draw(seed, rng, enabled);
        let concurrency = rng.usize(1..=32);
        let max_pending = rng.usize(16..=512);
        let start = Timestamp::from_unix_seconds(1_700_000_000 + rng.i64(0..86_400 * 365));
        let history = History::draw(crate::rng::stream(seed, "history"), start);
        let config = Config {
            concurrency,
            max_pending,
            max_pending_bytes: draw_memory(&mut crate::rng::stream(seed, "memory")),
            keep: history.keep,
            schedule: draw_schedule(&mut crate::rng::stream(seed, "schedule")),
            ..Config::default()
        };
        let topology = draw_topology(&mut crate::rng::stream(seed, "topology"));
        Settings {
            plan,
            config,
            history,
            topology,
            start,
        }
    }
}

/// Half the seeds hold the default's bytes of bodies; the others a few
/// dozen bodies' worth, so a read is cut by bytes as often as by count.
fn draw_memory(rng: &mut fastrand::Rng) -> u64 {
    if rng.bool() {
        Config::default().max_pending_bytes
    } else {
        rng.u64(256..=16_384)
    }
}

/// Half the seeds run one daemon, a third two on one prefix (one in three
/// of those starting together), a sixth a second one on the same host.
fn draw_topology(rng: &mut fastrand::Rng) -> Topology {
    let in_day = |rng: &mut fastrand::Rng| Duration::from_secs(rng.u64(0..86_400));
    match rng.u8(0..6) {
        0..3 => Topology::One,
        3..5 => Topology::TwoOnPrefix {
            second_start: if rng.u8(0..3) == 0 {
                Duration::from_millis(rng.u64(0..2_000))
            } else {
                in_day(rng)
            },
        },
        _ => Topology::TwoOnHost {
            second_start: in_day(rng),
        },
    }
}

/// A third of the seeds schedule snapshots in the core, daily at a random
/// minute, every 1 to 8 hours, or both; the systemd timer drops its trigger
/// files in every seed.
fn draw_schedule(rng: &mut fastrand::Rng) -> Schedule {
    match rng.u8(0..6) {
        0 => Schedule {
            daily_at: Some(rng.u32(0..1440) * 60),
            every: None,
        },
        1 => Schedule {
            daily_at: None,
            every: Some(Duration::from_secs(rng.u64(1..=8) * 3600)),
        },
        _ if rng.bool() => Schedule::default(),
        _ => Schedule {
            daily_at: Some(rng.u32(0..1440) * 60),
            every: Some(Duration::from_secs(rng.u64(1..=8) * 3600)),
        },
    }
}
