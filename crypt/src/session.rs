//! The two stanzas every encrypted object carries (see the crate's docs),
//! and the session key they hang from. Tags and label are part of the
//! format: objects written with them must stay readable, so they never
//! change (the frozen sample in `tests/sealed_frozen.rs` holds them).

use age::secrecy::ExposeSecret;
use age::{DecryptError, Identity, Recipient};
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{aead_decrypt, aead_encrypt, hkdf};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD_NO_PAD;
use rand::RngCore as _;
use rand::rngs::OsRng;

use crate::Recipients;
use crate::fingerprint::Fingerprint;

/// A stanza holding the session key wrapped to one recipient, as age's own
/// X25519 stanza wraps a file key; its arguments are the recipient's
/// fingerprint and the X25519 stanza's own (the ephemeral share).
pub const SESSION_KEY_TAG: &str = "jobvault-session-key";
/// The stanza holding the object's file key, wrapped under the session key;
/// its one argument is the salt.
pub const SESSION_TAG: &str = "jobvault-session";
/// The tag of age's X25519 stanza, which a session key stanza carries.
const X25519_TAG: &str = "X25519";
/// HKDF's label for the key that wraps a file key.
const WRAP_LABEL: &[u8] = b"jobvault.session/v1";
const SALT_BYTES: usize = 16;

/// A session key: drawn when the daemon starts, kept only in its memory. It
/// is as long as an age file key, and wrapped to recipients the same way.
pub(crate) struct SessionKey(FileKey);

impl SessionKey {
    pub(crate) fn draw() -> Self {
        SessionKey(FileKey::init_with_mut(|key| OsRng.fill_bytes(key)))
    }

    /// The `jobvault-session-key` stanzas: this key wrapped to each of
    /// `recipients`, one X25519 key agreement each.
    pub(crate) fn key_stanzas(&self, recipients: &Recipients) -> Vec<Stanza> {
        let mut stanzas = Vec::new();
        for recipient in recipients.keys() {
            let (wrapped, _) = recipient
                .wrap_file_key(&self.0)
                .expect("an X25519 recipient always wraps a file key");
            for stanza in wrapped {
                let mut args = vec![Fingerprint::of(recipient).as_str().to_owned()];
                args.extend(stanza.args);
                stanzas.push(Stanza {
                    tag: SESSION_KEY_TAG.to_owned(),
                    args,
                    body: stanza.body,
                });
            }
        }
        stanzas
    }

    /// The session key a `jobvault-session-key` stanza holds, if `identity`
    /// is the recipient it was wrapped to.
    pub(crate) fn unwrap_with(
        stanza: &Stanza,
        identity: &dyn Identity,
    ) -> Option<Result<Self, DecryptError>> {
        let x25519 = Stanza {
            tag: X25519_TAG.to_owned(),
            args: stanza.args.get(1..)?.to_vec(),
            body: stanza.body.clone(),
        };
        identity
            .unwrap_stanza(&x25519)
            .map(|key| key.map(SessionKey))
    }

    /// The `jobvault-session` stanza: `file_key` wrapped under a key derived
    /// from this one and a fresh salt.
    pub(crate) fn wrap(&self, file_key: &FileKey) -> Stanza {
        let mut salt = [0; SALT_BYTES];
        OsRng.fill_bytes(&mut salt);
        let key = hkdf(&salt, WRAP_LABEL, self.0.expose_secret());
        Stanza {
            tag: SESSION_TAG.to_owned(),
            args: vec![BASE64_STANDARD_NO_PAD.encode(salt)],
            body: aead_encrypt(&key, file_key.expose_secret()),
        }
    }

    /// The file key a `jobvault-session` stanza holds.
    pub(crate) fn unwrap(&self, stanza: &Stanza) -> Result<FileKey, DecryptError> {
        let [salt] = stanza.args.as_slice() else {
            return Err(DecryptError::InvalidHeader);
        };
        let salt = BASE64_STANDARD_NO_PAD
            .decode(salt)
            .ok()
            .filter(|salt| salt.len() == SALT_BYTES)
            .ok_or(DecryptError::InvalidHeader)?;
        let key = hkdf(&salt, WRAP_LABEL, self.0.expose_secret());
        let file_key = aead_decrypt(&key, FILE_KEY_BYTES, &stanza.body)
            .map_err(|_| DecryptError::DecryptionFailed)?;
        Ok(FileKey::init_with_mut(|key| key.copy_from_slice(&file_key)))
    }
}
