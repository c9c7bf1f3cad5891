//! Snapshot copies that dead jobvault processes left in `TMPDIR`.
//!
//! A snapshot copies the database to a temporary file first (SQLite's backup
//! API writes a database file), and removes it on every path a process that
//! keeps running takes. A `kill -9`, an OOM kill or a power cut in the middle
//! leaves the copy, and its `-journal`, behind, one more with every crash,
//! until the disk is full. Each copy's name carries the pid of the process
//! that made it, so a daemon starting up removes the copies of processes that
//! are gone, and only those: a copy whose process runs (another daemon, a
//! `jobvault backup`, or an unrelated process that took a dead one's pid) is
//! left alone, as is every file not named like a copy. A copy under the
//! starting daemon's own pid is a dead process's too (it has made none yet):
//! in a container the daemon is pid 1 after every restart.

use std::io;
use std::path::{Path, PathBuf};

/// The start of every snapshot copy's file name; the pid and a `-` follow.
const PREFIX: &str = ".jobvault-snapshot-";

/// The file name prefix for a snapshot copy made by this process.
pub fn copy_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// What [`remove_dead_copies`] did.
#[derive(Debug, Default)]
pub struct Cleared {
    pub removed: Vec<PathBuf>,
    /// Copies that could not be removed, and why; the others were still
    /// tried.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Removes from `dir` the snapshot copies (and their `-journal`, `-wal` and
/// `-shm` files) of processes that no longer run, and those under this
/// process's pid: call it before this process makes any.
pub fn remove_dead_copies(dir: &Path) -> io::Result<Cleared> {
    let own = std::process::id() as i32;
    let mut cleared = Cleared::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(copy_pid) else {
            continue;
        };
        if !entry.file_type()?.is_file() || (pid != own && is_running(pid)) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => cleared.removed.push(entry.path()),
            // Another daemon starting up got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => cleared.failed.push((entry.path(), e)),
        }
    }
    cleared.removed.sort();
    Ok(cleared)
}

/// The pid in a snapshot copy's file name, if it is one.
fn copy_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
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
        assert_eq!(copy_pid(".jobvault-snapshot-4242-Ab3xyz"), Some(4242));
        assert_eq!(
            copy_pid(".jobvault-snapshot-4242-Ab3xyz-journal"),
            Some(4242)
        );
        for other in [
            ".jobvault-snapshot-Ab3xyz",
            "jobvault-snapshot-4242-x",
            ".jobvault-snapshot--x",
            "notes.txt",
        ] {
            assert_eq!(copy_pid(other), None, "{other}");
        }
    }

    #[test]
    fn only_the_copies_of_dead_processes_and_our_own_pid_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // The test runner that started us runs.
        let parent = rustix::process::getppid().expect("a test has a parent");
        let live = format!("{PREFIX}{}-abc", parent.as_raw_nonzero());
        // An earlier process that had our pid (a container's pid 1).
        let ours = format!("{}abc", copy_prefix());
        // A pid above the kernel's limit (4194304) never runs.
        let dead = ".jobvault-snapshot-2147483000-abc";
        let names = [
            live.clone(),
            format!("{live}-journal"),
            ours.clone(),
            dead.to_owned(),
            format!("{dead}-journal"),
            "unrelated.db".to_owned(),
        ];
        for name in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = remove_dead_copies(dir.path()).unwrap().removed;
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
                "unrelated.db".to_owned()
            ]
        );
    }
}
