//! The two stanzas every encrypted object carries (see the crate's docs),
//! and the session key they hang from. Tags and label are part of the
//! format: objects written with them must stay readable, so they never
//! change (the frozen sample in `tests/sealed_frozen.rs` holds them).

use age::secrecy::{ExposeSecret, SecretBox};
use age::{DecryptError, Encryptor};
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{aead_decrypt, aead_encrypt, hkdf};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD_NO_PAD;
use rand::RngCore as _;
use rand::rngs::OsRng;

use crate::Recipients;

/// The stanza holding the session key, as an age file to the recipients;
/// its arguments are their fingerprints.
pub const SESSION_KEY_TAG: &str = "jobvault-session-key";
/// The stanza holding the object's file key, wrapped under the session key;
/// its one argument is the salt.
pub const SESSION_TAG: &str = "jobvault-session";
/// HKDF's label for the key that wraps a file key.
const WRAP_LABEL: &[u8] = b"jobvault.session/v1";
const SALT_BYTES: usize = 32;
const SESSION_KEY_BYTES: usize = 32;

/// A session key: drawn when the daemon starts, kept only in its memory.
pub(crate) struct SessionKey(SecretBox<[u8; SESSION_KEY_BYTES]>);

impl SessionKey {
    pub(crate) fn draw() -> Self {
        SessionKey(SecretBox::init_with_mut(
            |key: &mut [u8; SESSION_KEY_BYTES]| {
                OsRng.fill_bytes(key);
            },
        ))
    }

    /// The session key in a `jobvault-session-key` stanza's body, if it
    /// holds one.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; SESSION_KEY_BYTES] = bytes.try_into().ok()?;
        Some(SessionKey(SecretBox::init_with_mut(
            |key: &mut [u8; SESSION_KEY_BYTES]| {
                key.copy_from_slice(bytes);
            },
        )))
    }

    /// The `jobvault-session-key` stanza: this key, encrypted to
    /// `recipients`.
    pub(crate) fn key_stanza(&self, recipients: &Recipients) -> Stanza {
        let keys = recipients.keys().iter().map(|k| k as &dyn age::Recipient);
        let encryptor = Encryptor::with_recipients(keys)
            .expect("one or more X25519 recipients always go together");
        let mut body = Vec::new();
        let mut writer = encryptor
            .wrap_output(&mut body)
            .expect("writing to memory does not fail");
        std::io::Write::write_all(&mut writer, self.0.expose_secret())
            .and_then(|()| writer.finish().map(drop))
            .expect("writing to memory does not fail");
        let args = recipients
            .fingerprints()
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect();
        Stanza {
            tag: SESSION_KEY_TAG.to_owned(),
            args,
            body,
        }
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
