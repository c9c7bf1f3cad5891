//! The files keys come in: identity files and recipients files. Each holds
//! a few lines, and is read whole. One that is not a regular file (a FIFO
//! would hold the command forever, a folder gives an error about reading)
//! or is far larger than any key file is refused before it is read.

use std::fs::Metadata;
use std::path::Path;

/// No key file comes near this: an identity is 74 bytes, a recipient 62.
const LARGEST: u64 = 1 << 20;

/// The file's metadata, or why it cannot be a key file, in words that
/// follow "cannot read it: ".
pub(crate) fn check(path: &Path) -> Result<Metadata, String> {
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        let what = if metadata.is_dir() {
            "a folder"
        } else {
            "not a regular file (a pipe or a device?)"
        };
        return Err(format!("it is {what}"));
    }
    if metadata.len() > LARGEST {
        return Err(format!(
            "it is {} bytes; a key file holds a few lines",
            metadata.len()
        ));
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_pipes_and_huge_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check(dir.path()).unwrap_err().contains("a folder"));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        assert!(check(&fifo).unwrap_err().contains("not a regular file"));
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(LARGEST + 1)
            .unwrap();
        assert!(check(&huge).unwrap_err().contains("bytes"));
        let small = dir.path().join("small");
        std::fs::write(&small, "# a comment\n").unwrap();
        assert_eq!(check(&small).unwrap().len(), 12);
    }
}
