//! jobvault's shell: everything that touches the world.
//!
//! The core (`jobvault-core`) decides; this crate carries its decisions out
//! against a real SQLite job database, a trigger directory, temporary files
//! and an object store, and serves the metrics. The `jobvault` binary is its
//! command line.

pub mod check;
pub mod cleartext;
pub mod clock;
pub mod commit_watch;
pub mod control;
pub mod daemon;
pub mod db;
pub mod db_lock;
pub mod destination;
pub mod drive;
pub mod failure;
pub mod immediate;
pub mod inventory;
pub mod lease;
pub mod leftovers;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod nothing;
pub mod parallel_gzip;
pub mod progress;
pub mod prune;
pub mod reads;
pub mod restore;
pub mod retrieve;
pub mod sample;
pub mod small_object;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod triggers;
pub mod verify;
