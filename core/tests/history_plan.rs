//! Restoring the past and pruning what no restore in the window needs,
//! planned against a bucket held in a map, with and without versioning.

mod bucket;

use std::time::Duration;

use bucket::{Bucket, Content, at};
use jobvault_core::history::HistoryMarker;
use jobvault_core::prune::PrunePlanner;
use jobvault_core::restore_plan::{
    OnCorrupt, PlanError, RestorePlanner, Retrieved, WithoutSnapshot,
};
use jobvault_core::{Cursor, Timestamp};

const DAY: Duration = Duration::from_secs(86_400);

fn snapshot_at(mtime: &str, newest_change: &str) -> Content {
    Content::Snapshot {
        gzip_mtime: Some(at(mtime)),
        stored: Cursor::default(),
        newest_change: Some(at(newest_change)),
    }
}

/// Job `a` written at 10:00, 12:00 and 14:00 (each uploaded a second
/// later into the same object), job `b` at 11:00; a snapshot at 09:00.
fn a_day_of_history(versioned: bool) -> Bucket {
    let mut bucket = Bucket::default();
    bucket.versioned = versioned;
    bucket.put(
        "db-backup/2016/11/16/s.bdb",
        "2016-11-16T09:00:05Z",
        snapshot_at("2016-11-16T09:00:00Z", "2016-11-16T08:59:00Z"),
    );
    for (seq, hour) in [(1, "10"), (3, "12"), (4, "14")] {
        bucket.put(
            "job-backup/2016/11/16/a.job",
            &format!("2016-11-16T{hour}:00:01Z"),
            Content::JobAt(seq, at(&format!("2016-11-16T{hour}:00:00Z"))),
        );
    }
    bucket.put(
        "job-backup/2016/11/16/b.job",
        "2016-11-16T11:00:01Z",
        Content::JobAt(2, at("2016-11-16T11:00:00Z")),
    );
    bucket
}

fn restore_at(bucket: &mut Bucket, instant: &str, reverse: bool) -> Result<Retrieved, PlanError> {
    let now = at("2016-11-16T20:00:00Z");
    let mut planner = RestorePlanner::at(at(instant), now, OnCorrupt::Fail);
    bucket.drive(&mut planner, reverse)?;
    Ok(planner.finish()?.retrieved)
}

fn seqs(retrieved: &Retrieved) -> Vec<(String, u64)> {
    retrieved
        .jobs
        .iter()
        .map(|e| (e.id.to_string(), e.seq))
        .collect()
}

#[test]
fn each_instant_gets_the_versions_committed_by_then_from_every_generation() {
    let mut bucket = a_day_of_history(true);
    for reverse in [false, true] {
        let cases = [
            ("2016-11-16T09:30:00Z", vec![]),
            ("2016-11-16T10:00:00Z", vec![("a", 1)]),
            ("2016-11-16T11:30:00Z", vec![("a", 1), ("b", 2)]),
            ("2016-11-16T13:59:59Z", vec![("a", 3), ("b", 2)]),
            ("2016-11-16T19:00:00Z", vec![("a", 4), ("b", 2)]),
        ];
        for (instant, expected) in cases {
            let expected: Vec<(String, u64)> = expected
                .into_iter()
                .map(|(id, seq)| (id.to_owned(), seq))
                .collect();
            let found = restore_at(&mut bucket, instant, reverse).unwrap();
            assert_eq!(seqs(&found), expected, "at {instant}");
        }
    }
}

#[test]
fn without_versioning_a_past_overwritten_since_is_refused() {
    let mut bucket = a_day_of_history(false);
    let error = restore_at(&mut bucket, "2016-11-16T12:30:00Z", false).unwrap_err();
    let PlanError::NotRestorable(why) = error else {
        panic!("{error:?}")
    };
    assert!(why.contains("job-backup/2016/11/16/a.job"), "{why}");
    assert!(why.contains("--versioning"), "{why}");
    // After the newest upload, nothing was overwritten: it restores.
    let found = restore_at(&mut bucket, "2016-11-16T19:00:00Z", false).unwrap();
    assert_eq!(seqs(&found), [("a".to_owned(), 4), ("b".to_owned(), 2)]);
}

/// With the day's one snapshot damaged (and no versioning to keep the
/// good one), a restore of the past has nothing to start from but the job
/// objects: refused unless asked for, as a restore of the newest state is.
#[test]
fn with_no_usable_snapshot_the_past_from_job_objects_alone_is_refused_unless_asked_for() {
    let mut bucket = a_day_of_history(false);
    bucket.put(
        "db-backup/2016/11/16/s.bdb",
        "2016-11-16T09:00:05Z",
        Content::Unusable {
            gzip_mtime: at("2016-11-16T09:00:00Z"),
        },
    );
    let error = restore_at(&mut bucket, "2016-11-16T19:00:00Z", false).unwrap_err();
    let PlanError::NoUsableSnapshot(why) = error else {
        panic!("{error:?}")
    };
    assert!(
        why.contains("1 unusable: db-backup/2016/11/16/s.bdb")
            && why.contains("--from-job-objects"),
        "{why}"
    );
    let now = at("2016-11-16T20:00:00Z");
    let mut planner = RestorePlanner::at(at("2016-11-16T19:00:00Z"), now, OnCorrupt::Fail)
        .without_snapshot(WithoutSnapshot::FromJobObjects);
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    assert_eq!(plan.snapshot, None);
    assert_eq!(
        seqs(&plan.retrieved),
        [("a".to_owned(), 4), ("b".to_owned(), 2)]
    );
}

/// On a versioned bucket, a snapshot overwritten since (here by damaged
/// bytes) is still a base for the instants after it was taken: its
/// noncurrent generation is fetched.
#[test]
fn an_overwritten_snapshot_generation_is_the_base_of_a_past_restore() {
    let mut bucket = a_day_of_history(true);
    bucket.put(
        "db-backup/2016/11/16/s.bdb",
        "2016-11-16T15:00:05Z",
        Content::Unusable {
            gzip_mtime: at("2016-11-16T15:00:00Z"),
        },
    );
    for reverse in [false, true] {
        let now = at("2016-11-16T20:00:00Z");
        let mut planner = RestorePlanner::at(at("2016-11-16T12:30:00Z"), now, OnCorrupt::Fail);
        bucket.drive(&mut planner, reverse).unwrap();
        let plan = planner.finish().unwrap();
        let base = plan.snapshot.expect("the noncurrent generation");
        assert_eq!(base.object, "db-backup/2016/11/16/s.bdb");
        assert_eq!(base.time, at("2016-11-16T09:00:00Z"));
        assert_eq!(
            seqs(&plan.retrieved),
            [("a".to_owned(), 3), ("b".to_owned(), 2)]
        );
    }
}

#[test]
fn a_snapshot_holding_changes_after_the_instant_is_not_the_base() {
    let mut bucket = a_day_of_history(true);
    // Planned at 12:00, copied a moment later: it holds 12:00:30.
    bucket.put(
        "db-backup/2016/11/16/t.bdb",
        "2016-11-16T12:01:00Z",
        snapshot_at("2016-11-16T12:00:00Z", "2016-11-16T12:00:30Z"),
    );
    let now = at("2016-11-16T20:00:00Z");
    let mut planner = RestorePlanner::at(at("2016-11-16T12:00:10Z"), now, OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    assert_eq!(plan.snapshot.unwrap().object, "db-backup/2016/11/16/s.bdb");
    let mut planner = RestorePlanner::at(at("2016-11-16T12:00:30Z"), now, OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    assert_eq!(
        planner.finish().unwrap().snapshot.unwrap().object,
        "db-backup/2016/11/16/t.bdb"
    );
}

#[test]
fn an_instant_before_the_history_marker_is_refused() {
    let mut bucket = a_day_of_history(true);
    let from = at("2016-11-16T10:30:00Z");
    bucket.marker = Some(HistoryMarker::new(from, from).encode());
    let error = restore_at(&mut bucket, "2016-11-16T10:00:00Z", false).unwrap_err();
    assert!(
        error.to_string().contains("before the bucket's history"),
        "{error}"
    );
    assert!(restore_at(&mut bucket, "2016-11-16T10:30:00Z", false).is_ok());
}

/// Snapshots on days 1, 3 and 5 of a month at 03:00; job `a` written every
/// day at 06:00, job `b` only on day 3, after that day's snapshot.
fn a_month(versioned: bool) -> Bucket {
    let mut bucket = Bucket::default();
    bucket.versioned = versioned;
    for day in [1, 3, 5] {
        bucket.put(
            &format!("db-backup/2016/11/{day:02}/s.bdb"),
            &format!("2016-11-{day:02}T03:00:05Z"),
            snapshot_at(
                &format!("2016-11-{day:02}T03:00:00Z"),
                &format!("2016-11-{day:02}T03:00:00Z"),
            ),
        );
    }
    for day in 1..=6 {
        let written = format!("2016-11-{day:02}T06:00:00Z");
        bucket.put(
            &format!("job-backup/2016/11/{day:02}/a.job"),
            &written,
            Content::JobAt(day, at(&written)),
        );
    }
    bucket.put(
        "job-backup/2016/11/03/b.job",
        "2016-11-03T06:00:01Z",
        Content::JobAt(100, at("2016-11-03T06:00:00Z")),
    );
    bucket
}

fn prune(bucket: &mut Bucket, now: Timestamp, keep: Duration) -> jobvault_core::prune::PrunePlan {
    let mut planner = PrunePlanner::new(now, keep);
    bucket.drive(&mut planner, true).unwrap();
    planner.finish().unwrap()
}

#[test]
fn a_prune_keeps_the_base_of_the_window_and_what_restores_from_it() {
    let mut bucket = a_month(false);
    // The window starts on day 4 at 12:00: the base is day 3's snapshot.
    let now = at("2016-11-06T12:00:00Z");
    let plan = prune(&mut bucket, now, 2 * DAY);
    assert_eq!(
        plan.base.as_ref().unwrap().object,
        "db-backup/2016/11/03/s.bdb"
    );
    assert_eq!(
        plan.delete,
        [
            "db-backup/2016/11/01/s.bdb",
            "job-backup/2016/11/01/a.job",
            "job-backup/2016/11/02/a.job",
        ]
    );
    assert!(
        plan.young_snapshots.is_empty(),
        "day 1's snapshot is days old"
    );
    let promised = now - 2 * DAY;
    assert_eq!(plan.restorable_from, Some(promised));
    assert_eq!(plan.marker.unwrap().restorable_from, promised);
}

#[test]
fn a_prune_names_the_snapshots_it_deletes_that_are_under_a_day_old() {
    let mut bucket = a_month(false);
    // An hour's window two hours after day 6's snapshot: that one is the
    // base, day 5's (uploaded 23 h 59 min ago) is young, day 3's is not.
    bucket.put(
        "db-backup/2016/11/06/s.bdb",
        "2016-11-06T01:00:05Z",
        snapshot_at("2016-11-06T01:00:00Z", "2016-11-06T01:00:00Z"),
    );
    let plan = prune(
        &mut bucket,
        at("2016-11-06T03:00:00Z"),
        Duration::from_secs(3600),
    );
    assert_eq!(
        plan.base.as_ref().unwrap().object,
        "db-backup/2016/11/06/s.bdb"
    );
    assert!(
        plan.delete
            .iter()
            .any(|o| o == "db-backup/2016/11/03/s.bdb")
    );
    assert_eq!(plan.young_snapshots, ["db-backup/2016/11/05/s.bdb"]);
}

#[test]
fn without_a_snapshot_old_enough_nothing_is_deleted() {
    let mut bucket = a_month(false);
    // Every snapshot is inside the window (or within the margin of it).
    let plan = prune(&mut bucket, at("2016-11-06T12:00:00Z"), 6 * DAY);
    assert_eq!(plan.base, None);
    assert!(plan.delete.is_empty(), "{:?}", plan.delete);
    assert_eq!(plan.marker, None);
    let plan = prune(&mut bucket, at("2016-11-01T03:30:00Z"), Duration::ZERO);
    assert_eq!(
        plan.base, None,
        "within BASE_MARGIN of the only old snapshot"
    );
}

#[test]
fn after_a_prune_every_instant_in_the_window_restores_as_before() {
    let now = at("2016-11-06T12:00:00Z");
    let instants = [
        "2016-11-04T12:00:00Z",
        "2016-11-05T02:00:00Z",
        "2016-11-06T11:00:00Z",
    ];
    let mut untouched = a_month(true);
    let before: Vec<_> = instants
        .iter()
        .map(|t| restore_in(&mut untouched, t, now))
        .collect();
    let mut bucket = a_month(true);
    let plan = prune(&mut bucket, now, 2 * DAY);
    bucket.marker = plan.marker.map(|m| m.encode());
    for object in &plan.delete {
        bucket.delete(object);
    }
    let after: Vec<_> = instants
        .iter()
        .map(|t| restore_in(&mut bucket, t, now))
        .collect();
    assert_eq!(before, after);
    // Restores from the base read `b` from the base's own day folder (this
    // bucket's snapshots hold no rows).
    let from_the_base: Vec<_> = after
        .iter()
        .filter(|(snapshot, _)| snapshot == "db-backup/2016/11/03/s.bdb")
        .collect();
    assert_eq!(from_the_base.len(), 2, "{after:?}");
    assert!(
        from_the_base
            .iter()
            .all(|(_, jobs)| jobs.contains(&("b".to_owned(), 100))),
        "{after:?}"
    );
    // The newest state too.
    let mut planner = RestorePlanner::new(now, OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    assert_eq!(
        seqs(&planner.finish().unwrap().retrieved),
        [("a".to_owned(), 6)]
    );
}

fn restore_in(bucket: &mut Bucket, instant: &str, now: Timestamp) -> (String, Vec<(String, u64)>) {
    let mut planner = RestorePlanner::at(at(instant), now, OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    (
        plan.snapshot.unwrap().object.into_string(),
        seqs(&plan.retrieved),
    )
}

#[test]
fn the_newest_upload_is_kept_whatever_its_time_says() {
    let mut bucket = a_month(false);
    // Uploaded last, but planned while the incremental time lagged: its
    // mtime is older than the base's.
    bucket.put(
        "db-backup/2016/11/06/lagging.bdb",
        "2016-11-06T11:00:00Z",
        snapshot_at("2016-11-02T00:00:00Z", "2016-11-06T10:59:00Z"),
    );
    let plan = prune(&mut bucket, at("2016-11-06T12:00:00Z"), 2 * DAY);
    assert_eq!(plan.base.unwrap().object, "db-backup/2016/11/03/s.bdb");
    assert!(
        plan.delete
            .iter()
            .any(|o| o == "db-backup/2016/11/01/s.bdb")
    );
    assert!(
        !plan
            .delete
            .iter()
            .any(|o| o == "db-backup/2016/11/06/lagging.bdb")
    );
}

#[test]
fn a_snapshot_uploaded_after_the_window_starts_is_never_its_base() {
    let now = at("2016-11-06T12:00:00Z");
    for (name, late) in [
        // Planned on day 4 at 01:00, uploaded after the window's start
        // (day 4, 12:00): the store refused it for hours.
        (
            "db-backup/2016/11/04/late.bdb",
            snapshot_at("2016-11-04T01:00:00Z", "2016-11-04T01:00:00Z"),
        ),
        // Its header came decompressed: its time is its upload's.
        (
            "db-backup/2016/11/04/decompressed.bdb",
            Content::Snapshot {
                gzip_mtime: None,
                stored: Cursor::default(),
                newest_change: Some(at("2016-11-04T13:00:00Z")),
            },
        ),
    ] {
        let mut bucket = a_month(true);
        bucket.put(name, "2016-11-04T13:00:00Z", late);
        let plan = prune(&mut bucket, now, 2 * DAY);
        assert_eq!(
            plan.base.as_ref().map(|b| b.object.as_str()),
            Some("db-backup/2016/11/03/s.bdb"),
            "{name}"
        );
        assert!(!plan.delete.iter().any(|o| o == name), "{name}");
        bucket.marker = plan.marker.map(|m| m.encode());
        for object in &plan.delete {
            bucket.delete(object);
        }
        let (base, _) = restore_in(&mut bucket, "2016-11-04T12:30:00Z", now);
        assert_eq!(base, "db-backup/2016/11/03/s.bdb", "{name}");
    }
}

/// A snapshot whose header came decompressed is as old as its upload, not
/// its day folder's start: taken so, one uploaded hours after the base, in
/// the base's day folder, sorted before it and was deleted (the simulator:
/// the first snapshot after the database went back to a copy).
#[test]
fn a_snapshot_whose_header_came_decompressed_is_as_old_as_its_upload() {
    let now = at("2016-11-06T12:00:00Z");
    let name = "db-backup/2016/11/03/decompressed.bdb";
    let mut bucket = a_month(true);
    bucket.put(
        name,
        "2016-11-03T09:00:00Z",
        Content::Snapshot {
            gzip_mtime: None,
            stored: Cursor::default(),
            newest_change: Some(at("2016-11-03T08:59:00Z")),
        },
    );
    let (_, before) = restore_in(&mut bucket, "2016-11-05T12:30:00Z", now);
    let plan = prune(&mut bucket, now, 2 * DAY);
    assert!(!plan.delete.iter().any(|o| o == name), "{:?}", plan.delete);
    bucket.marker = plan.marker.map(|m| m.encode());
    for object in &plan.delete {
        bucket.delete(object);
    }
    let (_, after) = restore_in(&mut bucket, "2016-11-05T12:30:00Z", now);
    assert_eq!(after, before);
}

/// The same snapshot as the window's base: its contents may be as old as
/// its day folder (copied before midnight, uploaded after), so the job
/// objects from that day on are kept for a restore from it.
#[test]
fn a_base_whose_header_came_decompressed_keeps_the_job_objects_from_its_day() {
    let now = at("2016-11-06T12:00:00Z");
    let mut bucket = a_month(true);
    bucket.put(
        "db-backup/2016/11/03/late.bdb",
        "2016-11-04T00:15:00Z",
        Content::Snapshot {
            gzip_mtime: None,
            stored: Cursor::default(),
            newest_change: Some(at("2016-11-03T23:58:00Z")),
        },
    );
    let plan = prune(&mut bucket, now, 2 * DAY);
    assert_eq!(
        plan.base.as_ref().map(|b| b.object.as_str()),
        Some("db-backup/2016/11/03/late.bdb")
    );
    assert!(
        !plan
            .delete
            .iter()
            .any(|o| o == "job-backup/2016/11/03/a.job"),
        "{:?}",
        plan.delete
    );
}

#[test]
fn without_versioning_a_version_committed_after_the_instant_is_refused_whatever_the_store_clock() {
    let mut bucket = a_day_of_history(false);
    // The store's clock runs behind: uploaded "before" 14:30 by its clock,
    // committed after it by the database's.
    bucket.put(
        "job-backup/2016/11/16/b.job",
        "2016-11-16T14:29:59Z",
        Content::JobAt(5, at("2016-11-16T14:30:01Z")),
    );
    let error = restore_at(&mut bucket, "2016-11-16T14:30:00Z", false).unwrap_err();
    assert!(
        error.to_string().contains(
            "job-backup/2016/11/16/b.job holds a version written at 2016-11-16T14:30:01Z"
        ),
        "{error}"
    );
}
