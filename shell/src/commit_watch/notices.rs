//! inotify on the job database's directory: the OS says when the database,
//! its WAL or its journal is written, created or replaced. The directory,
//! not the files: the WAL comes and goes with the last connection, and a
//! restore renames a new database into place.

use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, Reader, WatchFlags};
use rustix::io::Errno;

pub struct Notices {
    fd: OwnedFd,
    /// The database's file name: its WAL and journal start with it.
    name: OsString,
}

impl Notices {
    /// Watches the directory of the file `db` names: through a symbolic
    /// link, SQLite writes beside the file it points to.
    pub fn watch(db: &Path) -> io::Result<Notices> {
        let db = &std::fs::canonicalize(db)?;
        let name = db
            .file_name()
            .ok_or_else(|| io::Error::other("the database path names no file"))?
            .to_owned();
        let dir = db
            .parent()
            .ok_or_else(|| io::Error::other("the database path has no directory"))?;
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let events = WatchFlags::MODIFY
            | WatchFlags::CREATE
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE
            | WatchFlags::CLOSE_WRITE;
        inotify::add_watch(&fd, dir, events)?;
        Ok(Notices { fd, name })
    }

    /// Waits up to `longest` for a notice; whether one about the database
    /// came.
    pub fn wait(&self, longest: Duration) -> bool {
        let timeout = Timespec::try_from(longest).expect("the core's waits fit a timespec");
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => false,
            Ok(_) => self.drain(),
            // Interrupted or failing: look, as a notice would have it.
            Err(_) => true,
        }
    }

    /// Reads every notice waiting; whether one was about the database, or
    /// some were lost (the queue overflowed), or they cannot be read.
    pub fn drain(&self) -> bool {
        let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = Reader::new(&self.fd, &mut buffer);
        let mut about_db = false;
        loop {
            match reader.next() {
                Ok(event) => {
                    about_db |= event.events().contains(ReadFlags::QUEUE_OVERFLOW)
                        || event
                            .file_name()
                            .is_some_and(|file| file.to_bytes().starts_with(self.name.as_bytes()));
                }
                Err(Errno::AGAIN) => return about_db,
                Err(Errno::INTR) => {}
                Err(_) => return true,
            }
        }
    }
}
