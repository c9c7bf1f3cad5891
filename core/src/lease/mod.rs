//! One writer per bucket prefix: the lease object.
//!
//! The first release let any number of daemons write one prefix. Two of them
//! (a restored copy brought up on a new host while the old host still runs)
//! interleaved two histories of the same jobs, and only a taken metrics port
//! stopped the second, by accident. Now a daemon holds `jobvault-lease.json`
//! under the prefix, written only with a generation precondition, so of two
//! daemons racing for it exactly one wins. It renews the lease while it runs
//! and carries its state in it (cursor, when it last caught up, newest
//! snapshot), so `status` can read one object.
//!
//! This module decides; the shell reads and writes the object. A lease is
//! taken when there is none, when its holder gave it back, when its holder ran on this host and no longer
//! runs (a restart after a crash must not wait), when it expired (not renewed
//! for [`Lease::expiry`]), or with `--takeover`. A renewal refused by its
//! precondition is lost only if the lease names another holder: a renewal
//! that failed after it happened (an ambiguous failure) left the lease ours,
//! at a generation we did not see.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Seq;
use crate::timestamp::Timestamp;

mod machine;

pub use machine::{Confirmation, FoundLease, LeaseEnded, LeaseMachine};

/// The lease's object name, under the prefix, beside `db-backup/` and
/// `job-backup/`.
pub const LEASE_OBJECT: &str = "jobvault-lease.json";

/// A daemon, as far as another needs to tell whether it still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The host's name, for people.
    pub host: String,
    /// The machine (its machine id): two hosts may share a name.
    pub machine: String,
    /// The machine's boot (its boot id): a process of an earlier boot runs
    /// no more, whatever its pid.
    pub boot: String,
    pub pid: u32,
    pub db: String,
    /// When the daemon started: a pid is reused, a start time is not.
    pub started: Timestamp,
}

impl Holder {
    /// Whether `other` ran on this machine.
    pub fn same_machine(&self, other: &Holder) -> bool {
        self.machine == other.machine
    }

    /// Whether `other`, on this machine, certainly runs no more: it ran in
    /// an earlier boot, or its pid is ours (a container restarted with the
    /// same pid). Otherwise only a look at its pid can tell.
    pub fn outlived(&self, other: &Holder) -> bool {
        other.boot != self.boot || other.pid == self.pid
    }
}

/// What the lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: Holder,
    pub renewed: Timestamp,
    /// How long after `renewed` another daemon may take it.
    #[serde(with = "seconds")]
    pub expiry: Duration,
    pub state: LeaseState,
    /// When its holder gave it back at a stop: nobody holds it, and its
    /// state is what the holder left the bucket holding. A start reads it
    /// as any lease's ([`crate::machine`]): a database put back from an
    /// older copy while no daemon ran (a disk restored from an image) has
    /// its counter below its highest change. Deleted at the stop, as it was,
    /// the lease took that cursor with it, and the daemon went on from the
    /// copy's, numbering new changes as the versions the copy left behind.
    /// Absent in the leases of earlier releases, which deleted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Timestamp>,
}

/// The holder's state: for `status`, and what the next start compares its
/// database with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    pub version: String,
    pub cursor_seq: u64,
    pub cursor_time: Timestamp,
    /// When the holder last had every change in the bucket.
    pub caught_up: Option<Timestamp>,
    /// When the holder last uploaded a snapshot.
    pub newest_snapshot: Option<Timestamp>,
    /// Rows of its database no job object can hold, set aside (absent in
    /// the leases of earlier releases).
    #[serde(default)]
    pub jobs_set_aside: u64,
    /// Deletions of jobs no object name can carry that no snapshot holds
    /// yet: until one lands, a restore gives those jobs back. `status` said
    /// "all caught up" meanwhile (a hostile trial). Absent when none, and
    /// in the leases of earlier releases.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deletions_unsnapshotted: u64,
    /// The highest change of its database the bucket may hold: read for
    /// upload, or the counter being raised past. The cursor alone lagged
    /// it by the saves not made yet (one a second, or every one while the
    /// database failed them): a copy numbered in between, put back after a
    /// stop, went unnoticed, and a restore mixed it with the versions it
    /// never held (the simulator). Absent in the leases of earlier
    /// releases, whose cursor stands for it ([`LeaseState::bucket_may_hold`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub highest_seq: Seq,
    /// Taken over from a daemon that may still write, the holder writes
    /// nothing before this time ([`takeover_fence`]); so does a daemon
    /// that takes the lease from it meanwhile (a restart after a kill, a
    /// start after a stop). Kept in memory alone, the wait was skipped by
    /// both (a review).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_until: Option<Timestamp>,
}

impl LeaseState {
    /// The highest change of the holder's database the bucket may hold: a
    /// database whose counter is below it went back to an older copy.
    pub fn bucket_may_hold(&self) -> Seq {
        self.highest_seq.max(self.cursor_seq)
    }

    /// Why the state cannot be a daemon's: a sequence no counter reaches.
    /// SQLite keeps the counter as a signed 64-bit integer, and a start
    /// raises it past the highest change plus a margin; a lease edited to
    /// say 2^64 - 1 had the raise claimed in the log and not made.
    pub fn check(&self) -> Result<(), String> {
        match [
            ("cursor_seq", self.cursor_seq),
            ("highest_seq", self.highest_seq),
        ]
        .into_iter()
        .find(|(_, seq)| *seq > LARGEST_SEQ)
        {
            Some((field, seq)) => Err(format!(
                "its {field} {seq} is past any database's change counter (at most {LARGEST_SEQ})"
            )),
            None => Ok(()),
        }
    }
}

/// The largest sequence a lease may say: a raise past it plus
/// [`crate::machine::LEASED_MARGIN`] still fits SQLite's signed counter.
pub const LARGEST_SEQ: Seq = (i64::MAX as u64) - crate::machine::LEASED_MARGIN;

/// serde's `skip_serializing_if` passes a reference.
fn is_zero(seq: &Seq) -> bool {
    *seq == 0
}

/// How a daemon keeps its lease.
///
/// The period trades store writes against how stale the lease may look: it
/// was the interval (every 10 s by default, 360 writes an hour, most of an
/// idle daemon's writes and more than a general replicator makes at rest).
/// Now it is six intervals, at most a minute: 60 writes an hour. The price
/// is paid only when a daemon dies on another host: the next one waits out
/// a longer expiry (3 min by default; a restart on the same host, or
/// `--takeover`, takes it at once), and the state `status` reads from the
/// lease is up to a renewal old. A renewal that failed is tried again after
/// a sixth of the period, so as many tries fit before the gate closes (half
/// the expiry) as before. While changes land, the cursor the lease carries
/// is renewed as soon as that retry's wait allows (10 s by default, at most
/// 360 writes an hour on top of a churn's uploads, none at rest): it is
/// what a start compares a database put back after a crash with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// How often the lease is renewed.
    pub every: Duration,
    /// How soon a renewal, or a read of the lease, that failed is tried
    /// again; and how soon after the last one a cursor that moved is.
    pub retry: Duration,
    /// How long the lease lasts unrenewed.
    pub expiry: Duration,
}

/// The longest a lease lasts unrenewed: three renewals of a minute.
pub const LONGEST_EXPIRY: Duration = Duration::from_secs(180);

/// How a daemon with `interval` keeps its lease: renewed every six
/// intervals, from 5 s to a minute, lasting three renewals and never under
/// half a minute.
pub fn renewal(interval: Duration) -> Renewal {
    let every = (interval * 6).clamp(Duration::from_secs(5), LONGEST_EXPIRY / 3);
    Renewal {
        every,
        retry: every / 6,
        expiry: (every * 3).max(Duration::from_secs(30)),
    }
}

/// What a daemon starting up does about the lease it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// There is none: create it, if still none.
    Create,
    /// Replace it, if still at this generation.
    Replace { generation: i64, why: &'static str },
    /// Someone else holds it.
    Refuse(HeldElsewhere),
}

/// A lease another daemon holds, and for how long yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldElsewhere {
    pub holder: Holder,
    pub renewed_ago: Duration,
    pub expires_in: Duration,
    /// How far its renewal time is ahead of this host's clock: the clocks
    /// disagree, and when it expires cannot be told from it.
    pub ahead: Duration,
}

/// A renewal time further ahead of this host's clock than this is the
/// clocks' disagreement, not a moment to wait for.
pub const MAX_AHEAD: Duration = Duration::from_secs(5);

impl fmt::Display for HeldElsewhere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ahead > MAX_AHEAD {
            return write!(
                f,
                "held by jobvault on host {} (pid {}, database {}), renewed at a time {} s ahead \
                 of this host's clock: the two clocks disagree, so when it expires cannot be \
                 told; fix the clock that is wrong, or stop it, or pass --takeover if it is gone",
                self.holder.host,
                self.holder.pid,
                self.holder.db,
                self.ahead.as_secs()
            );
        }
        write!(
            f,
            "held by jobvault on host {} (pid {}, database {}), renewed {} s ago; \
             stop it, or pass --takeover if it is gone (unrenewed, the lease expires in {} s)",
            self.holder.host,
            self.holder.pid,
            self.holder.db,
            self.renewed_ago.as_secs(),
            self.expires_in.as_secs().max(1)
        )
    }
}

/// Whether the lease's holder runs, as this machine can tell: `None` when it
/// ran on another machine.
pub type RunsHere = Option<bool>;

/// Decides whether `me` takes the lease `found` (with its generation) at
/// `now`.
pub fn decide_claim(
    found: Option<(&Lease, i64)>,
    me: &Holder,
    now: Timestamp,
    runs_here: RunsHere,
    takeover: bool,
) -> Claim {
    let Some((lease, generation)) = found else {
        return Claim::Create;
    };
    let expires = lease.renewed + lease.expiry;
    let why = if lease.released.is_some() {
        "its holder gave it back"
    } else if takeover {
        "--takeover"
    } else if me.same_machine(&lease.holder) && runs_here == Some(false) {
        "its holder ran on this host and no longer runs"
    } else if now >= expires {
        "it expired"
    } else {
        return Claim::Refuse(HeldElsewhere {
            holder: lease.holder.clone(),
            renewed_ago: now.duration_since(lease.renewed),
            expires_in: expires.duration_since(now),
            ahead: lease.renewed.duration_since(now),
        });
    };
    Claim::Replace { generation, why }
}

/// How far two hosts' clocks may disagree: `check` holds each to 5 s of the
/// store's.
pub const HOSTS_CLOCK_ALLOWANCE: Duration = Duration::from_secs(10);

/// The longest a takeover waits: the longest gate, with the allowance.
pub const LONGEST_FENCE: Duration =
    Duration::from_secs(LONGEST_EXPIRY.as_secs() / 2 + HOSTS_CLOCK_ALLOWANCE.as_secs());

/// Until when a daemon that takes `found` over from a live holder
/// (`--takeover`) writes nothing, on its own clock at `now`: until the old
/// holder's gate has closed, half its expiry after its last renewal, with
/// the clocks' allowance. The old holder learns of the takeover only at its
/// next renewal, up to a minute, and wrote meanwhile beside the new one: a
/// version older than the one just uploaded overwrote it, and a restore
/// mixed two databases (a hostile trial). No write of the old holder can
/// come once it gave the lease back, or ran on this host and no longer
/// runs, or its gate closed; but a fence the old holder itself waited out
/// ([`LeaseState::fenced_until`]) stands. An expiry longer than any
/// jobvault writes (a lease edited by hand) counts as the longest: its
/// holder's gate closes by then whatever the lease says.
pub fn takeover_fence(found: &Lease, now: Timestamp, runs_here: RunsHere) -> Option<Timestamp> {
    let its_gate = (found.released.is_none() && runs_here != Some(false)).then(|| {
        let expiry = found.expiry.min(LONGEST_EXPIRY);
        found.renewed.min(now) + expiry / 2 + HOSTS_CLOCK_ALLOWANCE
    });
    let its_fence = found.state.fenced_until.map(|f| f.min(now + LONGEST_FENCE));
    its_gate.max(its_fence).filter(|fence| *fence > now)
}

/// Whether a snapshot of `me`'s database, taken by no daemon (`jobvault
/// backup` finding none to ask), must stay out of the prefix whose lease is
/// `found`: a live daemon of another database holds it. Taken anyway, it
/// was the prefix's newest snapshot, and a restore gave that other
/// database's jobs with this one's changes on top. A daemon of this
/// database on this machine that `backup` could not reach is not another.
pub fn held_for_another(
    found: Option<(&Lease, i64)>,
    me: &Holder,
    now: Timestamp,
    runs_here: RunsHere,
) -> Option<HeldElsewhere> {
    match decide_claim(found, me, now, runs_here, false) {
        Claim::Refuse(held) if !(me.same_machine(&held.holder) && held.holder.db == me.db) => {
            Some(held)
        }
        _ => None,
    }
}

/// How far the bucket holds changes, as the lease `found` says, when a
/// database whose change counter is `counter` and stored cursor `stored` is
/// behind it: it went back to an older copy while no daemon ran, or it is
/// another database. A snapshot of it taken with no daemon (`jobvault
/// backup`) became the prefix's newest with its old counter, and a restore
/// applied the versions numbered past it on top: jobs the copy never held,
/// exit 0 (a hostile trial). A daemon started on it raises its counter
/// first ([`crate::machine`]).
pub fn behind_lease(found: Option<&Lease>, counter: Seq, stored: Seq) -> Option<Seq> {
    let state = &found?.state;
    let holds = state.bucket_may_hold();
    (counter < holds || stored < state.cursor_seq).then_some(holds)
}

/// A renewal was refused by its precondition; the lease now reads `current`.
/// Still ours if it names us (our renewal landed, and its answer was lost).
pub fn still_ours(current: Option<&Lease>, me: &Holder) -> bool {
    current.is_some_and(|lease| lease.holder == *me)
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// Times and holders for the lease's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Holder, Timestamp};

    pub fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000 + secs)
    }

    pub fn holder(host: &str, pid: u32) -> Holder {
        Holder {
            host: host.to_owned(),
            machine: format!("machine-{host}"),
            boot: "boot-1".to_owned(),
            pid,
            db: "/var/lib/s/jobs.db".to_owned(),
            started: at(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{at, holder};
    use super::*;

    fn lease(holder: Holder, renewed: Timestamp) -> Lease {
        Lease {
            holder,
            renewed,
            expiry: Duration::from_secs(60),
            state: LeaseState::default(),
            released: None,
        }
    }

    /// The fence ends half the old expiry after the old renewal, with the
    /// clocks' allowance; a renewal time ahead of this clock counts from
    /// now, and an expiry edited by hand to years counts as the longest.
    #[test]
    fn a_takeover_fence_ends_when_the_old_holders_gate_has_closed() {
        let live = lease(holder("b", 2), at(0));
        assert_eq!(takeover_fence(&live, at(5), None), Some(at(40)));
        assert_eq!(takeover_fence(&live, at(40), None), None, "closed by now");
        let ahead = lease(holder("b", 2), at(100));
        assert_eq!(takeover_fence(&ahead, at(5), None), Some(at(45)));
        let forever = Lease {
            expiry: Duration::from_secs(10 * 365 * 86_400),
            ..lease(holder("b", 2), at(0))
        };
        assert_eq!(takeover_fence(&forever, at(5), None), Some(at(100)));
        let given_back = Lease {
            released: Some(at(1)),
            ..live.clone()
        };
        assert_eq!(takeover_fence(&given_back, at(5), None), None);
        assert_eq!(takeover_fence(&live, at(5), Some(false)), None, "gone");
        // A holder that waited out a fence itself, killed or stopped
        // meanwhile: its successor waits the rest.
        let fenced = Lease {
            state: LeaseState {
                fenced_until: Some(at(90)),
                ..LeaseState::default()
            },
            released: Some(at(1)),
            ..live.clone()
        };
        assert_eq!(takeover_fence(&fenced, at(5), Some(false)), Some(at(90)));
        assert_eq!(takeover_fence(&fenced, at(90), Some(false)), None);
    }

    #[test]
    fn a_backup_stays_out_of_a_prefix_another_databases_live_daemon_holds() {
        let me = holder("a", 1);
        let other_db = Holder {
            db: "/srv/other.db".to_owned(),
            ..holder("a", 2)
        };
        let live = lease(other_db, at(0));
        let held = held_for_another(Some((&live, 3)), &me, at(10), Some(true));
        assert_eq!(held.map(|h| h.holder.db).as_deref(), Some("/srv/other.db"));
        // The same path on another machine is another database.
        let elsewhere = lease(holder("b", 2), at(0));
        assert!(held_for_another(Some((&elsewhere, 3)), &me, at(10), None).is_some());
        // This database's own daemon, unreached, is not another.
        let mine = lease(holder("a", 2), at(0));
        assert_eq!(
            held_for_another(Some((&mine, 3)), &me, at(10), Some(true)),
            None
        );
        // Nobody holds an expired lease, or one whose holder is gone.
        assert_eq!(
            held_for_another(Some((&live, 3)), &me, at(61), Some(true)),
            None
        );
        assert_eq!(
            held_for_another(Some((&live, 3)), &me, at(10), Some(false)),
            None
        );
        assert_eq!(held_for_another(None, &me, at(10), None), None);
    }

    #[test]
    fn a_lease_given_back_is_taken_at_once_from_anywhere() {
        let mut given_back = lease(holder("b", 7), at(0));
        given_back.released = Some(at(0));
        let claim = decide_claim(Some((&given_back, 4)), &holder("a", 1), at(1), None, false);
        assert_eq!(
            claim,
            Claim::Replace {
                generation: 4,
                why: "its holder gave it back"
            }
        );
        // The same lease not given back: its holder on another host is
        // alive as far as anyone here can tell.
        given_back.released = None;
        let claim = decide_claim(Some((&given_back, 4)), &holder("a", 1), at(1), None, false);
        assert!(matches!(claim, Claim::Refuse(_)), "{claim:?}");
    }

    #[test]
    fn a_database_below_the_cursor_a_lease_holds_is_behind_it() {
        let mut left = lease(holder("b", 7), at(0));
        left.state.cursor_seq = 8;
        assert_eq!(behind_lease(Some(&left), 6, 5), Some(8), "an older copy");
        assert_eq!(
            behind_lease(Some(&left), 10, 5),
            Some(8),
            "a copy written to since: its cursor stays behind"
        );
        assert_eq!(behind_lease(Some(&left), 8, 8), None, "the same database");
        assert_eq!(
            behind_lease(Some(&left), 12, 9),
            None,
            "written to since the stop"
        );
        assert_eq!(behind_lease(None, 0, 0), None, "no lease says nothing");
        left.state.highest_seq = 11;
        assert_eq!(
            behind_lease(Some(&left), 10, 8),
            Some(11),
            "below a change read past the cursor saved"
        );
        assert_eq!(behind_lease(Some(&left), 11, 8), None, "its saves lost");
    }

    #[test]
    fn a_state_past_any_counter_is_no_daemons() {
        let mut state = LeaseState {
            highest_seq: LARGEST_SEQ,
            ..LeaseState::default()
        };
        assert_eq!(state.check(), Ok(()));
        state.highest_seq = u64::MAX;
        let why = state.check().unwrap_err();
        assert!(why.contains("highest_seq 18446744073709551615"), "{why}");
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(
            decide_claim(None, &holder("a", 1), at(0), None, false),
            Claim::Create
        );
    }

    #[test]
    fn a_renewal_ahead_of_this_clock_is_named_as_the_skew_it_is() {
        let found = lease(holder("b", 7), at(86_400));
        let Claim::Refuse(held) =
            decide_claim(Some((&found, 5)), &holder("a", 1), at(10), None, false)
        else {
            panic!("a lease renewed in the future is refused");
        };
        let text = held.to_string();
        assert!(
            text.contains("86390 s ahead of this host's clock"),
            "{text}"
        );
        assert!(!text.contains("wait"), "{text}");
    }

    #[test]
    fn a_live_holder_elsewhere_keeps_it_until_it_expires() {
        let found = lease(holder("b", 7), at(100));
        let me = holder("a", 1);
        let Claim::Refuse(held) = decide_claim(Some((&found, 5)), &me, at(110), None, false) else {
            panic!("a fresh lease of another host is refused");
        };
        assert_eq!(
            (held.renewed_ago.as_secs(), held.expires_in.as_secs()),
            (10, 50)
        );
        let text = held.to_string();
        assert!(
            text.contains("host b (pid 7") && text.contains("renewed 10 s ago"),
            "{text}"
        );
        assert!(matches!(
            decide_claim(Some((&found, 5)), &me, at(160), None, false),
            Claim::Replace { generation: 5, .. }
        ));
        assert!(matches!(
            decide_claim(Some((&found, 5)), &me, at(110), None, true),
            Claim::Replace { generation: 5, .. }
        ));
    }

    #[test]
    fn a_dead_holder_on_this_host_is_replaced_at_once() {
        let found = lease(holder("a", 7), at(100));
        let me = holder("a", 9);
        assert!(matches!(
            decide_claim(Some((&found, 3)), &me, at(101), Some(false), false),
            Claim::Replace { generation: 3, .. }
        ));
        assert!(matches!(
            decide_claim(Some((&found, 3)), &me, at(101), Some(true), false),
            Claim::Refuse(_)
        ));
    }

    #[test]
    fn a_holder_of_an_earlier_boot_or_with_our_own_pid_runs_no_more() {
        let me = holder("a", 1);
        let rebooted = Holder {
            boot: "boot-0".to_owned(),
            ..holder("a", 7)
        };
        assert!(me.outlived(&rebooted));
        assert!(me.outlived(&Holder {
            started: at(-60),
            ..holder("a", 1)
        }));
        assert!(!me.outlived(&holder("a", 7)));
        assert!(!me.same_machine(&holder("b", 7)), "a name is not a machine");
    }

    #[test]
    fn a_refused_renewal_is_lost_only_to_another_holder() {
        let me = holder("a", 1);
        assert!(still_ours(Some(&lease(me.clone(), at(5))), &me));
        assert!(!still_ours(Some(&lease(holder("b", 2), at(5))), &me));
        assert!(!still_ours(None, &me));
    }

    #[test]
    fn renewal_keeps_to_a_minute_at_the_default_and_a_few_seconds_in_tests() {
        let at_default = renewal(Duration::from_secs(10));
        assert_eq!(at_default.every, Duration::from_secs(60));
        assert_eq!(at_default.retry, Duration::from_secs(10));
        assert_eq!(at_default.expiry, Duration::from_secs(180));
        let short = renewal(Duration::from_millis(200));
        assert_eq!(short.every, Duration::from_secs(5));
        assert_eq!(short.expiry, Duration::from_secs(30));
        let long = renewal(Duration::from_secs(600));
        assert_eq!(
            long.every,
            Duration::from_secs(60),
            "never under once a minute"
        );
    }

    /// What this release writes, given back: decoded, and written again
    /// byte for byte (the shell writes it pretty, then gzips it).
    const FROZEN: &str = include_str!("../../tests/frozen/lease-current.json");
    /// What releases wrote before the lease was given back at a stop (they
    /// deleted it) and before `jobs_set_aside`, `highest_seq` and
    /// `fenced_until`.
    const EARLIER: &str = include_str!("../../tests/frozen/lease-earlier.json");

    #[test]
    fn the_frozen_samples_decode_and_this_release_writes_the_same() {
        let current: Lease = serde_json::from_str(FROZEN).unwrap();
        assert_eq!(
            (current.state.cursor_seq, current.state.highest_seq),
            (1200, 1207)
        );
        assert_eq!(current.state.bucket_may_hold(), 1207);
        assert!(current.released.is_some());
        assert!(
            current.state.fenced_until.is_some(),
            "given back during a fence"
        );
        assert_eq!(
            serde_json::to_string_pretty(&current).unwrap(),
            FROZEN.trim_end()
        );

        let first: Lease = serde_json::from_str(EARLIER).unwrap();
        assert_eq!(first.released, None);
        assert_eq!(first.state.jobs_set_aside, 0);
        assert_eq!(
            first.state.bucket_may_hold(),
            1200,
            "its cursor stands for the highest change"
        );
        assert_eq!(
            first,
            Lease {
                released: None,
                state: LeaseState {
                    caught_up: None,
                    newest_snapshot: None,
                    jobs_set_aside: 0,
                    deletions_unsnapshotted: 0,
                    highest_seq: 0,
                    fenced_until: None,
                    ..current.state.clone()
                },
                ..current
            }
        );
    }

    #[test]
    fn the_lease_reads_back_as_written() {
        let written = lease(holder("a", 1), at(5));
        let json = serde_json::to_string(&written).unwrap();
        assert_eq!(serde_json::from_str::<Lease>(&json).unwrap(), written);
    }
}
