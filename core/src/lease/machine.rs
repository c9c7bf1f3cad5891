//! The lease, kept: taken, renewed, given back, and the write gate, as a
//! state machine in the shape of [`crate::Backup`].
//!
//! This used to live in the shell (`shell/src/lease.rs`): its take retry,
//! its gate, its renewal deadline and its failure kinds ran on the shell's
//! own timers, which the simulator never saw, so "two writers on one prefix" (what the lease
//! is for) had never been tried by it. Now the machine decides and the
//! driver carries out three commands, each answered with its input:
//! [`Command::ReadLease`], [`Command::WriteLease`] (always with a generation
//! precondition) and [`Command::ReleaseLease`].
//!
//! Taking: read the lease, decide ([`decide_claim`]), write it on the
//! generation read; a write that loses a race reads again at once; store
//! trouble is retried after a doubling, jittered wait (1 s to 1 min). A
//! lease someone else holds ends the machine ([`LeaseEnded::Refused`]).
//! Holding: renew every period with the daemon's state, and a retry's wait
//! after the last renewal once its cursor moved; a renewal refused by
//! its precondition reads the lease again and goes on only if it still names
//! us (the refused write had landed, its answer lost); otherwise, or if the
//! lease is gone, the lease is lost ([`LeaseEnded::Lost`]). The gate is open
//! from the sending of the last renewal that got through until half the
//! expiry later, by the local clock: another daemon may take the lease at
//! the expiry, by its own clock, so hosts must agree on the time within the
//! other half (`check` holds each to 5 s of the store's). A clock that reads
//! earlier than that sending stepped back: the gate closes and a renewal
//! goes at once. A snapshot waits for a renewal sent after it was asked
//! for ([`LeaseMachine::confirm`]): a daemon whose lease was taken
//! over (`--takeover`) learned it only at its next renewal, up to a minute,
//! and a snapshot of its database uploaded meanwhile was the newest a
//! restore found, dropping the new holder's changes (a hostile trial).
//! Releasing: once the daemon is quiet, write the lease at
//! its generation as given back, with the state the daemon leaves the
//! bucket in ([`Lease::released`]): the next start takes it at once and
//! reads that state's cursor.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{info, warn};

use super::{
    Claim, HeldElsewhere, Holder, LONGEST_FENCE, Lease, LeaseState, Renewal, decide_claim, renewal,
    still_ours, takeover_fence,
};
use crate::Seq;
use crate::machine::{Command, Failure, FailureKind};
use crate::timestamp::Timestamp;

/// The first wait after a failed take; it doubles to [`LONGEST_TAKE_WAIT`].
const FIRST_TAKE_WAIT: Duration = Duration::from_secs(1);
const LONGEST_TAKE_WAIT: Duration = Duration::from_secs(60);

/// The lease as the store holds it, and whether its holder's process runs,
/// as far as this machine can tell (`None`: another machine, or no lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLease {
    pub lease: Option<(Lease, i64)>,
    pub holder_runs: Option<bool>,
    /// The lease object holds something that is not a lease: its
    /// generation, and why it cannot be read.
    pub unreadable: Option<(i64, String)>,
}

/// How the lease ended for this daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEnded {
    /// Given back at a graceful stop.
    Released,
    /// Someone else holds it: the daemon must not run.
    Refused(HeldElsewhere),
    /// Taken over by `Some` holder, or removed by someone: stop.
    Lost(Option<Holder>),
    /// The lease cannot be taken as it is: the object is not a lease, or
    /// the store rejects the request (retrying would not help).
    Unusable(String),
}

/// Reads after the lease object's location: "gs://b/jobvault-lease.json
/// is held by ...".
impl std::fmt::Display for LeaseEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseEnded::Released => f.write_str("was given back"),
            LeaseEnded::Refused(held) => write!(f, "is {held}"),
            LeaseEnded::Lost(Some(by)) => write!(
                f,
                "was taken over by jobvault on host {} (pid {}); stopping",
                by.host, by.pid
            ),
            LeaseEnded::Lost(None) => f.write_str("was removed by someone else; stopping"),
            LeaseEnded::Unusable(why) => write!(f, "cannot be taken: {why}"),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Not held: a read is due at the time, or in flight, or a write.
    Taking {
        step: TakeStep,
        failures: u32,
        /// Why writes wait, once a try failed.
        waiting: Option<Failure>,
    },
    Held {
        lease: Lease,
        generation: i64,
        /// When the last write that got through was sent (local time).
        sent: Timestamp,
        next_renewal: Timestamp,
        step: HeldStep,
    },
    /// The lease given back is being written.
    Releasing,
    Ended(LeaseEnded),
}

/// What the lease says once given back: when, and what the daemon leaves
/// the bucket holding (its cursor, for the next start to compare).
#[derive(Debug, Clone)]
struct Farewell {
    at: Timestamp,
    state: LeaseState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TakeStep {
    Due(Timestamp),
    Reading,
    /// The lease written at `sent`, carrying `progress` on.
    Writing {
        sent: Timestamp,
        progress: Progress,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldStep {
    Idle,
    /// A renewal is out, sent at `sent`, saying `progress`.
    Renewing {
        sent: Timestamp,
        progress: Progress,
    },
    /// A renewal was refused by its precondition: is the lease still ours?
    /// Nothing is written until a read says so.
    Rereading,
    /// That read failed: read again at the next renewal.
    Doubting,
}

/// What a renewal says of the daemon's progress, kept once it lands to
/// tell when the next must go sooner than the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    caught_up: Option<Timestamp>,
    cursor_seq: Seq,
    highest_seq: Seq,
}

impl Progress {
    fn of(state: &LeaseState) -> Self {
        Progress {
            caught_up: state.caught_up,
            cursor_seq: state.cursor_seq,
            highest_seq: state.highest_seq,
        }
    }

    fn write_into(self, state: &mut LeaseState) {
        state.caught_up = self.caught_up;
        state.cursor_seq = self.cursor_seq;
        state.highest_seq = self.highest_seq;
    }
}

/// One daemon's lease on its bucket prefix.
#[derive(Debug)]
pub struct LeaseMachine {
    me: Holder,
    takeover: bool,
    renewal: Renewal,
    version: String,
    state: State,
    /// Give the lease back once nothing is in flight, saying this.
    releasing: Option<Farewell>,
    /// Giving it back failed: it was found gone or replaced, or the store
    /// did not say.
    release_failed: bool,
    /// Lease writes sent (takes and renewals; one is out at a time), and
    /// how many had been when the last that got through was sent: what a
    /// [`Confirmation`] counts.
    sends: u64,
    confirmed: u64,
    /// A renewal is wanted at once, asked for at this time.
    wanted: Option<Timestamp>,
    /// Taken over from a holder that may still write: nothing is written
    /// before this time ([`super::takeover_fence`]). Written into the
    /// lease, so that a restart or a start after a stop waits it out too.
    fence: Option<Timestamp>,
}

/// A renewal asked for ([`LeaseMachine::confirm`]): confirmed once one sent
/// after the asking got through. Counted, not timed: by times, a clock
/// stepped back held a snapshot until it caught up again (a review).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation(u64);

impl LeaseMachine {
    /// A lease for `me`, renewed as `interval` asks ([`renewal`]), taken
    /// over from a live holder with `takeover`; `version` is written into
    /// it. The first read is due at `now`.
    pub fn new(
        me: Holder,
        interval: Duration,
        takeover: bool,
        version: &str,
        now: Timestamp,
    ) -> Self {
        LeaseMachine {
            me,
            takeover,
            renewal: renewal(interval),
            version: version.to_owned(),
            state: State::Taking {
                step: TakeStep::Due(now),
                failures: 0,
                waiting: None,
            },
            releasing: None,
            release_failed: false,
            sends: 0,
            confirmed: 0,
            wanted: None,
            fence: None,
        }
    }

    pub fn is_held(&self) -> bool {
        matches!(self.state, State::Held { .. })
    }

    /// Held, and no write of a holder it was taken over from can come any
    /// more: the daemon may work.
    pub fn is_writing(&self) -> bool {
        self.is_held() && self.fence.is_none()
    }

    pub fn ended(&self) -> Option<&LeaseEnded> {
        match &self.state {
            State::Ended(ended) => Some(ended),
            _ => None,
        }
    }

    /// Nothing in flight, and nothing more to do once stopping.
    pub fn is_quiet(&self) -> bool {
        matches!(self.state, State::Ended(_))
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.state {
            State::Taking {
                step: TakeStep::Due(at),
                ..
            } => Some(*at),
            State::Held {
                next_renewal,
                step: HeldStep::Idle,
                ..
            } => Some(
                [self.wanted, self.fence]
                    .into_iter()
                    .flatten()
                    .fold(*next_renewal, Timestamp::min),
            ),
            State::Held {
                next_renewal,
                step: HeldStep::Doubting,
                ..
            } => Some(*next_renewal),
            _ => None,
        }
    }

    /// Asks at `now` for a renewal sent from now on, at once (after the
    /// one in flight, if any); [`Self::confirmed`] says when one got
    /// through. A renewal that fails is tried again at the retry's wait, as
    /// any.
    pub fn confirm(&mut self, now: Timestamp) -> Confirmation {
        self.wanted.get_or_insert(now);
        Confirmation(self.sends)
    }

    /// Whether the lease is held and a renewal sent after `asked` got
    /// through: nobody had taken it over before then.
    pub fn confirmed(&self, asked: Confirmation) -> bool {
        self.is_held() && self.confirmed > asked.0
    }

    /// Whether writes under way must be dropped at `now`: the lease is lost
    /// (taken over, gone) or went unrenewed for half its expiry, so another
    /// daemon may write. Not while a refused renewal is read again, nor
    /// after a clock stepped back: the gate closes then, but the lease may
    /// still be ours.
    pub fn lost_or_lapsed(&self, now: Timestamp) -> bool {
        match &self.state {
            State::Ended(LeaseEnded::Lost(_)) => true,
            State::Held { sent, .. } => now >= self.gate_closes(*sent),
            _ => false,
        }
    }

    /// When the gate opened by a renewal sent at `sent` closes: half the
    /// expiry later, by the local clock.
    fn gate_closes(&self, sent: Timestamp) -> Timestamp {
        sent + self.renewal.expiry / 2
    }

    /// Whether the daemon may write to the store at `now`, or why not.
    pub fn may_write(&self, now: Timestamp) -> Result<(), Failure> {
        if let Some(fence) = self.fence.filter(|_| self.is_held()) {
            return Err(Failure::new(
                FailureKind::Transient,
                format!(
                    "not written: the lease was taken over from a daemon that may still write \
                     until {fence}"
                ),
            ));
        }
        match &self.state {
            State::Held {
                step: HeldStep::Rereading | HeldStep::Doubting,
                ..
            } => Err(Failure::new(
                FailureKind::Transient,
                "not written: a renewal of the lease was refused; checking whether it is still ours",
            )),
            State::Held { sent, .. } if *sent <= now && now < self.gate_closes(*sent) => Ok(()),
            State::Held { sent, .. } => Err(Failure::new(
                FailureKind::Transient,
                format!(
                    "not written: the lease could not be renewed for {} s",
                    now.duration_since(*sent).as_secs()
                ),
            )),
            State::Taking { waiting, .. } => {
                let kind = waiting
                    .as_ref()
                    .map_or(FailureKind::Transient, |w| match w.kind {
                        kind if kind.is_refusal() => kind,
                        _ => FailureKind::Transient,
                    });
                let why = waiting
                    .as_ref()
                    .map_or_else(String::new, |w| format!(" ({w})"));
                Err(Failure::new(
                    kind,
                    format!("not written: jobvault does not hold the lease yet{why}"),
                ))
            }
            State::Releasing | State::Ended(_) => Err(Failure::new(
                FailureKind::Conflict,
                "not written: jobvault no longer holds the lease",
            )),
        }
    }

    /// Runs what is due at `now`; `content` is what a renewal writes.
    pub fn handle_timeout(
        &mut self,
        now: Timestamp,
        content: LeaseState,
        out: &mut VecDeque<Command>,
    ) {
        // A clock stepped back does not stretch the wait past the longest.
        self.fence = self.fence.map(|fence| fence.min(now + LONGEST_FENCE));
        if self.fence.is_some_and(|fence| now >= fence) {
            info!(
                "the daemon the lease was taken over from can write no more; writing to the store"
            );
            self.fence = None;
        }
        match &mut self.state {
            State::Taking { step, .. } => {
                if let TakeStep::Due(at) = *step
                    && now >= at
                {
                    *step = TakeStep::Reading;
                    out.push_back(Command::ReadLease);
                }
            }
            State::Held {
                lease,
                generation,
                sent,
                next_renewal,
                step,
            } => {
                // A clock stepped back makes the last sending look future:
                // renew now rather than after the jump.
                *next_renewal = (*next_renewal).min(now + self.renewal.every);
                if *step == HeldStep::Doubting && now >= *next_renewal {
                    *step = HeldStep::Rereading;
                    *next_renewal = now + self.renewal.retry;
                    out.push_back(Command::ReadLease);
                } else if *step == HeldStep::Idle
                    && (now >= *next_renewal
                        || now < *sent
                        || self.wanted.is_some()
                        || first_caught_up(&lease.state, &content)
                        || (progress_moved(&lease.state, &content)
                            && now >= *sent + self.renewal.retry))
                {
                    *step = HeldStep::Renewing {
                        sent: now,
                        progress: Progress::of(&content),
                    };
                    self.wanted = None;
                    self.sends += 1;
                    // Never given back while held, whatever a read of it
                    // said (one edited by hand let another daemon in).
                    let renewed = Lease {
                        renewed: now,
                        state: LeaseState {
                            version: self.version.clone(),
                            fenced_until: self.fence,
                            ..content
                        },
                        released: None,
                        ..lease.clone()
                    };
                    out.push_back(Command::WriteLease {
                        lease: renewed,
                        if_generation: *generation,
                    });
                }
            }
            State::Releasing | State::Ended(_) => {}
        }
    }

    /// Once the daemon is quiet: give the lease back at `now`, leaving
    /// `state` in it (or, if it is not held, just end).
    pub fn release(&mut self, now: Timestamp, state: LeaseState, out: &mut VecDeque<Command>) {
        self.releasing = Some(Farewell { at: now, state });
        self.release_if_idle(out);
    }

    /// Takes in a [`Command::ReadLease`] answer; whether one was awaited.
    pub fn on_read(
        &mut self,
        now: Timestamp,
        result: Result<FoundLease, Failure>,
        out: &mut VecDeque<Command>,
    ) -> bool {
        let taking = matches!(
            self.state,
            State::Taking {
                step: TakeStep::Reading,
                ..
            }
        );
        let rereading = matches!(
            self.state,
            State::Held {
                step: HeldStep::Rereading,
                ..
            }
        );
        if taking {
            self.set_take_step(TakeStep::Due(now));
            match result {
                _ if self.releasing.is_some() => self.state = State::Ended(LeaseEnded::Released),
                Ok(found) => self.decide(now, found, out),
                Err(failure) => self.take_failed(now, failure),
            }
        } else if rereading {
            self.on_reread(result);
            self.release_if_idle(out);
        }
        taking || rereading
    }

    /// A renewal was refused by its precondition and the lease read again:
    /// still ours if it names us (the refused write had landed).
    fn on_reread(&mut self, result: Result<FoundLease, Failure>) {
        let State::Held {
            lease,
            generation,
            step,
            ..
        } = &mut self.state
        else {
            return;
        };
        *step = HeldStep::Idle;
        match result {
            Ok(FoundLease {
                lease: Some((current, current_generation)),
                ..
            }) if still_ours(Some(&current), &self.me) => {
                *lease = current;
                *generation = current_generation;
            }
            Ok(found) => {
                let by = found.lease.map(|(lease, _)| lease.holder);
                self.state = State::Ended(LeaseEnded::Lost(by));
            }
            Err(failure) => {
                *step = HeldStep::Doubting;
                warn!(error = %failure, "cannot read the lease after a refused renewal; retrying");
            }
        }
    }

    /// Takes in a [`Command::WriteLease`] answer; whether one was awaited.
    pub fn on_written(
        &mut self,
        now: Timestamp,
        result: Result<i64, Failure>,
        out: &mut VecDeque<Command>,
    ) -> bool {
        match self.state {
            State::Taking {
                step: TakeStep::Writing { sent, progress },
                ..
            } => match result {
                Ok(generation) => self.took(generation, sent, progress),
                Err(failure) if failure.kind == FailureKind::Conflict => {
                    // Someone wrote it since the read: read again now.
                    self.set_take_step(TakeStep::Reading);
                    out.push_back(Command::ReadLease);
                }
                Err(failure) => self.take_failed(now, failure),
            },
            State::Held {
                step: HeldStep::Renewing { sent, progress },
                ..
            } => self.renewed(sent, progress, result, out),
            _ => return false,
        }
        self.release_if_idle(out);
        true
    }

    fn renewed(
        &mut self,
        sent: Timestamp,
        progress: Progress,
        result: Result<i64, Failure>,
        out: &mut VecDeque<Command>,
    ) {
        let State::Held {
            lease,
            generation,
            sent: last_sent,
            next_renewal,
            step,
        } = &mut self.state
        else {
            return;
        };
        *step = HeldStep::Idle;
        *next_renewal = sent + self.renewal.retry;
        match result {
            Ok(written) => {
                self.confirmed = self.sends;
                *next_renewal = sent + self.renewal.every;
                *generation = written;
                *last_sent = sent;
                lease.renewed = sent;
                progress.write_into(&mut lease.state);
            }
            Err(failure) if failure.kind == FailureKind::Conflict => {
                *step = HeldStep::Rereading;
                out.push_back(Command::ReadLease);
            }
            Err(failure) => warn!(error = %failure, "renewing the lease failed; retrying"),
        }
    }

    pub fn on_released(&mut self, result: Result<(), Failure>) -> bool {
        if !matches!(self.state, State::Releasing) {
            return false;
        }
        if let Err(failure) = result {
            warn!(error = %failure, "could not give the lease back; it expires by itself");
            self.release_failed = true;
        }
        self.state = State::Ended(LeaseEnded::Released);
        true
    }

    /// The lease was found gone (the prefix wiped) or replaced (another
    /// holder) while held, or giving it back failed, so that it was not seen
    /// to be ours at the end: what was uploaded may not be there any more.
    /// A renewal once a minute finds a wipe that late, so a stop may be what
    /// finds it, and a giving back that failed (a 429) must not hide it.
    pub fn found_gone(&self) -> bool {
        self.release_failed || matches!(self.state, State::Ended(LeaseEnded::Lost(_)))
    }

    fn decide(&mut self, now: Timestamp, found: FoundLease, out: &mut VecDeque<Command>) {
        if let Some((generation, why)) = &found.unreadable {
            if !self.takeover {
                let why = format!(
                    "it holds something that is not a jobvault lease ({why}); \
                     pass --takeover to replace it"
                );
                self.state = State::Ended(LeaseEnded::Unusable(why));
                return;
            }
            warn!(error = %why, "replacing a lease object that is not a lease (--takeover)");
            return self.write_taken(now, *generation, None, out);
        }
        let runs_here = found.lease.as_ref().and_then(|(lease, _)| {
            let holder = &lease.holder;
            self.me
                .same_machine(holder)
                .then(|| !self.me.outlived(holder) && found.holder_runs == Some(true))
        });
        let found_lease = found
            .lease
            .as_ref()
            .map(|(lease, generation)| (lease, *generation));
        let generation = match decide_claim(found_lease, &self.me, now, runs_here, self.takeover) {
            Claim::Create => {
                self.fence = None;
                0
            }
            Claim::Replace { generation, why } => {
                if let Some((old, _)) = &found.lease {
                    info!(holder = %format!("{} pid {}", old.holder.host, old.holder.pid), why, "taking over the lease");
                    // A take whose answer was lost reads its own lease
                    // back, with the fence it wrote.
                    self.fence = takeover_fence(old, now, runs_here);
                }
                generation
            }
            Claim::Refuse(held) => {
                self.state = State::Ended(LeaseEnded::Refused(held));
                return;
            }
        };
        let left = found.lease.as_ref().map(|(lease, _)| &lease.state);
        self.write_taken(now, generation, left, out);
    }

    /// Writes the lease for this daemon over the one at `generation`, which
    /// `left` what the bucket holds: carried on until this daemon's first
    /// renewal says its own. Written as nothing, a daemon killed before that
    /// renewal erased it, and a copy put back then went unnoticed (a review).
    fn write_taken(
        &mut self,
        now: Timestamp,
        generation: i64,
        left: Option<&LeaseState>,
        out: &mut VecDeque<Command>,
    ) {
        let progress = Progress {
            caught_up: None,
            cursor_seq: left.map_or(0, |state| state.cursor_seq),
            highest_seq: left.map_or(0, LeaseState::bucket_may_hold),
        };
        let mut state = LeaseState {
            version: self.version.clone(),
            fenced_until: self.fence,
            ..LeaseState::default()
        };
        progress.write_into(&mut state);
        let lease = Lease {
            holder: self.me.clone(),
            renewed: now,
            expiry: self.renewal.expiry,
            state,
            released: None,
        };
        self.set_take_step(TakeStep::Writing {
            sent: now,
            progress,
        });
        self.sends += 1;
        out.push_back(Command::WriteLease {
            lease,
            if_generation: generation,
        });
    }

    fn took(&mut self, generation: i64, sent: Timestamp, progress: Progress) {
        self.confirmed = self.sends;
        self.fence = self.fence.filter(|fence| *fence > sent);
        match self.fence {
            Some(until) => warn!(
                until = %until,
                "took the lease over from a daemon that may still write (until its next renewal \
                 is refused): writing nothing to the store until then"
            ),
            None => info!("took the lease; writing to the store"),
        }
        let mut state = LeaseState::default();
        progress.write_into(&mut state);
        self.state = State::Held {
            lease: Lease {
                holder: self.me.clone(),
                renewed: sent,
                expiry: self.renewal.expiry,
                state,
                released: None,
            },
            generation,
            sent,
            next_renewal: sent + self.renewal.every,
            step: HeldStep::Idle,
        };
    }

    /// A read or write of a take failed: try again after a doubling wait,
    /// jittered by the time (the core draws no random numbers). A request
    /// the store rejects, or a lease object that is not a lease, ends the
    /// machine: trying again would not help.
    fn take_failed(&mut self, now: Timestamp, failure: Failure) {
        if failure.kind == FailureKind::Rejected {
            self.state = State::Ended(LeaseEnded::Unusable(failure.message));
            return;
        }
        let State::Taking {
            step,
            failures,
            waiting,
        } = &mut self.state
        else {
            return;
        };
        *failures += 1;
        let wait = FIRST_TAKE_WAIT
            .saturating_mul(1 << (*failures - 1).min(10))
            .min(LONGEST_TAKE_WAIT);
        let jitter = wait.mul_f64((now.unix_nanos().rem_euclid(1000) as f64) / 2000.0);
        *step = TakeStep::Due(now + wait - jitter);
        if waiting.as_ref().is_none_or(|w| w.kind != failure.kind) {
            if failure.kind.is_refusal() {
                tracing::error!(error = %failure, "the store refuses jobvault's lease: check that the bucket exists and that the service account has roles/storage.objectAdmin on it; nothing is written until then");
            } else {
                warn!(error = %failure, "cannot take the lease yet; nothing is written until then");
            }
        }
        *waiting = Some(failure);
    }

    fn set_take_step(&mut self, to: TakeStep) {
        if let State::Taking { step, .. } = &mut self.state {
            *step = to;
        }
    }

    fn release_if_idle(&mut self, out: &mut VecDeque<Command>) {
        let Some(farewell) = &self.releasing else {
            return;
        };
        match &self.state {
            State::Held {
                lease,
                generation,
                step: HeldStep::Idle,
                ..
            } => {
                out.push_back(Command::ReleaseLease {
                    lease: Lease {
                        renewed: farewell.at,
                        released: Some(farewell.at),
                        state: LeaseState {
                            version: self.version.clone(),
                            fenced_until: self.fence,
                            ..farewell.state.clone()
                        },
                        ..lease.clone()
                    },
                    if_generation: *generation,
                });
                self.state = State::Releasing;
            }
            State::Taking {
                step: TakeStep::Due(_),
                ..
            } => self.state = State::Ended(LeaseEnded::Released),
            _ => {}
        }
    }
}

/// Whether the daemon has just caught up for the first time since the
/// lease was written: renewed at once then, so that `status`, which reads
/// the state from the lease, does not say "not caught up yet" for the
/// minute until the next renewal.
fn first_caught_up(written: &LeaseState, now: &LeaseState) -> bool {
    written.caught_up.is_none() && now.caught_up.is_some()
}

/// Whether the daemon's cursor moved, or the changes the bucket may hold
/// went past, what the lease last said: a renewal then goes a retry's wait
/// after the last, not a minute, since a daemon that dies without giving
/// the lease back leaves them for the next start to find a copy put back
/// by. At a minute's staleness a copy taken up to a minute before a crash
/// went unnoticed, and a restore mixed it with the versions it never held.
/// A cursor gone down (a copy found, read again from its cursor) is said
/// too: left above the database's, a crash had the start find the copy
/// again.
fn progress_moved(written: &LeaseState, now: &LeaseState) -> bool {
    now.cursor_seq != written.cursor_seq || now.highest_seq > written.highest_seq
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{at, holder};
    use super::*;

    /// A machine for host `a` with a 10 s interval: renewals every 60 s,
    /// retried after 10 s, an expiry of 180 s, so the gate stays open 90 s
    /// after a renewal.
    fn machine() -> (LeaseMachine, VecDeque<Command>) {
        let lease = LeaseMachine::new(holder("a", 1), Duration::from_secs(10), false, "1.0", at(0));
        (lease, VecDeque::new())
    }

    fn step(lease: &mut LeaseMachine, now: Timestamp, out: &mut VecDeque<Command>) -> Vec<Command> {
        lease.handle_timeout(now, LeaseState::default(), out);
        out.drain(..).collect()
    }

    fn found(lease: Option<(Lease, i64)>) -> Result<FoundLease, Failure> {
        Ok(FoundLease {
            lease,
            holder_runs: None,
            unreadable: None,
        })
    }

    fn held_by(holder: Holder, renewed: Timestamp) -> Lease {
        Lease {
            holder,
            renewed,
            expiry: Duration::from_secs(60),
            state: LeaseState::default(),
            released: None,
        }
    }

    /// Takes the lease at `at(0)` at generation 7.
    fn taken() -> (LeaseMachine, VecDeque<Command>) {
        let (mut lease, mut out) = machine();
        assert_eq!(step(&mut lease, at(0), &mut out), [Command::ReadLease]);
        assert!(lease.on_read(at(0), found(None), &mut out));
        let Some(Command::WriteLease {
            if_generation: 0, ..
        }) = out.pop_front()
        else {
            panic!("no lease: created only if still none");
        };
        assert!(lease.on_written(at(0), Ok(7), &mut out));
        assert!(lease.is_held());
        (lease, out)
    }

    #[test]
    fn a_lease_is_taken_renewed_and_given_back() {
        let (mut lease, mut out) = taken();
        assert_eq!(lease.may_write(at(1)), Ok(()));
        assert!(step(&mut lease, at(30), &mut out).is_empty(), "not due yet");
        let renewal = step(&mut lease, at(60), &mut out);
        let [
            Command::WriteLease {
                lease: written,
                if_generation: 7,
            },
        ] = &renewal[..]
        else {
            panic!("{renewal:?}");
        };
        assert_eq!(written.renewed, at(60));
        lease.on_written(at(60), Ok(8), &mut out);
        assert!(
            step(&mut lease, at(70), &mut out).is_empty(),
            "renewed a minute on"
        );
        assert_eq!(
            lease.may_write(at(149)),
            Ok(()),
            "open 90 s after the renewal's sending"
        );
        let left = LeaseState {
            cursor_seq: 42,
            ..LeaseState::default()
        };
        lease.release(at(149), left, &mut out);
        let released = out.drain(..).collect::<Vec<_>>();
        let [
            Command::ReleaseLease {
                lease: given_back,
                if_generation: 8,
            },
        ] = &released[..]
        else {
            panic!("{released:?}");
        };
        assert_eq!(given_back.released, Some(at(149)));
        assert_eq!(given_back.state.cursor_seq, 42, "the cursor it leaves");
        assert_eq!(given_back.holder, holder("a", 1));
        assert!(lease.may_write(at(150)).is_err());
        assert!(lease.on_released(Ok(())));
        assert_eq!(lease.ended(), Some(&LeaseEnded::Released));
    }

    #[test]
    fn a_failed_renewal_is_tried_again_soon_and_the_gate_closes_half_an_expiry_after_the_last_that_got_through()
     {
        let (mut lease, mut out) = taken();
        for t in [60, 70, 80] {
            assert_eq!(step(&mut lease, at(t - 1), &mut out), []);
            let renewal = step(&mut lease, at(t), &mut out);
            assert!(
                matches!(renewal[..], [Command::WriteLease { .. }]),
                "{t}: {renewal:?}"
            );
            lease.on_written(
                at(t),
                Err(Failure::new(FailureKind::Transient, "503")),
                &mut out,
            );
        }
        assert_eq!(lease.may_write(at(89)), Ok(()));
        let closed = lease.may_write(at(90)).unwrap_err();
        assert!(
            closed.message.contains("could not be renewed for 90 s"),
            "{closed}"
        );
        // A renewal that gets through opens it again.
        step(&mut lease, at(90), &mut out);
        lease.on_written(at(90), Ok(9), &mut out);
        assert_eq!(lease.may_write(at(91)), Ok(()));
    }

    #[test]
    fn the_first_catch_up_is_written_at_once_not_a_minute_later() {
        let (mut lease, mut out) = taken();
        let caught_up = LeaseState {
            caught_up: Some(at(3)),
            ..LeaseState::default()
        };
        lease.handle_timeout(at(3), caught_up.clone(), &mut out);
        let Some(Command::WriteLease { lease: written, .. }) = out.pop_front() else {
            panic!("no renewal: {out:?}");
        };
        assert_eq!(written.state.caught_up, Some(at(3)));
        lease.on_written(at(3), Ok(8), &mut out);
        lease.handle_timeout(at(4), caught_up, &mut out);
        assert!(
            out.is_empty(),
            "once written, the next renewal is a minute on: {out:?}"
        );
    }

    /// A daemon killed without giving the lease back leaves the cursor of
    /// its last renewal: a copy put back then whose counter is at or above
    /// it is not found. So a cursor that moved is written within a retry's
    /// wait (10 s here), not the renewal's minute; one that did not move
    /// waits the minute.
    #[test]
    fn a_cursor_that_moved_is_written_within_a_retry_not_a_minute() {
        let (mut lease, mut out) = taken();
        let at_seq = |seq| LeaseState {
            cursor_seq: seq,
            ..LeaseState::default()
        };
        lease.handle_timeout(at(5), at_seq(40), &mut out);
        assert!(out.is_empty(), "not before the retry's wait: {out:?}");
        lease.handle_timeout(at(10), at_seq(40), &mut out);
        let Some(Command::WriteLease { lease: written, .. }) = out.pop_front() else {
            panic!("no renewal for a cursor that moved: {out:?}");
        };
        assert_eq!(written.state.cursor_seq, 40);
        lease.on_written(at(10), Ok(8), &mut out);
        lease.handle_timeout(at(25), at_seq(40), &mut out);
        assert!(
            out.is_empty(),
            "written, the cursor waits the minute: {out:?}"
        );
        lease.handle_timeout(at(25), at_seq(41), &mut out);
        assert!(
            matches!(out.pop_front(), Some(Command::WriteLease { lease, .. }) if lease.state.cursor_seq == 41),
            "moved again: written again"
        );
        lease.on_written(at(25), Ok(9), &mut out);
        // Gone down (a copy found, read again from its cursor): left above
        // the database's, a crash had the next start find the copy again.
        lease.handle_timeout(at(35), at_seq(30), &mut out);
        assert!(
            matches!(out.pop_front(), Some(Command::WriteLease { lease, .. }) if lease.state.cursor_seq == 30),
            "gone down: written too"
        );
    }

    /// A confirmation wants a renewal sent after it: at once when none is
    /// out, after the one in flight when that was sent before. One that
    /// fails is tried again at the retry's wait, not at once (by times, a
    /// failing store was asked again as fast as it answered: a review);
    /// and a clock stepped back does not hold it up.
    #[test]
    fn a_confirmation_wants_a_renewal_sent_after_it() {
        let (mut lease, mut out) = taken();
        let asked = lease.confirm(at(20));
        assert!(!lease.confirmed(asked));
        assert_eq!(lease.poll_timeout(), Some(at(20)), "due now, not at 60 s");
        let first = step(&mut lease, at(20), &mut out);
        assert!(
            matches!(&first[..], [Command::WriteLease { .. }]),
            "{first:?}"
        );
        let later = lease.confirm(at(21));
        lease.on_written(at(22), Ok(8), &mut out);
        assert!(lease.confirmed(asked));
        assert!(!lease.confirmed(later), "that one was sent before");
        let second = step(&mut lease, at(22), &mut out);
        assert!(
            matches!(
                &second[..],
                [Command::WriteLease {
                    if_generation: 8,
                    ..
                }]
            ),
            "{second:?}"
        );
        lease.on_written(
            at(23),
            Err(Failure::new(FailureKind::Transient, "503")),
            &mut out,
        );
        assert!(!lease.confirmed(later));
        assert_eq!(
            lease.poll_timeout(),
            Some(at(32)),
            "retried at the retry's wait"
        );
        assert!(step(&mut lease, at(23), &mut out).is_empty());
        // The clock steps back an hour: the retry goes at once, and counts.
        let retry = step(&mut lease, at(-3600), &mut out);
        assert!(
            matches!(&retry[..], [Command::WriteLease { .. }]),
            "{retry:?}"
        );
        lease.on_written(at(-3600), Ok(9), &mut out);
        assert!(lease.confirmed(later));
    }

    /// A lease taken over carries what the last one said the bucket holds
    /// until this daemon's first renewal says its own: written as nothing,
    /// a daemon killed in between erased it, and a copy put back then went
    /// unnoticed.
    #[test]
    fn a_lease_taken_carries_on_what_the_one_it_replaces_said() {
        let (mut lease, mut out) = machine();
        step(&mut lease, at(0), &mut out);
        let mut left = held_by(holder("b", 2), at(-600));
        left.released = Some(at(-600));
        left.state.cursor_seq = 40;
        left.state.highest_seq = 45;
        assert!(lease.on_read(at(0), found(Some((left, 3))), &mut out));
        let Some(Command::WriteLease { lease: written, .. }) = out.pop_front() else {
            panic!("{out:?}");
        };
        assert_eq!(
            (written.state.cursor_seq, written.state.highest_seq),
            (40, 45)
        );
        assert_eq!(written.state.caught_up, None, "not the last holder's");
        lease.on_written(at(0), Ok(4), &mut out);
        let same = LeaseState {
            cursor_seq: 40,
            highest_seq: 45,
            ..LeaseState::default()
        };
        lease.handle_timeout(at(20), same, &mut out);
        assert!(out.is_empty(), "nothing moved: {out:?}");
    }

    #[test]
    fn a_clock_stepped_back_closes_the_gate_and_renews_at_once() {
        let (mut lease, mut out) = taken();
        assert!(lease.may_write(at(-100)).is_err());
        let renewal = step(&mut lease, at(-100), &mut out);
        assert!(
            matches!(renewal[..], [Command::WriteLease { .. }]),
            "{renewal:?}"
        );
        lease.on_written(at(-100), Ok(8), &mut out);
        assert_eq!(lease.may_write(at(-99)), Ok(()));
    }

    /// A lease that names us but reads as given back (edited by hand) is
    /// renewed as held: left so, another daemon took it while we wrote.
    #[test]
    fn a_renewal_never_writes_the_lease_as_given_back() {
        let (mut lease, mut out) = taken();
        step(&mut lease, at(60), &mut out);
        lease.on_written(
            at(60),
            Err(Failure::new(FailureKind::Conflict, "412")),
            &mut out,
        );
        out.clear();
        let mut edited = held_by(holder("a", 1), at(60));
        edited.released = Some(at(61));
        lease.on_read(at(62), found(Some((edited, 9))), &mut out);
        assert!(lease.is_held());
        let renewal = step(&mut lease, at(70), &mut out);
        let [Command::WriteLease { lease: written, .. }] = &renewal[..] else {
            panic!("{renewal:?}");
        };
        assert_eq!(written.released, None);
    }

    #[test]
    fn a_refused_renewal_goes_on_only_while_the_lease_names_us() {
        let (mut lease, mut out) = taken();
        step(&mut lease, at(60), &mut out);
        lease.on_written(
            at(60),
            Err(Failure::new(FailureKind::Conflict, "412")),
            &mut out,
        );
        assert_eq!(out.pop_front(), Some(Command::ReadLease));
        assert!(
            lease.may_write(at(60)).is_err(),
            "nothing written while in doubt"
        );
        lease.on_read(
            at(60),
            Err(Failure::new(FailureKind::Transient, "503")),
            &mut out,
        );
        assert!(lease.may_write(at(61)).is_err(), "still in doubt");
        assert_eq!(step(&mut lease, at(70), &mut out), [Command::ReadLease]);
        let ours = held_by(holder("a", 1), at(60));
        lease.on_read(at(70), found(Some((ours, 9))), &mut out);
        assert!(lease.is_held());
        assert_eq!(lease.may_write(at(70)), Ok(()));
        step(&mut lease, at(80), &mut out);
        lease.on_written(
            at(80),
            Err(Failure::new(FailureKind::Conflict, "412")),
            &mut out,
        );
        out.clear();
        let theirs = held_by(holder("b", 2), at(79));
        lease.on_read(at(80), found(Some((theirs, 10))), &mut out);
        assert_eq!(lease.ended(), Some(&LeaseEnded::Lost(Some(holder("b", 2)))));
        assert!(lease.may_write(at(81)).is_err());
    }

    #[test]
    fn a_live_holder_refuses_and_a_race_lost_reads_again() {
        let (mut lease, mut out) = machine();
        step(&mut lease, at(0), &mut out);
        lease.on_read(at(0), found(None), &mut out);
        out.clear();
        lease.on_written(
            at(0),
            Err(Failure::new(FailureKind::Conflict, "412")),
            &mut out,
        );
        assert_eq!(
            out.pop_front(),
            Some(Command::ReadLease),
            "lost the race: read again"
        );
        let theirs = held_by(holder("b", 2), at(0));
        lease.on_read(at(1), found(Some((theirs, 1))), &mut out);
        let Some(LeaseEnded::Refused(held)) = lease.ended() else {
            panic!("{:?}", lease.ended());
        };
        assert_eq!(held.holder, holder("b", 2));
    }

    /// Taken over from a live holder, nothing is written until its gate has
    /// closed: half its expiry after its last renewal, and the clocks'
    /// allowance. The lease is renewed meanwhile.
    #[test]
    fn a_takeover_writes_nothing_until_the_old_holders_gate_has_closed() {
        let lease_taking_over = |found_lease: Lease, holder_runs| {
            let mut lease =
                LeaseMachine::new(holder("a", 1), Duration::from_secs(10), true, "1.0", at(0));
            let mut out = VecDeque::new();
            step(&mut lease, at(40), &mut out);
            let found = FoundLease {
                lease: Some((found_lease, 3)),
                holder_runs,
                unreadable: None,
            };
            lease.on_read(at(40), Ok(found), &mut out);
            out.clear();
            lease.on_written(at(40), Ok(4), &mut out);
            assert!(lease.is_held());
            lease
        };
        // Renewed at 30 s, lasting 60: its gate is open until 60 s, and the
        // clocks may disagree by 10 s more.
        let mut lease = lease_taking_over(held_by(holder("b", 2), at(30)), None);
        assert!(!lease.is_writing());
        assert!(lease.may_write(at(41)).is_err());
        assert_eq!(lease.poll_timeout(), Some(at(70)), "woken at the fence");
        let mut out = VecDeque::new();
        assert!(step(&mut lease, at(69), &mut out).is_empty());
        assert!(!lease.is_writing());
        let renewal = step(&mut lease, at(70), &mut out);
        assert!(renewal.is_empty(), "renewed at 100 s: {renewal:?}");
        assert!(lease.is_writing());
        assert_eq!(lease.may_write(at(70)), Ok(()));

        // A take whose answer was lost reads its own lease next: the fence
        // of the one it replaced stands (seed 52 of the fault's first runs).
        let mut lease =
            LeaseMachine::new(holder("a", 1), Duration::from_secs(10), true, "1.0", at(0));
        let mut out = VecDeque::new();
        step(&mut lease, at(40), &mut out);
        let theirs = held_by(holder("b", 2), at(30));
        lease.on_read(at(40), found(Some((theirs, 3))), &mut out);
        let Some(Command::WriteLease { lease: ours, .. }) = out.pop_front() else {
            panic!("no take: {out:?}");
        };
        lease.on_written(
            at(40),
            Err(Failure::new(FailureKind::Transient, "reset")),
            &mut out,
        );
        step(&mut lease, at(42), &mut out);
        let own = FoundLease {
            lease: Some((ours, 4)),
            holder_runs: Some(true),
            unreadable: None,
        };
        lease.on_read(at(42), Ok(own), &mut out);
        out.clear();
        lease.on_written(at(42), Ok(5), &mut out);
        assert!(lease.is_held());
        assert!(!lease.is_writing(), "the old holder's fence stands");

        // A holder that ran here and runs no more writes nothing: no fence.
        let gone = held_by(holder("a", 9), at(30));
        assert!(lease_taking_over(gone, Some(false)).is_writing());
        // Nor one whose gate closed already, with the allowance.
        let stale = held_by(holder("b", 2), at(0));
        assert!(lease_taking_over(stale, None).is_writing());
    }

    #[test]
    fn store_trouble_while_taking_is_retried_later_and_says_why_writes_wait() {
        let (mut lease, mut out) = machine();
        step(&mut lease, at(0), &mut out);
        let refused = Failure::new(FailureKind::Permission, "403 Forbidden");
        lease.on_read(at(0), Err(refused), &mut out);
        let waiting = lease.may_write(at(0)).unwrap_err();
        assert_eq!(waiting.kind, FailureKind::Permission);
        assert!(waiting.message.contains("403 Forbidden"), "{waiting}");
        let retry = lease.poll_timeout().unwrap();
        assert!(retry > at(0) && retry <= at(1), "{retry}");
        assert_eq!(step(&mut lease, retry, &mut out), [Command::ReadLease]);
        lease.on_read(
            retry,
            Err(Failure::new(FailureKind::Transient, "503")),
            &mut out,
        );
        let second = lease.poll_timeout().unwrap();
        assert!(
            second.duration_since(retry) > Duration::from_secs(1),
            "the wait doubles"
        );
    }

    #[test]
    fn a_lease_object_that_is_not_a_lease_is_replaced_only_with_takeover() {
        let corrupt = || {
            Ok(FoundLease {
                lease: None,
                holder_runs: None,
                unreadable: Some((4, "expected value".to_owned())),
            })
        };
        let (mut lease, mut out) = machine();
        step(&mut lease, at(0), &mut out);
        lease.on_read(at(0), corrupt(), &mut out);
        let Some(LeaseEnded::Unusable(why)) = lease.ended() else {
            panic!("{:?}", lease.ended());
        };
        assert!(why.contains("--takeover"), "{why}");
        let mut lease =
            LeaseMachine::new(holder("a", 1), Duration::from_secs(10), true, "1.0", at(0));
        step(&mut lease, at(0), &mut out);
        lease.on_read(at(0), corrupt(), &mut out);
        assert!(
            matches!(
                out.pop_front(),
                Some(Command::WriteLease {
                    if_generation: 4,
                    ..
                })
            ),
            "replaced at its generation"
        );
    }

    #[test]
    fn a_release_while_taking_ends_without_taking() {
        let (mut lease, mut out) = machine();
        step(&mut lease, at(0), &mut out);
        lease.release(at(0), LeaseState::default(), &mut out);
        lease.on_read(at(0), found(None), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(lease.ended(), Some(&LeaseEnded::Released));
    }
}
