//! The prefix's destination marker, read, created or written over for the
//! core's check ([`jobvault_core::destination`]). The id is drawn here: the
//! core draws no random numbers.

use jobvault_core::destination::{DESTINATION_OBJECT, DestinationId, DestinationMarker};
use jobvault_core::machine::FoundDestination;
use jobvault_core::object_name::Framing;
use jobvault_core::{Failure, FailureKind};

use crate::clock;
use crate::failure::ToFailure;
use crate::small_object::{gzip, json_of};
use crate::store::Store;

/// [`jobvault_core::Command::CheckDestination`]: the marker, made this
/// database's. Unless it names `keep`, a fresh one is written in its place,
/// only at the generation read (0: only if there is still none). Of two
/// racing, one writes, and the other answers with what it wrote.
pub async fn check(
    store: &Store,
    keep: Option<DestinationId>,
) -> Result<FoundDestination, Failure> {
    let found = read(store).await?;
    let replaced = match &found {
        Some((marker, _)) if Some(marker.id) == keep => {
            return Ok(FoundDestination {
                marker: marker.clone(),
                created: false,
                replaced: None,
            });
        }
        Some((marker, _)) => Some(marker.id),
        None => None,
    };
    let generation = found.as_ref().map_or(0, |(_, generation)| *generation);
    let marker = DestinationMarker::new(fresh_id(), clock::now());
    let framing = Framing::for_object(DESTINATION_OBJECT, marker.created);
    match store
        .put_if(
            DESTINATION_OBJECT,
            gzip(&marker.encode()),
            &framing,
            generation,
        )
        .await
    {
        Ok(_) => Ok(FoundDestination {
            marker,
            created: true,
            replaced,
        }),
        Err(e) if e.kind == FailureKind::Conflict => {
            let (marker, _) = read(store).await?.ok_or_else(|| {
                Failure::new(
                    FailureKind::Transient,
                    format!(
                        "{} was written and is gone",
                        store.location(DESTINATION_OBJECT)
                    ),
                )
            })?;
            Ok(FoundDestination {
                marker,
                created: false,
                replaced: None,
            })
        }
        Err(e) => Err(e.to_failure()),
    }
}

/// The marker and its generation, if the prefix holds one. One that cannot
/// be read is an error that names it: replacing it would make every
/// database's cursor new.
pub async fn read(store: &Store) -> Result<Option<(DestinationMarker, i64)>, Failure> {
    let Some((bytes, generation)) = store
        .get_versioned(DESTINATION_OBJECT)
        .await
        .map_err(|e| e.to_failure())?
    else {
        return Ok(None);
    };
    DestinationMarker::decode(&json_of(bytes))
        .map(|marker| Some((marker, generation)))
        .map_err(|e| {
            Failure::new(
                FailureKind::Corrupt,
                format!("{}: {e}", store.location(DESTINATION_OBJECT)),
            )
        })
}

fn fresh_id() -> DestinationId {
    loop {
        if let Some(id) = DestinationId::new(fastrand::u64(..)) {
            return id;
        }
    }
}
