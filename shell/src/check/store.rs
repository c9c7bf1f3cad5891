//! The bucket's part of `jobvault check`: reachable, and a probe object
//! created, read, listed and deleted, as the daemon and a restore will.

use jobvault_core::Timestamp;
use jobvault_core::object_name::Framing;
use jobvault_core::restore_plan::RESTORE_CLOCK_ALLOWANCE;

use crate::small_object::{gzip, json_of};
use crate::store::{BucketUrl, Store};
use jobvault_core::checks::Check;

/// The largest clock difference with the store this check passes. A restore
/// tolerates half its allowance (5 minutes), but the lease needs much less:
/// a daemon takes an expired lease by comparing the holder's clock (the time
/// it wrote in the lease) with its own, and the holder stops writing after
/// half the shortest expiry (15 s) without a renewal, so two hosts must
/// agree within that. Each within 5 s of the store keeps them within 10 s.
const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(5);

/// The store's checks. When the bucket cannot be reached, the others say
/// they were not tried.
pub(super) async fn check(store: &Store, now: &impl Fn() -> Timestamp) -> Vec<Check> {
    if let Err(e) = store.check().await {
        return vec![
            Check::failed("bucket", e.to_string()),
            Check::failed("object permissions", "not tried: no bucket".to_owned()),
        ];
    }
    let mut checks = vec![Check::passed(
        "bucket",
        format!("{} can be listed", store.url()),
    )];
    checks.extend(probe(store, now).await);
    checks.push(versioning(store).await);
    checks
}

/// Creates, reads, lists and deletes a probe object; checks the store's clock
/// on the way.
async fn probe(store: &Store, now: &impl Fn() -> Timestamp) -> Vec<Check> {
    let name = format!(
        "jobvault-check/{}-{}.probe",
        std::process::id(),
        now().unix_nanos()
    );
    let body = gzip(b"jobvault check probe; safe to delete\n");
    let before = now();
    if let Err(e) = store
        .put(&name, body.clone(), &Framing::for_object(&name, before))
        .await
    {
        // The write may have landed though its answer was lost: nothing is
        // left behind either way.
        let _ = store.delete(&name).await;
        let not_tried = |what| Check::failed(what, "not tried: the probe could not be created");
        return vec![
            Check::failed("create objects", e.to_string()),
            not_tried("read objects"),
            not_tried("list objects"),
            not_tried("delete objects"),
        ];
    }
    let after = now();
    let mut checks = vec![Check::passed("create objects", store.location(&name))];
    checks.push(read(store, &name, &body).await);
    let listed = store.list(&name).await;
    checks.push(Check::new(
        "list objects",
        match &listed {
            Ok(found) if found.iter().any(|o| o.name == *name) => {
                Ok("the probe is listed".to_owned())
            }
            Ok(_) => Err("the probe is not in a listing of its own name".to_owned()),
            Err(e) => Err(e.to_string()),
        },
    ));
    if let Ok(found) = &listed
        && let Some(probe) = found.iter().find(|o| o.name == *name)
    {
        checks.push(clock(probe.updated, before, after));
    }
    checks.push(Check::new(
        "delete objects",
        store
            .delete(&name)
            .await
            .map(|()| "the probe is removed".to_owned())
            .map_err(|e| e.to_string()),
    ));
    checks
}

async fn read(store: &Store, name: &str, body: &[u8]) -> Check {
    let result = match store.get(name).await {
        Ok(got) if got == body || got == json_of(body.to_vec()) => {
            Ok("the probe reads back".to_owned())
        }
        Ok(_) => Err("the probe reads back different bytes".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    Check::new("read objects", result)
}

/// The store's time of the probe against ours around its upload.
fn clock(stored: Timestamp, before: Timestamp, after: Timestamp) -> Check {
    let skew = if stored < before {
        before.duration_since(stored)
    } else {
        stored.duration_since(after)
    };
    let detail = format!(
        "the store's clock is within {:.1} s of ours",
        skew.as_secs_f64()
    );
    let result = if skew <= MAX_CLOCK_SKEW {
        Ok(detail)
    } else {
        Err(format!(
            "the store's clock and ours differ by {:.0} s, more than {} s: another daemon could take \
             the lease while this one still writes, and a restore tolerates {} s; fix this machine's \
             time (NTP)",
            skew.as_secs_f64(),
            MAX_CLOCK_SKEW.as_secs(),
            RESTORE_CLOCK_ALLOWANCE.as_secs() / 2
        ))
    };
    Check::new("clock", result)
}

async fn versioning(store: &Store) -> Check {
    let result = match store.versioning().await {
        Ok(Some(true)) => Ok("on: noncurrent versions are kept".to_owned()),
        Ok(Some(false)) => {
            let bucket = match store.url() {
                BucketUrl::Gcs { bucket, .. } => bucket.as_str(),
                BucketUrl::File { .. } | BucketUrl::Memory { .. } => "BUCKET",
            };
            let detail = format!(
                "off: the bucket keeps only the newest version of each object, so `restore --at` \
                 can give only the newest state; `gcloud storage buckets update gs://{bucket} \
                 --versioning` turns it on"
            );
            return Check::warned("object versioning", detail);
        }
        Ok(None) => Ok("not applicable: a local directory".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    Check::new("object versioning", result)
}
