//! `jobvault backup` while a daemon runs: the request goes to the daemon, so
//! the snapshot goes through its core, serialized with triggered snapshots
//! and counted in its metrics.
//!
//! The daemon is found from the database path alone: it writes its address
//! to `<db>-jobvault` beside the database (as SQLite writes `<db>-wal`) and
//! removes it when it exits, so `backup` needs no flag that must match
//! `run --metrics-addr`. The daemon serves `POST /backup` on its metrics
//! listener, to clients on its own host only, and refuses a request for
//! another database or bucket. A file left by a daemon that was killed names
//! an address nothing answers at; `backup` then takes the snapshot itself, as
//! it does when the daemon is stopping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jobvault_core::machine::{SNAPSHOT_DEADLINE, immediate_base_name};
use jobvault_core::{Failure, FailureKind, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// What `backup` asks of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupAsk {
    /// The database, as a canonical path.
    pub db: PathBuf,
    /// The bucket URL the snapshot must go to.
    pub bucket: String,
    /// The snapshot is named `<name>-HH:MM:SS`.
    pub name: String,
}

/// A snapshot taken on request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Taken {
    /// The object name, without the store's prefix.
    pub object: String,
    pub bytes: u64,
}

/// A request on its way to the daemon's loop, with where to answer.
#[derive(Debug)]
pub struct BackupRequest {
    pub name: String,
    pub reply: oneshot::Sender<Result<Taken, Failure>>,
}

/// What the daemon's listener needs to serve `POST /backup`.
#[derive(Debug, Clone)]
pub struct BackupDesk {
    pub db: PathBuf,
    pub bucket: String,
    pub requests: mpsc::Sender<BackupRequest>,
}

/// The answer to one `POST /backup`: an HTTP status and a JSON body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Reply {
    Taken(Taken),
    Error { error: String },
}

impl BackupDesk {
    /// Serves one request body; returns the status and the JSON reply.
    pub async fn serve(&self, body: &[u8]) -> (u16, String) {
        let (status, reply) = match self.take(body).await {
            Ok(taken) => (200, Reply::Taken(taken)),
            Err((status, error)) => (status, Reply::Error { error }),
        };
        let json = serde_json::to_string(&reply).expect("a reply always serializes");
        (status, json)
    }

    async fn take(&self, body: &[u8]) -> Result<Taken, (u16, String)> {
        let ask: BackupAsk =
            serde_json::from_slice(body).map_err(|e| (400, format!("bad request: {e}")))?;
        check_immediate_name(&ask.name).map_err(|why| (400, why))?;
        if ask.db != self.db {
            return Err((409, format!("this daemon backs up {}", self.db.display())));
        }
        if ask.bucket != self.bucket {
            return Err((409, format!("this daemon backs up to {}", self.bucket)));
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

/// Whether `name` makes a valid snapshot name, `<name>-HH:MM:SS`.
pub fn check_immediate_name(name: &str) -> Result<(), String> {
    let basename = immediate_base_name(name, Timestamp::UNIX_EPOCH);
    jobvault_core::job_id::check_base_name("name", &basename).map_err(|e| e.to_string())
}

/// The file beside the database that tells where its daemon listens.
pub fn address_file(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-jobvault");
    PathBuf::from(name)
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Address {
    pid: u32,
    url: String,
}

/// Written while the daemon runs; removed when dropped, unless another
/// daemon has written its own since.
#[derive(Debug)]
pub struct AddressFile {
    path: PathBuf,
    written: Address,
}

impl AddressFile {
    /// Tells `backup` where the daemon of `db` listens. A listener bound to
    /// every interface is reached on loopback.
    pub fn write(db: &Path, listening: SocketAddr) -> std::io::Result<AddressFile> {
        let mut reach = listening;
        if reach.ip().is_unspecified() {
            reach.set_ip(match reach {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let address = Address {
            pid: std::process::id(),
            url: format!("http://{reach}/backup"),
        };
        let path = address_file(db);
        let folder = path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(folder)?;
        serde_json::to_writer(&mut temp, &address)?;
        temp.persist(&path).map_err(|e| e.error)?;
        Ok(AddressFile {
            path,
            written: address,
        })
    }
}

impl Drop for AddressFile {
    fn drop(&mut self) {
        let current = std::fs::read(&self.path).ok();
        let ours = current.and_then(|bytes| serde_json::from_slice::<Address>(&bytes).ok());
        if ours.as_ref() != Some(&self.written) {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            warn!(file = %self.path.display(), error = %e, "cannot remove the daemon's address file");
        }
    }
}

/// What asking the daemon came to.
#[derive(Debug)]
pub enum Asked {
    /// No daemon runs for this database and bucket: take the snapshot here.
    NoDaemon(String),
    /// The daemon took it, or says why it could not.
    Answered(Result<Taken, Failure>),
}

/// Asks the daemon of `ask.db`, if one runs, for a snapshot.
pub async fn ask_daemon(ask: &BackupAsk) -> Asked {
    let file = address_file(&ask.db);
    let address: Address = match std::fs::read(&file) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(address) => address,
            Err(e) => return Asked::NoDaemon(format!("{} is unreadable: {e}", file.display())),
        },
        Err(_) => return Asked::NoDaemon(format!("no daemon has written {}", file.display())),
    };
    let body = serde_json::to_vec(ask).expect("a request always serializes");
    // Past the daemon's own deadline for the snapshot, it is not answering.
    let patience = SNAPSHOT_DEADLINE + std::time::Duration::from_secs(300);
    // reqwest is built without a TLS provider of its own; a `file://` bucket
    // never made the store install one, and building a client without one
    // panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sent = reqwest::Client::new()
        .post(&address.url)
        .timeout(patience)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) if e.is_connect() => {
            return Asked::NoDaemon(format!(
                "nothing answers at {} (pid {} wrote {}; it is not running)",
                address.url,
                address.pid,
                file.display()
            ));
        }
        Err(e) => return Asked::Answered(Err(failure(&address.url, &e.to_string()))),
    };
    let status = response.status().as_u16();
    let reply = match response.bytes().await {
        Ok(bytes) => serde_json::from_slice::<Reply>(&bytes).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match (status, reply) {
        (200, Ok(Reply::Taken(taken))) => Asked::Answered(Ok(taken)),
        (409 | 503, Ok(Reply::Error { error })) => Asked::NoDaemon(error),
        (_, Ok(Reply::Error { error })) => Asked::Answered(Err(failure(&address.url, &error))),
        (_, Ok(Reply::Taken(_)) | Err(_)) => Asked::Answered(Err(failure(
            &address.url,
            &format!("unexpected reply with status {status}"),
        ))),
    }
}

fn failure(url: &str, why: &str) -> Failure {
    Failure::new(
        FailureKind::Transient,
        format!("the daemon at {url}: {why}"),
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
            requests,
        };
        (desk, received)
    }

    fn ask(db: &str, bucket: &str, name: &str) -> Vec<u8> {
        let ask = BackupAsk {
            db: PathBuf::from(db),
            bucket: bucket.to_owned(),
            name: name.to_owned(),
        };
        serde_json::to_vec(&ask).unwrap()
    }

    #[tokio::test]
    async fn a_request_for_this_database_is_taken_and_answered() {
        let (desk, mut received) = desk();
        let daemon = tokio::spawn(async move {
            let request = received.recv().await.unwrap();
            assert_eq!(request.name, "nightly");
            let taken = Taken {
                object: "db-backup/2026/11/25/nightly-01:02:03.bdb".to_owned(),
                bytes: 42,
            };
            request.reply.send(Ok(taken)).unwrap();
        });
        let (status, body) = desk
            .serve(&ask("/var/lib/jobs.db", "gs://backups", "nightly"))
            .await;
        daemon.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let reply: Taken = serde_json::from_str(&body).unwrap();
        assert_eq!(reply.bytes, 42);
    }

    #[tokio::test]
    async fn requests_it_cannot_serve_are_refused_with_a_status_saying_why() {
        let (desk, received) = desk();
        let cases = [
            (ask("/var/lib/other.db", "gs://backups", "n"), 409),
            (ask("/var/lib/jobs.db", "gs://elsewhere", "n"), 409),
            (ask("/var/lib/jobs.db", "gs://backups", "a/b"), 400),
            (b"not json".to_vec(), 400),
        ];
        for (body, expected) in cases {
            let (status, reply) = desk.serve(&body).await;
            assert_eq!(status, expected, "{reply}");
            assert!(reply.contains("\"error\""), "{reply}");
        }
        // A daemon that has stopped taking requests: backup goes on alone.
        drop(received);
        let (status, _) = desk
            .serve(&ask("/var/lib/jobs.db", "gs://backups", "n"))
            .await;
        assert_eq!(status, 503);
    }

    #[test]
    fn a_name_too_long_once_the_time_is_added_is_refused() {
        assert!(check_immediate_name(&"x".repeat(240)).is_ok());
        assert!(check_immediate_name(&"x".repeat(250)).is_err());
    }
}
