//! The files keys come in: identity files and recipients files. Each holds
//! a few lines, and is read whole: from a regular file, or from a pipe, as
//! `--identity <(vault read …)` gives one, so that the key need not be
//! written to disk (as `age -i` allows). A folder, a device or a socket is
//! refused before it is read, and so is anything far larger than a key
//! file (a pipe is read no further than that).

use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// No key file comes near this: an identity is 74 bytes, a recipient 62.
const LARGEST: u64 = 1 << 20;

/// The file's metadata and its text, or why it cannot be a key file, in
/// words that follow "cannot read it: ".
pub(crate) fn read(path: &Path) -> Result<(Metadata, String), String> {
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let kind = metadata.file_type();
    if metadata.is_dir() {
        return Err("it is a folder".to_owned());
    }
    if !metadata.is_file() && !kind.is_fifo() {
        return Err("it is not a regular file or a pipe (a device or a socket?)".to_owned());
    }
    let too_large = |size: u64| format!("it is {size} bytes or more; a key file holds a few lines");
    if metadata.len() > LARGEST {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(LARGEST + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > LARGEST {
        return Err(too_large(bytes.len() as u64));
    }
    let text = String::from_utf8(bytes).map_err(|_| "it is not text (UTF-8)".to_owned())?;
    Ok((metadata, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_devices_and_huge_files_are_refused_and_pipes_are_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap_err().contains("a folder"));
        assert!(
            read(Path::new("/dev/null"))
                .unwrap_err()
                .contains("a device")
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, "# from a pipe\n").unwrap())
        };
        assert_eq!(read(&fifo).unwrap().1, "# from a pipe\n");
        writer.join().unwrap();
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(LARGEST + 1)
            .unwrap();
        assert!(read(&huge).unwrap_err().contains("bytes"));
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        assert!(read(&binary).unwrap_err().contains("not text"));
        let small = dir.path().join("small");
        std::fs::write(&small, "# a comment\n").unwrap();
        assert_eq!(read(&small).unwrap().0.len(), 12);
    }
}
