//! The lease's commands carried out against the store: read it (and whether
//! its holder still runs on this machine), write it on a generation (also
//! to give it back). When to do each, the gate, the take retry and the
//! renewal are the core's ([`jobvault_core::lease::LeaseMachine`]).

use std::path::Path;

use jobvault_core::Failure;
use jobvault_core::lease::{FoundLease, Holder, LEASE_OBJECT, Lease};
use jobvault_core::object_name::Framing;

use crate::clock;
use crate::failure::ToFailure;
use crate::leftovers::is_running;
use crate::small_object::{gzip, json_of};
use crate::store::{Store, StoreError};

/// Why the lease cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{location} holds something that is not a jobvault lease: {why}")]
    Unreadable {
        location: String,
        why: String,
        /// The generation of what it holds, for `--takeover` to replace.
        generation: i64,
    },
}

/// This machine's id where Linux has one, the host name otherwise.
fn this_machine(host: &str) -> String {
    read_id("/etc/machine-id").unwrap_or_else(|| host.to_owned())
}

fn read_id(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .ok()
        .filter(|text| !text.is_empty())
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// This process, as the lease names it. The machine is its machine id and
/// the boot its boot id where Linux has them, the host name otherwise.
pub fn me(db: &Path) -> Holder {
    let host = host_name();
    Holder {
        machine: this_machine(&host),
        boot: read_id("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        host,
        pid: std::process::id(),
        db: db.display().to_string(),
        started: clock::now(),
    }
}

/// The lease as stored, and its generation.
pub async fn read(store: &Store) -> Result<Option<(Lease, i64)>, LeaseError> {
    let Some((bytes, generation)) = store.get_versioned(LEASE_OBJECT).await? else {
        return Ok(None);
    };
    let unreadable = |why: String| LeaseError::Unreadable {
        location: store.location(LEASE_OBJECT),
        why,
        generation,
    };
    let lease: Lease =
        serde_json::from_slice(&json_of(bytes)).map_err(|e| unreadable(e.to_string()))?;
    lease.state.check().map_err(unreadable)?;
    Ok(Some((lease, generation)))
}

/// Whether `holder` runs, when it ran on this machine (`None` elsewhere).
pub fn runs_here(holder: &Holder) -> Option<bool> {
    (holder.machine == this_machine(&host_name())).then(|| is_running(holder.pid as i32))
}

/// [`jobvault_core::Command::ReadLease`]: the lease, and whether its holder
/// runs, when it ran on this machine.
pub async fn find(store: &Store) -> Result<FoundLease, Failure> {
    let (lease, unreadable) = match read(store).await {
        Ok(lease) => (lease, None),
        Err(LeaseError::Store(e)) => return Err(e.to_failure()),
        Err(LeaseError::Unreadable {
            why, generation, ..
        }) => (None, Some((generation, why))),
    };
    let holder_runs = lease
        .as_ref()
        .and_then(|(lease, _)| runs_here(&lease.holder));
    Ok(FoundLease {
        lease,
        holder_runs,
        unreadable,
    })
}

/// [`jobvault_core::Command::WriteLease`]: the generation written.
pub async fn write(store: &Store, lease: &Lease, if_generation: i64) -> Result<i64, Failure> {
    let body = serde_json::to_vec_pretty(lease).expect("a lease serializes");
    let framing = Framing::for_object(LEASE_OBJECT, lease.renewed);
    store
        .put_if(LEASE_OBJECT, gzip(&body), &framing, if_generation)
        .await
        .map_err(|e| e.to_failure())
}
