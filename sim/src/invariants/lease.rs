//! One writer per prefix and one daemon per database host.
//!
//! A write to what daemons share (an upload, a snapshot, a prune, the
//! destination marker, a cursor save, a trigger file) is issued only while
//! no other daemon's lease is stored: of two daemons, only the lease's
//! holder writes. Checked when the write is issued, not when it lands: a
//! write in flight when the gate closes is not fenced (GCS offers no fence
//! for it), and lands within its latency.
//!
//! A wiped bucket lost its lease object: its holder learns it at its next
//! renewal, refused by its precondition, and writes nothing from then until
//! a read says the lease is its own; at the latest its gate closes half an
//! expiry after its last renewal, which was before the wipe. Another daemon
//! that takes the new lease meanwhile writes beside it: the one window the
//! lease cannot close, excused here for half an expiry after a wipe.

use std::time::Duration;

use jobvault_core::Config;
use jobvault_core::lease::renewal;

use super::{Invariant, Observation, Verdicts};
use crate::operations::describe_command;
use crate::world::World;

pub struct OneWriter {
    /// How long after a wipe two writers are excused.
    after_wipe: Duration,
}

impl OneWriter {
    pub fn new(config: &Config) -> Self {
        let expiry = renewal(config.interval).expiry;
        OneWriter {
            after_wipe: expiry / 2,
        }
    }
}

impl Invariant for OneWriter {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        let Observation::SharedWrite {
            writer,
            command,
            true_time,
        } = seen
        else {
            return;
        };
        if world
            .wiped_at
            .is_some_and(|wiped| *true_time < wiped + self.after_wipe)
        {
            return;
        }
        let holder = world.store.lease.as_ref().map(|(lease, _)| &lease.holder);
        verdicts.check(holder.is_none_or(|h| h == *writer), || {
            let h = holder.expect("checked");
            format!(
                "{} pid {} issued {} while the lease names {} pid {}",
                writer.host,
                writer.pid,
                describe_command(command),
                h.host,
                h.pid
            )
        });
    }
}

/// The database's lock lets one daemon run on its host at a time.
pub struct OneDaemonPerHost;

impl Invariant for OneDaemonPerHost {
    fn observe(&mut self, seen: &Observation, _: &World, verdicts: &mut Verdicts) {
        if let Observation::CoreStarted { running_here } = *seen {
            verdicts.check(running_here == 1, || {
                format!("{running_here} daemons run on one database's host")
            });
        }
    }
}
