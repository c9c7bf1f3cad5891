//! `jobvault check`: what an operator runs after setup, before the first
//! night depends on it. The original said nothing until a backup failed; here
//! each part of the setup is tried once, as the daemon will use it, and
//! reported on one line: the credentials found, the bucket and what it
//! allows (through a probe object, removed afterwards), the store's clock,
//! versioning, the database, the trigger directory and room in `TMPDIR`;
//! and, with `--encrypt-to` and `--identity`, that the keys read back what
//! they encrypt; without `--encrypt-to`, that the prefix holds no encrypted
//! snapshot the daemon would then write beside in the clear.

mod encryption;
mod local;
mod store;

use std::path::Path;

use jobvault_core::Timestamp;
use jobvault_crypt::{Keyring, Sealer};

use crate::store::{BucketUrl, Store};
use jobvault_core::checks::Check;

/// What to check: the flags `jobvault run` would be given.
#[derive(Debug)]
pub struct Setup<'a> {
    pub db: &'a Path,
    pub bucket: &'a BucketUrl,
    pub workdir: &'a Path,
    /// `--encrypt-to`, and the identities to read it back with.
    pub sealer: Option<&'a Sealer>,
    pub keyring: &'a Keyring,
}

/// Runs every check, in the order an operator would fix things. Nothing is
/// left behind: the probe object and any directory made for the check are
/// removed.
pub async fn check(setup: &Setup<'_>, now: impl Fn() -> Timestamp) -> Vec<Check> {
    let mut checks = match Store::connect(setup.bucket.clone()).await {
        Ok(store) => {
            let mut checks = vec![Check::passed("credentials", store.credentials())];
            checks.extend(store::check(&store, &now).await);
            let encrypts = setup.sealer.is_some();
            checks.extend(encryption::plain_beside_sealed(&store, encrypts, now()).await);
            checks
        }
        Err(e) => vec![Check::failed("credentials", e.to_string())],
    };
    checks.push(local::database(setup.db));
    checks.push(local::trigger_directory(setup.workdir));
    checks.push(local::room_for_a_snapshot(setup.db, &std::env::temp_dir()));
    checks.extend(encryption::round_trip(setup.sealer, setup.keyring));
    checks
}
