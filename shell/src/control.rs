//! `jobvault backup` while a daemon runs: the request goes to the daemon, so
//! the snapshot goes through its core, serialized with triggered snapshots
//! and counted in its metrics.
//!
//! The daemon is found from the database path alone: it writes its address
//! to `<db>-jobvault` beside the database (as SQLite writes `<db>-wal`) and
//! removes it when it exits, so `backup` needs no flag that must match
//! `run --metrics-addr`. The daemon serves `POST /backup` on its metrics
//! listener, to loopback clients only, and refuses a request for another
//! database or bucket. A file left by a daemon that was killed names an
//! address nothing answers at; `backup` then takes the snapshot itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jobvault_core::{Failure, FailureKind};
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
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|failure| (500, failure.to_string()))
    }
}

/// The file beside the database that tells where its daemon listens.
pub fn address_file(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-jobvault");
    PathBuf::from(name)
}

#[derive(Debug, Serialize, Deserialize)]
struct Address {
    pid: u32,
    url: String,
}

/// Written while the daemon runs; removed when dropped.
#[derive(Debug)]
pub struct AddressFile {
    path: PathBuf,
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
        Ok(AddressFile { path })
    }
}

impl Drop for AddressFile {
    fn drop(&mut self) {
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
    let sent = reqwest::Client::new()
        .post(&address.url)
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
        (409, Ok(Reply::Error { error })) => Asked::NoDaemon(error),
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
