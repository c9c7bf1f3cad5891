//! `jobvault keygen`: an identity for encrypted backups. The identity file
//! stays with the operator; only the recipient it prints goes to the
//! daemon's host (`run --encrypt-to`).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jobvault::clock;
use jobvault::logging::{Said, say};
use jobvault_crypt::{Fingerprint, generate_identity};

/// Make an age identity for encrypted backups: write it to a new file (mode
/// 0600) and print its recipient (age1…) on stdout.
///
/// The file is the same as `age-keygen` writes; either may be used. Keep it
/// off the host that runs the daemon: that host needs only the recipient.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The identity file to create; an existing file is never replaced.
    #[arg(long, short, value_name = "FILE", value_parser = parse_out)]
    out: PathBuf,
}

/// `-` is no file: `age-keygen -o -` writes the key to stdout, and here it
/// made a file named `-` in the working directory, mixed with the
/// recipient's line.
fn parse_out(text: &str) -> Result<PathBuf, String> {
    if text == "-" {
        return Err(
            "the identity goes to a file only (mode 0600), never to stdout; name one".into(),
        );
    }
    Ok(PathBuf::from(text))
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let (text, recipient) = generate_identity(&clock::now().rfc3339());
    write_new_private(&args.out, text.as_bytes())
        .with_context(|| format!("{}: cannot write the identity file", args.out.display()))?;
    println!("{recipient}");
    say(
        Said::Notice,
        &format!(
            "wrote the identity to {} (fingerprint {}); give the daemon the recipient on stdout",
            args.out.display(),
            Fingerprint::of(&recipient)
        ),
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` readable by its owner alone and writes `bytes` to disk; a
/// file cut short by a full disk is removed, not left behind.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}
