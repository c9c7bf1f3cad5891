//! The keys the daemon encrypts to: X25519 recipients given on the command
//! line or in a recipients file (one `age1…` a line, `#` comments), as
//! `age -r` and `age -R` take them.

use std::path::Path;

use age::x25519;
use bech32::Bech32;
use bech32::primitives::decode::CheckedHrpstring;

use crate::error::BadRecipient;
use crate::fingerprint::Fingerprint;
use crate::key_file;

/// One or more X25519 recipients, without repeats.
#[derive(Debug, Clone)]
pub struct Recipients {
    keys: Vec<x25519::Recipient>,
}

impl Recipients {
    /// The recipients `texts` name; `None` if there are none.
    pub fn parse<'a>(
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Self>, BadRecipient> {
        let mut keys: Vec<x25519::Recipient> = Vec::new();
        for text in texts {
            let key = parse_one(text.trim(), "--encrypt-to".to_owned(), Some(text))?;
            if !keys.iter().any(|k| k.to_string() == key.to_string()) {
                keys.push(key);
            }
        }
        Ok((!keys.is_empty()).then_some(Recipients { keys }))
    }

    /// The recipients in the recipients file at `path`; an empty file is an
    /// error, as it would encrypt to nobody.
    pub fn from_file(path: &Path) -> Result<Self, BadRecipient> {
        if holds_secret_key(&path.to_string_lossy()) {
            return Err(BadRecipient {
                what: "--encrypt-to-file".to_owned(),
                why: "it was given a secret key (AGE-SECRET-KEY-1…) where the path of a file of \
                      recipients goes; the key must not be on this host"
                    .to_owned(),
            });
        }
        let cannot_read = |why| BadRecipient {
            what: path.display().to_string(),
            why: format!("cannot read it: {why}"),
        };
        let (_, text) = key_file::read(path).map_err(cannot_read)?;
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let what = format!("{} line {}", path.display(), number + 1);
            keys.push(parse_one(line, what, None)?);
        }
        if keys.is_empty() {
            return Err(BadRecipient {
                what: path.display().to_string(),
                why: "the file names no recipient".to_owned(),
            });
        }
        Ok(Recipients { keys })
    }

    /// Both lists together, without repeats.
    pub fn merged(self, other: Recipients) -> Recipients {
        let mut keys = self.keys;
        for key in other.keys {
            if !keys.iter().any(|k| k.to_string() == key.to_string()) {
                keys.push(key);
            }
        }
        Recipients { keys }
    }

    pub(crate) fn keys(&self) -> &[x25519::Recipient] {
        &self.keys
    }

    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.keys.iter().map(Fingerprint::of).collect()
    }
}

/// One recipient; `what` names where it came from, and `shown` is the text
/// to quote in an error, if any. Text holding a secret key is never quoted:
/// an error line ends up in logs.
fn parse_one(
    text: &str,
    what: String,
    shown: Option<&str>,
) -> Result<x25519::Recipient, BadRecipient> {
    if holds_secret_key(text) {
        return Err(BadRecipient {
            what,
            why: SECRET_GIVEN.to_owned(),
        });
    }
    text.parse().map_err(|why: &str| BadRecipient {
        what: match shown {
            Some(shown) => format!("{what} {shown:?}"),
            None => what,
        },
        why: if text.starts_with("ssh-") {
            SSH_GIVEN.to_owned()
        } else {
            why.to_owned()
        },
    })
}

const SSH_GIVEN: &str = "it is an SSH key; backups are encrypted to age X25519 recipients only \
    (age1…, from `jobvault keygen` or `age-keygen`)";

const SECRET_GIVEN: &str = "it was given a secret key (AGE-SECRET-KEY-1…), which must not be on \
    this host; give its recipient, which `jobvault keygen` printed (`age-keygen -y FILE` prints it again)";

/// What every identity starts with, in any case.
const SECRET_MARKER: &str = "AGE-SECRET-KEY-";

/// Whether `text` holds an identity (anywhere: `age1… AGE-SECRET-KEY-1…`
/// pasted into one value is a secret all the same), or is one's payload
/// alone (a double-click on a key selects `1…` without its prefix).
pub fn holds_secret_key(text: &str) -> bool {
    text.to_ascii_uppercase().contains(SECRET_MARKER) || !payload_runs(text).is_empty()
}

/// Bech32's alphabet, in which an identity's payload is written.
const BECH32: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// How long an identity's payload is after its `1`: 52 letters of key and
/// 6 of checksum.
const PAYLOAD_LEN: usize = 58;

/// The byte ranges of the runs of bech32, in either case, that hold an
/// identity's payload: 58 letters whose checksum is right for an identity.
/// A payload with anything around it (`x1…`, `1….db`, in a bucket URL) was
/// missed when only a whole value was looked at. Length and alphabet alone
/// are not enough: a SHA-256 digest in hex, a scheduler's usual job id, is
/// such a run once in about 1,350, and its job was set aside, never backed
/// up. The checksum takes a random run for a payload once in 2³⁰.
fn payload_runs(text: &str) -> Vec<std::ops::Range<usize>> {
    let bech32 = |c: char| BECH32.contains(c.to_ascii_lowercase());
    let mut runs = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find(bech32) {
        let start = at + found;
        let end = text[start..]
            .find(|c: char| !bech32(c))
            .map_or(text.len(), |n| start + n);
        if holds_payload(&text[start..end]) {
            runs.push(start..end);
        }
        at = end;
    }
    runs
}

/// Whether some 58 letters of `run`, all bech32, are an identity's payload.
fn holds_payload(run: &str) -> bool {
    run.len() >= PAYLOAD_LEN
        && (0..=run.len() - PAYLOAD_LEN).any(|from| {
            let payload = run[from..from + PAYLOAD_LEN].to_ascii_lowercase();
            CheckedHrpstring::new::<Bech32>(&format!("{IDENTITY_HRP}1{payload}")).is_ok()
        })
}

/// The human-readable part of an identity's bech32 (`AGE-SECRET-KEY-`
/// upper-cased); a recipient's (`age`) gives another checksum, so a
/// recipient's payload is no identity's.
const IDENTITY_HRP: &str = "age-secret-key-";

/// `text` with each identity in it cut to `AGE-SECRET-KEY-1…`, and each
/// run of bech32 as long as an identity's payload cut to `…`: for messages
/// made by others (the argument parser's) that quote what was typed, and
/// log lines (a trigger file named with a payload alone was quarantined,
/// and its name logged whole).
pub fn redact_secret_keys(text: &str) -> String {
    let marked = redact_marked(text);
    let mut redacted = String::with_capacity(marked.len());
    let mut rest = 0;
    for run in payload_runs(&marked) {
        redacted.push_str(&marked[rest..run.start]);
        redacted.push('…');
        rest = run.end;
    }
    redacted.push_str(&marked[rest..]);
    redacted
}

/// Cuts each identity, found by its marker, to `AGE-SECRET-KEY-1…`.
fn redact_marked(text: &str) -> String {
    // ASCII upper-casing keeps every byte offset.
    let upper = text.to_ascii_uppercase();
    let mut redacted = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = upper[rest..].find(SECRET_MARKER) {
        let start = rest + found;
        let key = start + SECRET_MARKER.len();
        let key_end = upper[key..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(upper.len(), |n| key + n);
        redacted.push_str(&text[rest..start]);
        // `AGE-SECRET-KEY-1…`, as messages name the kind, is no key.
        if key_end - key > 1 {
            redacted.push_str("AGE-SECRET-KEY-1…");
        } else {
            redacted.push_str(&text[start..key_end]);
        }
        rest = key_end;
    }
    redacted.push_str(&text[rest..]);
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn repeats_are_dropped_and_none_is_none() {
        let recipients = Recipients::parse([ONE, ONE]).unwrap().unwrap();
        assert_eq!(recipients.keys().len(), 1);
        assert!(Recipients::parse([]).unwrap().is_none());
    }

    #[test]
    fn a_malformed_recipient_is_named() {
        let error = Recipients::parse(["age1nope"]).unwrap_err();
        assert!(error.to_string().contains("\"age1nope\""), "{error}");
        let secret = identity();
        // The payload alone, as a double-click selects it.
        let payload = secret.trim_start_matches("AGE-SECRET-KEY-");
        assert!(!holds_secret_key(ONE), "a recipient is no key");
        for pasted in [
            secret.clone(),
            format!("{ONE} {secret}"),
            format!("recipient={}", secret.to_lowercase()),
            payload.to_owned(),
            payload.to_lowercase(),
        ] {
            let error = Recipients::parse([pasted.as_str()])
                .unwrap_err()
                .to_string();
            assert!(error.contains("secret key"), "{error}");
            assert!(
                !error.to_uppercase().contains(&payload[1..20]),
                "the key is not repeated: {error}"
            );
        }
    }

    /// A new identity, as `jobvault keygen` writes it.
    fn identity() -> String {
        use age::secrecy::ExposeSecret;
        x25519::Identity::generate()
            .to_string()
            .expose_secret()
            .to_owned()
    }

    /// An id of the right length and alphabet (a SHA-256 digest in hex
    /// without `1`, `b`, `i` or `o`, as one in about 1,350 is) is no key:
    /// a trial's job with such an id was set aside, never backed up.
    #[test]
    fn a_run_of_bech32_is_a_key_only_with_a_key_checksum() {
        let digest = "9f86d08c8ea3f45c2d6a7e0f3c5d4e6f7a8c9d0e2f3a4c5d6e7f8a9c0d2e3f4a";
        assert!(!holds_secret_key(digest));
        assert_eq!(redact_secret_keys(digest), digest);
        let payload = identity().trim_start_matches("AGE-SECRET-KEY-1").to_owned();
        let mut near = payload.clone().into_bytes();
        near[10] = if near[10] == b'Q' { b'P' } else { b'Q' };
        let near = String::from_utf8(near).unwrap();
        assert!(!holds_secret_key(&near), "one letter off is no key");
        for glued in [
            format!("ac{payload}"),
            format!("{payload}cd").to_lowercase(),
        ] {
            assert!(holds_secret_key(&glued), "{glued}");
        }
    }

    #[test]
    fn keys_are_cut_short_wherever_they_are_quoted() {
        let said = "unexpected argument '--age-secret-key-1QQQSECRET' and AGE-SECRET-KEY-1QQ2, \
                    as AGE-SECRET-KEY-1… names them";
        assert_eq!(
            redact_secret_keys(said),
            "unexpected argument '--AGE-SECRET-KEY-1…' and AGE-SECRET-KEY-1…, as \
             AGE-SECRET-KEY-1… names them"
        );
        assert_eq!(redact_secret_keys("nothing"), "nothing");
        let payload = identity().trim_start_matches("AGE-SECRET-KEY-").to_owned();
        assert_eq!(
            redact_secret_keys(&format!("trigger={payload} to=/w/x{payload}.db")),
            "trigger=1… to=/w/x1….db"
        );
        let short = "a0fd618807a93663";
        assert_eq!(redact_secret_keys(short), short, "ids stay");
        assert_eq!(redact_secret_keys(ONE), ONE, "a recipient stays");
        assert!(holds_secret_key(&format!("gs://b1/x{payload}")));
        assert!(!holds_secret_key(&format!("--encrypt-to {ONE}")));
    }

    #[test]
    fn a_recipients_file_names_its_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipients.txt");
        std::fs::write(&path, format!("# ops\n{ONE}\n\nssh-ed25519 AAAA\n")).unwrap();
        let error = Recipients::from_file(&path).unwrap_err();
        assert!(error.to_string().contains("line 4"), "{error}");
        assert!(error.to_string().contains("an SSH key"), "{error}");
        std::fs::write(&path, format!("{ONE}\nAGE-SECRET-KEY-1QQQSECRET\n")).unwrap();
        let error = Recipients::from_file(&path).unwrap_err().to_string();
        assert!(
            error.contains("recipients.txt line 2") && error.contains("secret key"),
            "the file is named, not --encrypt-to: {error}"
        );
        assert!(!error.contains("QQQSECRET"), "{error}");
        std::fs::write(&path, "# nobody\n").unwrap();
        let error = Recipients::from_file(&path).unwrap_err();
        assert!(error.to_string().contains("names no recipient"), "{error}");
    }
}
