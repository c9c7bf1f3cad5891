//! A short public name for a recipient, so that an operator can tell which
//! key an object was written to without the object naming the key itself.

use std::fmt;

use sha2::{Digest, Sha256};

/// The first 6 bytes of the SHA-256 of a recipient's text (`age1…`), in hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of the recipient `age1…`.
    pub fn of(recipient: &age::x25519::Recipient) -> Self {
        let digest = Sha256::digest(recipient.to_string().as_bytes());
        Fingerprint(digest[..6].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A fingerprint as a stanza carries it; `None` unless it is 12 hex digits.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let hex = text.len() == 12 && text.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| Fingerprint(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `a, b and c`-style: the fingerprints joined for a message.
pub(crate) fn listed(fingerprints: &[Fingerprint]) -> String {
    if fingerprints.is_empty() {
        return "no key jobvault can name".to_owned();
    }
    fingerprints
        .iter()
        .map(Fingerprint::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_stable_and_reads_back() {
        let recipient: age::x25519::Recipient =
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
                .parse()
                .unwrap();
        let fingerprint = Fingerprint::of(&recipient);
        assert_eq!(fingerprint.as_str().len(), 12);
        assert_eq!(Fingerprint::parse(fingerprint.as_str()), Some(fingerprint));
        assert_eq!(Fingerprint::parse("not-hex-text"), None);
        assert_eq!(Fingerprint::parse("abc"), None);
    }
}
