//! Temporary files that dead jobvault processes left behind.
//!
//! A snapshot copies the database to a temporary file in `TMPDIR` first
//! (SQLite's backup API writes a database file); a restore builds the
//! database in a temporary file beside its target, and `verify` in `TMPDIR`.
//! Each is removed on every path a process that keeps running takes. A
//! `kill -9`, an OOM kill or a power cut in the middle leaves it, and its
//! `-journal`, behind: one more with every crash, until the disk is full, and
//! for a restore from an encrypted bucket a decrypted copy of the jobs that
//! nobody is watching. Each name carries the pid of the process that made it,
//! so the next process of the kind removes the files of processes that are
//! gone, and only those: a file whose process runs (another daemon, a
//! `jobvault backup`, a second restore, or an unrelated process that took a
//! dead one's pid) is left alone, as is every file not named like one. A file
//! under the starting process's own pid is a dead process's too (it has made
//! none yet): in a container the daemon is pid 1 after every restart.

use std::io;
use std::path::{Path, PathBuf};

/// A kind of temporary file a jobvault process makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// A snapshot's copy of the database, in `TMPDIR`.
    SnapshotCopy,
    /// The database a restore builds beside its target.
    RestoreDatabase,
    /// The database `verify` builds in `TMPDIR`.
    VerifyDatabase,
}

impl Leftover {
    /// The start of every such file's name; the pid and a `-` follow.
    fn prefix(self) -> &'static str {
        match self {
            Leftover::SnapshotCopy => ".jobvault-snapshot-",
            Leftover::RestoreDatabase => ".jobvault-restore-",
            Leftover::VerifyDatabase => ".jobvault-verify-",
        }
    }

    /// The file name prefix for such a file made by this process.
    pub fn own_prefix(self) -> String {
        format!("{}{}-", self.prefix(), std::process::id())
    }

    /// What the log calls it.
    pub fn describe(self) -> &'static str {
        match self {
            Leftover::SnapshotCopy => "a snapshot copy",
            Leftover::RestoreDatabase => "a restore's unfinished database",
            Leftover::VerifyDatabase => "a verify's database",
        }
    }

    /// The pid in such a file's name, if it is one.
    fn pid_in(self, name: &str) -> Option<i32> {
        let rest = name.strip_prefix(self.prefix())?;
        let (pid, _) = rest.split_once('-')?;
        pid.parse().ok()
    }
}

/// What [`remove_dead`] did.
#[derive(Debug, Default)]
pub struct Cleared {
    pub removed: Vec<PathBuf>,
    /// Files that could not be removed, and why; the others were still
    /// tried.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Removes from `dir` the files of this kind (and their `-journal`, `-wal`
/// and `-shm` files) of processes that no longer run, and those under this
/// process's pid: call it before this process makes any.
pub fn remove_dead(kind: Leftover, dir: &Path) -> io::Result<Cleared> {
    let own = std::process::id() as i32;
    let mut cleared = Cleared::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| kind.pid_in(n)) else {
            continue;
        };
        if !entry.file_type()?.is_file() || (pid != own && is_running(pid)) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => cleared.removed.push(entry.path()),
            // Another process starting up got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => cleared.failed.push((entry.path(), e)),
        }
    }
    cleared.removed.sort();
    Ok(cleared)
}

/// [`remove_dead`], warning of what it removed (a crash went unnoticed
/// before) or could not: a failure here is not a reason to stop.
pub fn clear(kind: Leftover, dir: &Path) {
    let what = kind.describe();
    match remove_dead(kind, dir) {
        Ok(cleared) => {
            for path in cleared.removed {
                tracing::warn!(file = %path.display(), "removed {what} a crashed jobvault left");
            }
            for (path, e) in cleared.failed {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove {what} a crashed jobvault left");
            }
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot look for {what} a crashed jobvault left")
        }
    }
}

/// Whether a process with this pid runs (or cannot be told apart from one
/// that does: a process of another user counts as running).
pub fn is_running(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => !is_zombie(pid),
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// A process that exited and was not reaped yet (its parent died too, and
/// nothing reaps orphans, as in some containers) still answers a signal
/// test. Linux says so in `/proc`; elsewhere it counts as running.
fn is_zombie(pid: rustix::process::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            let after_name = &stat[stat.rfind(')')? + 1..];
            after_name
                .split_whitespace()
                .next()
                .map(|state| state == "Z")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_for_their_pid() {
        let copy = Leftover::SnapshotCopy;
        assert_eq!(copy.pid_in(".jobvault-snapshot-4242-Ab3xyz"), Some(4242));
        assert_eq!(
            copy.pid_in(".jobvault-snapshot-4242-Ab3xyz-journal"),
            Some(4242)
        );
        assert_eq!(
            Leftover::RestoreDatabase.pid_in(".jobvault-restore-4242-Ab3xyz-wal"),
            Some(4242)
        );
        assert_eq!(copy.pid_in(".jobvault-restore-4242-Ab3xyz"), None);
        for other in [
            ".jobvault-snapshot-Ab3xyz",
            "jobvault-snapshot-4242-x",
            ".jobvault-snapshot--x",
            "notes.txt",
        ] {
            assert_eq!(copy.pid_in(other), None, "{other}");
        }
    }

    #[test]
    fn only_the_copies_of_dead_processes_and_our_own_pid_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // The test runner that started us runs.
        let parent = rustix::process::getppid().expect("a test has a parent");
        let live = format!(".jobvault-restore-{}-abc", parent.as_raw_nonzero());
        // An earlier process that had our pid (a container's pid 1).
        let ours = format!("{}abc", Leftover::RestoreDatabase.own_prefix());
        // A pid above the kernel's limit (4194304) never runs.
        let dead = ".jobvault-restore-2147483000-abc";
        let names = [
            live.clone(),
            format!("{live}-journal"),
            ours.clone(),
            dead.to_owned(),
            format!("{dead}-journal"),
            "unrelated.db".to_owned(),
            ".jobvault-snapshot-2147483000-abc".to_owned(),
        ];
        for name in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = remove_dead(Leftover::RestoreDatabase, dir.path())
            .unwrap()
            .removed;
        let mut expected = vec![
            dir.path().join(&ours),
            dir.path().join(dead),
            dir.path().join(format!("{dead}-journal")),
        ];
        expected.sort();
        assert_eq!(removed, expected);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                live.clone(),
                format!("{live}-journal"),
                // Another kind's file, even of a dead process.
                ".jobvault-snapshot-2147483000-abc".to_owned(),
                "unrelated.db".to_owned(),
            ]
        );
    }
}
