//! One random stream per concern, each derived from the seed and its name.
//!
//! With a single stream, one more draw anywhere (a new fault, a new check)
//! shifts every later draw and reshuffles every seed's history. Separate
//! streams keep a change to one concern from changing the others.

/// The streams of one seed.
#[derive(Debug)]
pub struct Streams {
    /// The workload plan, the configuration and the start time. Each fault
    /// kind draws its dose from a stream of its own ([`stream`]).
    pub plan: fastrand::Rng,
    /// The service's writes, bursts and timers.
    pub workload: fastrand::Rng,
    /// How long each operation takes.
    pub latency: fastrand::Rng,
    /// Whether each operation fails, and how.
    pub fate: fastrand::Rng,
    /// Crashes, restarts, clock steps and cursor rewinds.
    pub lifecycle: fastrand::Rng,
    /// Whether a report lingers on its way back to the core.
    pub delivery: fastrand::Rng,
    /// When the commit watcher next looks, and whether it misses a commit.
    pub watch: fastrand::Rng,
    /// The order in which a restore's answers come back.
    pub restore: fastrand::Rng,
    /// Whether an hourly check also restores with every snapshot unusable,
    /// and the order of that restore's answers.
    pub without_snapshot: fastrand::Rng,
    /// The order of a prune's answers, and where a failed one stopped.
    pub prune: fastrand::Rng,
    /// When a copy of the database is taken, and when it is written back.
    pub went_back: fastrand::Rng,
}

/// The stream named `name` of `seed`.
pub fn stream(seed: u64, name: &str) -> fastrand::Rng {
    fastrand::Rng::with_seed(derive(seed, name))
}

impl Streams {
    pub fn new(seed: u64) -> Self {
        let stream = |name: &str| stream(seed, name);
        Streams {
            plan: stream("plan"),
            workload: stream("workload"),
            latency: stream("latency"),
            fate: stream("fate"),
            lifecycle: stream("lifecycle"),
            delivery: stream("delivery"),
            watch: stream("watch"),
            restore: stream("restore"),
            without_snapshot: stream("without snapshot"),
            prune: stream("prune"),
            went_back: stream("went back"),
        }
    }
}

/// Mixes the seed with the stream's name (FNV-1a, then SplitMix64), so that
/// streams of one seed, and one stream of nearby seeds, are unrelated.
fn derive(seed: u64, name: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
