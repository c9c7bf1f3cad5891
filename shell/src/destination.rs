//! The prefix's destination marker, read or created for the core's check
//! ([`jobvault_core::destination`]). The id is drawn here: the core draws
//! no random numbers.

use jobvault_core::destination::{DESTINATION_OBJECT, DestinationId, DestinationMarker};
use jobvault_core::machine::FoundDestination;
use jobvault_core::object_name::Framing;
use jobvault_core::{Failure, FailureKind};

use crate::clock;
use crate::failure::ToFailure;
use crate::small_object::{gzip, json_of};
use crate::store::Store;

/// Reads the marker; if there is none, creates one (only if there is still
/// none: of two daemons racing, one writes and both read what it wrote).
pub async fn find_or_create(store: &Store) -> Result<FoundDestination, Failure> {
    if let Some(marker) = read(store).await? {
        return Ok(FoundDestination {
            marker,
            created: false,
        });
    }
    let marker = DestinationMarker::new(fresh_id(), clock::now());
    let framing = Framing::for_object(DESTINATION_OBJECT, marker.created);
    match store
        .put_if(DESTINATION_OBJECT, gzip(&marker.encode()), &framing, 0)
        .await
    {
        Ok(_) => Ok(FoundDestination {
            marker,
            created: true,
        }),
        Err(e) if e.kind == FailureKind::Conflict => {
            let marker = read(store).await?.ok_or_else(|| {
                Failure::new(
                    FailureKind::Transient,
                    format!(
                        "{} was created and is gone",
                        store.location(DESTINATION_OBJECT)
                    ),
                )
            })?;
            Ok(FoundDestination {
                marker,
                created: false,
            })
        }
        Err(e) => Err(e.to_failure()),
    }
}

/// The marker, if the prefix holds one. One that cannot be read is an error
/// that names it: replacing it would make every database's cursor new.
pub async fn read(store: &Store) -> Result<Option<DestinationMarker>, Failure> {
    let Some((bytes, _)) = store
        .get_versioned(DESTINATION_OBJECT)
        .await
        .map_err(|e| e.to_failure())?
    else {
        return Ok(None);
    };
    DestinationMarker::decode(&json_of(bytes))
        .map(Some)
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
