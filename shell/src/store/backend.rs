//! What a kind of store can do, and the errors it answers with, classified
//! once, by the backend that knows what its failures mean: [`super::gcs`]
//! from HTTP statuses and the client's errors, [`super::file`] from I/O
//! errors, [`super::memory`] by construction. [`super::Store`] adds the
//! location and nothing else.

use bytes::Bytes;
use futures::stream::BoxStream;
use jobvault_core::FailureKind;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::Framing;

use super::ChunkReceiver;
use super::gcs_listing::PageParts;

/// An object's bytes as they arrive, from a backend.
pub(super) type BackendStream = BoxStream<'static, Result<Bytes, BackendError>>;

/// A bucket, a directory or a map in memory. Names are the core's,
/// relative to the store's prefix, except in [`Backend::folders_of`].
#[async_trait::async_trait]
pub(super) trait Backend: std::fmt::Debug + Send + Sync {
    /// The bucket exists and can be listed.
    async fn check(&self) -> Result<(), BackendError>;
    /// Uploads a small object held in memory (already gzipped).
    async fn put(&self, name: &str, body: Vec<u8>, framing: &Framing) -> Result<(), BackendError>;
    /// Uploads an object from a stream of chunks; returns its size.
    async fn put_chunks(
        &self,
        name: &str,
        chunks: ChunkReceiver,
        framing: &Framing,
    ) -> Result<u64, BackendError>;
    /// Every live object whose name starts with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, BackendError>;
    /// One page of a listing from `token`, handed over in parts; with
    /// `versions`, noncurrent generations too. A store that keeps no
    /// generations and does not page hands over its whole listing.
    async fn list_page(
        &self,
        prefix: &str,
        _versions: bool,
        _token: Option<String>,
    ) -> Result<PageParts, BackendError> {
        Ok(PageParts::whole(self.list(prefix).await?))
    }
    /// The folders directly under `prefix`, each ending in `/`; with
    /// `versions`, those holding only noncurrent generations too.
    async fn list_folders(&self, prefix: &str, versions: bool)
    -> Result<Vec<String>, BackendError>;
    /// The folders in `folder`, named as [`Backend::own_prefix`] names its
    /// own: in the whole bucket, not under the prefix.
    async fn folders_of(&self, folder: &str) -> Result<Vec<String>, BackendError>;
    /// An object's bytes (of `generation` if given and kept), only the
    /// `first` if given.
    async fn get(
        &self,
        name: &str,
        generation: Option<i64>,
        first: Option<u64>,
    ) -> Result<Vec<u8>, BackendError>;
    /// An object's bytes and generation; `None` if there is none.
    async fn get_versioned(&self, name: &str) -> Result<Option<(Vec<u8>, i64)>, BackendError>;
    /// Writes a small object only if it is at `if_generation` (0: only if
    /// there is none); returns the generation written.
    async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        framing: &Framing,
        if_generation: i64,
    ) -> Result<i64, BackendError>;
    async fn delete(&self, name: &str) -> Result<(), BackendError>;
    /// Whether noncurrent versions are kept; `None` where there are none.
    async fn versioning(&self) -> Result<Option<bool>, BackendError>;
    /// An object's bytes from byte `from` on, and the generation served.
    async fn get_stream_from(
        &self,
        name: &str,
        generation: Option<i64>,
        from: u64,
    ) -> Result<(BackendStream, Option<i64>), BackendError>;
    /// The store's own prefix, as [`Backend::folders_of`] names folders.
    fn own_prefix(&self) -> String;
    /// Which credentials the store uses.
    fn credentials(&self) -> String;
}

/// An error inside a backend, before the store adds the location.
#[derive(Debug)]
pub(super) struct BackendError {
    pub message: String,
    pub kind: FailureKind,
}

impl BackendError {
    /// A failure worth retrying soon: the network, a timeout, a server
    /// error.
    pub fn transient(message: impl Into<String>) -> Self {
        BackendError::with_kind(FailureKind::Transient, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        BackendError::with_kind(FailureKind::NotFound, message)
    }

    pub fn with_kind(kind: FailureKind, message: impl Into<String>) -> Self {
        BackendError {
            message: message.into(),
            kind,
        }
    }
}

/// What an HTTP status from the store means, as GCS documents its errors.
pub(super) fn status_kind(status: u16) -> FailureKind {
    match status {
        401 | 403 => FailureKind::Permission,
        404 => FailureKind::NotFound,
        409 | 412 => FailureKind::Conflict,
        408 | 429 | 500.. => FailureKind::Transient,
        _ => FailureKind::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_mean_what_gcs_documents() {
        let kinds: Vec<FailureKind> = [401, 403, 404, 408, 409, 412, 429, 500, 503, 400]
            .into_iter()
            .map(status_kind)
            .collect();
        use FailureKind::*;
        assert_eq!(
            kinds,
            [
                Permission, Permission, NotFound, Transient, Conflict, Conflict, Transient,
                Transient, Transient, Rejected
            ]
        );
    }
}
