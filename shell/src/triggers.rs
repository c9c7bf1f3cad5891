//! The trigger directory on disk: `<workdir>/trigger-backup/`, and
//! `<workdir>/trigger-backup-invalid/` for malformed triggers.
//!
//! What a trigger means and when to act on it is the core's business
//! (`jobvault_core::trigger`); this module only reads and changes files.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use jobvault_core::Timestamp;
use jobvault_core::job_id::{InvalidName, check_base_name};
use jobvault_core::trigger::{
    MAX_TRIGGER_BYTES, QUARANTINE_DIR, TRIGGER_DIR, TriggerFile, format_attempts, is_hidden,
};
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
    /// valid count from an oversized file).
    pub fn scan(&self) -> Result<Vec<TriggerFile>, TriggerError> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let entry = entry.map_err(io_at(&self.dir))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io_at(&path))?;
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_hidden(&name) {
                continue;
            }
            let mut content = Vec::with_capacity(MAX_TRIGGER_BYTES + 1);
            match fs::File::open(&path) {
                Ok(file) => {
                    file.take(MAX_TRIGGER_BYTES as u64 + 1)
                        .read_to_end(&mut content)
                        .map_err(io_at(&path))?;
                }
                // Served and deleted between the listing and the read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&path)(e)),
            }
            let modified = meta.modified().map_err(io_at(&path))?;
            files.push(TriggerFile {
                name,
                modified: Timestamp::from_offset_date_time(OffsetDateTime::from(modified)),
                content,
            });
        }
        Ok(files)
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
        let from = self.dir.join(name);
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
        assert_eq!(files[1].content.len(), MAX_TRIGGER_BYTES + 1);
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
