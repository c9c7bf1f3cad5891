//! The one-writer lease, carried out against the store: taken once the
//! daemon is up, renewed while it runs, given back when it stops. What to do
//! at each point is the core's ([`jobvault_core::lease`]).
//!
//! The daemon runs while the lease is being taken (the bucket may be missing
//! or refusing for a while), but writes nothing to the store until it holds
//! it: each upload and snapshot is answered at once with why ([`LeaseGate`]),
//! so the core backs off and counts trigger attempts as for any store error.

use std::sync::Arc;
use std::time::Duration;

use jobvault_core::lease::{
    Held, Holder, LEASE_OBJECT, Lease, LeaseState, Take, decide_take, renewal, still_ours,
};
use jobvault_core::object_name::Framing;
use jobvault_core::{Failure, FailureKind, Metrics, Timestamp};
use tokio::sync::{Mutex, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::clock;
use crate::leftovers::is_running;
use crate::small_object::{gzip, json_of};
use crate::store::{Store, StoreError};

/// Why a daemon does not hold the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{location} is {held}")]
    Held { location: String, held: Held },
    #[error("{location}: {}; stopping", lost_to(.by.as_ref()))]
    Lost {
        location: String,
        /// Who holds it now; `None` when someone removed it.
        by: Option<Holder>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{location} holds something that is not a jobvault lease: {why}")]
    Unreadable { location: String, why: String },
}

fn lost_to(by: Option<&Holder>) -> String {
    match by {
        Some(by) => format!(
            "the lease was taken over by jobvault on host {} (pid {})",
            by.host, by.pid
        ),
        None => "the lease was removed by someone else".to_owned(),
    }
}

/// A lease this daemon holds.
#[derive(Debug)]
pub struct HeldLease {
    store: Arc<Store>,
    lease: Lease,
    generation: i64,
    every: Duration,
    /// When the write that last took or renewed it was sent: the lease
    /// lasts from then, whenever the answer came.
    renewed: Instant,
}

/// This process, as the lease names it. The machine is its machine id and
/// the boot its boot id where Linux has them, the host name otherwise.
pub fn me(db: &std::path::Path) -> Holder {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .ok()
            .filter(|text| !text.is_empty())
    };
    Holder {
        machine: read("/etc/machine-id").unwrap_or_else(|| host.clone()),
        boot: read("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        host,
        pid: std::process::id(),
        db: db.display().to_string(),
        started: clock::now(),
    }
}

/// Whether store writes may go: `None` while the lease is held, or why not.
#[derive(Debug, Clone)]
pub struct LeaseGate(watch::Receiver<Option<Failure>>);

impl LeaseGate {
    /// A gate that is always open: for a process that owns its store alone
    /// (the demo's directory).
    pub fn alone() -> Self {
        LeaseGate(watch::channel(None).1)
    }

    /// `Ok` while the lease is held; the failure to report otherwise.
    pub fn check(&self) -> Result<(), Failure> {
        self.0.borrow().clone().map_or(Ok(()), Err)
    }
}

/// Takes the lease, keeps it and gives it back, in the background.
#[derive(Debug)]
pub struct LeaseKeeper {
    lost: Mutex<Option<oneshot::Receiver<LeaseError>>>,
    release: oneshot::Sender<oneshot::Sender<()>>,
}

impl LeaseKeeper {
    /// Tries to take the lease for `me` once, before the daemon starts: a
    /// lease someone else holds is an error now. Store trouble is retried in
    /// the background (the daemon runs; the gate holds its writes back). Once
    /// held, the lease is renewed until it is lost ([`LeaseKeeper::lost`]) or
    /// given back ([`LeaseKeeper::release`]).
    pub async fn start(
        store: Arc<Store>,
        me: Holder,
        interval: Duration,
        takeover: bool,
        metrics: watch::Receiver<Metrics>,
    ) -> Result<(LeaseGate, LeaseKeeper), LeaseError> {
        let taker = Taker {
            store,
            me,
            interval,
            takeover,
        };
        let (gate, gate_rx) = watch::channel(None);
        let mut said = None;
        let first = taker.take_once(&gate, &mut said).await?;
        let (lost_tx, lost) = oneshot::channel();
        let (release, released) = oneshot::channel::<oneshot::Sender<()>>();
        tokio::spawn(async move {
            tokio::pin!(released);
            let taken = match first {
                Some(held) => Ok(held),
                None => tokio::select! {
                    taken = taker.take(&gate, said) => taken,
                    done = &mut released => {
                        if let Ok(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                },
            };
            let lost = match taken {
                Ok(held) => {
                    gate.send_replace(None);
                    match held.keep(metrics, &gate, &mut released).await {
                        Some(lost) => lost,
                        None => return,
                    }
                }
                Err(lost) => lost,
            };
            gate.send_replace(Some(Failure::new(FailureKind::Conflict, lost.to_string())));
            let _ = lost_tx.send(lost);
        });
        let keeper = LeaseKeeper {
            lost: Mutex::new(Some(lost)),
            release,
        };
        Ok((LeaseGate(gate_rx), keeper))
    }

    /// Completes if the lease is held by someone else, or lost to them.
    pub async fn lost(&self) -> LeaseError {
        let receiver = self.lost.lock().await.take();
        match receiver {
            Some(receiver) => match receiver.await {
                Ok(lost) => lost,
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Stops renewing and gives the lease back, if it was held.
    pub async fn release(self) {
        let (done, released) = oneshot::channel();
        if self.release.send(done).is_ok() {
            let _ = released.await;
        }
    }
}

/// Who takes the lease, and how.
struct Taker {
    store: Arc<Store>,
    me: Holder,
    interval: Duration,
    takeover: bool,
}

impl Taker {
    /// Takes the lease, retrying store trouble with a doubling wait; or says
    /// who holds it. `said` is the kind of trouble last logged.
    async fn take(
        &self,
        gate: &watch::Sender<Option<Failure>>,
        mut said: Option<FailureKind>,
    ) -> Result<HeldLease, LeaseError> {
        let mut wait = Duration::from_secs(1);
        loop {
            if let Some(held) = self.take_once(gate, &mut said).await? {
                info!("took the lease; writing to the store");
                return Ok(held);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }

    /// Tries once: the lease, or `None` after store trouble (the gate then
    /// says why writes wait), or who holds it. Trouble is logged when its
    /// kind is not the one last logged (`said`), so a refusing bucket is
    /// said once, not at every try.
    async fn take_once(
        &self,
        gate: &watch::Sender<Option<Failure>>,
        said: &mut Option<FailureKind>,
    ) -> Result<Option<HeldLease>, LeaseError> {
        let (every, expiry) = renewal(self.interval);
        let sent = Instant::now();
        match try_take(&self.store, &self.me, expiry, self.takeover).await {
            Ok((lease, generation)) => Ok(Some(HeldLease {
                store: self.store.clone(),
                lease,
                generation,
                every,
                renewed: sent,
            })),
            Err(LeaseError::Store(e)) if retryable(&e) => {
                let refused = e.kind.is_refusal();
                if *said != Some(e.kind) {
                    if refused {
                        error!(
                            error = %e,
                            "the store refuses jobvault's lease: check that the bucket exists and that the \
                             service account has roles/storage.objectAdmin on it; nothing is written until then"
                        );
                    } else {
                        warn!(error = %e, "cannot take the lease yet; nothing is written until then");
                    }
                    *said = Some(e.kind);
                }
                // The core backs off from a refusal as from any refused upload.
                let kind = if refused {
                    e.kind
                } else {
                    FailureKind::Transient
                };
                let why = format!("not written: jobvault does not hold the lease yet ({e})");
                gate.send_replace(Some(Failure::new(kind, why)));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Store trouble, a body damaged on the way, or a precondition that lost a
/// race: try again. A missing bucket or a refused permission is retried too
/// (slowly, by the doubling wait): the daemon keeps running until someone
/// fixes it.
fn retryable(error: &StoreError) -> bool {
    matches!(
        error.kind,
        FailureKind::Transient
            | FailureKind::Timeout
            | FailureKind::Conflict
            | FailureKind::Corrupt
            | FailureKind::NotFound
            | FailureKind::Permission
    )
}

async fn try_take(
    store: &Store,
    me: &Holder,
    expiry: Duration,
    takeover: bool,
) -> Result<(Lease, i64), LeaseError> {
    let found = read(store).await?;
    let now = clock::now();
    let runs_here = found.as_ref().and_then(|(lease, _)| {
        let holder = &lease.holder;
        me.same_machine(holder)
            .then(|| !me.outlived(holder) && is_running(holder.pid as i32))
    });
    let generation = match decide_take(
        found.as_ref().map(|(l, g)| (l, *g)),
        me,
        now,
        runs_here,
        takeover,
    ) {
        Take::Create => 0,
        Take::Replace { generation, why } => {
            let (old, _) = found.as_ref().expect("a replaced lease was found");
            info!(
                holder = %format!("{} pid {}", old.holder.host, old.holder.pid),
                why,
                "taking over the lease"
            );
            generation
        }
        Take::Refuse(held) => {
            return Err(LeaseError::Held {
                location: store.location(LEASE_OBJECT),
                held,
            });
        }
    };
    let lease = Lease {
        holder: me.clone(),
        renewed: now,
        expiry,
        state: LeaseState {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..LeaseState::default()
        },
    };
    let written = write(store, &lease, generation).await?;
    Ok((lease, written))
}

/// The lease as stored, and its generation.
pub async fn read(store: &Store) -> Result<Option<(Lease, i64)>, LeaseError> {
    let Some((bytes, generation)) = store.get_versioned(LEASE_OBJECT).await? else {
        return Ok(None);
    };
    let json = json_of(bytes);
    let lease = serde_json::from_slice(&json).map_err(|e| LeaseError::Unreadable {
        location: store.location(LEASE_OBJECT),
        why: e.to_string(),
    })?;
    Ok(Some((lease, generation)))
}

async fn write(store: &Store, lease: &Lease, if_generation: i64) -> Result<i64, StoreError> {
    let body = serde_json::to_vec_pretty(lease).expect("a lease serializes");
    let framing = Framing::for_object(LEASE_OBJECT, lease.renewed);
    store
        .put_if(LEASE_OBJECT, gzip(&body), &framing, if_generation)
        .await
}

impl HeldLease {
    /// Renews the lease every period with the daemon's state from `metrics`
    /// until it is lost (returns why), or until `released` asks for it back
    /// (gives it back; returns `None`). Store trouble is retried at the next
    /// renewal: the lease lasts several. Once half its expiry has passed
    /// since the last renewal that got through was sent, the gate holds
    /// writes back: another daemon may soon take the lease, and this one
    /// would not know until a renewal got through. A renewal still out then
    /// is given up (it may land later: the next renewal's precondition then
    /// finds the lease still ours), so a store that hangs cannot keep the
    /// gate open.
    async fn keep(
        mut self,
        metrics: watch::Receiver<Metrics>,
        gate: &watch::Sender<Option<Failure>>,
        released: &mut std::pin::Pin<&mut oneshot::Receiver<oneshot::Sender<()>>>,
    ) -> Option<LeaseError> {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                done = &mut **released => {
                    self.release().await;
                    if let Ok(done) = done {
                        let _ = done.send(());
                    }
                    return None;
                }
            }
            let state = state_of(&metrics.borrow(), &self.lease.state.version);
            let sent = Instant::now();
            let unsafe_at = self.renewed + self.lease.expiry / 2;
            let answer_by = if unsafe_at > sent {
                unsafe_at
            } else {
                sent + self.every
            };
            let trouble =
                match tokio::time::timeout_at(answer_by, self.renew(state, clock::now())).await {
                    Ok(Ok(())) => {
                        self.renewed = sent;
                        gate.send_replace(None);
                        continue;
                    }
                    Ok(Err(LeaseError::Store(e))) => e.to_string(),
                    Ok(Err(lost)) => return Some(lost),
                    Err(_) => "the renewal did not answer in time".to_owned(),
                };
            warn!(error = %trouble, "renewing the lease failed; retrying");
            if Instant::now() >= unsafe_at {
                let why = format!(
                    "not written: the lease could not be renewed for {} s ({trouble})",
                    self.renewed.elapsed().as_secs()
                );
                gate.send_replace(Some(Failure::new(FailureKind::Transient, why)));
            }
        }
    }

    async fn renew(&mut self, state: LeaseState, now: Timestamp) -> Result<(), LeaseError> {
        let renewed = Lease {
            renewed: now,
            state,
            ..self.lease.clone()
        };
        match write(&self.store, &renewed, self.generation).await {
            Ok(generation) => {
                self.lease = renewed;
                self.generation = generation;
                Ok(())
            }
            Err(e) if e.kind == FailureKind::Conflict => self.after_conflict().await,
            Err(e) => Err(e.into()),
        }
    }

    /// A renewal refused by its precondition: lost, unless the lease still
    /// names us (an earlier renewal landed though its answer was lost).
    /// A lease that is gone is lost too: another daemon may have taken it
    /// and given it back since, and written in between.
    async fn after_conflict(&mut self) -> Result<(), LeaseError> {
        let found = read(&self.store).await?;
        let current = found.as_ref().map(|(lease, _)| lease);
        if still_ours(current, &self.lease.holder) {
            let (lease, generation) = found.expect("a lease that is ours was found");
            self.lease = lease;
            self.generation = generation;
            return Ok(());
        }
        Err(LeaseError::Lost {
            location: self.store.location(LEASE_OBJECT),
            by: current.map(|lease| lease.holder.clone()),
        })
    }

    /// Gives the lease back, so the next daemon need not wait for it.
    async fn release(self) {
        if let Err(e) = self.store.delete_if(LEASE_OBJECT, self.generation).await {
            warn!(error = %e, "could not give the lease back; it expires by itself");
        }
    }
}

fn state_of(metrics: &Metrics, version: &str) -> LeaseState {
    LeaseState {
        version: version.to_owned(),
        cursor_seq: metrics.cursor.seq,
        cursor_time: metrics.cursor.time,
        caught_up: metrics.incremental_alive,
        newest_snapshot: metrics.last_snapshot,
    }
}
