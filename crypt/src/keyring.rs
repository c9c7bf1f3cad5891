//! The reader's side: the operator's identities, and the session keys they
//! have unwrapped so far, so that a restore of a million objects makes one
//! key agreement per session, not one per object.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use age::secrecy::ExposeSecret as _;
use age::{DecryptError, Decryptor, IdentityFile, x25519};
use age_core::format::{FileKey, Stanza};

use crate::error::{BadIdentities, OpenError, one_line};
use crate::fingerprint::Fingerprint;
use crate::key_file;
use crate::recipients::holds_secret_key;
use crate::session::{SESSION_KEY_TAG, SESSION_TAG, SessionKey};

type BoxedIdentity = Box<dyn age::Identity + Send + Sync>;

/// The identities a command was given (none at all is a keyring too: it
/// reads plain objects and names the keys of encrypted ones).
#[derive(Default)]
pub struct Keyring {
    identities: Vec<BoxedIdentity>,
    fingerprints: Vec<Fingerprint>,
    /// Identity files that others than their owner may read.
    exposed: Vec<PathBuf>,
    /// Session keys by the bodies of their `jobvault-session-key` stanzas.
    sessions: Mutex<HashMap<Vec<u8>, Arc<SessionKey>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("fingerprints", &self.fingerprints)
            .finish_non_exhaustive()
    }
}

/// A new identity: its file's text (comments and the secret key, as
/// `age-keygen` writes it) and its recipient.
pub fn generate_identity(now_rfc3339: &str) -> (String, x25519::Recipient) {
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public();
    let text = format!(
        "# created: {now_rfc3339}\n# public key: {recipient}\n# fingerprint: {}\n{}\n",
        Fingerprint::of(&recipient),
        identity.to_string().expose_secret()
    );
    (text, recipient)
}

const RECIPIENT_GIVEN: &str = "it holds a recipient (age1…), the public half of a key; \
    --identity takes the file `jobvault keygen --out` wrote, whose key line starts \
    AGE-SECRET-KEY-1";

/// Whether a key file's text holds a recipient line: the public key given
/// where the identity was meant.
fn holds_recipient(text: &str) -> bool {
    text.lines()
        .any(|line| line.trim().parse::<x25519::Recipient>().is_ok())
}

impl Keyring {
    /// The identities in the files at `paths` (age identity files, as
    /// `age-keygen` and `jobvault keygen` write them).
    pub fn load(paths: &[PathBuf]) -> Result<Self, BadIdentities> {
        let mut keyring = Keyring::default();
        for path in paths {
            keyring.add_file(path)?;
        }
        Ok(keyring)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), BadIdentities> {
        if holds_secret_key(&path.to_string_lossy()) {
            return Err(BadIdentities::SecretForPath);
        }
        let unreadable = |why: String| BadIdentities::Unreadable {
            path: path.to_owned(),
            why,
        };
        let (metadata, text) = key_file::read(path).map_err(unreadable)?;
        let file = IdentityFile::from_buffer(text.as_bytes()).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => BadIdentities::NotIdentities {
                path: path.to_owned(),
                why: if holds_recipient(&text) {
                    RECIPIENT_GIVEN.to_owned()
                } else {
                    e.to_string()
                },
            },
            _ => unreadable(e.to_string()),
        })?;
        // Without plugins, age fails to list recipients only for a file
        // with no identity in it.
        let mut recipients = Vec::new();
        if file.write_recipients_file(&mut recipients).is_err() {
            return Err(BadIdentities::Empty {
                path: path.to_owned(),
            });
        }
        let identities = file
            .into_identities()
            .map_err(|e| BadIdentities::NotIdentities {
                path: path.to_owned(),
                why: format!("{e:?}"),
            })?;
        let recipients = String::from_utf8_lossy(&recipients).into_owned();
        self.fingerprints.extend(
            recipients
                .lines()
                .filter_map(|line| line.parse::<x25519::Recipient>().ok())
                .map(|r| Fingerprint::of(&r)),
        );
        if exposed(&metadata) {
            self.exposed.push(path.to_owned());
        }
        self.identities.extend(identities);
        Ok(())
    }

    /// The fingerprints of the keys these identities open.
    pub fn fingerprints(&self) -> &[Fingerprint] {
        &self.fingerprints
    }

    /// Identity files that group or others may read: worth a warning.
    pub fn exposed_files(&self) -> &[PathBuf] {
        &self.exposed
    }

    /// The plain bytes of the age file `sealed`.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut reader = self.open_reader(sealed)?;
        let mut plain = Vec::with_capacity(sealed.len());
        reader
            .read_to_end(&mut plain)
            .map_err(|e| OpenError::damaged_by(&e))?;
        Ok(plain)
    }

    /// A reader of the plain bytes of the age file `sealed` reads. Its
    /// header is checked here; each 64 KiB of the payload is checked as it
    /// is read, and a payload cut short fails at its end, so a caller keeps
    /// nothing it read until the reader reached its end without error.
    pub fn open_reader<R: Read>(&self, sealed: R) -> Result<impl Read, OpenError> {
        let decryptor = Decryptor::new(sealed).map_err(|e| damaged(&e))?;
        let session = SessionIdentity {
            keyring: self,
            written_to: RefCell::new(Vec::new()),
        };
        let identities = std::iter::once(&session as &dyn age::Identity).chain(
            self.identities
                .iter()
                .map(|i| i.as_ref() as &dyn age::Identity),
        );
        decryptor.decrypt(identities).map_err(|e| match e {
            DecryptError::NoMatchingKeys => {
                let written_to = session.written_to.into_inner();
                if self.identities.is_empty() {
                    OpenError::NoIdentity { written_to }
                } else {
                    OpenError::NoMatchingIdentity {
                        written_to,
                        have: self.fingerprints.clone(),
                    }
                }
            }
            other => damaged(&other),
        })
    }

    /// The session key the `jobvault-session-key` stanzas hold; `None` if
    /// no identity here opens any of them.
    fn session(&self, key_stanzas: &[&Stanza]) -> Result<Option<Arc<SessionKey>>, DecryptError> {
        let id: Vec<u8> = key_stanzas
            .iter()
            .flat_map(|s| s.body.iter().copied())
            .collect();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = sessions.get(&id) {
            return Ok(Some(key.clone()));
        }
        let unwrapped = key_stanzas.iter().find_map(|stanza| {
            self.identities
                .iter()
                .find_map(|identity| SessionKey::unwrap_with(stanza, identity.as_ref()))
        });
        let Some(key) = unwrapped.transpose()? else {
            return Ok(None);
        };
        let key = Arc::new(key);
        sessions.insert(id, key.clone());
        Ok(Some(key))
    }
}

/// Opens the file key of an object written by a [`crate::Sealer`], and
/// notes whom it was written to, for the error when nothing opens it.
struct SessionIdentity<'a> {
    keyring: &'a Keyring,
    written_to: RefCell<Vec<Fingerprint>>,
}

impl age::Identity for SessionIdentity<'_> {
    fn unwrap_stanza(&self, _: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        None
    }

    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, DecryptError>> {
        let key_stanzas: Vec<&Stanza> = stanzas
            .iter()
            .filter(|s| s.tag == SESSION_KEY_TAG)
            .collect();
        let wrapped = stanzas.iter().find(|s| s.tag == SESSION_TAG);
        let wrapped = match (key_stanzas.is_empty(), wrapped) {
            (true, None) => return None,
            (false, Some(wrapped)) => wrapped,
            // One of the two kinds without the other: the header was cut.
            _ => return Some(Err(DecryptError::InvalidHeader)),
        };
        let written_to: Vec<Fingerprint> = key_stanzas
            .iter()
            .filter_map(|s| s.args.first().and_then(|arg| Fingerprint::parse(arg)))
            .collect();
        let ours = written_to
            .iter()
            .any(|f| self.keyring.fingerprints.contains(f));
        *self.written_to.borrow_mut() = written_to;
        match self.keyring.session(&key_stanzas) {
            Ok(Some(session)) => Some(session.unwrap(wrapped)),
            // Written to a key held here, and it does not open: the stanza
            // was changed, which says nothing about the keys.
            Ok(None) if ours => Some(Err(DecryptError::KeyDecryptionFailed)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(unix)]
fn exposed(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o077 != 0
}

#[cfg(not(unix))]
fn exposed(_: &std::fs::Metadata) -> bool {
    false
}

/// What age's error says, in words of our own: its messages are localized
/// and may span lines.
fn damaged(error: &DecryptError) -> OpenError {
    let why = match error {
        DecryptError::InvalidHeader => "its header is malformed".to_owned(),
        DecryptError::UnknownFormat => "it is not an age v1 file".to_owned(),
        DecryptError::InvalidMac => "its header's MAC does not match".to_owned(),
        DecryptError::DecryptionFailed => "its payload does not decrypt".to_owned(),
        DecryptError::KeyDecryptionFailed => "its key stanza does not decrypt".to_owned(),
        DecryptError::Io(e) => return OpenError::damaged_by(e),
        other => one_line(&format!("{other:?}")),
    };
    OpenError::Damaged(why)
}
