//! What the commit watcher reports of a commit its look found: the notice
//! alone, or with the change feed read in the same look when the core
//! stands ready to take that read ([`Backup::read_at_next_commit`]).
//!
//! The read is made at the look and reported a moment later, as the
//! watcher's thread does, so that other reports (a cursor save, a read of
//! the core's own) may come in between and the core must tell a read made
//! in a state it has left from one it can take.

use std::time::Duration;

use jobvault_core::{Backup, Input};

use crate::faults::FaultKind;
use crate::invariants::Observation;
use crate::node::NodeId;
use crate::operations::Fate;
use crate::simulation::{Event, Simulation};

impl Simulation {
    /// Reports a commit the watcher of `node` just found.
    pub(crate) fn report_commit(&mut self, node: NodeId) {
        let process = &self.nodes[node].process;
        let Some(order) = process.core.as_ref().and_then(Backup::read_at_next_commit) else {
            return self.deliver(node, Input::DatabaseChanged);
        };
        let (began, true_time) = (self.local_now(node), self.now);
        self.observe(Observation::FeedRead {
            local: began,
            true_time,
        });
        let input = match self.rate_fate(FaultKind::DbRead, "database is locked") {
            Fate::Ok | Fate::Ambiguous => Input::CommitRead {
                batch: self
                    .db_of(node)
                    .changes(order.after, order.limit, order.max_bytes),
                order,
                began,
            },
            // The look failed: it says so, and the core reads for itself.
            Fate::Fail(..) => Input::DatabaseChanged,
            // The watcher's thread is held in the read: this look reports
            // nothing, and the core reads at its next step.
            Fate::Hang(_) => return,
        };
        let generation = self.nodes[node].process.generation;
        // Mostly within a look's time; one in ten held up for up to two
        // seconds, as a thread the OS did not run.
        let lag = if self.rng.delivery.u8(0..10) == 0 {
            self.rng.delivery.u64(0..2_000_000)
        } else {
            self.rng.delivery.u64(0..5_000)
        };
        let input = Box::new(input);
        self.after(
            Duration::from_micros(lag),
            Event::Deliver {
                node,
                generation,
                input,
            },
        );
    }
}
