//! Finding objects by their day folders, without listing the whole bucket
//! (the original listed every snapshot ever written, every ten minutes).

use futures::{StreamExt, TryStreamExt, stream};
use jobvault_core::Timestamp;
use jobvault_core::machine::ListedObject;
use jobvault_core::object_name::ObjectKind;
use jobvault_core::retrieval::{ListingPlan, folder_in_range, newest_object, plan_listing};

use crate::store::{Store, StoreError};

/// Every object of `kind` in the day folders between `since` and `now`,
/// the folders listed `concurrency` at a time.
pub async fn list_range(
    store: &Store,
    kind: ObjectKind,
    since: Timestamp,
    now: Timestamp,
    concurrency: usize,
) -> Result<Vec<ListedObject>, StoreError> {
    let days = match plan_listing(kind, since, now) {
        ListingPlan::Days(days) => days,
        ListingPlan::Discover => discover_days(store, kind, since, now, concurrency).await?,
    };
    let listings: Vec<Vec<ListedObject>> = stream::iter(days)
        .map(|day| async move { store.list(&day).await })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(listings.into_iter().flatten().collect())
}

/// The day folders that exist between `since` and `now`: years, then their
/// months, then their days, keeping only those in range.
async fn discover_days(
    store: &Store,
    kind: ObjectKind,
    since: Timestamp,
    now: Timestamp,
    concurrency: usize,
) -> Result<Vec<String>, StoreError> {
    let mut folders = vec![format!("{}/", kind.dir())];
    for _level in ["years", "months", "days"] {
        let found: Vec<Vec<String>> = stream::iter(folders)
            .map(|folder| async move { store.list_folders(&folder).await })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        folders = found
            .into_iter()
            .flatten()
            .filter(|folder| folder_in_range(kind, folder, since, now))
            .collect();
    }
    Ok(folders)
}

/// The newest object of `kind` in the bucket. Walks the day folders from the
/// newest back and stops at the first that holds one; the day before it is
/// listed too, in case a clock step put the newest upload a day early.
pub async fn find_newest(
    store: &Store,
    kind: ObjectKind,
) -> Result<Option<ListedObject>, StoreError> {
    let mut found: Vec<ListedObject> = Vec::new();
    let mut days_after_first = 0;
    for year in newest_first(store.list_folders(&format!("{}/", kind.dir())).await?) {
        for month in newest_first(store.list_folders(&year).await?) {
            for day in newest_first(store.list_folders(&month).await?) {
                let objects = store.list(&day).await?;
                if !found.is_empty() || newest_object(kind, &objects).is_some() {
                    found.extend(objects);
                    days_after_first += 1;
                }
                if days_after_first == 2 {
                    return Ok(newest_object(kind, &found).cloned());
                }
            }
        }
    }
    Ok(newest_object(kind, &found).cloned())
}

fn newest_first(mut folders: Vec<String>) -> Vec<String> {
    folders.sort_unstable_by(|a, b| b.cmp(a));
    folders
}
