//! The restore planner and the searches it is made of, answered from a
//! bucket held in a map, in the order asked or shuffled.

mod bucket;

use bucket::{Bucket, Content, at, snapshot, version};
use jobvault_core::object_name::ObjectKind;
use jobvault_core::object_name::ObjectName;
use jobvault_core::restore_plan::{
    Answer, Ask, JobSearch, NewestSearch, OnCorrupt, PlanError, Planner, RESTORE_CLOCK_ALLOWANCE,
    RestorePlanner, SnapshotInventory, WithoutSnapshot, supersedes,
};
use jobvault_core::{Cursor, Timestamp};

#[test]
fn the_newest_snapshot_is_found_walking_back_from_the_newest_day() {
    let mut bucket = Bucket::default();
    bucket.put(
        "db-backup/2015/03/01/old.bdb",
        "2015-03-01T00:00:00Z",
        snapshot("2015-03-01T00:00:00Z"),
    );
    bucket.put(
        "db-backup/2016/11/14/a.bdb",
        "2016-11-14T03:00:00Z",
        snapshot("2016-11-14T03:00:00Z"),
    );
    bucket.put(
        "db-backup/2016/11/15/b.bdb",
        "2016-11-15T03:00:00Z",
        snapshot("2016-11-15T03:00:00Z"),
    );
    // A clock step named this one a day early, but the store wrote it last.
    bucket.put(
        "db-backup/2016/11/14/c.bdb",
        "2016-11-15T03:00:01Z",
        snapshot("2016-11-15T03:00:00Z"),
    );
    // Someone's own folder, which sorts after every year.
    bucket.put(
        "db-backup/manual/copy.bdb",
        "2016-11-20T00:00:00Z",
        snapshot("2016-11-20T00:00:00Z"),
    );
    let mut search = NewestSearch::new(ObjectKind::Snapshot);
    bucket.drive(&mut search, false).unwrap();
    assert_eq!(search.newest().unwrap().name, "db-backup/2016/11/14/c.bdb");
    assert!(
        bucket
            .asks
            .iter()
            .all(|ask| !format!("{ask:?}").contains("manual")),
        "{:?}",
        bucket.asks
    );
    // The year 2015 was never opened.
    assert!(
        bucket
            .asks
            .iter()
            .all(|ask| !format!("{ask:?}").contains("2015/")),
        "{:?}",
        bucket.asks
    );
}

#[test]
fn a_restore_takes_jobs_since_the_snapshot_less_the_clock_allowance() {
    let mut bucket = Bucket::default();
    bucket.put(
        "db-backup/2016/11/16/s.bdb",
        "2016-11-16T12:00:05Z",
        snapshot("2016-11-16T12:00:00Z"),
    );
    bucket.job("a", "2016/11/16", "2016-11-16T11:00:00Z", 1);
    bucket.job("b", "2016/11/16", "2016-11-16T11:55:00Z", 2);
    bucket.job("c", "2016/11/16", "2016-11-16T13:00:00Z", 3);
    let mut planner = RestorePlanner::new(at("2016-11-16T14:00:00Z"), OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    let chosen = plan.snapshot.unwrap();
    assert_eq!(
        (chosen.object.as_str(), chosen.time),
        ("db-backup/2016/11/16/s.bdb", at("2016-11-16T12:00:00Z"))
    );
    assert_eq!(
        plan.since,
        at("2016-11-16T12:00:00Z") - RESTORE_CLOCK_ALLOWANCE
    );
    let ids: Vec<&str> = plan.retrieved.jobs.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["b", "c"], "a was uploaded before the allowance");
}

#[test]
fn job_objects_are_listed_while_the_snapshot_downloads() {
    let mut bucket = Bucket::default();
    bucket.put(
        "db-backup/2016/11/16/s.bdb",
        "2016-11-16T12:00:05Z",
        snapshot("2016-11-16T12:00:00Z"),
    );
    bucket.job("a", "2016/11/16", "2016-11-16T13:00:00Z", 1);
    let mut planner = RestorePlanner::new(at("2016-11-16T14:00:00Z"), OnCorrupt::Fail);
    let header = loop {
        let ask = planner
            .poll_ask()
            .expect("the search asks until it has the header");
        if matches!(ask, Ask::SnapshotTime { .. }) {
            break ask;
        }
        planner.handle_answer(bucket.answer(ask)).unwrap();
    };
    planner.handle_answer(bucket.answer(header)).unwrap();
    let asked: Vec<Ask> = std::iter::from_fn(|| planner.poll_ask()).collect();
    assert_eq!(
        asked,
        [
            Ask::FetchSnapshot {
                object: ObjectName::listed("db-backup/2016/11/16/s.bdb"),
                stored: 1,
                generation: None,
            },
            Ask::ListObjects {
                prefix: "job-backup/2016/11/16/".to_owned(),
                versions: false
            },
        ]
    );
}

#[test]
fn a_snapshot_replaced_by_an_older_one_after_its_header_was_read_searches_again() {
    // The header says 12:00, but the object downloaded says 11:00.
    let mut bucket = Bucket::default();
    bucket.download_mtime = Some(Some(at("2016-11-16T11:00:00Z")));
    bucket.put(
        "db-backup/2016/11/16/s.bdb",
        "2016-11-16T12:00:05Z",
        snapshot("2016-11-16T12:00:00Z"),
    );
    bucket.job("a", "2016/11/16", "2016-11-16T10:40:00Z", 1);
    bucket.job("b", "2016/11/16", "2016-11-16T10:55:00Z", 2);
    bucket.job("c", "2016/11/16", "2016-11-16T13:00:00Z", 3);
    let mut planner = RestorePlanner::new(at("2016-11-16T14:00:00Z"), OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    let time = at("2016-11-16T11:00:00Z");
    assert_eq!(plan.snapshot.unwrap().time, time);
    assert_eq!(plan.since, time - RESTORE_CLOCK_ALLOWANCE);
    let ids: Vec<&str> = plan.retrieved.jobs.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["b", "c"], "b is after 11:00 less the allowance");
}

/// A bucket with one snapshot whose header says 12:00 and whose download
/// comes decompressed, holding a cursor at `stored`.
fn decompressed_download_of_a_12_00_snapshot(stored: Timestamp) -> Bucket {
    let mut bucket = Bucket::default();
    bucket.download_mtime = Some(None);
    bucket.put(
        "db-backup/2016/11/16/s.bdb",
        "2016-11-16T12:00:05Z",
        Content::Snapshot {
            gzip_mtime: Some(at("2016-11-16T12:00:00Z")),
            stored: Cursor {
                seq: 0,
                time: stored,
            },
            newest_change: None,
        },
    );
    bucket
}

#[test]
fn a_snapshot_downloaded_decompressed_keeps_the_time_its_header_said() {
    let mut bucket = decompressed_download_of_a_12_00_snapshot(at("2016-11-16T12:30:00Z"));
    bucket.job("a", "2016/11/16", "2016-11-16T11:55:00Z", 1);
    let mut planner = RestorePlanner::new(at("2016-11-16T14:00:00Z"), OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    assert_eq!(plan.snapshot.unwrap().time, at("2016-11-16T12:00:00Z"));
    let ids: Vec<&str> = plan.retrieved.jobs.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a"]);
}

#[test]
fn a_snapshot_downloaded_decompressed_with_an_older_cursor_searches_again_from_it() {
    // The two reads are not pinned to one generation: the object downloaded
    // may have replaced the one whose header said 12:00.
    let stored = Cursor {
        seq: 0,
        time: at("2016-11-16T11:00:00Z"),
    };
    let mut bucket = decompressed_download_of_a_12_00_snapshot(stored.time);
    bucket.job("a", "2016/11/16", "2016-11-16T10:40:00Z", 1);
    bucket.job("b", "2016/11/16", "2016-11-16T10:55:00Z", 2);
    let mut planner = RestorePlanner::new(at("2016-11-16T14:00:00Z"), OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    assert_eq!(plan.snapshot.unwrap().time, stored.time);
    let ids: Vec<&str> = plan.retrieved.jobs.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
}

#[test]
fn a_snapshot_served_without_its_gzip_mtime_stands_for_the_cursor_inside_it() {
    let mut bucket = Bucket::default();
    let stored = Cursor {
        seq: 7,
        time: at("2016-11-16T08:00:00Z"),
    };
    bucket.put(
        "db-backup/2016/11/16/s.bdb",
        "2016-11-16T12:00:05Z",
        Content::Snapshot {
            gzip_mtime: None,
            stored,
            newest_change: None,
        },
    );
    let mut planner = RestorePlanner::new(at("2016-11-16T14:00:00Z"), OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    assert_eq!(plan.snapshot.unwrap().time, stored.time);
    assert_eq!(plan.since, stored.time - RESTORE_CLOCK_ALLOWANCE);
}

/// A gzip header is outside gzip's CRC: one changed bit of its mtime put
/// the snapshot's time days after its upload, and the job objects between
/// were left out. A time after the upload (and the clock allowance) counts
/// as none: the cursor time stored inside stands for it.
#[test]
fn a_gzip_time_after_the_upload_is_not_believed() {
    let mut bucket = Bucket::default();
    bucket.put(
        "db-backup/2016/11/15/s.bdb",
        "2016-11-15T03:00:05Z",
        Content::Snapshot {
            gzip_mtime: Some(at("2016-11-21T03:00:00Z")),
            stored: Cursor {
                seq: 3,
                time: at("2016-11-15T03:00:00Z"),
            },
            newest_change: None,
        },
    );
    bucket.job("x", "2016/11/15", "2016-11-15T12:00:00Z", 7);
    for reverse in [false, true] {
        let mut planner = RestorePlanner::new(at("2016-11-16T00:00:00Z"), OnCorrupt::Fail);
        bucket.drive(&mut planner, reverse).unwrap();
        let plan = planner.finish().unwrap();
        assert_eq!(plan.snapshot.unwrap().time, at("2016-11-15T03:00:00Z"));
        assert_eq!(
            plan.retrieved.jobs.len(),
            1,
            "the job after the snapshot is fetched"
        );
    }
}

#[test]
fn a_deletion_wins_over_older_bodies_and_loses_to_a_newer_one() {
    let mut bucket = Bucket::default();
    bucket.job("gone", "2016/11/15", "2016-11-15T10:00:00Z", 1);
    bucket.deleted("gone", "2016/11/16", "2016-11-16T10:00:00Z", 4);
    bucket.deleted("back", "2016/11/15", "2016-11-15T11:00:00Z", 2);
    bucket.job("back", "2016/11/16", "2016-11-16T11:00:00Z", 3);
    for reverse in [false, true] {
        let mut search = JobSearch::new(
            at("2016-11-15T00:00:00Z"),
            at("2016-11-16T14:00:00Z"),
            OnCorrupt::Fail,
        );
        bucket.drive(&mut search, reverse).unwrap();
        let found = search.finish();
        let newest: Vec<(&str, u64, bool)> = found
            .jobs
            .iter()
            .map(|e| (e.id.as_str(), e.seq, e.body().is_some()))
            .collect();
        assert_eq!(newest, [("back", 3, true), ("gone", 4, false)]);
        let living: Vec<&str> = found.living().map(|e| e.id.as_str()).collect();
        assert_eq!(living, ["back"]);
    }
}

#[test]
fn with_no_snapshot_every_job_folder_is_discovered_and_read() {
    let mut bucket = Bucket::default();
    bucket.job("a", "2014/01/02", "2014-01-02T00:00:00Z", 1);
    bucket.job("a", "2016/11/16", "2016-11-16T00:00:00Z", 5);
    bucket.job("b", "2015/06/30", "2015-06-30T00:00:00Z", 3);
    let mut planner = RestorePlanner::new(at("2016-11-16T14:00:00Z"), OnCorrupt::Fail)
        .without_snapshot(WithoutSnapshot::FromJobObjects);
    bucket.drive(&mut planner, true).unwrap();
    let plan = planner.finish().unwrap();
    assert!(plan.snapshot.is_none());
    let got: Vec<(String, u64)> = plan
        .retrieved
        .jobs
        .iter()
        .map(|e| (e.id.to_string(), e.seq))
        .collect();
    assert_eq!(got, [("a".to_owned(), 5), ("b".to_owned(), 3)]);
    let cursor = plan.cursor(5, 4, None, at("2016-11-16T14:00:00Z"));
    assert_eq!(
        cursor,
        Cursor {
            seq: 5,
            time: at("2016-11-16T14:00:00Z")
        }
    );
    // The lease says its daemon read up to 9 and never uploaded 6 to 9: the
    // restored database continues after them.
    let leased = plan.cursor(5, 4, Some(9), at("2016-11-16T14:00:00Z"));
    assert_eq!(leased.seq, 9);
}

/// Snapshots on the 14th and the 15th, and a job changed between them.
fn two_snapshots_the_newest(newest: Content) -> Bucket {
    let mut bucket = Bucket::default();
    bucket.put(
        "db-backup/2016/11/14/a.bdb",
        "2016-11-14T03:00:05Z",
        snapshot("2016-11-14T03:00:00Z"),
    );
    bucket.put("db-backup/2016/11/15/b.bdb", "2016-11-15T03:00:05Z", newest);
    bucket.job("x", "2016/11/14", "2016-11-14T12:00:00Z", 7);
    bucket.job("y", "2016/11/15", "2016-11-15T12:00:00Z", 9);
    bucket
}

#[test]
fn an_unusable_newest_snapshot_falls_back_to_the_next_older_and_the_jobs_since_it() {
    for reverse in [false, true] {
        let mut bucket = two_snapshots_the_newest(Content::Unusable {
            gzip_mtime: at("2016-11-15T03:00:00Z"),
        });
        let mut planner = RestorePlanner::new(at("2016-11-16T00:00:00Z"), OnCorrupt::Fail);
        bucket.drive(&mut planner, reverse).unwrap();
        let plan = planner.finish().unwrap();
        assert_eq!(plan.snapshot.unwrap().object, "db-backup/2016/11/14/a.bdb");
        assert_eq!(
            plan.since,
            at("2016-11-14T03:00:00Z") - RESTORE_CLOCK_ALLOWANCE
        );
        let ids: Vec<String> = plan
            .retrieved
            .jobs
            .iter()
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(
            ids,
            ["x", "y"],
            "the job changed between the two is fetched"
        );
        assert_eq!(plan.unusable.len(), 1);
        assert_eq!(plan.unusable[0].object, "db-backup/2016/11/15/b.bdb");
        assert!(plan.unusable[0].why.contains("deflate"));
    }
}

#[test]
fn with_every_snapshot_unusable_the_job_objects_serve_only_if_nothing_was_pruned() {
    let unusable = || Content::Unusable {
        gzip_mtime: at("2016-11-15T03:00:00Z"),
    };
    let mut bucket = two_snapshots_the_newest(unusable());
    bucket.put(
        "db-backup/2016/11/14/a.bdb",
        "2016-11-14T03:00:05Z",
        unusable(),
    );
    let now = at("2016-11-16T00:00:00Z");
    let alone = || {
        RestorePlanner::new(now, OnCorrupt::Fail).without_snapshot(WithoutSnapshot::FromJobObjects)
    };
    let mut planner = alone();
    bucket.drive(&mut planner, false).unwrap();
    let plan = planner.finish().unwrap();
    assert_eq!(plan.snapshot, None);
    assert_eq!(plan.since, Timestamp::UNIX_EPOCH);
    assert_eq!(plan.retrieved.jobs.len(), 2);
    assert_eq!(plan.unusable.len(), 2);

    bucket.marker =
        Some(jobvault_core::history::HistoryMarker::new(at("2016-11-10T00:00:00Z"), now).encode());
    let mut planner = alone();
    let refused = bucket.drive(&mut planner, false).unwrap_err();
    let PlanError::NotRestorable(why) = refused else {
        panic!("{refused:?}");
    };
    assert!(why.contains("db-backup/2016/11/15/b.bdb"), "{why}");
    assert!(why.contains("a prune has deleted"), "{why}");
}

#[test]
fn with_no_usable_snapshot_the_job_objects_alone_are_refused_unless_asked_for() {
    let unusable = || Content::Unusable {
        gzip_mtime: at("2016-11-15T03:00:00Z"),
    };
    let now = at("2016-11-16T00:00:00Z");
    let mut every_unusable = two_snapshots_the_newest(unusable());
    every_unusable.put(
        "db-backup/2016/11/14/a.bdb",
        "2016-11-14T03:00:05Z",
        unusable(),
    );
    let mut none = two_snapshots_the_newest(unusable());
    none.delete("db-backup/2016/11/14/a.bdb");
    none.delete("db-backup/2016/11/15/b.bdb");
    for (mut bucket, found) in [
        (
            every_unusable,
            "2 in the bucket, each unusable: db-backup/2016/11/15/b.bdb, db-backup/2016/11/14/a.bdb",
        ),
        (
            none,
            "no snapshot in the bucket (looked under db-backup/), only 2 job objects",
        ),
    ] {
        for reverse in [false, true] {
            let mut planner = RestorePlanner::new(now, OnCorrupt::Fail);
            let refused = bucket
                .drive(&mut planner, reverse)
                .and_then(|()| planner.finish().map(drop))
                .unwrap_err();
            let PlanError::NoUsableSnapshot(why) = refused else {
                panic!("{refused:?}");
            };
            assert!(why.contains(found), "{why}");
            assert!(why.contains("--from-job-objects"), "{why}");
        }
    }
}

/// A database swapped under the daemon (or restored from another prefix)
/// starts the prefix's backups again with a `new-destination-` snapshot:
/// with it unusable, the snapshot before it and the job objects since give
/// the database from before the swap, so the restore refuses to fall back
/// unless asked.
#[test]
fn an_unusable_snapshot_where_the_backups_started_again_is_not_fallen_back_past() {
    let mut bucket = two_snapshots_the_newest(Content::Unusable {
        gzip_mtime: at("2016-11-15T03:00:00Z"),
    });
    bucket.delete("db-backup/2016/11/15/b.bdb");
    bucket.put(
        "db-backup/2016/11/15/new-destination-03:00:00.bdb",
        "2016-11-15T03:00:05Z",
        Content::Unusable {
            gzip_mtime: at("2016-11-15T03:00:00Z"),
        },
    );
    let now = at("2016-11-16T00:00:00Z");
    for reverse in [false, true] {
        let mut planner = RestorePlanner::new(now, OnCorrupt::Fail);
        let refused = bucket.drive(&mut planner, reverse).unwrap_err();
        let PlanError::NoUsableSnapshot(why) = refused else {
            panic!("{refused:?}");
        };
        assert!(
            why.contains("new-destination-03:00:00.bdb") && why.contains("started again"),
            "{why}"
        );
        let mut planner = RestorePlanner::new(now, OnCorrupt::Fail)
            .without_snapshot(WithoutSnapshot::FromJobObjects);
        bucket.drive(&mut planner, reverse).unwrap();
        let plan = planner.finish().unwrap();
        assert_eq!(plan.snapshot.unwrap().object, "db-backup/2016/11/14/a.bdb");
    }
}

#[test]
fn a_bucket_with_neither_snapshot_nor_job_object_has_nothing_to_restore() {
    let mut bucket = Bucket::default();
    let mut planner = RestorePlanner::new(at("2016-11-16T00:00:00Z"), OnCorrupt::Fail);
    bucket.drive(&mut planner, false).unwrap();
    let nothing = planner.finish().unwrap_err();
    assert!(
        matches!(nothing, PlanError::NothingToRestore(_)),
        "{nothing:?}"
    );
}

#[test]
fn the_order_of_answers_does_not_change_the_plan() {
    let mut bucket = Bucket::default();
    bucket.put(
        "db-backup/2016/11/15/s.bdb",
        "2016-11-15T23:59:00Z",
        snapshot("2016-11-15T23:58:00Z"),
    );
    for (i, day) in ["2016/11/15", "2016/11/16"].iter().enumerate() {
        for n in 0..20u64 {
            let updated = format!("{}T23:59:30Z", day.replace('/', "-"));
            bucket.job(&format!("j{}", n % 7), day, &updated, n + 100 * i as u64);
        }
    }
    let mut forward = RestorePlanner::new(at("2016-11-16T23:59:59Z"), OnCorrupt::Fail);
    bucket.drive(&mut forward, false).unwrap();
    let mut backward = RestorePlanner::new(at("2016-11-16T23:59:59Z"), OnCorrupt::Fail);
    bucket.drive(&mut backward, true).unwrap();
    let seqs = |p: RestorePlanner| {
        p.finish()
            .unwrap()
            .retrieved
            .jobs
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(forward), seqs(backward));
}

#[test]
fn a_corrupt_job_object_fails_the_plan_or_is_skipped() {
    let mut bucket = Bucket::default();
    bucket.job("a", "2016/11/16", "2016-11-16T11:00:00Z", 1);
    bucket.put(
        "job-backup/2016/11/16/bad.job",
        "2016-11-16T11:00:00Z",
        Content::Garbage,
    );
    let now = at("2016-11-16T14:00:00Z");
    let mut strict = JobSearch::new(at("2016-11-16T00:00:00Z"), now, OnCorrupt::Fail);
    let error = bucket.drive(&mut strict, false).unwrap_err();
    assert_eq!(
        error,
        PlanError::Corrupt {
            object: ObjectName::listed("job-backup/2016/11/16/bad.job"),
            why: "gzip stream is corrupt".to_owned()
        }
    );
    let mut lenient = JobSearch::new(at("2016-11-16T00:00:00Z"), now, OnCorrupt::Skip);
    bucket.drive(&mut lenient, false).unwrap();
    let found = lenient.finish();
    assert_eq!((found.jobs.len(), found.skipped.len()), (1, 1));
    assert_eq!(found.skipped[0].object, "job-backup/2016/11/16/bad.job");
}

#[test]
fn an_object_holding_another_job_is_corrupt() {
    let mut bucket = Bucket::default();
    bucket.job("a", "2016/11/16", "2016-11-16T11:00:00Z", 1);
    let mut search = JobSearch::new(
        at("2016-11-16T00:00:00Z"),
        at("2016-11-16T14:00:00Z"),
        OnCorrupt::Fail,
    );
    let _ = search.poll_ask();
    let listing = bucket.answer(Ask::ListObjects {
        prefix: "job-backup/2016/11/16/".to_owned(),
        versions: false,
    });
    search.handle_answer(listing).unwrap();
    let error = search
        .handle_answer(Answer::JobFetched {
            object: ObjectName::listed("job-backup/2016/11/16/a.job"),
            generation: None,
            result: Ok(version("b", 1)),
        })
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("is named for job \"a\" but holds job \"b\""),
        "{error}"
    );
}

#[test]
fn a_version_supersedes_only_an_older_one() {
    assert!(supersedes(3, None));
    assert!(supersedes(3, Some(2)));
    assert!(!supersedes(3, Some(3)));
    assert!(!supersedes(3, Some(4)));
}

#[test]
fn an_answer_to_nothing_asked_is_an_error() {
    let mut search = NewestSearch::new(ObjectKind::Snapshot);
    let error = search
        .handle_answer(Answer::Objects {
            prefix: "db-backup/".to_owned(),
            objects: Vec::new(),
            more: false,
        })
        .unwrap_err();
    assert!(matches!(error, PlanError::Unexpected(_)), "{error:?}");
}

#[test]
fn an_answer_given_twice_is_an_error() {
    let mut bucket = Bucket::default();
    bucket.job("a", "2016/11/16", "2016-11-16T11:00:00Z", 1);
    let now = at("2016-11-16T14:00:00Z");
    let mut search = JobSearch::new(at("2016-11-16T00:00:00Z"), now, OnCorrupt::Fail);
    let listing = search.poll_ask().expect("a listing");
    search.handle_answer(bucket.answer(listing)).unwrap();
    let fetch = search.poll_ask().expect("a fetch");
    let answer = bucket.answer(fetch);
    search.handle_answer(answer.clone()).unwrap();
    let error = search.handle_answer(answer).unwrap_err();
    assert!(matches!(error, PlanError::Unexpected(_)), "{error:?}");
}

#[test]
fn the_newest_snapshot_filed_in_the_month_before_is_found() {
    let mut bucket = Bucket::default();
    bucket.put(
        "db-backup/2016/11/30/late.bdb",
        "2016-12-01T00:04:00Z",
        snapshot("2016-12-01T00:00:00Z"),
    );
    bucket.put(
        "db-backup/2016/12/01/early.bdb",
        "2016-12-01T00:03:00Z",
        snapshot("2016-12-01T00:00:00Z"),
    );
    let mut search = NewestSearch::new(ObjectKind::Snapshot);
    bucket.drive(&mut search, false).unwrap();
    assert_eq!(
        search.newest().unwrap().name,
        "db-backup/2016/11/30/late.bdb"
    );
}

#[test]
fn the_inventory_lists_every_snapshot_generation_with_the_time_inside() {
    for reverse in [false, true] {
        let mut bucket = two_snapshots_the_newest(snapshot("2016-11-15T03:00:00Z"));
        bucket.versioned = true;
        // The 15th's snapshot taken again: its first generation goes
        // noncurrent.
        bucket.put(
            "db-backup/2016/11/15/b.bdb",
            "2016-11-15T09:00:05Z",
            snapshot("2016-11-15T09:00:00Z"),
        );
        let mut inventory = SnapshotInventory::new(at("2016-11-16T00:00:00Z"));
        bucket.drive(&mut inventory, reverse).unwrap();
        let seen: Vec<(String, Timestamp, Option<Timestamp>, bool)> = inventory
            .finish()
            .into_iter()
            .map(|e| (e.object.into_string(), e.uploaded, e.time, e.live))
            .collect();
        let b = "db-backup/2016/11/15/b.bdb".to_owned();
        assert_eq!(
            seen,
            [
                (
                    b.clone(),
                    at("2016-11-15T09:00:05Z"),
                    Some(at("2016-11-15T09:00:00Z")),
                    true
                ),
                (
                    b,
                    at("2016-11-15T03:00:05Z"),
                    Some(at("2016-11-15T03:00:00Z")),
                    false
                ),
                (
                    "db-backup/2016/11/14/a.bdb".to_owned(),
                    at("2016-11-14T03:00:05Z"),
                    Some(at("2016-11-14T03:00:00Z")),
                    true
                ),
            ]
        );
    }
}

/// A snapshot deleted from a versioned bucket, alone in its day: the day's
/// folder is in a listing of versions only, and `snapshots` found nothing
/// where the runbook sends the operator to find it.
#[test]
fn the_inventory_finds_a_deleted_snapshot_alone_in_its_folder() {
    let mut bucket = two_snapshots_the_newest(snapshot("2016-11-15T03:00:00Z"));
    bucket.versioned = true;
    bucket.delete("db-backup/2016/11/15/b.bdb");
    let mut inventory = SnapshotInventory::new(at("2016-11-16T00:00:00Z"));
    bucket.drive(&mut inventory, false).unwrap();
    let seen: Vec<(String, bool)> = inventory
        .finish()
        .into_iter()
        .map(|e| (e.object.into_string(), e.live))
        .collect();
    assert_eq!(
        seen,
        [
            ("db-backup/2016/11/15/b.bdb".to_owned(), false),
            ("db-backup/2016/11/14/a.bdb".to_owned(), true),
        ]
    );
}

#[test]
fn a_restore_from_a_named_snapshot_takes_it_and_the_jobs_since_it() {
    let now = at("2016-11-16T00:00:00Z");
    let mut bucket = two_snapshots_the_newest(snapshot("2016-11-15T03:00:00Z"));
    let named = ObjectName::listed("db-backup/2016/11/14/a.bdb");
    let mut planner = RestorePlanner::from_snapshot(named.clone(), now, OnCorrupt::Fail);
    bucket.drive(&mut planner, true).unwrap();
    let plan = planner.finish().unwrap();
    assert_eq!(plan.snapshot.unwrap().object, named);
    assert_eq!(plan.retrieved.jobs.len(), 2);

    let mut planner = RestorePlanner::from_snapshot(
        ObjectName::listed("db-backup/2016/11/14/none.bdb"),
        now,
        OnCorrupt::Fail,
    );
    let refused = bucket.drive(&mut planner, false).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("no live snapshot db-backup/2016/11/14/none.bdb")
    );

    let mut bucket = two_snapshots_the_newest(Content::Unusable {
        gzip_mtime: at("2016-11-15T03:00:00Z"),
    });
    let named = ObjectName::listed("db-backup/2016/11/15/b.bdb");
    let mut planner = RestorePlanner::from_snapshot(named, now, OnCorrupt::Fail);
    let refused = bucket.drive(&mut planner, false).unwrap_err();
    assert!(refused.to_string().contains("is unusable"), "{refused}");
}
