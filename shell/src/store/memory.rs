//! A store held in memory: for the shell's own tests of what runs against a
//! store (a prune's steps, the lease's conditional writes), where neither
//! the emulator nor a directory is needed to show the behaviour. Live
//! objects only, each with a generation; a conditional write or deletion
//! checks it as GCS does.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::{Framing, ObjectName};
use jobvault_core::{FailureKind, Timestamp};

use super::ChunkReceiver;
use super::backend::{Backend, BackendError, BackendStream};
use crate::clock;

#[derive(Debug)]
struct Stored {
    bytes: Vec<u8>,
    generation: i64,
    updated: Timestamp,
}

#[derive(Debug, Default)]
pub(super) struct MemoryStore {
    objects: Mutex<(BTreeMap<String, Stored>, i64)>,
}

impl MemoryStore {
    fn write(
        &self,
        name: &str,
        bytes: Vec<u8>,
        if_generation: Option<i64>,
    ) -> Result<i64, BackendError> {
        let mut held = self.objects.lock().expect("never left poisoned");
        let (objects, next) = &mut *held;
        let current = objects.get(name).map_or(0, |o| o.generation);
        if if_generation.is_some_and(|wanted| wanted != current) {
            return Err(conflict(current));
        }
        *next += 1;
        let stored = Stored {
            bytes,
            generation: *next,
            updated: clock::now(),
        };
        objects.insert(name.to_owned(), stored);
        Ok(*next)
    }

    fn read<T>(&self, name: &str, read: impl FnOnce(&Stored) -> T) -> Result<T, BackendError> {
        let held = self.objects.lock().expect("never left poisoned");
        held.0
            .get(name)
            .map(read)
            .ok_or_else(|| BackendError::not_found("no such object"))
    }

    fn names(&self) -> Vec<String> {
        let held = self.objects.lock().expect("never left poisoned");
        held.0.keys().cloned().collect()
    }
}

fn conflict(current: i64) -> BackendError {
    let why = format!("412 Precondition Failed: the object is at generation {current}");
    BackendError::with_kind(FailureKind::Conflict, why)
}

/// The folders directly under `prefix` among `names`, each ending in `/`.
fn folders(names: &[String], prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = names
        .iter()
        .filter_map(|name| name.strip_prefix(prefix))
        .filter_map(|rest| rest.split_once('/'))
        .map(|(folder, _)| format!("{prefix}{folder}/"))
        .collect();
    found.dedup();
    found
}

#[async_trait::async_trait]
impl Backend for MemoryStore {
    async fn check(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn put(&self, name: &str, body: Vec<u8>, _framing: &Framing) -> Result<(), BackendError> {
        self.write(name, body, None).map(drop)
    }

    async fn put_chunks(
        &self,
        name: &str,
        mut chunks: ChunkReceiver,
        _framing: &Framing,
    ) -> Result<u64, BackendError> {
        let mut body = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk.map_err(|e| BackendError::transient(e.to_string()))?;
            body.extend_from_slice(&chunk.bytes);
            if chunk.last {
                let size = body.len() as u64;
                return self.write(name, body, None).map(|_| size);
            }
        }
        Err(BackendError::transient("the data to upload ended early"))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, BackendError> {
        let held = self.objects.lock().expect("never left poisoned");
        let listed = held
            .0
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, stored)| ListedObject {
                name: ObjectName::listed(name.as_str()),
                updated: stored.updated,
                size: stored.bytes.len() as u64,
                generation: None,
                sealed: jobvault_crypt::is_sealed(&stored.bytes),
            })
            .collect();
        Ok(listed)
    }

    async fn list_folders(
        &self,
        prefix: &str,
        _versions: bool,
    ) -> Result<Vec<String>, BackendError> {
        Ok(folders(&self.names(), prefix))
    }

    async fn folders_of(&self, folder: &str) -> Result<Vec<String>, BackendError> {
        Ok(folders(&self.names(), folder))
    }

    async fn get(
        &self,
        name: &str,
        _generation: Option<i64>,
        first: Option<u64>,
    ) -> Result<Vec<u8>, BackendError> {
        let until = first.map_or(usize::MAX, |n| n as usize);
        self.read(name, |o| o.bytes[..until.min(o.bytes.len())].to_vec())
    }

    async fn get_versioned(&self, name: &str) -> Result<Option<(Vec<u8>, i64)>, BackendError> {
        match self.read(name, |o| (o.bytes.clone(), o.generation)) {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.kind == FailureKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        _framing: &Framing,
        if_generation: i64,
    ) -> Result<i64, BackendError> {
        self.write(name, body, Some(if_generation))
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        let mut held = self.objects.lock().expect("never left poisoned");
        match held.0.remove(name) {
            Some(_) => Ok(()),
            None => Err(BackendError::not_found("no such object")),
        }
    }

    async fn versioning(&self) -> Result<Option<bool>, BackendError> {
        Ok(Some(false))
    }

    async fn get_stream_from(
        &self,
        name: &str,
        _generation: Option<i64>,
        from: u64,
    ) -> Result<(BackendStream, Option<i64>), BackendError> {
        let (bytes, generation) = self.read(name, |o| {
            let from = (from as usize).min(o.bytes.len());
            (Bytes::copy_from_slice(&o.bytes[from..]), o.generation)
        })?;
        Ok((
            futures::stream::once(async { Ok(bytes) }).boxed(),
            Some(generation),
        ))
    }

    fn own_prefix(&self) -> String {
        String::new()
    }

    fn credentials(&self) -> String {
        "none needed: held in memory".to_owned()
    }
}
