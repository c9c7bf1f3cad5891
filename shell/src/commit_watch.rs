//! Notices commits to the job database as they happen, so that a change
//! reaches the bucket within milliseconds instead of at the next interval.
//!
//! The first release looked for changes every 10 s, so a committed job was
//! in the bucket 5 s later on average and 10 s at worst; a general SQLite
//! replicator gets it there within a second. SQLite's `data_version` moves
//! whenever another connection commits, and in WAL mode reading it touches
//! only shared memory. A thread of its own, with a connection of its own,
//! reads it every [`CHANGE_POLL`] and reports [`Input::DatabaseChanged`]
//! when it moved; what to do about it is the core's. The interval stays the
//! fallback: if the watcher cannot read, nothing is lost, only later.

use std::path::Path;

use jobvault_core::Input;
use jobvault_core::machine::CHANGE_POLL;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use crate::db::{DbError, JobDb};
use crate::store::error_chain;

/// Starts watching the database at `path`, reporting to `inputs` until
/// they close.
pub fn spawn(path: &Path, inputs: UnboundedSender<Input>) -> Result<(), DbError> {
    let db = JobDb::open(path)?;
    let mut seen = db.data_version()?;
    std::thread::Builder::new()
        .name("jobvault-watch".to_owned())
        .spawn(move || {
            let mut failing = false;
            while !inputs.is_closed() {
                std::thread::sleep(CHANGE_POLL);
                match db.data_version() {
                    Ok(version) => {
                        failing = false;
                        if version != seen {
                            seen = version;
                            let _ = inputs.send(Input::DatabaseChanged);
                        }
                    }
                    Err(e) if !failing => {
                        failing = true;
                        warn!(error = %error_chain(&e), "cannot look for commits to the job database; changes are read at each interval until it can");
                    }
                    Err(_) => {}
                }
            }
        })
        .expect("a thread can be started");
    Ok(())
}
