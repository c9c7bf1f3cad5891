//! Sealing and opening objects as the daemon and the read commands will:
//! real keys drawn by age, real age files, every way an object can fail to
//! open. The format's frozen sample is in `sealed_frozen.rs`.

use std::io::Read;
use std::path::{Path, PathBuf};

use jobvault_crypt::{Keyring, OpenError, Recipients, Sealer, generate_identity, is_sealed};

const PLAIN: &[u8] = b"\x1f\x8b a gzip member would be here, with the job's body: Deploy prod";

/// An identity file in `dir`, mode 0600, and its recipient.
fn identity(dir: &Path, name: &str) -> (PathBuf, String) {
    let (text, recipient) = generate_identity("2026-12-05T00:00:00Z");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    set_mode(&path, 0o600);
    (path, recipient.to_string())
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn sealer(recipients: &[&str]) -> Sealer {
    Sealer::new(
        &Recipients::parse(recipients.iter().copied())
            .unwrap()
            .unwrap(),
    )
}

#[test]
fn a_sealed_object_opens_with_its_identity_and_shows_nothing_of_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let (path, recipient) = identity(dir.path(), "ops.key");
    let sealed = sealer(&[&recipient]).seal(PLAIN);
    assert!(is_sealed(&sealed));
    assert!(!is_sealed(PLAIN));
    assert!(!sealed.starts_with(b"\x1f\x8b"), "not gzip on the outside");
    assert!(
        !sealed.windows(b"Deploy".len()).any(|w| w == b"Deploy"),
        "the body's text is not in the object"
    );
    let keyring = Keyring::load(&[path]).unwrap();
    assert_eq!(keyring.open(&sealed).unwrap(), PLAIN);
    assert!(keyring.exposed_files().is_empty());
}

#[test]
fn each_of_two_recipients_opens_it_alone_and_a_keyring_holds_rotated_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_recipient) = identity(dir.path(), "old.key");
    let (new, new_recipient) = identity(dir.path(), "new.key");
    let both = sealer(&[&old_recipient, &new_recipient]).seal(PLAIN);
    let only_old = sealer(&[&old_recipient]).seal(b"before the rotation");
    let only_new = sealer(&[&new_recipient]).seal(b"after the rotation");
    for path in [&old, &new] {
        let keyring = Keyring::load(std::slice::from_ref(path)).unwrap();
        assert_eq!(keyring.open(&both).unwrap(), PLAIN);
    }
    let rotated = Keyring::load(&[old, new]).unwrap();
    assert_eq!(rotated.open(&only_old).unwrap(), b"before the rotation");
    assert_eq!(rotated.open(&only_new).unwrap(), b"after the rotation");
    assert_eq!(rotated.fingerprints().len(), 2);
}

#[test]
fn without_a_matching_identity_the_error_names_the_keys_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (_, recipient) = identity(dir.path(), "ops.key");
    let (other, _) = identity(dir.path(), "other.key");
    let sealer = sealer(&[&recipient]);
    let sealed = sealer.seal(PLAIN);
    let keyring = Keyring::load(&[other]).unwrap();
    let error = keyring.open(&sealed).unwrap_err();
    assert_eq!(
        error,
        OpenError::NoMatchingIdentity {
            written_to: sealer.fingerprints().to_vec(),
            have: keyring.fingerprints().to_vec(),
        }
    );
    let text = error.to_string();
    assert!(text.contains(sealer.fingerprints()[0].as_str()), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");

    let error = Keyring::default().open(&sealed).unwrap_err();
    assert!(matches!(error, OpenError::NoIdentity { .. }), "{error}");
    assert!(error.to_string().contains("--identity"), "{error}");
}

#[test]
fn a_tampered_or_cut_object_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, recipient) = identity(dir.path(), "ops.key");
    let keyring = Keyring::load(&[path]).unwrap();
    let big: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
    let sealed = sealer(&[&recipient]).seal(&big);

    let mut payload_changed = sealed.clone();
    let last = payload_changed.len() - 1;
    payload_changed[last] ^= 1;
    // A byte of the session key's stanza: its share, then its body.
    let mut share_changed = sealed.clone();
    share_changed[60] ^= 1;
    let mut header_changed = sealed.clone();
    header_changed[100] ^= 1;
    let cut = &sealed[..sealed.len() - 100];
    let header_only = &sealed[..sealed.len() - big.len()];
    for (what, bytes) in [
        ("a changed payload", &payload_changed[..]),
        ("a changed share", &share_changed[..]),
        ("a changed header", &header_changed[..]),
        ("a cut payload", cut),
        ("a header alone", header_only),
        ("the first line alone", &sealed[..22]),
    ] {
        match keyring.open(bytes) {
            Err(OpenError::Damaged(why)) => {
                assert!(!why.contains('\n'), "{what}: {why}");
                assert!(!why.contains("fill whole buffer"), "{what}: {why}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let Err(OpenError::Damaged(why)) = keyring.open(&sealed[..22]) else {
        panic!("a header cut after its first line opens");
    };
    assert_eq!(why, "it ends early");

    // Streamed, the first 64 KiB chunks are handed out before the cut is
    // seen: the reader's error comes at the end, so a caller keeps nothing
    // until the end came without one.
    let mut reader = keyring.open_reader(cut).unwrap();
    let mut first = vec![0; 64 * 1024];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(first, big[..first.len()]);
    assert!(reader.read_to_end(&mut Vec::new()).is_err());
}

#[test]
fn a_file_made_by_age_for_its_own_recipient_opens_too() {
    let dir = tempfile::tempdir().unwrap();
    let (path, recipient) = identity(dir.path(), "ops.key");
    let recipient: age::x25519::Recipient = recipient.parse().unwrap();
    let sealed = age::encrypt(&recipient, PLAIN).unwrap();
    let keyring = Keyring::load(&[path]).unwrap();
    assert_eq!(keyring.open(&sealed).unwrap(), PLAIN);
}

#[test]
fn identity_files_are_checked_and_loose_ones_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = identity(dir.path(), "ops.key");
    set_mode(&path, 0o644);
    let keyring = Keyring::load(std::slice::from_ref(&path)).unwrap();
    assert_eq!(keyring.exposed_files(), [path]);

    let recipients_file = dir.path().join("recipients.txt");
    std::fs::write(
        &recipients_file,
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n",
    )
    .unwrap();
    let comments = dir.path().join("comments.txt");
    std::fs::write(&comments, "# nothing here\n").unwrap();
    for (path, says) in [
        (
            recipients_file,
            "it holds a recipient (age1…), the public half",
        ),
        (comments, "holds no identity"),
        (dir.path().join("missing.key"), "cannot read"),
    ] {
        let error = Keyring::load(std::slice::from_ref(&path))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains(says), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
    }
}
