//! `jobvault backup` while a daemon runs: the request goes to the daemon, so
//! the snapshot goes through its core, serialized with triggered snapshots
//! and counted in its metrics.
//!
//! The daemon listens on a Unix socket beside the database,
//! `<db>-jobvault.sock` (as SQLite keeps `<db>-wal`), so `backup` finds it
//! from the database path alone. The socket is its owner's and group's only
//! (mode 0660): any local user once could ask for snapshots over the
//! metrics port and read the database's path and bucket in its refusals,
//! and a proxy beside the daemon made it reachable from other hosts. A
//! request is one line of JSON; the daemon says at once that it took it in
//! hand (`{"status":102}`), then answers in one more line. A daemon stopped
//! or hung (its socket still accepts, in the kernel) says nothing: `backup`
//! gives it [`CONTROL_ACK_DEADLINE`] and goes on alone. The daemon refuses a
//! request for another database or bucket. A socket left by a daemon that
//! was killed answers nothing; `backup` then takes the snapshot itself, as
//! it does when the daemon is stopping.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jobvault_core::job_id::InvalidName;
use jobvault_core::listen::{
    CONTROL_ACK_DEADLINE, CONTROL_ANSWER_PATIENCE, CONTROL_CONNECTIONS, CONTROL_LINE_BYTES,
    CONTROL_REQUEST_DEADLINE,
};
use jobvault_core::machine::immediate_base_name;
use jobvault_core::object_name::ObjectName;
use jobvault_core::{Failure, FailureKind, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::listener::Bounded;

/// What `backup` asks of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupAsk {
    /// The database, as a canonical path.
    pub db: PathBuf,
    /// The bucket URL the snapshot must go to.
    pub bucket: String,
    /// The snapshot is named `<name>-HH:MM:SS`.
    pub name: String,
    /// The fingerprints of the keys the snapshot must be encrypted to,
    /// sorted; none for a snapshot in the clear. A daemon that encrypts
    /// otherwise refuses, so `backup --encrypt-to` never lands in the clear
    /// or to other keys than it names.
    #[serde(default)]
    pub encrypted_to: Vec<String>,
}

/// A snapshot taken on request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupTaken {
    /// The object name, without the store's prefix.
    pub object: ObjectName,
    pub bytes: u64,
}

/// A request on its way to the daemon's loop, with where to answer.
#[derive(Debug)]
pub struct BackupRequest {
    pub name: String,
    pub reply: oneshot::Sender<Result<BackupTaken, Failure>>,
}

/// What the daemon's listener needs to serve `POST /backup`.
#[derive(Debug, Clone)]
pub struct BackupDesk {
    pub db: PathBuf,
    pub bucket: String,
    /// The fingerprints of the keys this daemon encrypts to, sorted.
    pub encrypted_to: Vec<String>,
    pub requests: mpsc::Sender<BackupRequest>,
}

/// The answer to one request: an HTTP-like status, and the snapshot or why
/// not.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken: Option<BackupTaken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Answer {
    fn error(status: u16, why: String) -> Self {
        Answer {
            status,
            taken: None,
            error: Some(why),
        }
    }
}

/// The first line of every answer to a request read whole.
const IN_HAND: u16 = 102;

impl BackupDesk {
    /// Serves one request line.
    pub async fn serve(&self, line: &[u8]) -> Answer {
        match self.take(line).await {
            Ok(taken) => Answer {
                status: 200,
                taken: Some(taken),
                error: None,
            },
            Err((status, error)) => Answer::error(status, error),
        }
    }

    async fn take(&self, line: &[u8]) -> Result<BackupTaken, (u16, String)> {
        let ask: BackupAsk =
            serde_json::from_slice(line).map_err(|e| (400, format!("bad request: {e}")))?;
        check_immediate_name(&ask.name).map_err(|why| (400, why.to_string()))?;
        if ask.db != self.db {
            return Err((409, format!("this daemon backs up {}", self.db.display())));
        }
        // Whatever the bucket: a copy in the clear elsewhere reads as well
        // as one beside the encrypted backups.
        if ask.encrypted_to.is_empty() && !self.encrypted_to.is_empty() {
            return Err((CLEARTEXT_REFUSED, cleartext_refused(&self.encrypted_to)));
        }
        if ask.bucket != self.bucket {
            return Err((409, format!("this daemon backs up to {}", self.bucket)));
        }
        if ask.encrypted_to != self.encrypted_to {
            return Err((
                409,
                format!(
                    "this daemon {}",
                    encryption(&self.encrypted_to, &ask.encrypted_to)
                ),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let request = BackupRequest {
            name: ask.name,
            reply,
        };
        let stopped = || (503, "the daemon is stopping".to_owned());
        self.requests.send(request).await.map_err(|_| stopped())?;
        // The name was checked above, so the core refuses a request only
        // because it is stopping.
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|failure| match failure.kind {
                FailureKind::Rejected => stopped(),
                _ => (500, failure.to_string()),
            })
    }
}

/// The status of a refusal the backup must not take the snapshot after:
/// any other it takes itself, beside the daemon (409).
const CLEARTEXT_REFUSED: u16 = 422;

/// A backup with no recipients beside a daemon that encrypts: taken beside
/// it, the whole database went to the bucket in the clear with exit 0 and a
/// warning a newcomer did not see, so it is refused.
fn cleartext_refused(daemon: &[String]) -> String {
    format!(
        "this daemon encrypts to {}, and this backup has no --encrypt-to: taken without the \
         daemon, the snapshot would put the whole database in a bucket in the clear. Give \
         --encrypt-to (or JOBVAULT_ENCRYPT_TO) the daemon's recipients",
        daemon.join(", ")
    )
}

/// How a daemon writes, against what the backup asked, for a refusal.
fn encryption(daemon: &[String], asked: &[String]) -> String {
    if daemon.is_empty() {
        return "writes in the clear (no --encrypt-to)".to_owned();
    }
    format!(
        "encrypts to {}, not to the keys this backup was given ({})",
        daemon.join(", "),
        asked.join(", ")
    )
}

/// Whether `name` makes a valid snapshot name, `<name>-HH:MM:SS`.
pub fn check_immediate_name(name: &str) -> Result<(), InvalidName> {
    let basename = immediate_base_name(name, Timestamp::UNIX_EPOCH);
    jobvault_core::job_id::check_base_name("name", &basename)
}

/// The socket beside the database where its daemon takes requests.
pub fn socket_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-jobvault.sock");
    PathBuf::from(name)
}

/// The daemon's socket, removed when dropped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
}

impl ControlSocket {
    /// Listens beside `db` and serves requests through `desk` until the
    /// runtime stops. Only one daemon runs per database (it holds the
    /// database's lock), so a socket already there is a dead daemon's. It
    /// is bound under a hidden name, made the owner's and group's, and only
    /// then moved to its place, so under its name it is never open to
    /// others.
    pub fn bind(db: &Path, desk: BackupDesk) -> io::Result<ControlSocket> {
        let path = socket_path(db);
        let hidden = hidden_beside(&path);
        remove_if_there(&hidden)?;
        let listener = UnixListener::bind(&hidden)?;
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o660))?;
        std::fs::rename(&hidden, &path)?;
        tokio::spawn(serve(listener, desk));
        Ok(ControlSocket { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Err(e) = remove_if_there(&self.path) {
            warn!(socket = %self.path.display(), error = %e, "cannot remove the daemon's socket");
        }
    }
}

fn hidden_beside(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}", std::process::id()))
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

async fn serve(listener: UnixListener, desk: BackupDesk) {
    let mut bounded = Bounded::new("control", CONTROL_CONNECTIONS);
    loop {
        let ((stream, _), permit) = bounded.accept(|| listener.accept()).await;
        let desk = desk.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &desk).await {
                debug!(error = %e, "control connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Reads one request line, within its size and deadline, and answers it.
async fn answer(stream: UnixStream, desk: &BackupDesk) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut read = BufReader::new(read.take(CONTROL_LINE_BYTES));
    let answer =
        match tokio::time::timeout(CONTROL_REQUEST_DEADLINE, read.read_until(b'\n', &mut line))
            .await
        {
            Ok(Ok(_)) if line.ends_with(b"\n") => {
                send(
                    &mut write,
                    &Answer::error(IN_HAND, "taken in hand".to_owned()),
                )
                .await?;
                desk.serve(&line).await
            }
            Ok(Ok(_)) => Answer::error(
                400,
                format!("send one line of at most {CONTROL_LINE_BYTES} bytes"),
            ),
            Ok(Err(e)) => return Err(e),
            Err(_) => Answer::error(
                408,
                format!("no request within {CONTROL_REQUEST_DEADLINE:?}"),
            ),
        };
    send(&mut write, &answer).await
}

async fn send(write: &mut (impl AsyncWriteExt + Unpin), answer: &Answer) -> io::Result<()> {
    let mut line = serde_json::to_vec(answer).expect("an answer always serializes");
    line.push(b'\n');
    write.write_all(&line).await
}

/// What asking the daemon came to.
#[derive(Debug)]
pub enum Asked {
    /// No daemon runs for this database: take the snapshot here.
    NoDaemon(String),
    /// A daemon runs, but cannot take this request (another bucket, a
    /// socket this user may not use, stopping, stopped or hung): take the
    /// snapshot here, beside it, and say so.
    Unreached(String),
    /// The daemon took it, or says why it could not.
    Answered(Result<BackupTaken, Failure>),
}

/// Asks the daemon of `ask.db`, if one runs, for a snapshot.
pub async fn ask_daemon(ask: &BackupAsk) -> Asked {
    let socket = socket_path(&ask.db);
    let at = socket.display();
    let stream = match UnixStream::connect(&socket).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Asked::NoDaemon(format!("no daemon answers at {at}: {e}"));
        }
        Err(e) => return Asked::Unreached(format!("cannot reach the daemon at {at}: {e}")),
    };
    let mut line = serde_json::to_vec(ask).expect("a request always serializes");
    line.push(b'\n');
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read.take(2 * CONTROL_LINE_BYTES));
    let first = async {
        write.write_all(&line).await?;
        next_answer(&mut read).await
    };
    let answer = match tokio::time::timeout(CONTROL_ACK_DEADLINE, first).await {
        Err(_) => {
            return Asked::Unreached(format!(
                "the daemon at {at} took no request within {CONTROL_ACK_DEADLINE:?} (stopped or hung)"
            ));
        }
        Ok(Err(e)) => return Asked::Answered(Err(failure(&socket, &e.to_string()))),
        Ok(Ok(answer)) if answer.status != IN_HAND => answer,
        Ok(Ok(_)) => {
            match tokio::time::timeout(CONTROL_ANSWER_PATIENCE, next_answer(&mut read)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return Asked::Answered(Err(failure(&socket, &e.to_string()))),
                Err(_) => return Asked::Answered(Err(failure(&socket, "no answer in time"))),
            }
        }
    };
    match answer {
        Answer {
            status: 200,
            taken: Some(taken),
            ..
        } => Asked::Answered(Ok(taken)),
        Answer {
            status: 409 | 503,
            error: Some(error),
            ..
        } => Asked::Unreached(format!("the daemon at {at}: {error}")),
        Answer { status, error, .. } => Asked::Answered(Err(failure(
            &socket,
            &error.unwrap_or_else(|| format!("unexpected answer with status {status}")),
        ))),
    }
}

async fn next_answer(read: &mut (impl AsyncBufReadExt + Unpin)) -> io::Result<Answer> {
    let mut reply = Vec::new();
    read.read_until(b'\n', &mut reply).await?;
    serde_json::from_slice(&reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn failure(socket: &Path, why: &str) -> Failure {
    Failure::new(
        FailureKind::Transient,
        format!("the daemon at {}: {why}", socket.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The desk's boundary is the channel to the daemon's loop; a task plays
    // the loop here, as the end-to-end tests in tests/tests/backup.rs play it
    // with the real daemon.

    fn desk() -> (BackupDesk, mpsc::Receiver<BackupRequest>) {
        let (requests, received) = mpsc::channel(4);
        let desk = BackupDesk {
            db: PathBuf::from("/var/lib/jobs.db"),
            bucket: "gs://backups".to_owned(),
            encrypted_to: Vec::new(),
            requests,
        };
        (desk, received)
    }

    fn ask(db: &str, bucket: &str, name: &str) -> Vec<u8> {
        let ask = BackupAsk {
            db: PathBuf::from(db),
            bucket: bucket.to_owned(),
            name: name.to_owned(),
            encrypted_to: Vec::new(),
        };
        serde_json::to_vec(&ask).unwrap()
    }

    /// A request for a snapshot encrypted to a key, to a daemon that
    /// writes in the clear.
    fn encrypted_ask() -> Vec<u8> {
        let mut ask: BackupAsk =
            serde_json::from_slice(&ask("/var/lib/jobs.db", "gs://backups", "n")).unwrap();
        ask.encrypted_to = vec!["5f069c01cd81".to_owned()];
        serde_json::to_vec(&ask).unwrap()
    }

    #[tokio::test]
    async fn a_request_for_this_database_is_taken_and_answered() {
        let (desk, mut received) = desk();
        let daemon = tokio::spawn(async move {
            let request = received.recv().await.unwrap();
            assert_eq!(request.name, "nightly");
            let taken = BackupTaken {
                object: ObjectName::listed("db-backup/2026/11/25/nightly-01:02:03.bdb"),
                bytes: 42,
            };
            request.reply.send(Ok(taken)).unwrap();
        });
        let answer = desk
            .serve(&ask("/var/lib/jobs.db", "gs://backups", "nightly"))
            .await;
        daemon.await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.taken.unwrap().bytes, 42);
    }

    #[tokio::test]
    async fn requests_it_cannot_serve_are_refused_with_a_status_saying_why() {
        let (desk, received) = desk();
        let cases = [
            (ask("/var/lib/other.db", "gs://backups", "n"), 409),
            (ask("/var/lib/jobs.db", "gs://elsewhere", "n"), 409),
            (ask("/var/lib/jobs.db", "gs://backups", "a/b"), 400),
            (b"not json".to_vec(), 400),
            (encrypted_ask(), 409),
        ];
        for (body, expected) in cases {
            let answer = desk.serve(&body).await;
            assert_eq!(answer.status, expected, "{answer:?}");
            assert!(answer.error.is_some(), "{answer:?}");
        }
        // A daemon that has stopped taking requests: backup goes on alone.
        drop(received);
        let answer = desk
            .serve(&ask("/var/lib/jobs.db", "gs://backups", "n"))
            .await;
        assert_eq!(answer.status, 503);
    }

    #[test]
    fn a_name_too_long_once_the_time_is_added_is_refused() {
        assert!(check_immediate_name(&"x".repeat(240)).is_ok());
        assert!(check_immediate_name(&"x".repeat(250)).is_err());
    }
}
