//! Text from outside (file names, ids, paths) shown on one line.
//!
//! A trigger named `x\n2026-… INFO snapshot uploaded` wrote a forged log
//! line, and one holding `\x1b[31m` drove the reader's terminal. Whatever
//! jobvault prints of such text goes through [`OneLine`] or
//! [`escape_bytes`] first.

use std::fmt;

/// `text` with every control character as Rust escapes it (`\n`, `\u{1b}`),
/// and everything else as it is.
pub struct OneLine<'a>(pub &'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(char::is_control) {
            let ch = rest[at..].chars().next().expect("found a char there");
            write!(f, "{}{}", &rest[..at], ch.escape_debug())?;
            rest = &rest[at + ch.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `bytes` as text that names them, one to one: UTF-8 as it is with
/// backslashes doubled and control characters escaped, any other byte as
/// `\xNN`. Two different byte strings never escape to the same text, so the
/// result can stand for a name that is not UTF-8.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch == '\\' || ch.is_control() {
                out.extend(ch.escape_debug());
            } else {
                out.push(ch);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let forged = "x\n2026 INFO forged \u{1b}[31m café";
        assert_eq!(
            OneLine(forged).to_string(),
            r"x\n2026 INFO forged \u{1b}[31m café"
        );
    }

    #[test]
    fn bytes_escape_one_to_one() {
        assert_eq!(escape_bytes(b"caf\xe9-nightly"), r"caf\xe9-nightly");
        assert_eq!(escape_bytes(br"caf\xe9"), r"caf\\xe9");
        assert_eq!(escape_bytes("é\t".as_bytes()), r"é\t");
    }
}
