//! Listing pages parsed as they stream in.
//!
//! gcloud-storage reads a whole listing page into memory and then parses
//! every field of every object resource. GCS pages at most 1,000 objects,
//! but the emulator sends a listing whole: a day of 100,000 job objects came
//! as one page of 125 MB, held as about 300 MiB, and nothing could be
//! fetched until all of it was parsed. Here a page is parsed on a blocking
//! thread as its bytes arrive, each object into the fields jobvault
//! reads, and handed over in batches of [`BATCH`]: memory is bounded by the
//! batch whatever the store's page size, and fetches start with the first
//! batch. GCS is asked (`fields`) to send only those fields.

use std::fmt;

use futures::TryStreamExt;
use jobvault_core::Timestamp;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::{Framing, ObjectName};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::sync::mpsc;

use super::{BackendError, bridge, error_chain};

/// Objects handed over at a time.
pub const BATCH: usize = 1000;

/// What a listing page's response is asked to hold.
pub const FIELDS: &str =
    "nextPageToken,items(name,updated,timeCreated,size,generation,contentType,metadata)";

/// A part of a listing page, in order.
#[derive(Debug)]
pub enum PagePart {
    Objects(Vec<ListedObject>),
    /// The page is complete; the token of the next, if any.
    End {
        next_page: Option<String>,
    },
}

/// The parts of one page, as they are parsed.
pub struct PageParts {
    parts: mpsc::Receiver<Result<PagePart, BackendError>>,
}

impl PageParts {
    /// The next part; after [`PagePart::End`] or an error, nothing follows.
    pub async fn next(&mut self) -> Result<PagePart, BackendError> {
        self.parts.recv().await.unwrap_or_else(|| {
            Err(BackendError::transient(
                "the listing ended before its page was complete",
            ))
        })
    }

    /// A page already in memory, as one part.
    pub fn whole(objects: Vec<ListedObject>) -> Self {
        let (sender, parts) = mpsc::channel(2);
        for part in [
            PagePart::Objects(objects),
            PagePart::End { next_page: None },
        ] {
            sender.try_send(Ok(part)).expect("room for both parts");
        }
        PageParts { parts }
    }
}

/// How objects are named and numbered in what is handed over.
#[derive(Debug, Clone)]
pub struct Naming {
    /// The bucket prefix jobvault's objects live under, stripped.
    pub prefix: String,
    /// Keep each object's generation (a listing of every generation).
    pub versions: bool,
}

/// Parses the successful `response` to a listing request on a blocking
/// thread, handing its parts over as they come.
pub fn parse(response: reqwest::Response, naming: Naming) -> PageParts {
    let (sender, parts) = mpsc::channel(2);
    let body = response
        .bytes_stream()
        .map_err(|e| std::io::Error::other(error_chain(&e)));
    let (feed, source) = bridge(body);
    tokio::spawn(feed);
    tokio::task::spawn_blocking(move || parse_into(source, &naming, &sender));
    PageParts { parts }
}

/// Parses the page `source` holds, sending its parts to `sender`, the
/// last one [`PagePart::End`] or an error.
fn parse_into(source: impl std::io::Read, naming: &Naming, sender: &Sender) {
    // serde_json reads a byte at a time, and each read of the bridge is a
    // trip into the runtime.
    let source = std::io::BufReader::with_capacity(64 << 10, source);
    let mut deserializer = serde_json::Deserializer::from_reader(source);
    let page = PageSeed { naming, sender };
    let part = match page.deserialize(&mut deserializer) {
        Ok(next_page) => Ok(PagePart::End { next_page }),
        Err(e) => Err(BackendError::transient(format!(
            "cannot read a listing page: {e}"
        ))),
    };
    // The receiver is gone only when the listing was abandoned.
    let _ = sender.blocking_send(part);
}

/// One object resource, as far as jobvault reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    name: String,
    updated: Option<Timestamp>,
    time_created: Option<Timestamp>,
    size: Option<String>,
    generation: Option<String>,
    content_type: Option<String>,
    metadata: Option<Metadata>,
}

/// The custom metadata jobvault reads: the format an encrypted object is
/// sealed in.
#[derive(Deserialize)]
struct Metadata {
    #[serde(rename = "jobvault-encryption")]
    encryption: Option<String>,
}

impl Item {
    /// Sealed, as its content type or its metadata says: either may be
    /// changed by hand (`gcloud storage objects update --content-type`), and
    /// an encrypted snapshot read as plain silenced the alarm of a daemon
    /// that dropped encryption.
    fn sealed(&self) -> bool {
        self.content_type.as_deref() == Some(Framing::SEALED_CONTENT_TYPE)
            || self
                .metadata
                .as_ref()
                .is_some_and(|m| m.encryption.is_some())
    }

    /// `None` for an object outside jobvault's prefix.
    fn listed(self, naming: &Naming) -> Option<ListedObject> {
        let sealed = self.sealed();
        let name = self.name.strip_prefix(&naming.prefix)?.to_owned();
        Some(ListedObject {
            name: ObjectName::listed(name),
            updated: self
                .updated
                .or(self.time_created)
                .unwrap_or(Timestamp::UNIX_EPOCH),
            size: self.size.and_then(|s| s.parse().ok()).unwrap_or(0),
            generation: naming
                .versions
                .then(|| self.generation.and_then(|g| g.parse().ok()))
                .flatten(),
            sealed,
        })
    }
}

type Sender = mpsc::Sender<Result<PagePart, BackendError>>;

/// The page object: its items are handed over, its token returned, the
/// rest skipped.
struct PageSeed<'a> {
    naming: &'a Naming,
    sender: &'a Sender,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a listing page")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut next_page = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "items" => map.next_value_seed(ItemsSeed {
                    naming: self.naming,
                    sender: self.sender,
                })?,
                "nextPageToken" => {
                    next_page = map
                        .next_value::<Option<String>>()?
                        .filter(|token| !token.is_empty());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(next_page)
    }
}

/// The items array, sent on in batches as it is read.
struct ItemsSeed<'a> {
    naming: &'a Naming,
    sender: &'a Sender,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(item) = seq.next_element::<Item>()? {
            batch.extend(item.listed(self.naming));
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                self.send(full)?;
            }
        }
        if !batch.is_empty() {
            self.send(batch)?;
        }
        Ok(())
    }
}

impl ItemsSeed<'_> {
    /// Hands a batch over; fails the parse if the listing was abandoned.
    fn send<E: serde::de::Error>(&self, batch: Vec<ListedObject>) -> Result<(), E> {
        self.sender
            .blocking_send(Ok(PagePart::Objects(batch)))
            .map_err(|_| E::custom("the listing was abandoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page as GCS or the emulator sends it, with fields jobvault skips.
    fn page(items: usize, token: Option<&str>) -> String {
        let items: Vec<String> = (0..items)
            .map(|i| {
                format!(
                    r#"{{"kind":"storage#object","name":"jobs/job-backup/2026/12/02/{i:05}.job","size":"{i}","generation":"{}","updated":"2026-12-02T08:00:00.5Z","acl":[{{"role":"OWNER"}}]}}"#,
                    1000 + i
                )
            })
            .collect();
        let token = token.map_or(String::new(), |t| format!(r#","nextPageToken":"{t}""#));
        format!(
            r#"{{"kind":"storage#objects","items":[{}]{token}}}"#,
            items.join(",")
        )
    }

    fn parts_of(json: &str, versions: bool) -> Vec<Result<PagePart, BackendError>> {
        let (sender, mut receiver) = mpsc::channel(16);
        let naming = Naming {
            prefix: "jobs/".to_owned(),
            versions,
        };
        parse_into(json.as_bytes(), &naming, &sender);
        drop(sender);
        std::iter::from_fn(|| receiver.blocking_recv()).collect()
    }

    #[test]
    fn a_page_comes_in_batches_then_its_token() {
        let parts = parts_of(&page(2 * BATCH + 500, Some("next")), true);
        let sizes: Vec<usize> = parts
            .iter()
            .filter_map(|part| match part {
                Ok(PagePart::Objects(objects)) => Some(objects.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [BATCH, BATCH, 500]);
        let Some(Ok(PagePart::End { next_page })) = parts.last() else {
            panic!("the last part is not the end: {:?}", parts.last());
        };
        assert_eq!(next_page.as_deref(), Some("next"));
        let Ok(PagePart::Objects(first)) = &parts[0] else {
            unreachable!()
        };
        assert_eq!(first[7].name, "job-backup/2026/12/02/00007.job");
        assert_eq!((first[7].size, first[7].generation), (7, Some(1007)));
        assert_eq!(
            first[7].updated,
            Timestamp::parse_rfc3339("2026-12-02T08:00:00.5Z").unwrap()
        );
    }

    #[test]
    fn the_last_page_has_no_token_and_generations_only_when_asked() {
        let parts = parts_of(&page(3, None), false);
        assert!(matches!(
            parts.as_slice(),
            [Ok(PagePart::Objects(objects)), Ok(PagePart::End { next_page: None })]
                if objects.len() == 3 && objects.iter().all(|o| o.generation.is_none())
        ));
    }

    #[test]
    fn a_cut_off_page_ends_in_an_error_after_what_it_held() {
        let json = page(2 * BATCH, Some("next"));
        let parts = parts_of(&json[..json.len() * 3 / 4], false);
        assert!(matches!(parts.first(), Some(Ok(PagePart::Objects(o))) if o.len() == BATCH));
        let Some(Err(error)) = parts.last() else {
            panic!("a cut-off page did not fail: {:?}", parts.last());
        };
        assert!(
            error.message.starts_with("cannot read a listing page"),
            "{}",
            error.message
        );
    }
}
