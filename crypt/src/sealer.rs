//! The writer's side: every object the daemon writes, encrypted under one
//! session key wrapped once to the recipients.

use std::collections::HashSet;
use std::io::{self, Write};

use age::stream::StreamWriter;
use age::{EncryptError, Encryptor};
use age_core::format::{FileKey, Stanza};

use crate::fingerprint::Fingerprint;
use crate::recipients::Recipients;
use crate::session::SessionKey;

/// Encrypts objects to a set of recipients through a session key of its own.
pub struct Sealer {
    session: SessionKey,
    /// The session key wrapped to the recipients, the same in every object.
    key_stanzas: Vec<Stanza>,
    fingerprints: Vec<Fingerprint>,
}

impl Sealer {
    /// Draws a session key and wraps it to `recipients`: the one key
    /// agreement per recipient this sealer makes.
    pub fn new(recipients: &Recipients) -> Self {
        let session = SessionKey::draw();
        let key_stanzas = session.key_stanzas(recipients);
        Sealer {
            session,
            key_stanzas,
            fingerprints: recipients.fingerprints(),
        }
    }

    /// The fingerprints of the keys every object is written to.
    pub fn fingerprints(&self) -> &[Fingerprint] {
        &self.fingerprints
    }

    /// `plain` as an age file.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(plain.len() + 512 + 128 * self.key_stanzas.len());
        let mut writer = self
            .seal_into(&mut sealed)
            .expect("writing to memory does not fail");
        writer
            .write_all(plain)
            .and_then(|()| writer.finish().map(drop))
            .expect("writing to memory does not fail");
        sealed
    }

    /// A writer that encrypts what is written to it into `output`, for an
    /// object too large for memory; [`StreamWriter::finish`] ends it.
    pub fn seal_into<W: Write>(&self, output: W) -> io::Result<StreamWriter<W>> {
        let encryptor = Encryptor::with_recipients(std::iter::once(self as &dyn age::Recipient))
            .expect("a sealer is a recipient of its own");
        encryptor.wrap_output(output)
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("fingerprints", &self.fingerprints)
            .finish_non_exhaustive()
    }
}

impl age::Recipient for Sealer {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        let mut stanzas: Vec<Stanza> = self
            .key_stanzas
            .iter()
            .map(|stanza| Stanza {
                tag: stanza.tag.clone(),
                args: stanza.args.clone(),
                body: stanza.body.clone(),
            })
            .collect();
        stanzas.push(self.session.wrap(file_key));
        Ok((stanzas, HashSet::new()))
    }
}
