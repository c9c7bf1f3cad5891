//! Small JSON objects of jobvault's own (the lease, the history marker),
//! stored gzipped like every object, and read back whether the store serves
//! them gzipped or decompressed.

use std::io::{Read, Write};

use flate2::{Compression, GzBuilder};
use jobvault_core::FailureKind;
use jobvault_core::Timestamp;
use jobvault_core::object_name::Framing;

use crate::store::{Store, StoreError};

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzBuilder::new().write(Vec::new(), Compression::default());
    gz.write_all(bytes).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// The JSON held by `bytes`: as they are if they are JSON, else gunzipped
/// (empty when they are neither, for the JSON parser to refuse).
pub fn json_of(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.starts_with(b"{") {
        return bytes;
    }
    let mut plain = Vec::new();
    let _ = flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain);
    plain
}

/// The JSON in `name`; `None` if there is no such object.
pub async fn read(store: &Store, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match store.get(name).await {
        Ok(bytes) => Ok(Some(json_of(bytes))),
        Err(e) if e.kind == FailureKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `json` to `name`, gzipped, with `mtime` in its gzip header.
pub async fn write(
    store: &Store,
    name: &str,
    json: &[u8],
    mtime: Timestamp,
) -> Result<(), StoreError> {
    store
        .put(name, gzip(json), &Framing::for_object(name, mtime))
        .await
}
