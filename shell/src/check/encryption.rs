//! Whether the keys given to `run --encrypt-to` are ones the operator can
//! read back with: a probe sealed to the recipients and opened with the
//! identities given, in memory. A typo in a recipient would otherwise show
//! only at the first restore. And, with no `--encrypt-to`, whether the
//! prefix was encrypted: the daemon would write beside it in the clear.

use jobvault_core::Timestamp;
use jobvault_core::checks::Check;
use jobvault_core::cleartext::{plain_after_sealed, plain_writer_beside};
use jobvault_crypt::{Keyring, Sealer};

use crate::cleartext::recent_snapshots;
use crate::store::Store;

const PROBE: &[u8] = b"jobvault check: encryption probe";

/// A failed line if the prefix holds an encrypted snapshot of the last
/// week and this setup does not encrypt (`--encrypt-to` is most likely
/// missing); a warning if a snapshot was written in the clear after an
/// encrypted one, and is still there.
pub async fn plain_beside_sealed(store: &Store, encrypts: bool, now: Timestamp) -> Option<Check> {
    match recent_snapshots(store, now).await {
        Ok(listed) => {
            if let Some(sealed) = plain_writer_beside(encrypts, &listed) {
                return Some(Check::failed(
                    "encryption",
                    format!(
                        "{} is encrypted, but no --encrypt-to (JOBVAULT_ENCRYPT_TO) is given: \
                         the daemon would write every change in the clear",
                        store.location(&sealed.name)
                    ),
                ));
            }
            plain_after_sealed(&listed).map(|(plain, sealed)| {
                Check::warned(
                    "encryption",
                    format!(
                        "{} is unencrypted, though {} before it is encrypted; it stays readable \
                         in the bucket until pruned or deleted",
                        store.location(&plain.name),
                        sealed.name
                    ),
                )
            })
        }
        Err(e) => Some(Check::warned(
            "encryption",
            format!("cannot tell whether the prefix holds encrypted snapshots: {e}"),
        )),
    }
}

/// The check line, if encryption or identities were given at all.
pub fn round_trip(sealer: Option<&Sealer>, keyring: &Keyring) -> Option<Check> {
    let identities = keyring.fingerprints();
    let Some(sealer) = sealer else {
        return (!identities.is_empty()).then(|| {
            Check::warned(
                "encryption",
                "--identity given but no --encrypt-to: backups will be written in the clear",
            )
        });
    };
    let written_to = joined(sealer.fingerprints().iter().map(|f| f.as_str()));
    if identities.is_empty() {
        return Some(Check::warned(
            "encryption",
            format!(
                "objects will be encrypted to {written_to}; give --identity to prove that a key \
                 you hold reads them"
            ),
        ));
    }
    match keyring.open(&sealer.seal(PROBE)) {
        Ok(plain) if plain == PROBE => {}
        Ok(_) => {
            return Some(Check::failed(
                "encryption",
                "the probe reads back different bytes",
            ));
        }
        Err(e) => return Some(Check::failed("encryption", e.to_string())),
    }
    let unproven: Vec<&str> = sealer
        .fingerprints()
        .iter()
        .filter(|f| !identities.contains(f))
        .map(|f| f.as_str())
        .collect();
    Some(if unproven.is_empty() {
        Check::passed(
            "encryption",
            format!(
                "objects will be encrypted to {written_to}, and the identities given read them back"
            ),
        )
    } else {
        // One key proven is enough to restore; the others may be kept
        // offline, but a wrong one would only show when it is needed.
        Check::warned(
            "encryption",
            format!(
                "objects will be encrypted to {written_to}; the identities given read them back, \
                 but none is for {}: give its identity too to prove it",
                unproven.join(", ")
            ),
        )
    })
}

fn joined<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
