//! The machine's part of `jobvault check`: the database, the trigger
//! directory and room in `TMPDIR` for a snapshot's copy.

use std::fs;
use std::path::Path;

use crate::db::{CURRENT_VERSION, JobDb};
use crate::snapshot::{copy_size, free_bytes};
use jobvault_core::checks::Check;
use jobvault_core::trigger::TRIGGER_DIR;

/// The database exists, has the current schema and takes a write lock; a
/// UNIQUE index of the user's own on `jobs` is warned of: a hostile trial's
/// `INSERT OR REPLACE` beside one removed a row no backup recorded as
/// deleted, and a restore gave it back, with every check passed.
pub(super) fn database(path: &Path) -> Check {
    let result = JobDb::open(path).and_then(|mut db| {
        let version = db.schema_version()?;
        let jobs = if version == CURRENT_VERSION {
            Some(db.count()?)
        } else {
            None
        };
        db.check_writable()?;
        Ok((version, jobs, db.unique_indexes()?))
    });
    let result = match result {
        Ok((_, Some(jobs), unique)) if !unique.is_empty() => {
            return Check::warned(
                "database",
                format!(
                    "{}: {jobs} jobs, schema current, writable; but the index {} on jobs is \
                     UNIQUE: INSERT OR REPLACE then removes rows without the delete triggers, so \
                     a restore gives them back, and the index can refuse a restore (see the \
                     writer contract in the README)",
                    path.display(),
                    unique.join(", ")
                ),
            );
        }
        Ok((_, Some(jobs), _)) => Ok(format!(
            "{}: {jobs} jobs, schema current, writable",
            path.display()
        )),
        Ok((version, None, _)) => Err(format!(
            "{}: schema version {version}, not {CURRENT_VERSION}; run `jobvault init --db {}` (or start `jobvault run`, which upgrades it)",
            path.display(),
            path.display()
        )),
        Err(e) => Err(e.to_string()),
    };
    Check::new("database", result)
}

/// `<workdir>/trigger-backup/` exists or can be made, and takes a file. What
/// the check makes, it removes.
pub(super) fn trigger_directory(workdir: &Path) -> Check {
    let dir = workdir.join(TRIGGER_DIR);
    let made = first_missing(&dir);
    let result = fs::create_dir_all(&dir)
        .and_then(|()| {
            let probe = dir.join(format!(".jobvault-check-{}", std::process::id()));
            fs::write(&probe, b"")?;
            fs::remove_file(&probe)
        })
        .map(|()| format!("{} takes trigger files", dir.display()))
        .map_err(|e| format!("{}: {e}", dir.display()));
    if let Some(made) = made {
        let _ = fs::remove_dir_all(made);
    }
    Check::new("trigger directory", result)
}

/// The outermost directory on the way to `dir` that does not exist yet.
fn first_missing(dir: &Path) -> Option<&Path> {
    dir.ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .last()
}

/// `TMPDIR` has room for a copy of the database (and its WAL).
pub(super) fn room_for_a_snapshot(db: &Path, tmp: &Path) -> Check {
    let needed = copy_size(db);
    let result = match free_bytes(tmp) {
        Ok(free) => {
            let detail = format!(
                "{}: {} MiB free, a snapshot's copy takes about {} MiB",
                tmp.display(),
                free >> 20,
                needed.div_ceil(1 << 20)
            );
            if free >= needed {
                Ok(detail)
            } else {
                Err(detail)
            }
        }
        Err(e) => Err(format!("{}: {e}", tmp.display())),
    };
    Check::new("room in TMPDIR", result)
}
