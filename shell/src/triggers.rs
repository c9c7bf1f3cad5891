//! The trigger directory on disk: `<workdir>/trigger-backup/`, and
//! `<workdir>/trigger-backup-invalid/` for malformed triggers.
//!
//! What a trigger means and when to act on it is the core's business
//! (`jobvault_core::trigger`); this module only reads and changes files.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use jobvault_core::Timestamp;
use jobvault_core::escape::escape_bytes;
use jobvault_core::job_id::{InvalidName, check_base_name};
use jobvault_core::trigger::{
    MAX_TRIGGER_BYTES, QUARANTINE_DIR, TRIGGER_DIR, TriggerFile, TriggerName, format_attempts,
    is_hidden,
};
use jobvault_crypt::holds_secret_key;
use time::OffsetDateTime;

/// What went wrong with a trigger file or the trigger directory; every
/// message names the path.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    BadName(#[from] InvalidName),
    #[error("trigger name {0:?} starts with '.', so it would be ignored")]
    Hidden(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> TriggerError + '_ {
    move |source| TriggerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The trigger directory of a work dir.
#[derive(Debug, Clone)]
pub struct TriggerDir {
    dir: PathBuf,
    quarantine: PathBuf,
}

impl TriggerDir {
    pub fn new(workdir: &Path) -> Self {
        TriggerDir {
            dir: workdir.join(TRIGGER_DIR),
            quarantine: workdir.join(QUARANTINE_DIR),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn create(&self) -> Result<(), TriggerError> {
        fs::create_dir_all(&self.dir).map_err(io_at(&self.dir))
    }

    /// Lists the regular files with their first bytes (enough to tell a
    /// valid count from an oversized file). A file that cannot be read is
    /// listed with why, for the core to quarantine: it never fails the
    /// scan. A name that is not UTF-8 is listed escaped.
    pub fn scan(&self) -> Result<Vec<TriggerFile>, TriggerError> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let entry = entry.map_err(io_at(&self.dir))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io_at(&path))?;
            if !meta.is_file() {
                continue;
            }
            let raw_name = entry.file_name();
            let (name, name_is_text) = match raw_name.to_str() {
                Some(name) => (name.to_owned(), true),
                None => (escape_bytes(raw_name.as_bytes()), false),
            };
            if is_hidden(&name) {
                continue;
            }
            let content = match read_start(&path) {
                // Served, it would name a snapshot after the key, in the
                // bucket and the logs: quarantined as unreadable.
                Ok(_) if holds_secret_key(&name) => {
                    Err("its name looks like an age secret key".to_owned())
                }
                Ok(content) => Ok(content),
                // Served and deleted between the listing and the read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => Err(e.to_string()),
            };
            let modified = meta.modified().map_err(io_at(&path))?;
            files.push(TriggerFile {
                name: TriggerName::found(name),
                name_is_text,
                modified: Timestamp::from_offset_date_time(OffsetDateTime::from(modified)),
                content,
            });
        }
        Ok(files)
    }

    /// The file a name from [`TriggerDir::scan`] stands for: itself, or the
    /// one whose name is not UTF-8 and escapes to it.
    fn file_named(&self, name: &str) -> PathBuf {
        let plain = self.dir.join(name);
        if plain.symlink_metadata().is_ok() {
            return plain;
        }
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .find(|entry| escape_bytes(entry.file_name().as_bytes()) == name)
            .map_or(plain, |entry| entry.path())
    }

    /// Records the attempt count in an existing trigger, atomically (a
    /// hidden temporary file renamed over it). Fails if the trigger is gone.
    pub fn write_attempts(&self, name: &str, attempts: u32) -> Result<(), TriggerError> {
        let path = self.dir.join(name);
        fs::metadata(&path).map_err(io_at(&path))?;
        let mut temp = tempfile::Builder::new()
            .prefix(".attempts-")
            .tempfile_in(&self.dir)
            .map_err(io_at(&self.dir))?;
        temp.write_all(format_attempts(attempts).as_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .map_err(io_at(temp.path()))?;
        temp.persist(&path).map_err(|e| io_at(&path)(e.error))?;
        Ok(())
    }

    /// Removes a trigger; one already gone counts as removed.
    pub fn delete(&self, name: &str) -> Result<(), TriggerError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Moves a malformed trigger to the quarantine directory, under a new
    /// name if one of that name is already there. Returns where it went.
    pub fn quarantine(&self, name: &str) -> Result<PathBuf, TriggerError> {
        fs::create_dir_all(&self.quarantine).map_err(io_at(&self.quarantine))?;
        let from = self.file_named(name);
        let mut to = self.quarantine.join(name);
        let mut n = 1;
        while to.exists() {
            to = self.quarantine.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(&from, &to).map_err(io_at(&from))?;
        Ok(to)
    }

    /// Drops a new, empty trigger, as the systemd timer does. Returns false
    /// if a trigger of that name is already waiting (it is left alone: it may
    /// hold an attempt count).
    pub fn drop_trigger(&self, name: &str) -> Result<bool, TriggerError> {
        check_base_name("trigger name", name)?;
        if is_hidden(name) {
            return Err(TriggerError::Hidden(name.to_owned()));
        }
        self.create()?;
        let path = self.dir.join(name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_at(&path)(e)),
        }
    }
}

/// The first bytes of a trigger file.
fn read_start(path: &Path) -> io::Result<Vec<u8>> {
    let mut content = Vec::with_capacity(MAX_TRIGGER_BYTES + 1);
    fs::File::open(path)?
        .take(MAX_TRIGGER_BYTES as u64 + 1)
        .read_to_end(&mut content)?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, TriggerDir) {
        let work = tempfile::tempdir().unwrap();
        let triggers = TriggerDir::new(work.path());
        triggers.create().unwrap();
        (work, triggers)
    }

    #[test]
    fn scan_reads_regular_visible_files_and_caps_their_content() {
        let (_work, triggers) = dir();
        fs::write(triggers.path().join("a"), "").unwrap();
        fs::write(triggers.path().join("big"), vec![b'1'; 1000]).unwrap();
        fs::write(triggers.path().join(".swap"), "x").unwrap();
        fs::create_dir(triggers.path().join("folder")).unwrap();
        let mut files = triggers.scan().unwrap();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "big"]);
        assert_eq!(
            files[1].content.as_ref().unwrap().len(),
            MAX_TRIGGER_BYTES + 1
        );
    }

    /// Served, such a trigger named a snapshot after the key.
    #[test]
    fn a_trigger_named_like_a_secret_key_is_listed_unreadable() {
        let (_work, triggers) = dir();
        let key = format!("AGE-SECRET-KEY-1{}", "Q".repeat(58));
        fs::write(triggers.path().join(&key), "").unwrap();
        let files = triggers.scan().unwrap();
        assert_eq!(files.len(), 1);
        let why = files[0].content.as_ref().unwrap_err();
        assert!(why.contains("looks like an age secret key"), "{why}");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let work = tempfile::tempdir().unwrap();
        let err = TriggerDir::new(work.path()).scan().unwrap_err().to_string();
        assert!(err.contains("trigger-backup"), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }

    #[test]
    fn attempts_are_written_over_an_existing_trigger_only() {
        let (_work, triggers) = dir();
        fs::write(triggers.path().join("t"), "").unwrap();
        triggers.write_attempts("t", 2).unwrap();
        assert_eq!(fs::read_to_string(triggers.path().join("t")).unwrap(), "2");
        assert!(triggers.write_attempts("gone", 1).is_err());
        assert!(!triggers.path().join("gone").exists());
        assert_eq!(
            triggers.scan().unwrap().len(),
            1,
            "no temporary file is left"
        );
    }

    #[test]
    fn quarantine_keeps_every_file() {
        let (work, triggers) = dir();
        for _ in 0..2 {
            fs::write(triggers.path().join("bad"), "junk").unwrap();
            triggers.quarantine("bad").unwrap();
        }
        let quarantine = work.path().join(QUARANTINE_DIR);
        assert!(quarantine.join("bad").exists());
        assert!(quarantine.join("bad.1").exists());
        assert!(triggers.scan().unwrap().is_empty());
    }

    #[test]
    fn a_name_that_is_not_utf8_is_listed_escaped_and_quarantined_by_it() {
        let (work, triggers) = dir();
        let raw = std::ffi::OsStr::from_bytes(b"caf\xe9-nightly");
        fs::write(triggers.path().join(raw), "").unwrap();
        let files = triggers.scan().unwrap();
        assert_eq!(
            (files[0].name.as_str(), files[0].name_is_text),
            (r"caf\xe9-nightly", false)
        );
        triggers.quarantine(&files[0].name).unwrap();
        assert!(
            work.path()
                .join(QUARANTINE_DIR)
                .join(r"caf\xe9-nightly")
                .exists()
        );
        assert!(triggers.scan().unwrap().is_empty());
    }

    #[test]
    fn dropping_a_trigger_leaves_a_waiting_one_alone() {
        let (_work, triggers) = dir();
        assert!(triggers.drop_trigger("nightly").unwrap());
        triggers.write_attempts("nightly", 1).unwrap();
        assert!(!triggers.drop_trigger("nightly").unwrap());
        assert_eq!(
            fs::read_to_string(triggers.path().join("nightly")).unwrap(),
            "1"
        );
        assert!(triggers.drop_trigger("../x").is_err());
        assert!(triggers.drop_trigger(".x").is_err());
    }
}
