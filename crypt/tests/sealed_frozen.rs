//! Encrypted objects outlive the code that wrote them: the first sealed
//! format must still open. See `frozen/README.md`.

use std::path::PathBuf;

use jobvault_crypt::Keyring;

const SEALED: &[u8] = include_bytes!("frozen/sealed-session-v1.age");
const PLAIN: &[u8] = include_bytes!("frozen/plain.bin");

#[test]
fn the_first_sealed_format_still_opens() {
    let identity = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/frozen/identity.txt");
    let keyring = Keyring::load(&[identity]).unwrap();
    assert_eq!(keyring.open(SEALED).unwrap(), PLAIN);
    let text = String::from_utf8_lossy(SEALED);
    assert!(text.contains("\n-> jobvault-session-key "), "{text}");
    assert!(text.contains("\n-> jobvault-session "), "{text}");
}
