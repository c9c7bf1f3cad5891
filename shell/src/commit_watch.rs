//! Notices commits to the job database as they happen, so that a change
//! reaches the bucket within milliseconds instead of at the next interval.
//!
//! The first release looked for changes every 10 s, so a committed job was
//! in the bucket 5 s later on average and 10 s at worst; a general SQLite
//! replicator gets it there within a second. SQLite's `data_version` moves
//! whenever another connection commits, and in WAL mode reading it touches
//! only shared memory. A thread of its own, with a connection of its own,
//! reads it when the core's [`next_look`] says, woken by inotify on the
//! database's directory where it can be set up, and reports
//! [`Input::DatabaseChanged`] when it moved; what to do about it is the
//! core's. A fixed 50 ms poll used to cost most of an idle daemon's CPU.
//! The interval stays the fallback: if the watcher cannot read, nothing is
//! lost, only later.
//!
//! A look that finds a commit also reads the change feed, on the same
//! connection, when the core has said which read it would ask for
//! ([`jobvault_core::Backup::read_at_next_commit`], handed over in a [`StandingRead`]),
//! and reports both as [`Input::CommitRead`]. Reported apart, each commit
//! under load cost the runtime two wake-ups (the notice, then the read's
//! answer) and a hand-off to the blocking pool, and the read began on a
//! second connection whose page cache the commit had just emptied.
//!
//! Each look also checks that the path still names the file the watcher
//! opened. A database renamed over by hand (a restore moved into place, a
//! copy) left the daemon reading the old file and reporting itself caught
//! up while writers filled the new one; it now reports
//! [`Input::DatabaseReplaced`] and the core halts.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use jobvault_core::Input;
use jobvault_core::commit_watch::{NextLook, Watch, after_wait, next_look};
use jobvault_core::machine::ReadOrder;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use crate::clock;
use crate::db::{DbError, JobDb};
use crate::store::error_chain;

#[cfg(target_os = "linux")]
mod notices;
#[cfg(target_os = "linux")]
use notices::Notices;

/// The watcher's thread, and how it learns of commits.
pub struct Watching {
    pub watch: Watch,
    thread: std::thread::JoinHandle<()>,
}

impl Watching {
    /// Waits for the thread to end, its connection to the database closed:
    /// it looks no more once the receiver of its reports is gone, within
    /// its longest wait (a second) and the read it may be making.
    pub async fn finish(self) {
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// The read the core would ask for at the next commit, as of its last
/// step: the driver sets it after each, the watcher makes it at a commit
/// and clears it (until the next step, a commit is reported alone).
pub type StandingRead = Arc<Mutex<Option<ReadOrder>>>;

/// Starts watching the database at `path`, reporting to `inputs` until
/// they close, with the read `standing` names at each commit found.
pub fn spawn(
    path: &Path,
    inputs: UnboundedSender<Input>,
    standing: StandingRead,
) -> Result<Watching, DbError> {
    let db = JobDb::open(path)?;
    let seen = db.data_version()?;
    // Absolute, not canonical: a relative path would follow the working
    // directory if it were renamed (a trial's was, and the daemon went on
    // with the moved file), and a symbolic link retargeted is a replacement.
    let opened = std::path::absolute(path)
        .and_then(|absolute| Opened::at(&absolute))
        .map_err(|source| DbError::Io {
            path: path.to_owned(),
            source,
        })?;
    let notices = watch_files(path);
    let watch = if notices.is_some() {
        Watch::Notified
    } else {
        Watch::Polled
    };
    let thread = std::thread::Builder::new()
        .name("jobvault-watch".to_owned())
        .spawn(move || {
            Watcher {
                db,
                opened,
                seen,
                failing: false,
                standing,
            }
            .run(watch, notices, &inputs)
        })
        .expect("a thread can be started");
    Ok(Watching { watch, thread })
}

#[cfg(target_os = "linux")]
fn watch_files(path: &Path) -> Option<Notices> {
    Notices::watch(path)
        .inspect_err(|e| {
            warn!(error = %e, "cannot have the OS say when the job database changes; looking every 50 ms instead");
        })
        .ok()
}

/// No notices but on Linux: the watcher polls.
#[cfg(not(target_os = "linux"))]
fn watch_files(_path: &Path) -> Option<Notices> {
    None
}

#[cfg(not(target_os = "linux"))]
enum Notices {}

#[cfg(not(target_os = "linux"))]
impl Notices {
    fn wait(&self, _timeout: std::time::Duration) -> bool {
        match *self {}
    }

    fn drain(&self) -> bool {
        match *self {}
    }
}

/// The file a path named when the watcher opened it.
struct Opened {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl Opened {
    fn at(path: &Path) -> io::Result<Opened> {
        let meta = std::fs::metadata(path)?;
        Ok(Opened {
            path: path.to_owned(),
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    /// Whether the path names another file now, or none. A path that
    /// cannot be looked at (a folder's permission taken away) is not
    /// taken for replaced.
    fn replaced(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()) != (self.device, self.inode),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }
}

struct Watcher {
    db: JobDb,
    opened: Opened,
    seen: i64,
    failing: bool,
    standing: StandingRead,
}

impl Watcher {
    fn run(mut self, watch: Watch, notices: Option<Notices>, inputs: &UnboundedSender<Input>) {
        let (mut after_notice, mut found) = (None, false);
        while !inputs.is_closed() {
            let noticed = match (next_look(watch, after_notice, found), &notices) {
                (
                    NextLook::AtNotice {
                        rest,
                        settle,
                        or_after,
                    },
                    Some(notices),
                ) => {
                    std::thread::sleep(rest);
                    let noticed = notices.wait(or_after);
                    if noticed {
                        std::thread::sleep(settle);
                        notices.drain();
                    }
                    noticed
                }
                (next, _) => {
                    std::thread::sleep(next.longest());
                    false
                }
            };
            after_notice = after_wait(after_notice, found, noticed);
            if self.opened.replaced() {
                let _ = inputs.send(Input::DatabaseReplaced);
                return;
            }
            let report = self.look();
            found = report.is_some();
            if let Some(report) = report {
                let _ = inputs.send(report);
            }
        }
    }

    /// The read the core stands ready to take, if any.
    fn standing(&self) -> MutexGuard<'_, Option<ReadOrder>> {
        self.standing
            .lock()
            .expect("the standing read is never left poisoned")
    }

    /// What to report of a commit since the last look, if one came: with
    /// the read the core stands ready to take, made in the same
    /// transaction, or the notice alone. The first look that fails while
    /// the core stands ready reports a notice: the core's own read then
    /// says what is wrong, or gets past it (a read of the feed can fail
    /// where the look alone would not).
    fn look(&mut self) -> Option<Input> {
        let order = self.standing().clone();
        let read = order.as_ref().map(|o| (o.after, o.limit, o.max_bytes));
        // Before the transaction: every commit before it is in the read.
        let began = clock::now();
        let (version, batch) = match self.db.look_and_read(self.seen, read) {
            Ok(looked) => looked,
            Err(e) => {
                let first = !std::mem::replace(&mut self.failing, true);
                if first {
                    warn!(error = %error_chain(&e), "cannot look for commits to the job database; changes are read at each interval until it can");
                }
                return order.filter(|_| first).map(|_| Input::DatabaseChanged);
            }
        };
        self.failing = false;
        let moved = std::mem::replace(&mut self.seen, version) != version;
        if batch.is_some() {
            // One order brings one read. Left in place, every look until
            // the driver's next step read it again, each batch up to the
            // window's bytes, and all but one were thrown away (a review).
            let mut standing = self.standing();
            if *standing == order {
                *standing = None;
            }
        }
        Some(match (order, batch) {
            (Some(order), Some(batch)) => Input::CommitRead {
                order,
                began,
                batch,
            },
            _ => Input::DatabaseChanged,
        })
        .filter(|_| moved)
    }
}

#[cfg(test)]
mod tests {
    use jobvault_core::timestamp::Timestamp;
    use jobvault_core::{Backup, Config, Cursor, JobId};

    use super::*;

    #[test]
    fn an_order_is_read_at_the_first_commit_after_it_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let (mut writer, _) = JobDb::init(&path, Timestamp::from_unix_seconds(0)).unwrap();
        let order = Backup::new(
            Config::default(),
            Cursor::UNREAD,
            Timestamp::from_unix_seconds(0),
        )
        .read_at_next_commit()
        .expect("a machine that has read nothing stands ready to");
        let standing = StandingRead::new(Mutex::new(Some(order.clone())));
        let db = JobDb::open(&path).unwrap();
        let mut watcher = Watcher {
            seen: db.data_version().unwrap(),
            db,
            opened: Opened::at(&path).unwrap(),
            failing: false,
            standing: standing.clone(),
        };
        let put = |writer: &mut JobDb, id: &str| {
            let body = format!(r#"{{"id":"{id}"}}"#);
            writer.put(&[(JobId::new(id).unwrap(), body)]).unwrap();
        };

        assert!(watcher.look().is_none(), "nothing committed");
        assert_eq!(*standing.lock().unwrap(), Some(order), "kept for a commit");
        put(&mut writer, "a");
        let Some(Input::CommitRead { batch, .. }) = watcher.look() else {
            panic!("the commit comes with its read")
        };
        let ids: Vec<String> = batch.jobs.iter().map(|job| job.id.to_string()).collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(*standing.lock().unwrap(), None, "one order, one read");
        put(&mut writer, "b");
        assert!(matches!(watcher.look(), Some(Input::DatabaseChanged)));
    }
}
