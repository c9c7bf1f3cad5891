//! Encryption of jobvault's objects with [age](https://age-encryption.org/v1).
//!
//! The host that runs the daemon holds only public keys (X25519 recipients,
//! `age1…`); only the operator's identities (`AGE-SECRET-KEY-1…`) read a
//! backup. An encrypted object is an age file whose payload is what the
//! object held in the clear (its gzip member, framing and all), so every
//! reader decrypts first and then reads as before.
//!
//! **Why a session key.** Wrapping each object's file key to X25519
//! recipients costs an X25519 key agreement per recipient per object (78 µs
//! each, measured here), about half of the daemon's whole CPU per job upload
//! (about 150 µs); sealing a 430-byte job object this way takes 9.5 µs. Instead the daemon draws a session key when it starts and
//! wraps it to the recipients once ([`Sealer::new`]). Every object then
//! carries two stanzas ([`session`]):
//!
//! - `jobvault-session-key <fingerprint> <share>`, one per recipient: the
//!   session key wrapped to that recipient exactly as age's X25519 stanza
//!   wraps a file key, the same bytes in every object of the session, named
//!   by the recipient's fingerprint;
//! - `jobvault-session <salt>`: the object's file key, wrapped under a key
//!   derived from the session key and a fresh salt, the construction of
//!   age's own X25519 stanza (HKDF-SHA-256, then ChaCha20-Poly1305 with a
//!   zero nonce under a one-time key) without the key agreement.
//!
//! Each object stands alone: nothing beside it in the bucket is needed to
//! read it, so a prune or a wiped prefix cannot strand an object without its
//! key. The session key lives only in the daemon's memory: a copy of the
//! host's disk or a leaked service account reads nothing. A live host reads
//! what its daemon wrote since it started, which is the database it has
//! anyway. A reader unwraps each session key once ([`Keyring`]).
//!
//! The format is age's, through the `age` crate; the stanzas are age's
//! extension point, and the only primitives used are age's own
//! (`age_core::primitives`).

mod error;
mod fingerprint;
mod key_file;
mod keyring;
mod recipients;
mod sealer;
pub mod session;

pub use error::{BadIdentities, BadRecipient, OpenError};
pub use fingerprint::Fingerprint;
pub use keyring::{Keyring, generate_identity};
pub use recipients::{Recipients, holds_secret_key, redact_secret_keys};
pub use sealer::Sealer;

/// How every age file (binary, not armored) begins.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Whether `bytes` (an object, or its first bytes) are an age file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(AGE_MAGIC)
}
