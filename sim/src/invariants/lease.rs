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
//!
//! Taken over from a live holder (`--takeover`), the lease leaves its old
//! holder writing until its next renewal is refused, or its gate closes
//! half an expiry after the last that got through: excused that long
//! after the take, but for a snapshot. A snapshot waits for a renewal sent
//! after it was asked for, so the old holder issues one after the take only
//! while that renewal's answer is on its way, within the lease's deadline;
//! before, one asked for meanwhile was the newest a restore found. And
//! writers never take turns back: once a daemon wrote after another, the
//! other writes no more. The new holder waits out the old one's gate; it
//! wrote at once, and the two interleaved, an older version overwriting a
//! newer one (seed 928 of the fault's first runs).

use std::time::Duration;

use jobvault_core::lease::{Holder, renewal};
use jobvault_core::machine::LEASE_DEADLINE;
use jobvault_core::{Command, Config, Seq, Timestamp};

use super::{Invariant, Observation, Verdicts};
use crate::operations::describe_command;
use crate::world::World;

pub struct OneWriter {
    /// How long after a wipe two writers are excused, and the old holder
    /// after a takeover.
    gate: Duration,
    /// The daemon that issued the last shared write.
    last: Option<Holder>,
    /// Daemons another wrote after: they must write no more.
    retired: Vec<Holder>,
}

impl OneWriter {
    pub fn new(config: &Config) -> Self {
        let expiry = renewal(config.interval).expiry;
        OneWriter {
            gate: expiry / 2,
            last: None,
            retired: Vec::new(),
        }
    }

    /// Checks that `writer` takes no turn back, and records its write.
    fn turn(&mut self, writer: &Holder, command: &Command, verdicts: &mut Verdicts) {
        verdicts.check(!self.retired.contains(writer), || {
            format!(
                "{} pid {} issued {} after another daemon had written: two writers interleaved",
                writer.host,
                writer.pid,
                describe_command(command)
            )
        });
        if let Some(last) = self.last.replace(writer.clone())
            && last != *writer
        {
            self.retired.push(last);
        }
    }

    /// Whether `writer` issues `command` at `true_time` in what is left of
    /// its gate after its lease was taken over.
    fn left_over(
        &self,
        writer: &Holder,
        command: &Command,
        true_time: Timestamp,
        world: &World,
    ) -> bool {
        let excused = match command {
            Command::TakeSnapshot(_) => LEASE_DEADLINE,
            _ => self.gate,
        };
        world
            .taken_from
            .as_ref()
            .is_some_and(|(from, at)| from == writer && true_time < *at + excused)
    }
}

impl Invariant for OneWriter {
    fn observe(&mut self, seen: &Observation, world: &World, verdicts: &mut Verdicts) {
        if let Observation::Landed { writer, object } = seen {
            // Dropped once its daemon may not write: it ran to its end and
            // landed after the daemon that took the lease over had written
            // (hostile trials: a snapshot, and a job object over the new
            // holder's version of the job).
            verdicts.check(!self.retired.contains(writer), || {
                format!(
                    "{} pid {}'s {object} landed after another daemon had written",
                    writer.host, writer.pid
                )
            });
            return;
        }
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
            .is_some_and(|wiped| *true_time < wiped + self.gate)
        {
            self.last = Some((*writer).clone());
            return;
        }
        self.turn(writer, command, verdicts);
        if self.left_over(writer, command, *true_time, world) {
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

/// The lease's cursor keeps up with the bucket while its holder writes.
///
/// A daemon that dies without giving the lease back (killed, its grace cut,
/// its giving back failed) leaves the cursor of its last renewal, and the
/// next start finds a copy put back in the meantime only if the copy's
/// counter is below it. So a holder that learns the bucket holds changes
/// past the cursor its lease last said issues a write of the lease saying
/// so within `bound`: a retry's wait after its last renewal, the next tick
/// that checks it, and a renewal in flight answered by its deadline. A
/// lease read or write that failed excuses the wait before it (the renewal
/// is retried on its own clock). Checked at each write the holder issues
/// to what daemons share: only a holder with its gate open issues one, and
/// a daemon that died issues none.
pub struct LeaseFollowsCursor {
    bound: Duration,
    holders: Vec<(Holder, Kept)>,
}

/// One holder's lease cursor, as far as the checker follows it.
#[derive(Debug, Default)]
struct Kept {
    /// What its last lease write issued said (cursor, highest change).
    issued: (Seq, Seq),
    /// What its core knew of last.
    known: (Seq, Seq),
    /// Since when its core has known of a cursor past `issued`.
    behind_since: Option<Timestamp>,
}

impl LeaseFollowsCursor {
    pub fn new(config: &Config) -> Self {
        LeaseFollowsCursor {
            bound: renewal(config.interval).retry + config.interval + LEASE_DEADLINE,
            holders: Vec::new(),
        }
    }

    fn kept(&mut self, writer: &Holder) -> &mut Kept {
        let at = match self.holders.iter().position(|(h, _)| h == writer) {
            Some(at) => at,
            None => {
                self.holders.push((writer.clone(), Kept::default()));
                self.holders.len() - 1
            }
        };
        &mut self.holders[at].1
    }
}

impl Invariant for LeaseFollowsCursor {
    /// Times are true times: the daemon times its wake-ups from its last
    /// call on the monotonic clock, so a clock stepped back no longer
    /// postpones its next tick by the step.
    fn observe(&mut self, seen: &Observation, _world: &World, verdicts: &mut Verdicts) {
        match *seen {
            Observation::LeaseKept {
                writer,
                progress,
                lease_trouble,
                true_time,
            } => {
                let kept = self.kept(writer);
                if lease_trouble {
                    kept.behind_since = None;
                }
                kept.known = progress;
                if !ahead(progress, kept.issued) {
                    // Gone back under it (a wiped bucket refilled from
                    // the start): the lease covers it.
                    kept.behind_since = None;
                } else if kept.behind_since.is_none() {
                    kept.behind_since = Some(true_time);
                }
            }
            Observation::LeaseWriteIssued {
                writer,
                progress,
                true_time,
            } => {
                let kept = self.kept(writer);
                kept.issued = progress;
                // Anything newer waits for the next renewal's turn.
                kept.behind_since = ahead(kept.known, progress).then_some(true_time);
            }
            Observation::SharedWrite {
                writer, true_time, ..
            } => {
                let bound = self.bound;
                let kept = self.kept(writer);
                let behind = kept
                    .behind_since
                    .filter(|since| true_time >= *since + bound);
                verdicts.check(behind.is_none(), || {
                    format!(
                        "{} pid {} writes at {true_time} with its lease saying cursor and \
                         highest change {:?} while it has known of {:?} for {} s",
                        writer.host,
                        writer.pid,
                        kept.issued,
                        kept.known,
                        true_time.duration_since(behind.expect("checked")).as_secs()
                    )
                });
            }
            _ => {}
        }
    }
}

/// Whether `known` is past `said` in its cursor or its highest change.
fn ahead(known: (Seq, Seq), said: (Seq, Seq)) -> bool {
    known.0 > said.0 || known.1 > said.1
}
