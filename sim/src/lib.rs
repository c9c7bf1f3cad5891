//! The jobvault simulator: the pure core driven through thousands of seeded,
//! faulty days, with the invariants of DESIGN.md §6 checked as it goes.
//!
//! A seed fixes everything: the fault mix, the workload, every latency and
//! every outcome. The same seed always gives the same run, so a failing seed
//! is a reproducible bug report: `jobvault-sim --seed N --trace`.

pub mod faults;
pub mod history;
pub mod invariants;
mod lifecycle;
pub mod node;
mod operations;
pub mod restore;
pub mod rng;
pub mod settings;
pub mod simulation;
pub mod summary;
mod watcher;
pub mod world;

pub use simulation::{Outcome, run, run_with};
pub use summary::Summary;
