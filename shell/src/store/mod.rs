//! Object stores: a Google Cloud Storage bucket, or a local directory.
//!
//! Object names given to a store are those of the core (`db-backup/...`,
//! `job-backup/...`); the store adds and strips its own prefix.

mod backend;
mod blocking_body;
mod chunk_sink;
mod file;
mod file_generations;
mod gcs;
mod gcs_listing;
mod memory;
mod sealing;
mod transport;
mod url;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use jobvault_core::FailureKind;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::{Framing, JOB_DIR, SNAPSHOT_DIR, holds_jobs};
use jobvault_crypt::Sealer;
use tokio::sync::mpsc;

use backend::{Backend, BackendError};

pub(crate) use blocking_body::bridge;
pub use chunk_sink::ChunkSink;
pub use gcs_listing::PagePart;
use gcs_listing::PageParts;

pub(crate) use file::io_kind;
pub use url::{BadBucketUrl, BucketUrl};

/// Snapshot bytes are uploaded in chunks of this size. A multiple of 256 KiB,
/// as resumable uploads require; a snapshot larger than one chunk goes
/// through a resumable upload, so a failed chunk is retried alone.
pub const CHUNK_BYTES: usize = 8 << 20;

/// A piece of an object being uploaded as a stream.
#[derive(Debug)]
pub struct Chunk {
    pub bytes: Bytes,
    /// No chunk follows.
    pub last: bool,
}

/// A stream of chunks; an error ends the upload.
pub type ChunkReceiver = mpsc::Receiver<std::io::Result<Chunk>>;

/// What went wrong with a store, naming the bucket or object.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct StoreError {
    /// The bucket URL, or the object's full URL.
    pub location: String,
    pub message: String,
    /// What the core can make of it.
    pub kind: FailureKind,
}

/// One page of a listing, read a part at a time.
pub struct ListPage {
    parts: PageParts,
    /// The listing's prefix, as a URL.
    location: String,
}

impl ListPage {
    /// The next part of the page; after [`PagePart::End`], nothing follows.
    pub async fn next(&mut self) -> Result<PagePart, StoreError> {
        self.parts.next().await.map_err(|e| StoreError {
            location: self.location.clone(),
            message: e.message,
            kind: e.kind,
        })
    }
}

/// A bucket or a directory holding backups.
#[derive(Debug)]
pub struct Store {
    url: BucketUrl,
    backend: Box<dyn Backend>,
    /// Encrypts every job object and snapshot written, if set.
    sealer: Option<Arc<Sealer>>,
}

impl Store {
    /// Connects to the store. For `gs://` this loads Application Default
    /// Credentials, or uses anonymous access to `STORAGE_EMULATOR_HOST` when
    /// that is set. It does not check that the bucket exists; see
    /// [`Store::check`].
    pub async fn connect(url: BucketUrl) -> Result<Store, StoreError> {
        let emulator = std::env::var("STORAGE_EMULATOR_HOST")
            .ok()
            .filter(|host| !host.is_empty());
        Store::connect_with(url, emulator).await
    }

    /// Like [`Store::connect`], with the emulator address (if any) given
    /// rather than read from the environment.
    pub async fn connect_with(
        url: BucketUrl,
        emulator: Option<String>,
    ) -> Result<Store, StoreError> {
        let backend: Box<dyn Backend> = match &url {
            BucketUrl::Gcs { bucket, prefix } => Box::new(
                gcs::GcsStore::connect(bucket.clone(), prefix.clone(), emulator)
                    .await
                    .map_err(|message| StoreError {
                        location: url.to_string(),
                        message,
                        kind: FailureKind::Permission,
                    })?,
            ),
            BucketUrl::File { root } => Box::new(file::FileStore::new(root.clone())),
            BucketUrl::Memory { name } => return Ok(Store::in_memory(name)),
        };
        Ok(Store {
            url,
            backend,
            sealer: None,
        })
    }

    /// An empty store held in memory, named `name` in messages: for tests.
    pub fn in_memory(name: &str) -> Store {
        Store {
            url: BucketUrl::Memory {
                name: name.to_owned(),
            },
            backend: Box::new(memory::MemoryStore::default()),
            sealer: None,
        }
    }

    /// The same store, writing every job object and snapshot encrypted by
    /// `sealer`.
    pub fn sealing_with(self, sealer: Sealer) -> Store {
        Store {
            sealer: Some(Arc::new(sealer)),
            ..self
        }
    }

    /// The encryption objects are written with, if any.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_deref()
    }

    /// The fingerprints of the keys objects are written to, sorted; none
    /// when they are written in the clear.
    pub fn encrypted_to(&self) -> Vec<String> {
        let mut fingerprints: Vec<String> = self
            .sealer()
            .map(|s| s.fingerprints().iter().map(|f| f.to_string()).collect())
            .unwrap_or_default();
        fingerprints.sort();
        fingerprints
    }

    pub fn url(&self) -> &BucketUrl {
        &self.url
    }

    /// An object's name in the bucket, with the store's prefix.
    pub fn object_name(&self, name: &str) -> String {
        match &self.url {
            BucketUrl::Gcs { prefix, .. } => format!("{prefix}{name}"),
            BucketUrl::File { .. } | BucketUrl::Memory { .. } => name.to_owned(),
        }
    }

    /// The full URL of an object, for messages.
    pub fn location(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn error(&self, name: Option<&str>, error: BackendError) -> StoreError {
        StoreError {
            location: name.map_or_else(|| self.url.to_string(), |n| self.location(n)),
            message: error.message,
            kind: error.kind,
        }
    }

    /// Checks that the bucket exists and can be listed.
    pub async fn check(&self) -> Result<(), StoreError> {
        let result = self.backend.check().await;
        result.map_err(|e| self.error(None, e))
    }

    /// The encryption `name` is written with: the store's, if the object
    /// holds jobs ([`holds_jobs`]).
    fn sealer_for(&self, name: &str) -> Option<&Arc<Sealer>> {
        self.sealer.as_ref().filter(|_| holds_jobs(name))
    }

    /// Uploads a small object held in memory (already gzipped), encrypted
    /// if it holds jobs and the store seals.
    pub async fn put(
        &self,
        name: &str,
        body: Vec<u8>,
        framing: &Framing,
    ) -> Result<(), StoreError> {
        let result = match self.sealer_for(name) {
            Some(sealer) => {
                let sealed = framing.clone().sealed();
                self.backend.put(name, sealer.seal(&body), &sealed).await
            }
            None => self.backend.put(name, body, framing).await,
        };
        result.map_err(|e| self.error(Some(name), e))
    }

    /// Uploads an object from a stream of chunks. Returns its size in bytes.
    pub async fn put_chunks(
        &self,
        name: &str,
        chunks: ChunkReceiver,
        framing: &Framing,
    ) -> Result<u64, StoreError> {
        let result = match self.sealer_for(name) {
            Some(sealer) => {
                let chunks = sealing::sealed_chunks(Arc::clone(sealer), chunks);
                let sealed = framing.clone().sealed();
                self.backend.put_chunks(name, chunks, &sealed).await
            }
            None => self.backend.put_chunks(name, chunks, framing).await,
        };
        result.map_err(|e| self.error(Some(name), e))
    }

    /// Every object whose name starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StoreError> {
        let result = self.backend.list(prefix).await;
        result.map_err(|e| self.error(Some(prefix), e))
    }

    /// One page of the objects whose names start with `prefix`, from
    /// `token` (the first page: `None`), handed over in parts as it is
    /// read; with `versions`, every generation of each, noncurrent ones
    /// too. A directory has only the live ones, and comes in one page.
    pub async fn list_page(
        &self,
        prefix: &str,
        versions: bool,
        token: Option<String>,
    ) -> Result<ListPage, StoreError> {
        let result = self.backend.list_page(prefix, versions, token).await;
        Ok(ListPage {
            parts: result.map_err(|e| self.error(Some(prefix), e))?,
            location: self.location(prefix),
        })
    }

    /// The folders directly under `prefix` (which ends in `/`), each with a
    /// trailing `/`.
    pub async fn list_folders(
        &self,
        prefix: &str,
        versions: bool,
    ) -> Result<Vec<String>, StoreError> {
        let result = self.backend.list_folders(prefix, versions).await;
        result.map_err(|e| self.error(Some(prefix), e))
    }

    /// An object's bytes as stored (gzip), or decompressed if the store
    /// transcodes; callers accept both.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.get_part(name, None, None).await
    }

    /// Like [`Store::get`], of `generation` if given (a directory has only
    /// the live one), and of only the `first` bytes if given.
    pub async fn get_part(
        &self,
        name: &str,
        generation: Option<i64>,
        first: Option<u64>,
    ) -> Result<Vec<u8>, StoreError> {
        let result = self.backend.get(name, generation, first).await;
        result.map_err(|e| self.error(Some(name), e))
    }

    /// An object's bytes and generation; `None` if there is no such object.
    pub async fn get_versioned(&self, name: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let result = self.backend.get_versioned(name).await;
        result.map_err(|e| self.error(Some(name), e))
    }

    /// Writes a small object only if its generation is `if_generation` (0:
    /// only if there is none); a conflict otherwise. Returns the generation
    /// written.
    pub async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        framing: &Framing,
        if_generation: i64,
    ) -> Result<i64, StoreError> {
        let result = self
            .backend
            .put_if(name, body, framing, if_generation)
            .await;
        result.map_err(|e| self.error(Some(name), e))
    }

    /// Deletes an object.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let result = self.backend.delete(name).await;
        result.map_err(|e| self.error(Some(name), e))
    }

    /// Whether the bucket keeps noncurrent versions of objects; `None` for a
    /// directory, which has no versions.
    pub async fn versioning(&self) -> Result<Option<bool>, StoreError> {
        self.backend
            .versioning()
            .await
            .map_err(|e| self.error(None, e))
    }

    /// Prefixes near this one that hold jobvault backups, for the message
    /// of a command that found nothing, at most `max`: the folder above if
    /// this one is itself a backup folder (`…/db-backup` pasted from a
    /// listing), then folders below it, nearest first (`gs://b` for backups
    /// under `gs://b/prod/eu`), then those beside it, nearest in spelling
    /// (`prod` for `prd`). At most [`NEIGHBOURS_LOOKED_AT`] listings each
    /// below and beside.
    pub async fn neighbours_with_backups(&self, max: usize) -> Result<Vec<String>, StoreError> {
        let own = self.backend.own_prefix();
        let parent = parent_folder(&own);
        let mut found = Vec::new();
        let own_name = own
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if let Some(parent) = &parent
            && (own_name == SNAPSHOT_DIR || own_name == JOB_DIR)
        {
            found.push(self.url.sibling(parent.trim_end_matches('/')));
        }
        let mut below = VecDeque::from([own.clone()]);
        for _ in 0..NEIGHBOURS_LOOKED_AT {
            let Some(folder) = below.pop_front() else {
                break;
            };
            let inside = self.folders_of(&folder).await?;
            if folder != own && holds_backups(&folder, &inside) {
                found.push(self.url.sibling(folder.trim_end_matches('/')));
            } else {
                below.extend(inside);
            }
        }
        let mut beside = match &parent {
            Some(parent) => self.folders_of(parent).await?,
            None => Vec::new(),
        };
        beside.retain(|folder| *folder != own);
        beside.sort_by_key(|folder| strsim::levenshtein(folder, &own));
        for folder in beside.into_iter().take(NEIGHBOURS_LOOKED_AT) {
            if found.len() >= max {
                break;
            }
            if holds_backups(&folder, &self.folders_of(&folder).await?) {
                found.push(self.url.sibling(folder.trim_end_matches('/')));
            }
        }
        found.truncate(max);
        Ok(found)
    }

    /// The folders in `folder`: a name in the bucket (not under the
    /// prefix), or an absolute path ending in `/` for a directory.
    async fn folders_of(&self, folder: &str) -> Result<Vec<String>, StoreError> {
        self.backend
            .folders_of(folder)
            .await
            .map_err(|e| self.error(None, e))
    }

    /// Which credentials this store uses.
    pub fn credentials(&self) -> String {
        self.backend.credentials()
    }

    /// An object's bytes from byte `from` on, as a stream, for objects too
    /// large to hold: of `generation` if given (a directory has only the
    /// live one). Also returns the generation served, if the store says.
    pub async fn get_stream_from(
        &self,
        name: &str,
        generation: Option<i64>,
        from: u64,
    ) -> Result<(ByteStream, Option<i64>), StoreError> {
        let location = self.location(name);
        let result = self.backend.get_stream_from(name, generation, from).await;
        let (stream, served) = result.map_err(|e| self.error(Some(name), e))?;
        let stream = futures::StreamExt::map(stream, move |item| {
            item.map_err(|e| StoreError {
                location: location.clone(),
                message: e.message,
                kind: e.kind,
            })
        });
        Ok((Box::pin(stream), served))
    }
}

/// An object's bytes as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// How many folders below a prefix, and how many beside it, are looked
/// into for backups.
const NEIGHBOURS_LOOKED_AT: usize = 10;

/// Whether `inside`, the folders in `folder`, show jobvault backups there.
fn holds_backups(folder: &str, inside: &[String]) -> bool {
    inside.iter().any(|f| {
        let inner = f.strip_prefix(folder).unwrap_or(f);
        inner == format!("{SNAPSHOT_DIR}/") || inner == format!("{JOB_DIR}/")
    })
}

/// The folder holding `prefix` (`a/b/` is in `a/`, `a/` in the bucket's
/// top, ""); `None` for the bucket's top itself.
fn parent_folder(prefix: &str) -> Option<String> {
    let trimmed = prefix.strip_suffix('/')?;
    Some(
        trimmed
            .rfind('/')
            .map_or_else(String::new, |i| trimmed[..=i].to_owned()),
    )
}

/// Formats an error with its chain of causes on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
