//! The backup state machine, step by step: the original's behaviour and the
//! defects we fix. Each test drives the machine by hand, as a driver would.

mod bucket;

use std::collections::VecDeque;
use std::time::Duration;

use bucket::Bucket;

use jobvault_core::destination::{DestinationId, DestinationMarker};
use jobvault_core::lease::{FoundLease, Holder, Lease, LeaseEnded, LeaseMachine, LeaseState};
use jobvault_core::machine::{
    AFTER_DELETION_SPACING, ChangeBatch, FIRST_RETRY, FoundDestination, JobUpload, LEASED_MARGIN,
    ListedObject, OBJECT_WRITE_SPACING, Owed, REFUSED_RETRY, RowId, SEQ_SAVE_SPACING, Schedule,
    SnapshotOrder, SnapshotReason, Unreadable, Unvouched, trigger_retry_wait,
};
use jobvault_core::object_name::ObjectName;
use jobvault_core::restore_plan::Ask;
use jobvault_core::trigger::{MalformedTrigger, TriggerFile, TriggerName};
use jobvault_core::{
    Backup, Command, Config, Cursor, Envelope, Failure, FailureKind, Input, JobId, Stopped,
    Timestamp,
};

const START: &str = "2016-11-16T22:04:25.634818978Z";
/// The destination the harness's database records.
const KNOWN: u64 = 0x0123_4567_89ab_cdef;

struct Harness {
    backup: Backup,
    now: Timestamp,
}

fn config() -> Config {
    Config {
        concurrency: 4,
        max_pending: 8,
        ..Config::default()
    }
}

impl Harness {
    fn new() -> Self {
        Harness::with(config(), stored_cursor())
    }

    /// A machine whose database records [`KNOWN`] as its destination.
    fn with(config: Config, stored: Cursor) -> Self {
        let now = Timestamp::parse_rfc3339(START).unwrap();
        Harness {
            backup: Backup::new(config, stored, now).recorded(DestinationId::new(KNOWN)),
            now,
        }
    }

    /// Moves the clock and runs what is due; returns the commands emitted.
    fn advance(&mut self, by: Duration) -> Vec<Command> {
        self.now = self.now + by;
        self.backup.handle_timeout(self.now);
        self.commands()
    }

    /// The first step, due at creation, with its destination check answered
    /// by the marker of [`KNOWN`].
    fn start(&mut self) -> Vec<Command> {
        let mut commands = self.advance(Duration::ZERO);
        if let Some(at) = commands
            .iter()
            .position(|c| matches!(c, Command::CheckDestination { .. }))
        {
            commands.remove(at);
            commands.extend(self.input(checked(marker(KNOWN), false)));
        }
        commands
    }

    /// The next step, one interval later.
    fn step(&mut self) -> Vec<Command> {
        self.advance(Duration::from_secs(10))
    }

    /// Asks the machine to stop now, with [`GRACE`] to drain.
    fn stop(&mut self) -> Vec<Command> {
        self.backup.stop(self.now, GRACE);
        self.commands()
    }

    fn input(&mut self, input: Input) -> Vec<Command> {
        self.backup.handle_input(input, self.now);
        self.commands()
    }

    fn commands(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.backup.poll_command()).collect()
    }
}

const GRACE: Duration = Duration::from_secs(30);

fn stored_cursor() -> Cursor {
    Cursor {
        seq: 10,
        time: Timestamp::parse_rfc3339("2016-11-16T22:00:00Z").unwrap(),
    }
}

/// A stop that drained `changes`, saved the cursor and gave the lease back.
fn drained(changes: u64) -> Stopped {
    Stopped::Drained {
        changes,
        saved: true,
        released: true,
    }
}

fn failure(text: &str) -> Failure {
    Failure::new(FailureKind::Transient, text)
}

fn trigger(name: &str, secs: i64, content: &str) -> TriggerFile {
    TriggerFile {
        name: TriggerName::found(name),
        name_is_text: true,
        modified: Timestamp::from_unix_seconds(1_479_000_000 + secs),
        content: Ok(content.as_bytes().to_vec()),
    }
}

fn version(id: &str, seq: u64) -> Envelope {
    Envelope::written(
        JobId::new(id).unwrap(),
        seq,
        Timestamp::from_unix_seconds(1_479_333_000 + seq as i64),
        format!(r#"{{"id":"{id}","name":"job {id}"}}"#),
    )
}

/// A read of the feed that found `jobs`: cut by its limit if it holds as
/// many as [`config`] holds at most.
fn batch(jobs: Vec<Envelope>) -> Input {
    batch_at(stored_cursor(), jobs)
}

/// A read of the feed that found nothing after `newest`, the counter.
fn nothing_after(newest: u64) -> Input {
    nothing_after_at(stored_cursor(), newest)
}

/// A read of the feed that found nothing after `newest`, the counter, and
/// `stored` as the cursor.
fn nothing_after_at(stored: Cursor, newest: u64) -> Input {
    Input::ChangesRead(Ok(ChangeBatch {
        stored,
        newest,
        complete: true,
        jobs: vec![],
        unreadable: vec![],
        set_aside: 0,
    }))
}

fn batch_at(stored: Cursor, jobs: Vec<Envelope>) -> Input {
    Input::ChangesRead(Ok(ChangeBatch {
        stored,
        newest: jobs.last().map_or(stored.seq, |job| job.seq),
        complete: jobs.len() < config().max_pending,
        jobs,
        unreadable: vec![],
        set_aside: 0,
    }))
}

fn uploaded(id: &str, seq: u64) -> Input {
    Input::JobUploaded {
        id: JobId::new(id).unwrap(),
        seq,
        result: Ok(100),
    }
}

fn upload_failed(id: &str, seq: u64) -> Input {
    Input::JobUploaded {
        id: JobId::new(id).unwrap(),
        seq,
        result: Err(failure("503 Service Unavailable")),
    }
}

fn uploads(commands: &[Command]) -> Vec<(String, u64)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::UploadJob(JobUpload { envelope, .. }) => {
                Some((envelope.id.to_string(), envelope.seq))
            }
            _ => None,
        })
        .collect()
}

fn saved(commands: &[Command]) -> Option<Cursor> {
    commands.iter().find_map(|c| match c {
        Command::SaveCursor { new, .. } => Some(*new),
        _ => None,
    })
}

fn snapshot(commands: &[Command]) -> Option<SnapshotOrder> {
    commands.iter().find_map(|c| match c {
        Command::TakeSnapshot(order) => Some(order.clone()),
        _ => None,
    })
}

fn has(commands: &[Command], wanted: &Command) -> bool {
    commands.contains(wanted)
}

/// Answers the first step's feed read with nothing, so that a test can look
/// at the trigger side alone.
fn start_with_empty_feed(h: &mut Harness) -> Vec<Command> {
    let mut commands = h.start();
    commands.extend(h.input(batch(vec![])));
    commands
}

// ---------------------------------------------------------------- triggers

#[test]
fn the_first_step_scans_triggers_reads_the_feed_and_lists_snapshots() {
    let mut h = Harness::new();
    let commands = h.start();
    assert!(has(&commands, &Command::ScanTriggers));
    assert!(has(
        &commands,
        &Command::ReadChanges {
            after: 10,
            limit: 8,
            max_bytes: Config::default().max_pending_bytes,
        }
    ));
    let Some(Command::ListSnapshots { prefixes }) = commands.last() else {
        panic!("no snapshot listing in {commands:?}");
    };
    assert_eq!(prefixes.len(), 8, "the first listing looks back a week");
    assert_eq!(prefixes[0], "db-backup/2016/11/16/");
}

#[test]
fn a_missing_trigger_directory_does_not_stop_incremental_backups() {
    let mut h = Harness::new();
    h.start();
    let after_scan = h.input(Input::TriggersScanned(Err(failure(
        "cannot list /var/lib/jobvault/trigger-backup: No such file or directory",
    ))));
    assert!(after_scan.is_empty());
    assert_eq!(h.backup.metrics().trigger_check_alive, None);
    let commands = h.input(batch(vec![version("a", 11)]));
    assert_eq!(uploads(&commands), [("a".to_owned(), 11)]);
    // The next step scans again.
    h.input(uploaded("a", 11));
    assert!(has(&h.step(), &Command::ScanTriggers));
}

#[test]
fn an_empty_trigger_directory_means_no_snapshot() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    let commands = h.input(Input::TriggersScanned(Ok(vec![])));
    assert!(commands.is_empty(), "{commands:?}");
    assert_eq!(h.backup.metrics().trigger_check_alive, Some(h.now));
}

#[test]
fn an_empty_trigger_is_attempted_uploaded_and_deleted() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    let commands = h.input(Input::TriggersScanned(Ok(vec![trigger("nightly", 0, "")])));
    assert_eq!(
        commands,
        [Command::WriteTriggerAttempts {
            name: TriggerName::found("nightly"),
            attempts: 1
        }]
    );
    let commands = h.input(Input::TriggerAttemptsWritten {
        name: TriggerName::found("nightly"),
        result: Ok(()),
    });
    let order = snapshot(&commands).expect("a snapshot order");
    assert_eq!(order.object, "db-backup/2016/11/16/nightly.bdb");
    assert_eq!(order.framing.gzip_name, "nightly.bdb");
    // The gzip mtime is the incremental backup time, from which a restore
    // retrieves later jobs.
    assert_eq!(order.framing.gzip_mtime, stored_cursor().time);
    assert_eq!(
        order.reason,
        SnapshotReason::Trigger {
            name: TriggerName::found("nightly"),
            attempt: 1
        }
    );
    let commands = h.input(Input::SnapshotTaken {
        object: order.object.clone(),
        result: Ok(4096),
    });
    assert_eq!(
        commands,
        [Command::DeleteTrigger {
            name: TriggerName::found("nightly")
        }]
    );
    let metrics = h.backup.metrics();
    assert_eq!(metrics.last_snapshot, Some(h.now));
    assert_eq!(metrics.snapshots_last_24h, 1);
    assert_eq!(metrics.upload_bytes.snapshot, 4096);
    assert_eq!(metrics.trigger_attempts, 1);
}

#[test]
fn a_snapshot_to_a_missing_bucket_uses_up_the_triggers_three_attempts() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    let mut content = String::new();
    for attempt in 1..=3u32 {
        if attempt > 1 {
            // The next step finds the trigger waiting out its retry time.
            h.step();
            let early = h.input(Input::TriggersScanned(Ok(vec![trigger("t", 0, &content)])));
            assert!(
                !early
                    .iter()
                    .any(|c| matches!(c, Command::WriteTriggerAttempts { .. })),
                "attempt {attempt} before its wait: {early:?}"
            );
            h.advance(trigger_retry_wait(config().interval) * 2u32.pow(attempt - 2));
        }
        let commands = h.input(Input::TriggersScanned(Ok(vec![trigger("t", 0, &content)])));
        assert!(
            has(
                &commands,
                &Command::WriteTriggerAttempts {
                    name: TriggerName::found("t"),
                    attempts: attempt
                }
            ),
            "attempt {attempt}: {commands:?}"
        );
        content = attempt.to_string();
        let order = snapshot(&h.input(Input::TriggerAttemptsWritten {
            name: TriggerName::found("t"),
            result: Ok(()),
        }))
        .expect("a snapshot order");
        let after = h.input(Input::SnapshotTaken {
            object: order.object,
            result: Err(Failure::new(
                FailureKind::NotFound,
                "gs://gone: the bucket does not exist",
            )),
        });
        let deleted = has(
            &after,
            &Command::DeleteTrigger {
                name: TriggerName::found("t"),
            },
        );
        assert_eq!(deleted, attempt == 3, "attempt {attempt}: {after:?}");
    }
    let metrics = h.backup.metrics();
    assert_eq!(metrics.triggers_exhausted, 1);
    assert_eq!(metrics.upload_errors.snapshot, 3);
    assert_eq!(metrics.last_snapshot, None);
}

#[test]
fn a_trigger_already_at_the_retry_count_is_deleted_without_an_attempt() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    let commands = h.input(Input::TriggersScanned(Ok(vec![trigger("t", 0, "3")])));
    assert_eq!(
        commands,
        [Command::DeleteTrigger {
            name: TriggerName::found("t")
        }]
    );
    assert_eq!(h.backup.metrics().trigger_attempts, 0);
}

#[test]
fn a_malformed_trigger_is_quarantined_and_a_good_one_still_served() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    let commands = h.input(Input::TriggersScanned(Ok(vec![
        trigger("broken", 0, "three"),
        trigger("good", 5, ""),
    ])));
    assert_eq!(
        commands,
        [
            Command::QuarantineTrigger {
                name: TriggerName::found("broken"),
                reason: MalformedTrigger::NotACount("three".to_owned())
            },
            Command::WriteTriggerAttempts {
                name: TriggerName::found("good"),
                attempts: 1
            },
        ]
    );
    h.input(Input::TriggerQuarantined {
        name: TriggerName::found("broken"),
        result: Ok(()),
    });
    assert_eq!(h.backup.metrics().triggers_quarantined, 1);
}

#[test]
fn the_oldest_trigger_is_served_first_and_hidden_files_are_ignored() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    let commands = h.input(Input::TriggersScanned(Ok(vec![
        trigger("b", 20, ""),
        trigger(".editor.swp", 0, "junk"),
        trigger("c", 10, "1"),
        trigger("a", 20, ""),
    ])));
    assert_eq!(
        commands,
        [Command::WriteTriggerAttempts {
            name: TriggerName::found("c"),
            attempts: 2
        }]
    );
}

#[test]
fn no_attempt_is_made_when_it_cannot_be_recorded() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![trigger("t", 0, "")])));
    let commands = h.input(Input::TriggerAttemptsWritten {
        name: TriggerName::found("t"),
        result: Err(failure("read-only file system")),
    });
    assert!(snapshot(&commands).is_none(), "{commands:?}");
    assert!(has(&h.step(), &Command::ScanTriggers));
}

#[test]
fn a_served_trigger_whose_deletion_failed_is_not_attempted_again() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![trigger("t", 0, "")])));
    let order = snapshot(&h.input(Input::TriggerAttemptsWritten {
        name: TriggerName::found("t"),
        result: Ok(()),
    }))
    .unwrap();
    h.input(Input::SnapshotTaken {
        object: order.object,
        result: Ok(1),
    });
    h.input(Input::TriggerDeleted {
        name: TriggerName::found("t"),
        result: Err(failure("permission denied")),
    });
    h.step();
    let commands = h.input(Input::TriggersScanned(Ok(vec![trigger("t", 0, "1")])));
    assert_eq!(
        commands,
        [Command::DeleteTrigger {
            name: TriggerName::found("t")
        }]
    );
}

#[test]
fn an_immediate_backup_is_named_after_the_time_without_subseconds() {
    let mut h = Harness::new();
    let commands = h.input(immediate(7));
    let order = snapshot(&commands).expect("a snapshot order");
    assert_eq!(
        order.object,
        "db-backup/2016/11/16/task-scheduler-22:04:25.bdb"
    );
    assert_eq!(order.reason, SnapshotReason::Immediate { id: 7 });
    let commands = h.input(Input::SnapshotTaken {
        object: order.object.clone(),
        result: Ok(10),
    });
    assert_eq!(
        commands,
        [Command::ImmediateBackupDone {
            id: 7,
            object: Some(order.object),
            result: Ok(10)
        }]
    );
}

#[test]
fn immediate_backups_in_one_second_get_names_of_their_own() {
    let mut h = Harness::new();
    let mut objects = Vec::new();
    for id in 1..=3 {
        let commands = h.input(immediate(id));
        let order = snapshot(&commands).expect("a snapshot order");
        h.input(Input::SnapshotTaken {
            object: order.object.clone(),
            result: Ok(1),
        });
        objects.push(order.object);
    }
    assert_eq!(
        objects,
        [
            "db-backup/2016/11/16/task-scheduler-22:04:25.bdb",
            "db-backup/2016/11/16/task-scheduler-22:04:25.2.bdb",
            "db-backup/2016/11/16/task-scheduler-22:04:25.3.bdb",
        ]
    );
}

#[test]
fn an_immediate_backup_waits_for_a_running_snapshot() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![trigger("t", 0, "")])));
    let order = snapshot(&h.input(Input::TriggerAttemptsWritten {
        name: TriggerName::found("t"),
        result: Ok(()),
    }))
    .unwrap();
    assert!(snapshot(&h.input(immediate(1))).is_none());
    let commands = h.input(Input::SnapshotTaken {
        object: order.object,
        result: Ok(1),
    });
    let next = snapshot(&commands).expect("the immediate snapshot starts next");
    assert_eq!(next.reason, SnapshotReason::Immediate { id: 1 });
}

#[test]
fn requests_waiting_when_the_machine_stops_are_answered_at_once() {
    let mut h = Harness::new();
    let order = snapshot(&h.input(immediate(1))).expect("the first starts");
    assert!(
        snapshot(&h.input(immediate(2))).is_none(),
        "the second waits"
    );
    let answered: Vec<Command> = h
        .stop()
        .into_iter()
        .filter(|c| matches!(c, Command::ImmediateBackupDone { .. }))
        .collect();
    let [
        Command::ImmediateBackupDone {
            id: 2,
            result: Err(failure),
            ..
        },
    ] = &answered[..]
    else {
        panic!("the waiting request is not answered: {answered:?}");
    };
    assert!(failure.message.contains("shutting down"), "{failure}");
    // The one under way still finishes, and nothing new starts after it.
    let done = h.input(Input::SnapshotTaken {
        object: order.object.clone(),
        result: Ok(3),
    });
    assert!(matches!(
        &done[..],
        [Command::ImmediateBackupDone {
            id: 1,
            result: Ok(3),
            ..
        }]
    ));
    let commands = h.input(batch(vec![]));
    assert!(
        saved(&commands).is_some(),
        "the read moves the cursor's time"
    );
    h.input(Input::CursorSaved(Ok(0)));
    assert!(h.backup.is_quiet());
}

fn immediate(id: u64) -> Input {
    Input::ImmediateBackupRequested {
        id,
        name: "task-scheduler".to_owned(),
    }
}

// ------------------------------------------------------------- incremental

#[test]
fn a_step_with_no_jobs_advances_the_time_only() {
    let mut h = Harness::new();
    let read_at = h.now;
    h.start();
    let commands = h.input(batch(vec![]));
    assert_eq!(
        saved(&commands),
        Some(Cursor {
            seq: 10,
            time: read_at
        })
    );
    h.input(Input::CursorSaved(Ok(0)));
    let metrics = h.backup.metrics();
    assert_eq!(metrics.incremental_alive, Some(h.now));
    assert_eq!(metrics.cursor.time, read_at);
}

#[test]
fn changed_jobs_are_uploaded_and_the_cursor_follows() {
    let mut h = Harness::new();
    let read_at = h.now;
    h.start();
    let commands = h.input(batch(vec![
        version("a", 11),
        version("b", 12),
        version("c", 14),
    ]));
    assert_eq!(
        uploads(&commands),
        [("a".into(), 11), ("b".into(), 12), ("c".into(), 14)]
    );
    let Some(Command::UploadJob(first)) =
        commands.iter().find(|c| matches!(c, Command::UploadJob(_)))
    else {
        unreachable!()
    };
    assert_eq!(first.object, "job-backup/2016/11/16/a.job");
    assert_eq!(first.framing.gzip_mtime, first.envelope.modified);
    assert!(saved(&commands).is_none(), "nothing is in the bucket yet");
    h.input(uploaded("a", 11));
    h.input(uploaded("b", 12));
    let commands = h.input(uploaded("c", 14));
    assert_eq!(
        saved(&commands),
        Some(Cursor {
            seq: 14,
            time: read_at
        })
    );
    assert_eq!(h.backup.metrics().jobs_backed_up, 3);
}

#[test]
fn a_failed_upload_holds_the_cursor_and_is_retried() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![
        version("a", 11),
        version("b", 12),
        version("c", 13),
    ]));
    h.input(uploaded("a", 11));
    h.input(upload_failed("b", 12));
    let commands = h.input(uploaded("c", 13));
    assert!(saved(&commands).is_none(), "{commands:?}");
    let commands = h.step();
    assert_eq!(
        uploads(&commands),
        [("b".into(), 12)],
        "the failed job is retried"
    );
    assert_eq!(
        saved(&commands).map(|c| c.seq),
        Some(11),
        "only up to the failed job"
    );
    h.input(nothing_after(13));
    h.input(Input::CursorSaved(Ok(0)));
    let commands = h.input(uploaded("b", 12));
    assert!(
        saved(&commands).is_none(),
        "a save went less than a second ago: {commands:?}"
    );
    let commands = h.advance(SEQ_SAVE_SPACING);
    assert_eq!(saved(&commands).map(|c| c.seq), Some(13));
    assert_eq!(h.backup.metrics().upload_errors.job, 1);
}

#[test]
fn when_every_upload_fails_nothing_moves_and_everything_stays_pending() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11), version("b", 12)]));
    h.input(upload_failed("a", 11));
    let commands = h.input(upload_failed("b", 12));
    assert!(saved(&commands).is_none());
    let metrics = h.backup.metrics();
    assert_eq!(metrics.pending_jobs, 2);
    assert_eq!(metrics.upload_errors.job, 2);
    assert_eq!(metrics.cursor, stored_cursor());
    let commands = h.step();
    assert_eq!(uploads(&commands), [("a".into(), 11), ("b".into(), 12)]);
}

/// A cursor someone moved ahead: the feed is read again from it.
#[test]
fn a_cursor_moved_ahead_in_the_database_resets_the_feed_to_it() {
    let mut h = Harness::new();
    h.start();
    let ahead = Cursor {
        seq: 12,
        time: Timestamp::UNIX_EPOCH,
    };
    let commands = h.input(batch_at(ahead, vec![version("a", 13)]));
    assert!(uploads(&commands).is_empty(), "the stale batch is dropped");
    assert!(
        matches!(
            commands.as_slice(),
            [Command::ReadChanges {
                after: 12,
                limit: 8,
                ..
            }]
        ),
        "{commands:?}"
    );
    let metrics = h.backup.metrics();
    assert_eq!(metrics.feed_resets_since_snapshot, 1);
    assert_eq!(metrics.cursor, ahead);
}

/// A cursor behind the one saved, with the counter where it was: an older
/// copy that was written to since, or whose writer was quick. Taken for a
/// reset, its changes took sequences the bucket held for others.
#[test]
fn a_cursor_behind_the_saved_one_is_a_database_gone_back() {
    let mut h = Harness::new();
    h.start();
    let rewound = Cursor {
        seq: 3,
        time: Timestamp::UNIX_EPOCH,
    };
    let commands = h.input(batch_at(rewound, vec![version("a", 11)]));
    assert_eq!(commands, [Command::RaiseCounter { past: 10 }]);
    assert_eq!(h.backup.metrics().cursor, rewound);
}

/// `cp older.db jobs.db` under a running daemon: the counter is below a
/// change already read. Without the raise, the copy's next changes took
/// sequences the bucket held for the versions it left behind.
#[test]
fn a_database_gone_back_to_an_older_copy_raises_its_counter_and_starts_the_prefix_over() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11), version("b", 12)]));
    h.input(uploaded("a", 11));
    h.input(uploaded("b", 12));
    h.input(Input::CursorSaved(Ok(0)));
    h.input(Input::DatabaseChanged);
    let copied = Cursor {
        seq: 5,
        time: Timestamp::UNIX_EPOCH,
    };
    let commands = h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: copied,
        newest: 8,
        complete: true,
        jobs: vec![version("c", 7)],
        unreadable: vec![],
        set_aside: 0,
    })));
    assert_eq!(commands, [Command::RaiseCounter { past: 12 }]);
    assert!(
        h.step()
            .iter()
            .all(|c| !matches!(c, Command::ReadChanges { .. })),
        "no read until the counter is raised"
    );
    let commands = h.input(Input::CounterRaised(Ok(())));
    assert!(
        matches!(
            commands.as_slice(),
            [
                Command::ReadChanges { after: 5, .. },
                Command::CheckDestination { keep: None }
            ]
        ),
        "read again, and the prefix checked at once, not at the next step: {commands:?}"
    );
    assert_eq!(h.backup.metrics().incremental_alive, None, "not caught up");
}

/// A snapshot under way when the copy is found holds the database as it
/// was, or the copy with its old counter: it must not pay the full
/// snapshot the prefix is owed once it starts over, or a restore from it
/// gives the versions the copy left behind.
#[test]
fn a_snapshot_under_way_when_the_copy_is_found_pays_nothing_owed() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11)]));
    h.input(uploaded("a", 11));
    h.input(Input::CursorSaved(Ok(0)));
    h.input(Input::TriggersScanned(Ok(vec![])));
    let under_way = snapshot(&h.input(immediate(1))).expect("the immediate snapshot starts");
    h.input(Input::DatabaseChanged);
    assert_eq!(
        h.input(nothing_after(8)),
        [Command::RaiseCounter { past: 11 }]
    );
    let raised_at = h.now;
    assert!(
        h.backup.metrics().new_destination,
        "new from the find, not from the check a step later"
    );
    let raised = h.input(Input::CounterRaised(Ok(())));
    assert!(h.backup.metrics().new_destination);
    assert!(has(&raised, &Command::CheckDestination { keep: None }));
    let (_, owed) = lands_paying_nothing(&mut h, under_way.object);
    assert!(
        owed.framing.gzip_mtime >= raised_at,
        "framed no earlier than the raise, not with the copy's old cursor"
    );
    assert!(
        h.backup.metrics().new_destination,
        "not vouched until it lands"
    );
}

/// After a copy was found and the counter raised: the check out since
/// makes the prefix new, and `object`, a snapshot other than the owed one,
/// lands: it pays nothing, the database records no destination yet, and
/// the owed snapshot starts.
fn lands_paying_nothing(h: &mut Harness, object: ObjectName) -> (DestinationId, SnapshotOrder) {
    let fresh = 0x0f0f_0f0f;
    h.input(checked(marker(fresh), true));
    let landed = h.input(Input::SnapshotTaken {
        object,
        result: Ok(1),
    });
    let id = DestinationId::new(fresh).unwrap();
    assert!(
        !has(&landed, &Command::RecordDestination { id }),
        "{landed:?}"
    );
    let owed = snapshot(&landed).expect("the owed snapshot starts");
    assert_eq!(owed.reason, SnapshotReason::Owed(Owed::NewDestination(id)));
    (id, owed)
}

/// A snapshot asked for after the raise, before the check that makes the
/// prefix new, holds the whole database, but its name is not the
/// `new-destination-…` one a restore stops falling back at: it pays
/// nothing, and the owed one is taken. One that paid left a restore that
/// passed it over as unusable to fall back to the state the copy abandoned.
#[test]
fn only_a_new_destinations_own_snapshot_pays_it() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11)]));
    h.input(uploaded("a", 11));
    h.input(Input::CursorSaved(Ok(0)));
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::DatabaseChanged);
    assert_eq!(
        h.input(nothing_after(8)),
        [Command::RaiseCounter { past: 11 }]
    );
    let raised = h.input(Input::CounterRaised(Ok(())));
    assert!(has(&raised, &Command::CheckDestination { keep: None }));
    let asked = snapshot(&h.input(immediate(1))).expect("the immediate snapshot starts");
    let (id, owed) = lands_paying_nothing(&mut h, asked.object);
    assert!(
        owed.object.as_str().contains("/new-destination-"),
        "{}",
        owed.object
    );
    let recorded = h.input(Input::SnapshotTaken {
        object: owed.object,
        result: Ok(1),
    });
    assert!(
        has(&recorded, &Command::RecordDestination { id }),
        "{recorded:?}"
    );
}

/// A snapshot that lands while the raise is still owed (here the one a
/// first listing made owed, taken as the raise keeps failing) holds the
/// copy's old counter: it pays nothing, and the owed one is taken again.
#[test]
fn a_snapshot_landing_while_the_raise_is_owed_pays_nothing() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11)]));
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::DatabaseChanged);
    assert_eq!(
        h.input(nothing_after(8)),
        [Command::RaiseCounter { past: 11 }]
    );
    h.input(Input::CounterRaised(Err(failure("database is locked"))));
    let mut listed = h.input(Input::SnapshotsListed(Ok(vec![])));
    listed.extend(h.step());
    let taken = snapshot(&listed).expect("the first listing found none: one is owed");
    assert_eq!(taken.reason, SnapshotReason::Owed(Owed::NoSnapshot));
    let mut again = h.input(Input::SnapshotTaken {
        object: taken.object,
        result: Ok(1),
    });
    again.extend(h.step());
    let again = snapshot(&again).expect("still owed");
    assert_eq!(again.reason, SnapshotReason::Owed(Owed::NoSnapshot));
}

/// A raise that failed is made again at the next step.
#[test]
fn a_failed_raise_of_the_counter_is_made_again() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11)]));
    h.input(Input::DatabaseChanged);
    let commands = h.input(nothing_after(10));
    assert_eq!(commands, [Command::RaiseCounter { past: 11 }]);
    h.input(Input::CounterRaised(Err(failure("database is locked"))));
    assert!(has(&h.step(), &Command::RaiseCounter { past: 11 }));
}

#[test]
fn a_failed_save_is_retried_at_the_next_step() {
    let mut h = Harness::new();
    let read_at = h.now;
    h.start();
    h.input(batch(vec![version("a", 11)]));
    let commands = h.input(uploaded("a", 11));
    let wanted = Cursor {
        seq: 11,
        time: read_at,
    };
    assert_eq!(saved(&commands), Some(wanted));
    h.input(Input::CursorSaved(Err(failure("database is locked"))));
    assert_eq!(h.backup.metrics().cursor, stored_cursor());
    let commands = h.step();
    assert_eq!(saved(&commands), Some(wanted));
}

#[test]
fn a_newer_version_waits_for_the_older_upload_of_the_same_job() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11)]));
    h.input(Input::CursorSaved(Ok(0)));
    let commands = h.step();
    assert!(uploads(&commands).is_empty());
    let commands = h.input(batch(vec![version("a", 15)]));
    assert!(
        uploads(&commands).is_empty(),
        "a@11 is still in flight: {commands:?}"
    );
    let commands = h.input(uploaded("a", 11));
    assert_eq!(uploads(&commands), [("a".into(), 15)]);
}

#[test]
fn a_failed_version_superseded_by_a_newer_one_is_not_sent_again() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11)]));
    h.step();
    h.input(batch(vec![version("a", 15)]));
    let commands = h.input(upload_failed("a", 11));
    assert_eq!(uploads(&commands), [], "the store said it is unwell: wait");
    let wake = h.backup.poll_timeout().unwrap();
    assert!(
        wake <= h.now + FIRST_RETRY,
        "{wake} is later than the first retry"
    );
    let commands = h.advance(wake.duration_since(h.now));
    assert_eq!(uploads(&commands), [("a".into(), 15)]);
    let commands = h.input(uploaded("a", 15));
    assert_eq!(saved(&commands).map(|c| c.seq), Some(15));
}

/// Wakes the machine when it asks, until it starts uploads; returns them and
/// how long that took.
fn wake_until_uploads(h: &mut Harness) -> (Vec<(String, u64)>, Duration) {
    let started = h.now;
    for _ in 0..3 {
        let wake = h.backup.poll_timeout().unwrap();
        let commands = h.advance(wake.duration_since(h.now));
        if !uploads(&commands).is_empty() {
            return (uploads(&commands), h.now.duration_since(started));
        }
    }
    panic!("no upload after three wake-ups");
}

#[test]
fn transient_failures_hold_every_upload_back_longer_each_round() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11), version("b", 12)]));
    let mut waits = Vec::new();
    for round in 0..6 {
        let commands = h.input(upload_failed("a", 11));
        assert_eq!(uploads(&commands), [], "round {round}");
        h.input(upload_failed("b", 12));
        let (again, waited) = wake_until_uploads(&mut h);
        assert_eq!(again.len(), 2, "round {round}: both go again");
        waits.push(waited);
    }
    for pair in waits.windows(2) {
        assert!(pair[1] > pair[0] / 2, "{waits:?}");
    }
    assert!(waits[5] >= Duration::from_secs(16), "{waits:?}");
    h.input(uploaded("a", 11));
    let commands = h.input(upload_failed("b", 12));
    assert_eq!(
        uploads(&commands),
        [],
        "b is not sent again at once after a success"
    );
}

#[test]
fn a_refusing_store_gets_one_try_in_five_minutes_and_is_counted() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11), version("b", 12)]));
    let refused = |id: &str, seq| Input::JobUploaded {
        id: JobId::new(id).unwrap(),
        seq,
        result: Err(Failure::new(
            FailureKind::Permission,
            "gs://b/job-backup/2016/11/16/a.job: 403 Forbidden",
        )),
    };
    h.input(refused("a", 11));
    h.input(refused("b", 12));
    assert_eq!(h.backup.metrics().store_refusals, 2);
    let mut tried = 0;
    for _ in 0..29 {
        tried += uploads(&h.step()).len();
    }
    assert_eq!(tried, 0, "nothing in the first 290 s");
    let commands = h.advance(REFUSED_RETRY - Duration::from_secs(290));
    assert_eq!(uploads(&commands).len(), 2);
}

fn reads(commands: &[Command]) -> usize {
    commands
        .iter()
        .filter(|c| matches!(c, Command::ReadChanges { .. }))
        .count()
}

#[test]
fn a_commit_noticed_is_read_and_uploaded_at_once_not_at_the_next_step() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    let commands = h.input(Input::DatabaseChanged);
    assert_eq!(reads(&commands), 1, "{commands:?}");
    let commands = h.input(batch(vec![version("a", 11)]));
    assert_eq!(uploads(&commands), [("a".to_owned(), 11)]);
}

#[test]
fn commits_noticed_during_a_read_cost_one_more_read_not_one_each() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    for _ in 0..5 {
        assert_eq!(h.input(Input::DatabaseChanged), [], "a read is already out");
    }
    let commands = h.input(batch(vec![version("a", 11)]));
    assert_eq!(reads(&commands), 1, "the read may have run before them");
    assert_eq!(
        reads(&h.input(batch(vec![]))),
        0,
        "nothing more was noticed"
    );
}

/// What the watcher reports of a commit read in its look: the read the
/// machine stood ready to take, answered by `batch` (a [`batch`] input),
/// begun `ago` before now.
fn commit_read(h: &Harness, ago: Duration, batch: Input) -> Input {
    let order = h.backup.read_at_next_commit().expect("a read stands ready");
    let Input::ChangesRead(Ok(batch)) = batch else {
        unreachable!("a batch is a read's answer")
    };
    Input::CommitRead {
        order,
        began: h.now - ago,
        batch,
    }
}

/// Started, its first read answered with nothing and the save that brings
/// answered, and the clock past the spacing of saves: the next upload's
/// cover is saved at once. Returns the cursor the database then holds.
fn settled() -> (Harness, Cursor) {
    let mut h = Harness::new();
    let stored = saved(&start_with_empty_feed(&mut h)).expect("the read moved the cursor's time");
    h.input(Input::CursorSaved(Ok(0)));
    h.now = h.now + SEQ_SAVE_SPACING;
    (h, stored)
}

/// Job a's version 11 read on a notice and uploaded: the save of its
/// cover, returned, is out.
fn save_out(h: &mut Harness, stored: Cursor) -> Cursor {
    h.input(Input::DatabaseChanged);
    h.input(batch_at(stored, vec![version("a", 11)]));
    saved(&h.input(uploaded("a", 11))).expect("a save is out")
}

#[test]
fn a_commit_read_in_the_look_is_taken_as_the_read_dated_when_it_began() {
    let (mut h, stored) = settled();
    let ago = Duration::from_millis(30);
    let read = commit_read(&h, ago, batch_at(stored, vec![version("a", 11)]));
    let commands = h.input(read);
    assert_eq!(
        reads(&commands),
        0,
        "the look's read is the read: {commands:?}"
    );
    assert_eq!(uploads(&commands), [("a".to_owned(), 11)]);
    let cursor = saved(&h.input(uploaded("a", 11))).expect("the cursor moves");
    assert_eq!(
        cursor.time,
        h.now - ago,
        "a commit after the read began is not in it"
    );
}

#[test]
fn a_commit_read_made_before_a_save_was_answered_is_only_a_notice() {
    let (mut h, stored) = settled();
    let saving = save_out(&mut h, stored);
    // Read in the look while the save was out: the database still held
    // the cursor the save replaces.
    let read = commit_read(&h, Duration::ZERO, nothing_after_at(stored, 11));
    h.input(Input::CursorSaved(Ok(0)));
    let commands = h.input(read);
    assert_eq!(
        reads(&commands),
        1,
        "read again, as for a notice: {commands:?}"
    );
    assert_eq!(
        h.backup.metrics().feed_resets_since_snapshot,
        0,
        "the old cursor it saw is not someone else's"
    );
    let commands = h.input(batch_at(saving, vec![version("b", 12)]));
    assert_eq!(uploads(&commands), [("b".to_owned(), 12)]);
}

/// The look notices the save's own commit and its read can report before
/// the save's answer: the cover's time then trails in the database until
/// a save of the time alone, an interval later.
#[test]
fn the_saves_own_commit_read_before_its_answer_leaves_the_daemon_caught_up() {
    let (mut h, stored) = settled();
    let saving = save_out(&mut h, stored);
    h.now = h.now + Duration::from_millis(10);
    let read = commit_read(&h, Duration::ZERO, nothing_after_at(saving, 11));
    assert_eq!(h.input(read), [], "nothing to read, upload or save");
    assert_eq!(h.input(Input::CursorSaved(Ok(0))), []);
    assert_eq!(h.backup.metrics().incremental_alive, Some(h.now));
}

/// "Caught up as of T" promises that every change committed before T is
/// in the bucket. Dated by the clock when the last answer came, it also
/// promised the commits made since the read that found the last change,
/// which the watcher may not have noticed yet.
#[test]
fn caught_up_is_dated_by_the_read_that_found_the_last_change() {
    let (mut h, stored) = settled();
    let read_at = h.now;
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    h.input(batch_at(stored, vec![version("a", 11)]));
    h.now = h.now + Duration::from_secs(2);
    assert!(saved(&h.input(uploaded("a", 11))).is_some());
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.metrics().incremental_alive, Some(read_at));
}

/// A clock stepped forward and back left "caught up" ahead of it: a
/// hostile trial's daemon, 0.5 s after a 4,000-row commit it had not
/// uploaded, said it was caught up as of 117 s after that commit, and the
/// age the stall alert reads stayed negative, so it could not fire. Ahead
/// of the clock, the figure says nothing until a read begun since is
/// covered, and the time ahead never comes back.
#[test]
fn a_clock_stepped_back_below_caught_up_says_nothing_until_a_read_since_is_covered() {
    let (mut h, stored) = settled();
    let right = h.now;
    h.now = right + Duration::from_secs(120);
    let ahead = h.now;
    h.input(Input::DatabaseChanged);
    h.input(batch_at(stored, vec![version("a", 11)]));
    assert!(saved(&h.input(uploaded("a", 11))).is_some());
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.metrics().incremental_alive, Some(ahead));

    h.now = right + Duration::from_secs(3);
    let read_at = h.now;
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    assert_eq!(
        h.backup.metrics().incremental_alive,
        None,
        "ahead of the clock"
    );
    h.input(batch_at(h.backup.stored_cursor(), vec![version("b", 12)]));
    assert_eq!(
        h.backup.metrics().incremental_alive,
        None,
        "b is not uploaded"
    );
    h.input(uploaded("b", 12));
    assert_eq!(h.backup.metrics().incremental_alive, Some(read_at));
    h.now = ahead + Duration::from_secs(1);
    h.input(Input::DatabaseChanged);
    assert_eq!(h.backup.metrics().incremental_alive, Some(read_at));
}

/// A read issued before the clock stepped back is dated on the clock as it
/// read then: covered after the step, it would promise, once the clock
/// passed its time again, the commits of the step's length after it.
#[test]
fn a_read_issued_before_a_step_back_does_not_date_caught_up_after_it() {
    let (mut h, stored) = settled();
    let issued = h.now;
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    h.now = issued - Duration::from_secs(2);
    h.input(batch_at(stored, vec![version("a", 11)]));
    h.now = issued + Duration::from_millis(500);
    h.input(uploaded("a", 11));
    assert_eq!(h.backup.metrics().pending_jobs, 0);
    assert_eq!(h.backup.metrics().incremental_alive, None);
}

/// A job rewritten more often than its object may be written (once a
/// second) has a version waiting at every moment. Said only once nothing
/// waited, "caught up" stood still while every change went to the bucket,
/// and the stall alert would page: a hostile trial's daemon, at 5 updates
/// a second of one job, said nothing new for 11 minutes.
#[test]
fn a_job_rewritten_faster_than_its_object_may_be_written_still_moves_caught_up() {
    let (mut h, stored) = settled();
    let first_read = h.now;
    h.input(Input::DatabaseChanged);
    let commands = h.input(batch_at(stored, vec![version("a", 11)]));
    assert_eq!(uploads(&commands), [("a".to_owned(), 11)]);
    h.now = h.now + Duration::from_millis(300);
    let second_read = h.now;
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    h.input(batch_at(stored, vec![version("a", 12)]));
    h.input(uploaded("a", 11));
    assert_eq!(h.backup.metrics().incremental_alive, Some(first_read));
    let due = h.advance(OBJECT_WRITE_SPACING);
    assert_eq!(uploads(&due), [("a".to_owned(), 12)]);
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    h.input(batch_at(stored, vec![version("a", 13)]));
    h.input(uploaded("a", 12));
    assert_eq!(h.backup.metrics().pending_jobs, 1, "13 waits");
    assert_eq!(h.backup.metrics().incremental_alive, Some(second_read));
}

/// A commit noticed while the window had no room for a read waited for
/// the next notice, and the daemon said it was caught up meanwhile (a
/// hostile trial).
#[test]
fn a_commit_noticed_with_no_room_is_read_once_uploads_make_room() {
    let (mut h, stored) = settled();
    h.input(Input::DatabaseChanged);
    let five: Vec<_> = (11..16)
        .map(|seq| version(&format!("j{seq}"), seq))
        .collect();
    h.input(batch_at(stored, five));
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 0, "no room");
    let answers: Vec<Command> = (11..16)
        .flat_map(|seq| h.input(uploaded(&format!("j{seq}"), seq)))
        .collect();
    assert_eq!(reads(&answers), 1, "{answers:?}");
}

#[test]
fn a_commit_read_while_a_read_is_out_brings_one_more_read() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    let read = commit_read(&h, Duration::ZERO, batch(vec![version("a", 11)]));
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    assert_eq!(h.input(read), [], "a read is out");
    let commands = h.input(batch(vec![version("a", 11)]));
    assert_eq!(
        reads(&commands),
        1,
        "the look may have seen more than the read"
    );
}

#[test]
fn a_stop_reads_the_feed_once_more_and_then_no_commit_brings_a_read() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    assert_eq!(reads(&h.stop()), 1, "the drain's read");
    assert_eq!(h.input(Input::DatabaseChanged), [], "a read is out");
    assert_eq!(
        reads(&h.input(batch(vec![]))),
        0,
        "the drain's read saw every change committed before the stop"
    );
    assert_eq!(h.input(Input::DatabaseChanged), []);
    assert_eq!(h.backup.stopped(), None, "the first step's scan is out");
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::SnapshotsListed(Ok(vec![])));
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.stopped(), Some(drained(0)));
}

/// A drain counts the changes it uploaded, not the sequences it passed: a
/// counter raised past a copy (by 2^32) was reported as 17,179,869,201
/// changes drained (a newcomer trial).
#[test]
fn a_drain_counts_changes_not_the_sequences_between_them() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::SnapshotsListed(Ok(vec![])));
    assert_eq!(reads(&h.stop()), 1);
    let far = 1 << 34;
    let raised = Envelope::written(
        JobId::new("b").unwrap(),
        far,
        Timestamp::from_unix_seconds(1_479_333_100),
        r#"{"id":"b","name":"job b"}"#.to_owned(),
    );
    let commands = h.input(batch(vec![version("a", 11), raised]));
    assert_eq!(uploads(&commands).len(), 2, "{commands:?}");
    h.input(uploaded("a", 11));
    h.input(uploaded("b", far));
    // The first step's save answers, and the drain's goes.
    let save = saved(&h.input(Input::CursorSaved(Ok(0)))).expect("the drain saves the cursor");
    assert_eq!(save.seq, far);
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.stopped(), Some(drained(2)));
}

#[test]
fn a_read_out_at_the_stop_is_followed_by_one_issued_after_it() {
    let mut h = Harness::new();
    h.start();
    assert_eq!(reads(&h.stop()), 0, "the first step's read is still out");
    let commands = h.input(batch(vec![version("a", 11)]));
    assert_eq!(reads(&commands), 1, "it may have run before the stop");
    assert_eq!(uploads(&commands), [("a".to_owned(), 11)]);
    h.input(uploaded("a", 11));
    h.input(nothing_after(11));
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::SnapshotsListed(Ok(vec![])));
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.stopped(), Some(drained(1)));
}

#[test]
fn one_job_object_is_not_written_twice_within_a_second() {
    let mut h = Harness::new();
    h.start();
    // A full batch: the feed is read again as soon as there is room.
    let jobs: Vec<Envelope> = (11..19)
        .map(|seq| version(&format!("j{seq}"), seq))
        .collect();
    let commands = h.input(batch(jobs));
    assert_eq!(uploads(&commands).len(), 4);
    h.advance(Duration::from_millis(200));
    let mut commands = Vec::new();
    for seq in 11..15 {
        commands.extend(h.input(uploaded(&format!("j{seq}"), seq)));
    }
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, Command::ReadChanges { .. })),
        "{commands:?}"
    );
    for seq in 15..19 {
        h.input(uploaded(&format!("j{seq}"), seq));
    }
    h.advance(Duration::from_millis(100));
    let commands = h.input(batch(vec![version("j11", 20)]));
    assert_eq!(uploads(&commands), [], "j11 was written 300 ms ago");
    let wake = h.backup.poll_timeout().unwrap();
    assert_eq!(wake, h.now + Duration::from_millis(700));
    let commands = h.advance(Duration::from_millis(700));
    assert_eq!(uploads(&commands), [("j11".into(), 20)]);
}

#[test]
fn uploads_in_flight_never_exceed_the_bound() {
    let mut h = Harness::new();
    h.start();
    let jobs = (11..19)
        .map(|seq| version(&format!("j{seq}"), seq))
        .collect();
    let commands = h.input(batch(jobs));
    assert_eq!(uploads(&commands).len(), 4);
    assert_eq!(h.backup.uploads_in_flight(), 4);
    let commands = h.input(uploaded("j11", 11));
    assert_eq!(uploads(&commands), [("j15".into(), 15)]);
}

#[test]
fn a_full_batch_is_followed_by_another_read_once_half_the_window_is_free() {
    let mut h = Harness::new();
    h.start();
    let jobs = (11..19)
        .map(|seq| version(&format!("j{seq}"), seq))
        .collect();
    h.input(batch(jobs));
    for seq in 11..14 {
        let commands = h.input(uploaded(&format!("j{seq}"), seq));
        assert!(
            !commands
                .iter()
                .any(|c| matches!(c, Command::ReadChanges { .. }))
        );
    }
    let commands = h.input(uploaded("j14", 14));
    assert!(
        commands.iter().any(|c| matches!(
            c,
            Command::ReadChanges {
                after: 18,
                limit: 4,
                ..
            }
        )),
        "{commands:?}"
    );
}

#[test]
fn a_cut_batch_does_not_advance_the_time() {
    let mut h = Harness::new();
    h.start();
    let jobs = (11..19)
        .map(|seq| version(&format!("j{seq}"), seq))
        .collect();
    h.input(batch(jobs));
    let mut last = None;
    for seq in 11..19 {
        last = saved(&h.input(uploaded(&format!("j{seq}"), seq))).or(last);
    }
    // The batch hit its limit, so commits before the read may be unread:
    // the cursor's sequence moves, its time does not.
    assert_eq!(
        last,
        Some(Cursor {
            seq: 18,
            time: stored_cursor().time
        })
    );
}

/// The stop's fix: the original (and jobvault before it) stopped starting
/// uploads at a signal, so versions read but not yet sent, and commits not
/// yet read, waited for the next start.
#[test]
fn a_stop_drains_every_change_committed_before_it_and_nothing_else_starts() {
    let mut h = Harness::new();
    h.start();
    let jobs = (11..17)
        .map(|seq| version(&format!("j{seq}"), seq))
        .collect();
    assert_eq!(uploads(&h.input(batch(jobs))).len(), 4, "the concurrency");
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::SnapshotsListed(Ok(vec![])));
    let commands = h.stop();
    assert_eq!(reads(&commands), 1, "the drain reads the feed once more");
    let commands = h.input(batch_at(stored_cursor(), vec![version("j17", 17)]));
    assert!(uploads(&commands).is_empty(), "no room: {commands:?}");
    let mut sent = Vec::new();
    for seq in 11..15 {
        sent.extend(uploads(&h.input(uploaded(&format!("j{seq}"), seq))));
    }
    assert_eq!(
        sent.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
        [15, 16, 17]
    );
    let commands = h.step();
    assert!(
        !has(&commands, &Command::ScanTriggers) && reads(&commands) == 0,
        "a stopping machine starts nothing but the drain: {commands:?}"
    );
    assert_eq!(saved(&commands).map(|c| c.seq), Some(14));
    h.input(Input::CursorSaved(Ok(0)));
    h.input(uploaded("j15", 15));
    h.input(uploaded("j16", 16));
    let save = saved(&h.input(uploaded("j17", 17))).expect("the drain saves the cursor");
    assert_eq!(save.seq, 17);
    assert_eq!(h.backup.stopped(), None, "until the cursor is saved");
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.stopped(), Some(drained(7)));
    assert!(h.backup.is_quiet());
}

#[test]
fn a_drain_the_grace_cuts_short_says_how_many_changes_it_left() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.stop();
    let commands = h.input(batch(vec![version("a", 11), version("b", 12)]));
    assert_eq!(uploads(&commands).len(), 2);
    h.input(uploaded("a", 11));
    h.input(upload_failed("b", 12));
    assert_eq!(h.backup.stopped(), None);
    let deadline = h.backup.poll_timeout().expect("the grace's end, at least");
    assert!(deadline <= h.now + GRACE, "{deadline}");
    h.advance(GRACE);
    assert_eq!(
        h.backup.stopped(),
        Some(Stopped::GraceOver {
            changes: 1,
            left: 1,
            read_after_stop: true
        })
    );
    assert!(
        uploads(&h.advance(Duration::from_secs(10))).is_empty(),
        "nothing starts after the grace"
    );
}

/// The changes left are counted, not the sequences between: a counter
/// raised past a copy (by 2^32) was reported as "4294967297 changes
/// committed before the stop are not in the bucket" (a hostile trial).
#[test]
fn a_drain_the_grace_cuts_short_counts_the_changes_left_across_a_gap() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.stop();
    let far = 11 + (1 << 32);
    h.input(batch(vec![version("a", 11), version("b", far)]));
    h.input(upload_failed("a", 11));
    h.input(upload_failed("b", far));
    h.advance(GRACE);
    assert_eq!(
        h.backup.stopped(),
        Some(Stopped::GraceOver {
            changes: 0,
            left: 2,
            read_after_stop: true
        })
    );
}

#[test]
fn a_read_that_ran_before_a_save_but_reports_after_it_is_no_reset() {
    let mut h = Harness::new();
    let read_at = h.now;
    h.start();
    h.input(batch(vec![version("a", 11)]));
    let save = saved(&h.input(uploaded("a", 11))).expect("a save");
    // The next step reads while the save is in flight; the read runs before
    // the save commits (it sees the old cursor) but reports after it.
    h.step();
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.metrics().cursor, save);
    let commands = h.input(nothing_after(11));
    assert_eq!(
        h.backup.metrics().feed_resets_since_snapshot,
        0,
        "{commands:?}"
    );
    assert!(save.time == read_at);
}

#[test]
fn saves_name_the_cursor_they_replace() {
    let mut h = Harness::new();
    h.start();
    h.input(batch(vec![version("a", 11)]));
    let commands = h.input(uploaded("a", 11));
    let Some(Command::SaveCursor { expected, new, .. }) = commands.last() else {
        panic!("no save in {commands:?}");
    };
    assert_eq!(
        *expected,
        stored_cursor(),
        "the save only applies over the cursor it read"
    );
    assert_eq!(new.seq, 11);
}

// ---------------------------------------------------------- nothing silent

#[test]
fn a_listing_still_out_when_the_next_is_due_does_not_wake_the_driver_in_a_loop() {
    let mut h = Harness::new();
    h.start();
    // Ten minutes on, with the first listing never answered (a store call
    // that hangs): the next wake-up is the next step, not a due listing.
    for _ in 0..61 {
        h.step();
    }
    let wake = h.backup.poll_timeout().expect("running");
    assert!(wake > h.now, "woken at {wake}, in the past of {}", h.now);
}

#[test]
fn a_report_that_answers_nothing_is_counted() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    assert_eq!(h.backup.metrics().unexpected_reports, 0);
    h.input(uploaded("never-sent", 99));
    h.input(Input::SnapshotTaken {
        object: ObjectName::listed("db-backup/2016/11/16/never-taken.bdb"),
        result: Ok(1),
    });
    h.input(Input::TriggerDeleted {
        name: TriggerName::found("never-asked"),
        result: Ok(()),
    });
    assert_eq!(h.backup.metrics().unexpected_reports, 3);
}

#[test]
fn every_command_that_expects_an_answer_has_a_deadline_and_a_failure_answer() {
    let mut h = Harness::new();
    let commands = h.start();
    let timeout = Failure::new(FailureKind::Timeout, "no answer");
    for command in &commands {
        assert!(command.deadline().is_some(), "{command:?}");
        let answer = command.failed(timeout.clone()).expect("answerable");
        // The machine takes the failure as the answer it was waiting for.
        let before = h.backup.metrics().unexpected_reports;
        h.input(answer);
        assert_eq!(h.backup.metrics().unexpected_reports, before, "{command:?}");
    }
    let done = Command::ImmediateBackupDone {
        id: 1,
        object: None,
        result: Ok(1),
    };
    assert_eq!((done.deadline(), done.failed(timeout)), (None, None));
}

#[test]
fn a_read_that_moves_only_the_time_saves_once_an_interval() {
    let mut h = Harness::new();
    h.start();
    let first = saved(&h.input(batch(vec![]))).expect("the first read's time is saved");
    h.input(Input::CursorSaved(Ok(0)));
    let nothing_new = || batch_at(first, vec![]);
    // Our own save is a commit the watcher reports; its read finds nothing.
    h.now = h.now + Duration::from_millis(20);
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    let commands = h.input(nothing_new());
    assert_eq!(commands, [], "no save, and so no commit to notice");
    let commands = h.advance(Duration::from_secs(10));
    assert_eq!(reads(&commands), 1, "{commands:?}");
    let later = saved(&h.input(nothing_new())).expect("a save an interval later");
    assert_eq!(later.time, h.now);
}

/// How many prunes the commands start: each reads the history marker first.
fn prune_starts(commands: &[Command]) -> usize {
    commands
        .iter()
        .filter(|c| matches!(c, Command::ReadBucket(Ask::ReadHistory)))
        .count()
}

/// A bucket with a quarter's snapshots and job objects: with a 30-day
/// window at [`START`], October's snapshot is the base, and September's
/// snapshot and its two job objects go.
fn a_quarter() -> Bucket {
    let mut bucket = Bucket::default();
    for (day, mtime) in [
        ("2016/09/01", "2016-09-01T03:00:00Z"),
        ("2016/10/01", "2016-10-01T03:00:00Z"),
        ("2016/11/15", "2016-11-15T03:00:00Z"),
    ] {
        let name = format!("db-backup/{day}/s.bdb");
        bucket.put(&name, mtime, bucket::snapshot(mtime));
    }
    bucket.job("a", "2016/09/02", "2016-09-02T00:00:00Z", 1);
    bucket.job("b", "2016/09/03", "2016-09-03T00:00:00Z", 2);
    bucket.job("c", "2016/11/15", "2016-11-15T00:00:00Z", 3);
    bucket
}

/// Carries out the prune commands among `commands` against `bucket`, and
/// those their answers bring, until `prunes` prunes have started; returns
/// every other command, and the commands of any prune after those.
fn carry_out_prunes(
    h: &mut Harness,
    bucket: &mut Bucket,
    commands: Vec<Command>,
    mut prunes: usize,
) -> Vec<Command> {
    let mut todo = VecDeque::from(commands);
    let mut rest = Vec::new();
    while let Some(command) = todo.pop_front() {
        let input = match command {
            Command::ReadBucket(Ask::ReadHistory) if prunes == 0 => {
                rest.push(command);
                continue;
            }
            Command::ReadBucket(ask) => {
                prunes -= usize::from(ask == Ask::ReadHistory);
                let result = Ok(bucket.answer(ask.clone()));
                Input::BucketRead { ask, result }
            }
            Command::WriteHistory(marker) => {
                bucket.marker = Some(marker.encode());
                Input::HistoryWritten(Ok(()))
            }
            Command::DeleteObject { object } => {
                bucket.delete(&object);
                Input::ObjectDeleted {
                    object,
                    result: Ok(()),
                }
            }
            other => {
                rest.push(other);
                continue;
            }
        };
        todo.extend(h.input(input));
    }
    rest
}

#[test]
fn with_keep_the_daemon_prunes_at_start_and_after_each_snapshot_one_at_a_time() {
    let keep = Duration::from_secs(30 * 86_400);
    let mut h = Harness::with(
        Config {
            keep: Some(keep),
            ..config()
        },
        stored_cursor(),
    );
    let mut first = h.start();
    first.extend(h.input(Input::TriggersScanned(Ok(vec![]))));
    first.extend(h.input(immediate(1)));
    assert_eq!(prune_starts(&first), 1, "{first:?}");
    // A snapshot lands while the first prune is out: the next waits for it.
    let order = snapshot(&first).expect("a snapshot order");
    let landed = h.input(Input::SnapshotTaken {
        object: order.object,
        result: Ok(10),
    });
    assert_eq!(prune_starts(&landed), 0, "one prune at a time");
    let mut bucket = a_quarter();
    first.extend(landed);
    let rest = carry_out_prunes(&mut h, &mut bucket, first, 1);
    assert_eq!(prune_starts(&rest), 1, "the snapshot's prune, now");
    assert_eq!(h.backup.metrics().pruned_objects, 3);
    assert_eq!(
        bucket.live(),
        [
            "db-backup/2016/10/01/s.bdb",
            "db-backup/2016/11/15/s.bdb",
            "job-backup/2016/11/15/c.job"
        ]
    );
    assert!(bucket.marker.is_some(), "the marker was written");
    assert_eq!(h.backup.metrics().keep, Some(keep));
    // A failed prune is tried again at the next listing tick, not at once.
    let failed = h.input(Input::BucketRead {
        ask: Ask::ReadHistory,
        result: Err(failure("503")),
    });
    assert_eq!(prune_starts(&failed), 0);
    assert_eq!(prune_starts(&h.input(batch(vec![]))), 0);
    h.input(Input::SnapshotsListed(Ok(vec![])));
    assert_eq!(
        prune_starts(&h.advance(Duration::from_secs(600))),
        1,
        "the next listing tick"
    );
    assert_eq!(
        h.backup.metrics().oldest_restorable,
        Some(Timestamp::parse_rfc3339("2016-10-17T22:04:25.634818978Z").unwrap()),
        "the last prune that worked says how far back"
    );
}

#[test]
fn a_prune_is_store_operations_one_deletion_at_a_time_and_a_failed_one_ends_it() {
    let mut h = Harness::with(keep_config(), stored_cursor());
    let mut bucket = a_quarter();
    let mut todo = VecDeque::from(h.start());
    let mut deletions = 0;
    while let Some(command) = todo.pop_front() {
        let input = match command {
            Command::ReadBucket(ask) => {
                let result = Ok(bucket.answer(ask.clone()));
                Input::BucketRead { ask, result }
            }
            Command::WriteHistory(_) => Input::HistoryWritten(Ok(())),
            Command::DeleteObject { object } => {
                deletions += 1;
                assert!(
                    !todo
                        .iter()
                        .any(|c| matches!(c, Command::DeleteObject { .. })),
                    "one deletion in flight"
                );
                // The second deletion finds its object gone: done; the
                // third is refused: the prune ends there.
                let result = match deletions {
                    2 => Err(Failure::new(FailureKind::NotFound, "404")),
                    3 => Err(failure("503")),
                    _ => Ok(()),
                };
                Input::ObjectDeleted { object, result }
            }
            Command::ListSnapshots { .. } => Input::SnapshotsListed(Ok(vec![])),
            _ => continue,
        };
        todo.extend(h.input(input));
    }
    assert_eq!(deletions, 3, "the marker, then one deletion after another");
    assert_eq!(
        h.backup.metrics().pruned_objects,
        0,
        "a failed prune counts nothing"
    );
    let later = h.advance(Duration::from_secs(600));
    assert_eq!(prune_starts(&later), 1, "tried again at the listing tick");
}

#[test]
fn a_stop_ends_a_prune_between_its_operations() {
    let mut h = Harness::with(keep_config(), stored_cursor());
    let first = h.start();
    assert_eq!(prune_starts(&first), 1);
    let stopped = h.stop();
    assert!(
        !stopped.iter().any(|c| matches!(c, Command::ReadBucket(_))),
        "{stopped:?}"
    );
    let read = h.input(Input::BucketRead {
        ask: Ask::ReadHistory,
        result: Ok(jobvault_core::restore_plan::Answer::History { bytes: None }),
    });
    assert!(
        !read.iter().any(|c| matches!(
            c,
            Command::ReadBucket(_) | Command::WriteHistory(_) | Command::DeleteObject { .. }
        )),
        "nothing more of the prune after the stop: {read:?}"
    );
}

#[test]
fn without_keep_the_daemon_never_prunes() {
    let mut h = Harness::new();
    let mut all = h.input(immediate(1));
    let order = snapshot(&all).expect("a snapshot order");
    all.extend(h.input(Input::SnapshotTaken {
        object: order.object,
        result: Ok(10),
    }));
    all.extend(h.advance(Duration::from_secs(600)));
    assert_eq!(prune_starts(&all), 0, "{all:?}");
}

// ---------------------------------------------------------- owed snapshots

fn marker(raw: u64) -> DestinationMarker {
    DestinationMarker::new(DestinationId::new(raw).unwrap(), Timestamp::UNIX_EPOCH)
}

fn checked(marker: DestinationMarker, created: bool) -> Input {
    Input::DestinationChecked(Ok(FoundDestination {
        marker,
        created,
        replaced: None,
    }))
}

/// Whether `commands` hold a check of the destination marker, keeping the
/// id it names.
fn checks_destination(commands: &[Command]) -> Option<Option<DestinationId>> {
    commands.iter().find_map(|c| match c {
        Command::CheckDestination { keep } => Some(*keep),
        _ => None,
    })
}

/// A machine whose first step found the prefix's marker missing and
/// created one, and `triggers` in the trigger directory; returns the
/// commands once both have answered.
fn new_destination(triggers: Vec<TriggerFile>) -> (Harness, DestinationId, Vec<Command>) {
    let mut h = Harness::new();
    let id = DestinationId::new(0xfeed).unwrap();
    let first = h.advance(Duration::ZERO);
    assert!(
        matches!(first[0], Command::CheckDestination { .. }),
        "{first:?}"
    );
    assert!(has(&first, &Command::ScanTriggers));
    let mut commands = h.input(checked(marker(0xfeed), true));
    commands.extend(h.input(Input::TriggersScanned(Ok(triggers))));
    (h, id, commands)
}

#[test]
fn a_marker_the_database_records_is_known_and_owes_nothing() {
    let mut h = Harness::new();
    h.backup = Backup::new(config(), stored_cursor(), h.now).recorded(DestinationId::new(7));
    let mut commands = h.advance(Duration::ZERO);
    commands.extend(h.input(checked(marker(7), false)));
    commands.extend(h.input(batch(vec![])));
    assert!(snapshot(&commands).is_none(), "{commands:?}");
    assert!(!h.backup.metrics().new_destination);
    h.input(Input::CursorSaved(Ok(0)));
    assert!(h.backup.metrics().incremental_alive.is_some());
    // Another id, or none recorded: new.
    for recorded in [DestinationId::new(8), None] {
        let mut h = Harness::new();
        h.backup = Backup::new(config(), stored_cursor(), h.now).recorded(recorded);
        h.advance(Duration::ZERO);
        h.input(checked(marker(7), false));
        assert!(h.backup.metrics().new_destination, "{recorded:?}");
    }
}

#[test]
fn a_failed_check_is_made_again_and_vouches_for_nothing_meanwhile() {
    let mut h = Harness::new();
    h.advance(Duration::ZERO);
    h.input(Input::DestinationChecked(Err(failure("503"))));
    h.input(batch(vec![]));
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.metrics().incremental_alive, None);
    assert!(checks_destination(&h.step()).is_some());
}

#[test]
fn a_new_destination_gets_a_snapshot_first_and_records_its_id_once_it_lands() {
    let (mut h, id, commands) = new_destination(vec![trigger("nightly", 0, "")]);
    assert!(h.backup.metrics().new_destination);
    assert!(
        !commands
            .iter()
            .any(|c| matches!(c, Command::WriteTriggerAttempts { .. })),
        "the trigger waits for the owed snapshot: {commands:?}"
    );
    let order = snapshot(&commands).expect("the owed snapshot is the first thing taken");
    assert_eq!(order.reason, SnapshotReason::Owed(Owed::NewDestination(id)));
    assert!(
        order.object.contains("/new-destination-22:04:25"),
        "{}",
        order.object
    );
    // The feed goes on meanwhile, but the daemon is not caught up while the
    // destination lacks what the cursor passed.
    assert!(saved(&h.input(batch(vec![]))).is_some());
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.metrics().incremental_alive, None);
    let landed = h.input(Input::SnapshotTaken {
        object: order.object,
        result: Ok(1),
    });
    assert!(
        has(&landed, &Command::RecordDestination { id }),
        "{landed:?}"
    );
    assert!(
        h.backup.metrics().new_destination,
        "until the database records it"
    );
    assert!(h.input(Input::DestinationRecorded(Ok(()))).is_empty());
    assert!(!h.backup.metrics().new_destination);
    assert!(h.backup.metrics().incremental_alive.is_some());
    // The checks after it keep the new marker, and only it: another
    // database's daemon that wrote over it would find it its own.
    h.input(Input::SnapshotsListed(Ok(vec![])));
    let mut later = h.advance(Duration::from_secs(600));
    later.extend(h.step());
    assert_eq!(checks_destination(&later), Some(Some(id)), "{later:?}");
}

/// The first listing, answered before the marker check, found no
/// snapshot; the check then found the prefix new, and its own snapshot is
/// the first. A later check finding the marker known owed another "first"
/// one all the same (a hostile trial's, 78 s after the new destination's).
#[test]
fn a_new_destinations_snapshot_is_the_first_whichever_answer_came_first() {
    let mut h = Harness::new();
    let first = h.advance(Duration::ZERO);
    assert!(
        first
            .iter()
            .any(|c| matches!(c, Command::ListSnapshots { .. })),
        "{first:?}"
    );
    h.input(Input::SnapshotsListed(Ok(vec![])));
    let mut owed = h.input(checked(marker(0xfeed), true));
    owed.extend(h.input(Input::TriggersScanned(Ok(vec![]))));
    let order = snapshot(&owed).expect("the new destination's snapshot");
    h.input(Input::SnapshotTaken {
        object: order.object.clone(),
        result: Ok(1),
    });
    h.input(Input::DestinationRecorded(Ok(())));
    let mut later = h.advance(Duration::from_secs(600));
    later.extend(h.input(Input::SnapshotsListed(Ok(vec![ListedObject {
        name: order.object,
        updated: h.now,
        size: 1,
        generation: None,
        sealed: false,
    }]))));
    later.extend(h.input(Input::TriggersScanned(Ok(vec![]))));
    later.extend(h.step());
    assert!(checks_destination(&later).is_some(), "{later:?}");
    let mut after = h.input(checked(marker(0xfeed), false));
    after.extend(h.input(Input::TriggersScanned(Ok(vec![]))));
    after.extend(h.step());
    assert_eq!(snapshot(&after), None, "{after:?}");
}

#[test]
fn an_owed_snapshot_that_fails_is_retried_after_a_doubling_wait() {
    let (mut h, id, commands) = new_destination(vec![]);
    let order = snapshot(&commands).unwrap();
    h.input(Input::SnapshotTaken {
        object: order.object,
        result: Err(failure("503")),
    });
    // Ten seconds later: tried again. Then 20 s.
    let again = snapshot(&h.step()).expect("retried after 10 s");
    h.input(Input::SnapshotTaken {
        object: again.object,
        result: Err(failure("503")),
    });
    let scan = h.step();
    assert_eq!(snapshot(&scan), None, "not before 20 s");
    assert!(
        has(&scan, &Command::ScanTriggers),
        "triggers are served meanwhile"
    );
    h.input(Input::TriggersScanned(Ok(vec![])));
    let third = snapshot(&h.step()).expect("retried after 20 s");
    assert_eq!(third.reason, SnapshotReason::Owed(Owed::NewDestination(id)));
    // A record that fails is made again at the next step.
    h.input(Input::SnapshotTaken {
        object: third.object,
        result: Ok(1),
    });
    h.input(Input::DestinationRecorded(Err(failure("disk I/O error"))));
    assert!(has(&h.step(), &Command::RecordDestination { id }));
}

#[test]
fn a_destination_with_no_snapshot_in_the_last_week_gets_one_at_start() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![])));
    assert!(h.input(Input::SnapshotsListed(Ok(vec![]))).is_empty());
    let order = snapshot(&h.step()).expect("a first snapshot");
    assert_eq!(order.reason, SnapshotReason::Owed(Owed::NoSnapshot));
    assert!(!h.backup.metrics().new_destination);
    let landed = h.input(Input::SnapshotTaken {
        object: order.object,
        result: Ok(1),
    });
    assert!(landed.is_empty(), "nothing to record: {landed:?}");
    assert_eq!(snapshot(&h.step()), None, "paid once");
}

// ------------------------------------------------------------------ lease

fn me() -> Holder {
    Holder {
        host: "a".to_owned(),
        machine: "machine-a".to_owned(),
        boot: "boot".to_owned(),
        pid: 1,
        db: "/var/lib/s/jobs.db".to_owned(),
        started: Timestamp::UNIX_EPOCH,
    }
}

/// A leased machine that has taken the lease at generation 1 and answered
/// its destination check; returns the commands of its first working step.
fn leased() -> (Harness, Vec<Command>) {
    let mut h = Harness::new();
    let lease = LeaseMachine::new(me(), Duration::from_secs(10), false, "1.0", h.now);
    h.backup = Backup::new(config(), stored_cursor(), h.now)
        .recorded(DestinationId::new(KNOWN))
        .leased(lease);
    assert_eq!(
        h.advance(Duration::ZERO),
        [Command::ReadLease],
        "only the lease runs"
    );
    assert_eq!(
        h.backup.poll_timeout(),
        None,
        "nothing to wake for while the read is out"
    );
    let read = h.input(Input::LeaseRead(Ok(FoundLease {
        lease: None,
        holder_runs: None,
        unreadable: None,
    })));
    assert!(
        matches!(
            read[..],
            [Command::WriteLease {
                if_generation: 0,
                ..
            }]
        ),
        "{read:?}"
    );
    assert!(h.input(Input::LeaseWritten(Ok(1))).is_empty());
    let first = h.start();
    assert!(has(&first, &Command::ScanTriggers), "{first:?}");
    (h, first)
}

/// Whether `commands` answer the immediate-backup request `id` with a
/// failure.
fn refused(commands: &[Command], id: u64) -> bool {
    commands.iter().any(|c| {
        matches!(c, Command::ImmediateBackupDone { id: answered, result: Err(_), .. } if *answered == id)
    })
}

/// The read after a refused renewal finds another daemon's lease: lost.
/// Returns what the machine does then.
fn lease_found_taken(h: &mut Harness) -> Vec<Command> {
    let theirs = Lease {
        holder: Holder {
            host: "b".to_owned(),
            ..me()
        },
        renewed: h.now,
        expiry: Duration::from_secs(60),
        state: LeaseState::default(),
        released: None,
    };
    let commands = h.input(Input::LeaseRead(Ok(FoundLease {
        lease: Some((theirs, 9)),
        holder_runs: None,
        unreadable: None,
    })));
    assert!(matches!(
        h.backup.lease_ended(),
        Some(LeaseEnded::Lost(Some(_)))
    ));
    commands
}

/// A leased machine that has asked for the lease and holds nothing yet.
fn leasing() -> Harness {
    let mut h = Harness::new();
    let lease = LeaseMachine::new(me(), Duration::from_secs(10), false, "1.0", h.now);
    h.backup = Backup::new(config(), stored_cursor(), h.now)
        .recorded(DestinationId::new(KNOWN))
        .leased(lease);
    assert_eq!(h.advance(Duration::ZERO), [Command::ReadLease]);
    h
}

/// The lease `holder` left, given back at `released` if at all, with its
/// cursor at `cursor_seq`.
fn left_by(holder: Holder, released: Option<Timestamp>, cursor_seq: u64) -> Lease {
    Lease {
        holder,
        renewed: Timestamp::from_unix_seconds(1_700_000_000),
        expiry: Duration::from_secs(60),
        state: LeaseState {
            cursor_seq,
            ..LeaseState::default()
        },
        released,
    }
}

/// A daemon of this host's earlier boot: certainly gone.
fn earlier_boot() -> Holder {
    Holder {
        boot: "an earlier boot".to_owned(),
        ..me()
    }
}

/// `h` finds `left` and takes it; returns its first step.
fn takes(h: &mut Harness, left: Lease) -> Vec<Command> {
    h.input(Input::LeaseRead(Ok(FoundLease {
        lease: Some((left, 4)),
        holder_runs: None,
        unreadable: None,
    })));
    h.input(Input::LeaseWritten(Ok(5)));
    h.start()
}

fn raises_counter(commands: &[Command]) -> bool {
    commands
        .iter()
        .any(|c| matches!(c, Command::RaiseCounter { .. }))
}

/// A machine that takes over the lease a killed daemon of an earlier boot
/// left, whose cursor was at `cursor_seq`; returns its first step.
fn taking_over(cursor_seq: u64) -> (Harness, Vec<Command>) {
    taking_over_from(earlier_boot(), None, cursor_seq)
}

/// A machine that takes the lease `holder` left, given back at `released`
/// if at all, whose cursor was at `cursor_seq`; returns its first step.
fn taking_over_from(
    holder: Holder,
    released: Option<Timestamp>,
    cursor_seq: u64,
) -> (Harness, Vec<Command>) {
    let mut h = leasing();
    let first = takes(&mut h, left_by(holder, released, cursor_seq));
    (h, first)
}

/// A daemon killed before it read the copy written back over its database:
/// its restart finds the copy behind the cursor of the lease it left, by
/// the counter or by the cursor (a copy written to since).
#[test]
fn a_copy_gone_back_while_no_daemon_read_it_is_found_through_the_lease() {
    for (counter, why) in [(12, "the counter is behind"), (25, "the cursor is behind")] {
        let (mut h, first) = taking_over(20);
        assert!(
            first
                .iter()
                .any(|c| matches!(c, Command::ReadChanges { after: 10, .. })),
            "{first:?}"
        );
        let commands = h.input(nothing_after(counter));
        let past = 20 + LEASED_MARGIN;
        assert_eq!(commands, [Command::RaiseCounter { past }], "{why}");
    }
    let (mut h, _) = taking_over(10);
    let commands = h.input(nothing_after(12));
    assert!(
        !raises_counter(&commands),
        "a lease at the stored cursor is no copy: {commands:?}"
    );
}

/// A copy put back while no daemon ran, after a stop that gave the lease
/// back (on another host, here): the start takes the lease at once and
/// finds the copy behind the cursor the stop left in it.
#[test]
fn a_copy_put_back_after_a_clean_stop_is_found_through_the_lease_given_back() {
    let elsewhere = Holder {
        host: "b".to_owned(),
        machine: "machine-b".to_owned(),
        ..me()
    };
    let given_back = Some(Timestamp::from_unix_seconds(1_700_000_000));
    let (mut h, first) = taking_over_from(elsewhere, given_back, 20);
    assert!(
        first
            .iter()
            .any(|c| matches!(c, Command::ReadChanges { after: 10, .. })),
        "taken at once: {first:?}"
    );
    let commands = h.input(nothing_after(12));
    let past = 20 + LEASED_MARGIN;
    assert_eq!(commands, [Command::RaiseCounter { past }]);
}

/// The cursor is saved at most once a second, and not at all while the
/// database fails its saves, so the bucket holds changes past it. The lease
/// says how far (`highest_seq`): a copy numbered in between, put back while
/// no daemon ran, went unnoticed when the lease carried the cursor alone,
/// and a restore mixed it with the versions it never held (the simulator).
#[test]
fn a_copy_numbered_past_the_cursor_saved_is_found_through_what_the_lease_says_was_read() {
    let (mut h, _) = leased();
    h.input(batch(vec![version("a", 11), version("b", 15)]));
    h.input(uploaded("a", 11));
    let save = h.input(uploaded("b", 15));
    assert!(
        save.iter().any(|c| matches!(c, Command::SaveCursor { .. })),
        "{save:?}"
    );
    h.input(Input::CursorSaved(Err(failure("disk I/O error"))));
    let said = h.backup.lease_content();
    assert_eq!((said.cursor_seq, said.highest_seq), (10, 15));

    let mut left = left_by(earlier_boot(), None, 10);
    left.state.highest_seq = 15;
    let mut h = leasing();
    takes(&mut h, left.clone());
    let commands = h.input(nothing_after(12));
    let past = 15 + LEASED_MARGIN;
    assert_eq!(commands, [Command::RaiseCounter { past }], "a copy at 12");

    let mut h = leasing();
    takes(&mut h, left);
    let commands = h.input(nothing_after(15));
    assert!(
        !raises_counter(&commands),
        "the database itself, its saves lost with the daemon: {commands:?}"
    );
}

/// A commit noticed while the lease is still being taken (the store down
/// at the start) is not read: a read then left the lease's cursor
/// unchecked, and a copy put back while no daemon ran went unnoticed.
#[test]
fn a_commit_noticed_before_the_lease_is_held_is_read_only_after_it() {
    let mut h = leasing();
    let noticed = h.input(Input::DatabaseChanged);
    assert!(noticed.is_empty(), "nothing read yet: {noticed:?}");
    takes(&mut h, left_by(earlier_boot(), None, 20));
    let commands = h.input(nothing_after(12));
    let past = 20 + LEASED_MARGIN;
    assert_eq!(commands, [Command::RaiseCounter { past }]);
}

#[test]
fn a_leased_machine_does_nothing_but_take_the_lease_until_it_holds_it() {
    let (_, first) = leased();
    assert!(
        first
            .iter()
            .any(|c| matches!(c, Command::ReadChanges { .. }))
    );
}

#[test]
fn a_lease_the_store_refuses_is_counted_with_refused_uploads() {
    let mut h = leasing();
    h.input(Input::LeaseRead(Err(failure("503 Service Unavailable"))));
    assert_eq!(h.backup.metrics().store_refusals, 0, "a 503 is not refused");
    let mut refusals = 0;
    for _ in 0..100 {
        if h.step().contains(&Command::ReadLease) {
            refusals += 1;
            h.input(Input::LeaseRead(Err(Failure::new(
                FailureKind::Permission,
                "gs://b/db-backup/lease.json: 403 Forbidden",
            ))));
        }
    }
    assert!(refusals >= 2, "the lease is asked for again: {refusals}");
    assert_eq!(h.backup.metrics().store_refusals, refusals);
}

#[test]
fn writes_wait_for_the_lease_gate_and_a_lost_lease_stops_the_machine() {
    let (mut h, _) = leased();
    // The stored cursor goes into the lease a retry's wait after the take.
    let renewal = h.advance(Duration::from_secs(10));
    assert!(
        matches!(&renewal[..], [Command::WriteLease { lease, .. }] if lease.state.cursor_seq == 10),
        "{renewal:?}"
    );
    h.input(Input::LeaseWritten(Ok(2)));
    // The renewal at 70 s fails, and its retries at 80 s and 90 s; at 100 s
    // the gate is closed: the upload of a changed job is answered at once,
    // not issued.
    h.advance(Duration::from_secs(50));
    for _ in 0..3 {
        let commands = h.step();
        assert!(
            commands
                .iter()
                .any(|c| matches!(c, Command::WriteLease { .. })),
            "{commands:?}"
        );
        h.input(Input::LeaseWritten(Err(failure("503"))));
    }
    h.advance(Duration::from_secs(10));
    let commands = h.input(batch(vec![version("a", 11)]));
    assert!(uploads(&commands).is_empty(), "{commands:?}");
    assert_eq!(h.backup.metrics().pending_jobs, 1);
    assert_eq!(
        h.backup.metrics().upload_errors.job,
        1,
        "answered with the gate's failure"
    );
    // The renewal is refused by its precondition: another daemon has it.
    h.input(Input::LeaseWritten(Err(Failure::new(
        FailureKind::Conflict,
        "412",
    ))));
    lease_found_taken(&mut h);
    assert_eq!(h.backup.poll_timeout(), None, "stopped");
    // A snapshot asked for now is refused at once, not left waiting for an
    // exit that drops it (the lost lease never halted the machine before).
    let asked = h.input(Input::ImmediateBackupRequested {
        id: 3,
        name: "task-scheduler".to_owned(),
    });
    assert!(
        matches!(
            &asked[..],
            [Command::ImmediateBackupDone { id: 3, object: None, result: Err(f) }]
                if f.kind == FailureKind::Rejected
        ),
        "{asked:?}"
    );
}

/// A daemon whose lease was taken over (`--takeover`) learned it only at its
/// next renewal, up to a minute later; a snapshot of its database uploaded
/// meanwhile was the newest a restore found, and dropped the new holder's
/// changes (a hostile trial). A snapshot now waits for a renewal sent after
/// it was asked for: got through, the snapshot goes; refused by its
/// precondition (the lease taken), the snapshot is refused unsent.
#[test]
fn a_snapshot_goes_only_on_a_lease_renewed_after_it_was_asked_for() {
    let (mut h, _) = leased();
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.advance(Duration::from_secs(2));
    let ask = |h: &mut Harness, id| {
        h.input(Input::ImmediateBackupRequested {
            id,
            name: "before-the-move".to_owned(),
        })
    };
    assert_eq!(
        ask(&mut h, 1),
        [],
        "no snapshot before the lease is renewed"
    );
    assert_eq!(
        h.backup.poll_timeout(),
        Some(h.now),
        "the renewal is due now"
    );
    let renewal = h.advance(Duration::ZERO);
    assert!(
        matches!(
            &renewal[..],
            [Command::WriteLease {
                if_generation: 1,
                ..
            }]
        ),
        "{renewal:?}"
    );
    let order = snapshot(&h.input(Input::LeaseWritten(Ok(2)))).expect("the snapshot goes");
    h.input(Input::SnapshotTaken {
        object: order.object,
        result: Ok(1),
    });

    h.advance(Duration::from_secs(2));
    assert_eq!(ask(&mut h, 2), []);
    let renewal = h.advance(Duration::ZERO);
    assert!(
        matches!(
            &renewal[..],
            [Command::WriteLease {
                if_generation: 2,
                ..
            }]
        ),
        "{renewal:?}"
    );
    // Refused by its precondition: the gate closes while the lease is read
    // again, and the snapshot is answered with why, unsent.
    let refused = h.input(Input::LeaseWritten(Err(Failure::new(
        FailureKind::Conflict,
        "412",
    ))));
    assert!(snapshot(&refused).is_none(), "{refused:?}");
    assert!(
        matches!(
            &refused[..],
            [
                Command::ReadLease,
                Command::ImmediateBackupDone {
                    id: 2,
                    result: Err(_),
                    ..
                }
            ]
        ),
        "{refused:?}"
    );
    lease_found_taken(&mut h);
}

/// A snapshot under way when the lease is found taken over is dropped
/// before its upload is committed: it ran to its end, and a snapshot of the
/// old holder's database landed after the new holder had written, the
/// newest a restore found (a hostile trial).
#[test]
fn a_snapshot_under_way_is_dropped_once_the_lease_is_found_taken() {
    let (mut h, _) = leased();
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::ImmediateBackupRequested {
        id: 1,
        name: "large".to_owned(),
    });
    h.advance(Duration::ZERO);
    let order = snapshot(&h.input(Input::LeaseWritten(Ok(2)))).expect("the snapshot goes");
    let renewal = h.advance(Duration::from_secs(60));
    assert!(
        renewal
            .iter()
            .any(|c| matches!(c, Command::WriteLease { .. })),
        "{renewal:?}"
    );
    let reread = h.input(Input::LeaseWritten(Err(Failure::new(
        FailureKind::Conflict,
        "412",
    ))));
    assert_eq!(
        reread,
        [Command::ReadLease],
        "not dropped while it may be ours"
    );
    let lost = lease_found_taken(&mut h);
    assert!(
        has(
            &lost,
            &Command::AbandonSnapshot {
                object: order.object.clone()
            }
        ),
        "{lost:?}"
    );
    let answered = h.input(Input::SnapshotTaken {
        object: order.object,
        result: Err(Failure::new(FailureKind::Rejected, "abandoned")),
    });
    assert!(refused(&answered, 1), "{answered:?}");
    assert_eq!(h.backup.metrics().unexpected_reports, 0);
}

/// Job uploads under way when the lease is found taken are dropped too: an
/// old holder's upload of a large body on a slow link landed over the new
/// holder's version of the same job, and a restore lost the newer one (a
/// hostile trial).
#[test]
fn job_uploads_under_way_are_dropped_once_the_lease_is_found_taken() {
    let (mut h, _) = leased();
    let started = h.input(batch(vec![version("a", 11), version("b", 12)]));
    assert_eq!(uploads(&started).len(), 2, "{started:?}");
    h.advance(Duration::from_secs(60));
    h.input(Input::LeaseWritten(Err(Failure::new(
        FailureKind::Conflict,
        "412",
    ))));
    let lost = lease_found_taken(&mut h);
    assert!(has(&lost, &Command::AbandonUploads), "{lost:?}");
    h.input(upload_failed("a", 11));
    h.input(upload_failed("b", 12));
    assert_eq!(h.backup.metrics().unexpected_reports, 0);
}

/// A snapshot waiting for its renewal when the machine halts (its database
/// renamed over) is refused, not taken of whatever file is at the path once
/// the renewal lands (a review).
#[test]
fn a_snapshot_waiting_for_its_renewal_is_refused_at_a_halt() {
    let (mut h, _) = leased();
    h.input(Input::TriggersScanned(Ok(vec![])));
    let asked = h.input(Input::ImmediateBackupRequested {
        id: 1,
        name: "before-the-move".to_owned(),
    });
    assert_eq!(asked, []);
    let renewal = h.advance(Duration::ZERO);
    assert!(
        matches!(&renewal[..], [Command::WriteLease { .. }]),
        "{renewal:?}"
    );
    let halted = h.input(Input::DatabaseReplaced);
    assert!(refused(&halted, 1), "{halted:?}");
    let after = h.input(Input::LeaseWritten(Ok(2)));
    assert!(snapshot(&after).is_none(), "{after:?}");
}

/// A database renamed over under a running daemon: the defect was a daemon
/// that read the old file on and reported itself caught up, while the new
/// file's jobs went nowhere. It halts: no more reads of the feed, no new
/// snapshot, the lease given back once its upload in flight reports.
#[test]
fn a_replaced_database_halts_the_machine_and_gives_the_lease_back() {
    let (mut h, first) = leased();
    assert!(has(&first, &Command::ScanTriggers), "{first:?}");
    let commands = h.input(batch(vec![version("a", 11)]));
    assert_eq!(uploads(&commands).len(), 1, "{commands:?}");
    assert!(!h.backup.database_replaced());
    let after = h.input(Input::DatabaseReplaced);
    assert!(h.backup.database_replaced());
    assert!(after.is_empty(), "nothing new starts: {after:?}");
    let later = h.input(Input::DatabaseChanged);
    assert!(later.is_empty(), "a commit is not read for: {later:?}");
    // The upload in flight lands, and the cursor of the old file is saved
    // in it (no one reads it again).
    let saved = h.input(Input::JobUploaded {
        id: JobId::new("a".to_owned()).unwrap(),
        seq: 11,
        result: Ok(1),
    });
    assert!(
        matches!(saved[..], [Command::SaveCursor { .. }]),
        "{saved:?}"
    );
    h.input(Input::CursorSaved(Ok(0)));
    // The first step's trigger scan and listing, out all along, report.
    h.input(Input::TriggersScanned(Ok(vec![])));
    let released = h.input(Input::SnapshotsListed(Ok(vec![])));
    assert!(
        matches!(released[..], [Command::ReleaseLease { .. }]),
        "only the lease is given back: {released:?}"
    );
    h.input(Input::LeaseReleased(Ok(())));
    assert!(h.backup.is_quiet());
    assert_eq!(h.backup.stopped(), None, "not a stop: the driver exits 1");
    let step = h.step();
    assert!(step.is_empty(), "{step:?}");
}

/// A machine past its first step whose first listing found `nightly.bdb`,
/// uploaded now.
fn nightly_listed() -> Harness {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::SnapshotsListed(Ok(vec![ListedObject {
        name: ObjectName::listed("db-backup/2016/11/16/nightly.bdb"),
        updated: h.now,
        size: 1,
        generation: None,
        sealed: false,
    }])));
    h
}

/// Every backup deleted while the prefix's markers stayed went unnoticed:
/// the marker and the lease were found as they were, and a stop exited 0
/// over an empty prefix (a hostile trial). A listing that lacks the newest
/// snapshot known starts the prefix over.
#[test]
fn a_listing_without_the_newest_snapshot_starts_the_prefix_over() {
    let mut h = nightly_listed();
    assert_eq!(h.backup.metrics().last_snapshot, Some(h.now));
    let listing = h.advance(Duration::from_secs(600));
    assert!(
        listing
            .iter()
            .any(|c| matches!(c, Command::ListSnapshots { .. })),
        "{listing:?}"
    );
    let commands = h.input(Input::SnapshotsListed(Ok(vec![])));
    assert_eq!(
        checks_destination(&commands),
        Some(None),
        "checked as new, at once: {commands:?}"
    );
    let metrics = h.backup.metrics();
    assert!(metrics.new_destination);
    assert_eq!(metrics.incremental_alive, None);
    assert_eq!(metrics.last_snapshot, None, "not the deleted one");
    let mut owed = h.input(checked(marker(0xbeef), true));
    owed.extend(h.input(Input::TriggersScanned(Ok(vec![]))));
    assert_eq!(
        snapshot(&owed).expect("a full snapshot").reason,
        SnapshotReason::Owed(Owed::NewDestination(DestinationId::new(0xbeef).unwrap()))
    );
}

#[test]
fn the_marker_is_checked_again_at_every_listing_and_a_wiped_one_owes_a_snapshot() {
    let mut h = nightly_listed();
    // Ten minutes on, the next listing: the marker is read again at the
    // step after it, and found missing (the bucket was wiped, its lease
    // spared).
    h.advance(Duration::from_secs(600));
    let commands = h.step();
    assert_eq!(
        checks_destination(&commands),
        Some(DestinationId::new(KNOWN)),
        "the check keeps the marker the database records: {commands:?}"
    );
    let mut owed = h.input(checked(marker(0xbeef), true));
    assert!(h.backup.metrics().new_destination);
    owed.extend(h.input(Input::TriggersScanned(Ok(vec![]))));
    let order = snapshot(&owed);
    assert_eq!(
        order.expect("a snapshot for the wiped prefix").reason,
        SnapshotReason::Owed(Owed::NewDestination(DestinationId::new(0xbeef).unwrap()))
    );
}

/// The first listing finds a newest snapshot and an older one, each sealed
/// or not, for a daemon that encrypts or not; returns whether it raised
/// `encryption_dropped`, then and after a later listing.
fn encryption_dropped(encrypts: bool, newest_sealed: bool, older_sealed: bool) -> (bool, bool) {
    let mut h = Harness::with(
        Config {
            encrypts,
            ..config()
        },
        stored_cursor(),
    );
    start_with_empty_feed(&mut h);
    let start = h.now;
    let snapshot = |name: &str, age: u64, sealed| ListedObject {
        name: ObjectName::listed(name),
        updated: start - Duration::from_secs(age),
        size: 1,
        generation: None,
        sealed,
    };
    h.input(Input::SnapshotsListed(Ok(vec![
        snapshot("db-backup/2016/11/10/nightly.bdb", 6 * 86_400, older_sealed),
        snapshot("db-backup/2016/11/16/nightly.bdb", 60, newest_sealed),
        // Not a snapshot: a job object is not looked at.
        snapshot("job-backup/2016/11/16/a.job", 0, true),
    ])));
    let at_start = h.backup.metrics().encryption_dropped;
    h.advance(Duration::from_secs(600));
    h.input(Input::SnapshotsListed(Ok(vec![snapshot(
        "db-backup/2016/11/16/later.bdb",
        0,
        false,
    )])));
    (at_start, h.backup.metrics().encryption_dropped)
}

#[test]
fn a_plain_daemon_on_a_prefix_holding_an_encrypted_snapshot_says_so_for_its_life() {
    assert_eq!(encryption_dropped(false, true, true), (true, true));
    assert_eq!(
        encryption_dropped(false, false, true),
        (true, true),
        "a plain writer's snapshot newest does not clear it"
    );
    assert_eq!(
        encryption_dropped(false, false, false),
        (false, false),
        "never encrypted"
    );
    for (newest, older) in [(true, true), (false, true), (false, false)] {
        assert_eq!(encryption_dropped(true, newest, older), (false, false));
    }
}

#[test]
fn a_prefix_is_not_pruned_before_it_is_known_to_hold_the_database() {
    let mut h = Harness::with(keep_config(), stored_cursor());
    let first = h.advance(Duration::ZERO);
    assert!(
        !first.iter().any(|c| matches!(c, Command::ReadBucket(_))),
        "{first:?}"
    );
    let after_check = h.input(checked(marker(0xfeed), true));
    assert!(
        !after_check
            .iter()
            .any(|c| matches!(c, Command::ReadBucket(_))),
        "a new destination: {after_check:?}"
    );
    let mut h = Harness::with(keep_config(), stored_cursor());
    let known = h.start();
    assert!(
        known.iter().any(|c| matches!(c, Command::ReadBucket(_))),
        "{known:?}"
    );
}

fn keep_config() -> Config {
    Config {
        keep: Some(Duration::from_secs(86_400)),
        ..config()
    }
}

// ---------------------------------------------------------------- rows set aside

fn unreadable(id: &[u8], seq: u64) -> Unreadable {
    Unreadable {
        seq,
        id: RowId(id.to_vec()),
        why: "its body is not UTF-8 text".to_owned(),
        deleted: false,
    }
}

#[test]
fn a_row_no_object_can_hold_is_passed_recorded_and_counted() {
    let mut h = Harness::new();
    h.start();
    let commands = h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        jobs: vec![version("a", 11), version("b", 13)],
        unreadable: vec![unreadable(b"u\xff", 12)],
        set_aside: 2,
        newest: 13,
        complete: true,
    })));
    assert_eq!(uploads(&commands), [("a".into(), 11), ("b".into(), 13)]);
    assert_eq!(h.backup.metrics().jobs_set_aside, 3);
    h.input(uploaded("a", 11));
    let commands = h.input(uploaded("b", 13));
    let Some(Command::SaveCursor { new, set_aside, .. }) = commands.last() else {
        panic!("no save in {commands:?}");
    };
    assert_eq!(new.seq, 13, "the cursor passes the row set aside");
    assert_eq!(*set_aside, [unreadable(b"u\xff", 12)]);
    h.input(Input::CursorSaved(Ok(3)));
    let metrics = h.backup.metrics();
    assert_eq!((metrics.jobs_set_aside, metrics.pending_jobs), (3, 0));
}

#[test]
fn a_batch_of_rows_set_aside_alone_moves_the_cursor() {
    let mut h = Harness::new();
    h.start();
    let commands = h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        jobs: vec![],
        unreadable: vec![unreadable(b"x", 11)],
        set_aside: 0,
        newest: 11,
        complete: true,
    })));
    assert_eq!(saved(&commands).map(|c| c.seq), Some(11), "{commands:?}");
}

#[test]
fn pending_counts_what_the_database_holds_past_the_cursor() {
    let mut h = Harness::new();
    h.start();
    h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        jobs: vec![version("a", 11)],
        unreadable: vec![],
        set_aside: 0,
        newest: 40,
        complete: false,
    })));
    assert_eq!(h.backup.metrics().pending_jobs, 30);
}

#[test]
fn reads_ask_for_no_more_bytes_than_the_room_left() {
    let body = |id: &str| format!(r#"{{"id":"{id}","pad":"{}"}}"#, "x".repeat(80));
    let job = |id: &str, seq| {
        Envelope::written(
            JobId::new(id).unwrap(),
            seq,
            Timestamp::UNIX_EPOCH,
            body(id),
        )
    };
    let weight = body("a").len() as u64;
    let mut h = Harness::with(
        Config {
            max_pending_bytes: 4 * weight,
            ..config()
        },
        stored_cursor(),
    );
    let commands = h.start();
    assert!(has_read(&commands, 4 * weight), "{commands:?}");
    let commands = h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        jobs: vec![job("a", 11), job("b", 12), job("c", 13)],
        unreadable: vec![],
        set_aside: 0,
        newest: 20,
        complete: false,
    })));
    assert_eq!(h.backup.held(), (3, 3 * weight));
    assert!(
        !commands
            .iter()
            .any(|c| matches!(c, Command::ReadChanges { .. })),
        "three of four held: no read"
    );
    let commands = h.input(uploaded("a", 11));
    assert!(has_read(&commands, 2 * weight), "half free: {commands:?}");
}

fn has_read(commands: &[Command], bytes: u64) -> bool {
    commands
        .iter()
        .any(|c| matches!(c, Command::ReadChanges { max_bytes, .. } if *max_bytes == bytes))
}

/// The deletion of a job whose id no object name can carry: no job object
/// can record it, so the snapshots taken while the job lived hold it, and a
/// restore from one brought it back after a stop that exited 0 (a hostile
/// trial). The machine owes a snapshot, and the cursor stays below the
/// deletion until one copied after it lands: a restart reads it again.
#[test]
fn a_deletion_no_object_can_name_owes_a_snapshot_and_holds_the_cursor_until_it_lands() {
    let mut h = Harness::new();
    h.start();
    h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        jobs: vec![version("a", 11)],
        unreadable: vec![nameless_deletion(12)],
        set_aside: 0,
        newest: 12,
        complete: true,
    })));
    let commands = h.input(Input::TriggersScanned(Ok(vec![])));
    let order = snapshot(&commands).expect("a snapshot is owed, first of all");
    assert_eq!(order.reason, SnapshotReason::Owed(Owed::AfterDeletion));
    let commands = h.input(uploaded("a", 11));
    let Some(Command::SaveCursor { new, set_aside, .. }) = commands.last() else {
        panic!("no save in {commands:?}");
    };
    assert_eq!(
        (new.seq, set_aside.len()),
        (11, 0),
        "held below the deletion"
    );
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.metrics().pending_jobs, 1);
    h.input(Input::SnapshotTaken {
        object: order.object,
        result: Ok(1),
    });
    let commands = h.step();
    assert_eq!(saved(&commands).map(|c| c.seq), Some(12), "{commands:?}");
}

/// A snapshot under way when the deletion is read may have copied the job:
/// it pays nothing, and the next one is taken.
#[test]
fn a_snapshot_started_before_a_nameless_deletion_does_not_pay_for_it() {
    let mut h = Harness::new();
    h.start();
    h.input(Input::TriggersScanned(Ok(vec![])));
    let first = snapshot(&h.input(Input::ImmediateBackupRequested {
        id: 1,
        name: "manual".to_owned(),
    }))
    .expect("the requested snapshot starts");
    h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        jobs: vec![],
        unreadable: vec![nameless_deletion(11)],
        set_aside: 0,
        newest: 11,
        complete: true,
    })));
    let commands = h.input(Input::SnapshotTaken {
        object: first.object,
        result: Ok(1),
    });
    assert_eq!(
        saved(&commands),
        None,
        "the cursor stays below the deletion"
    );
    let owed = snapshot(&commands).expect("the owed snapshot starts next");
    assert_eq!(owed.reason, SnapshotReason::Owed(Owed::AfterDeletion));
}

/// Deletions that go on while snapshots are taken: each landing pays for
/// the deletions read before it started, and the next snapshot for the
/// rest. A snapshot under way paid nothing once any deletion came after its
/// start, so a writer deleting such jobs more often than a snapshot takes
/// held the cursor for good.
#[test]
fn deletions_during_a_snapshot_are_paid_by_the_next_and_the_cursor_moves_on() {
    let mut h = Harness::new();
    h.start();
    h.input(Input::TriggersScanned(Ok(vec![])));
    let nameless_read = |h: &mut Harness, seq| {
        h.input(Input::ChangesRead(Ok(ChangeBatch {
            stored: h.backup.stored_cursor(),
            jobs: vec![],
            unreadable: vec![nameless_deletion(seq)],
            set_aside: 0,
            newest: seq,
            complete: true,
        })))
    };
    let first = snapshot(&nameless_read(&mut h, 11)).expect("owed at once");
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    nameless_read(&mut h, 12);
    let commands = h.input(Input::SnapshotTaken {
        object: first.object,
        result: Ok(1),
    });
    assert_eq!(saved(&commands).map(|c| c.seq), Some(11), "{commands:?}");
    assert_eq!(snapshot(&commands), None, "not one snapshot after another");
    h.input(Input::CursorSaved(Ok(0)));
    let mut later = h.advance(AFTER_DELETION_SPACING);
    if later.contains(&Command::ScanTriggers) {
        later.extend(h.input(Input::TriggersScanned(Ok(vec![]))));
    }
    let second = snapshot(&later).expect("owed again for the deletion at 12");
    assert_eq!(second.reason, SnapshotReason::Owed(Owed::AfterDeletion));
    let landed = h.input(Input::SnapshotTaken {
        object: second.object,
        result: Ok(1),
    });
    assert_eq!(
        saved(&landed).map(|c| c.seq),
        Some(12),
        "{later:?} {landed:?}"
    );
}

/// A stop before the owed snapshot lands says the prefix would bring the
/// job back, instead of exiting 0.
#[test]
fn a_drain_over_a_nameless_deletion_not_snapshotted_does_not_vouch() {
    let mut h = stopping();
    h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        newest: 11,
        complete: true,
        jobs: vec![],
        unreadable: vec![nameless_deletion(11)],
        set_aside: 0,
    })));
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(
        h.backup.stopped(),
        Some(Stopped::Unvouched {
            changes: 0,
            why: Unvouched::DeletionsUnsnapshotted { rows: 1 }
        })
    );
}

fn nameless_deletion(seq: u64) -> Unreadable {
    Unreadable {
        deleted: true,
        ..unreadable(b"b\xe2\x82\xac\xb0", seq)
    }
}

// ---------------------------------------------------------------- schedule

/// `--snapshot-at 03:00`: START is 22:04, and the newest snapshot is from
/// 02:00, so today's is due once the first listing says so; a failure is
/// retried as a trigger's is.
#[test]
fn a_scheduled_snapshot_is_taken_once_listed_due_and_retried_as_a_trigger_is() {
    let scheduled = Config {
        schedule: Schedule {
            daily_at: Some(3 * 3600),
            every: None,
        },
        ..config()
    };
    let mut h = Harness::with(scheduled, stored_cursor());
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![])));
    let commands = h.input(Input::SnapshotsListed(Ok(vec![ListedObject {
        name: ObjectName::listed("db-backup/2016/11/16/nightly.bdb"),
        updated: Timestamp::parse_rfc3339("2016-11-16T02:00:00Z").unwrap(),
        size: 1,
        generation: None,
        sealed: false,
    }])));
    assert!(
        snapshot(&commands).is_none(),
        "listing alone starts nothing"
    );
    let first = snapshot(&h.step()).expect("the step after the listing takes it");
    let due = Timestamp::parse_rfc3339("2016-11-16T03:00:00Z").unwrap();
    assert_eq!(first.reason, SnapshotReason::Scheduled { due, attempt: 1 });
    assert!(first.object.contains("/scheduled-"), "{}", first.object);
    h.input(Input::SnapshotTaken {
        object: first.object,
        result: Err(failure("503")),
    });
    let wait = trigger_retry_wait(config().interval);
    let mut retried = None;
    let mut waited = Duration::ZERO;
    while retried.is_none() {
        retried = snapshot(&h.step());
        waited += Duration::from_secs(10);
        h.input(Input::TriggersScanned(Ok(vec![])));
    }
    assert!(waited >= wait, "retried after {waited:?}");
    let second = retried.unwrap();
    assert_eq!(second.reason, SnapshotReason::Scheduled { due, attempt: 2 });
    h.input(Input::SnapshotTaken {
        object: second.object,
        result: Ok(1),
    });
    for _ in 0..20 {
        assert!(
            snapshot(&h.step()).is_none(),
            "a landed snapshot meets the schedule"
        );
        h.input(Input::TriggersScanned(Ok(vec![])));
    }
}

/// A prefix new to the database whose owed snapshot has not landed cannot
/// restore it: a stop that uploaded every change says so, not `Drained`.
#[test]
fn a_drain_to_a_prefix_whose_first_snapshot_has_not_landed_does_not_vouch_for_it() {
    let (mut h, _, owed) = new_destination(vec![]);
    let order = snapshot(&owed).expect("the new destination's snapshot");
    h.input(batch(vec![]));
    h.input(Input::SnapshotsListed(Ok(vec![])));
    h.stop();
    h.input(batch(vec![]));
    h.input(Input::CursorSaved(Ok(0)));
    h.input(Input::SnapshotTaken {
        object: order.object,
        result: Err(failure("503")),
    });
    assert_eq!(
        h.backup.stopped(),
        Some(Stopped::Unvouched {
            changes: 0,
            why: Unvouched::NewDestination
        })
    );
}

/// A machine past its first step, its triggers scanned and snapshots
/// listed, asked to stop.
fn stopping() -> Harness {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::SnapshotsListed(Ok(vec![])));
    h.stop();
    h
}

/// A writer that goes on during the drain neither holds the stop up nor
/// counts as left: the drain aims at the newest change its first read saw.
#[test]
fn a_drain_aims_at_the_newest_change_its_first_read_saw() {
    let mut h = stopping();
    // Cut by its limit only because a writer went on committing after the
    // database's newest was read: nothing before the stop is left unread.
    let commands = h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        newest: 11,
        complete: false,
        jobs: vec![version("a", 11)],
        unreadable: vec![],
        set_aside: 0,
    })));
    assert_eq!(uploads(&commands), [("a".to_owned(), 11)]);
    assert_eq!(reads(&commands), 0, "{commands:?}");
    h.input(Input::CursorSaved(Ok(0)));
    // Commits after the first read: noticed, and not read.
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 0);
    let save = saved(&h.input(uploaded("a", 11))).expect("the drain saves");
    assert_eq!(save.seq, 11);
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.stopped(), Some(drained(1)));
}

/// A row set aside is not in the bucket: a stop that uploaded every other
/// change says so, not `Drained` (it exited 0 over a row no restore gives).
#[test]
fn a_drain_with_a_row_set_aside_does_not_vouch_for_the_prefix() {
    let mut h = stopping();
    let commands = h.input(Input::ChangesRead(Ok(ChangeBatch {
        stored: stored_cursor(),
        newest: 12,
        complete: true,
        jobs: vec![version("a", 11)],
        unreadable: vec![unreadable(b"u\xff", 12)],
        set_aside: 0,
    })));
    assert_eq!(uploads(&commands), [("a".to_owned(), 11)]);
    h.input(Input::CursorSaved(Ok(0)));
    let save = saved(&h.input(uploaded("a", 11))).expect("the drain saves");
    assert_eq!(save.seq, 12);
    h.input(Input::CursorSaved(Ok(1)));
    assert_eq!(
        h.backup.stopped(),
        Some(Stopped::Unvouched {
            changes: 1,
            why: Unvouched::SetAside { rows: 1 }
        })
    );
}

/// A job rewritten while it waits keeps its place in the upload queue: its
/// oldest version holds the cursor back, so it goes first.
#[test]
fn a_job_rewritten_while_it_waits_keeps_its_place_in_the_queue() {
    let mut h = Harness::new();
    start_with_empty_feed(&mut h);
    h.input(Input::TriggersScanned(Ok(vec![])));
    h.input(Input::SnapshotsListed(Ok(vec![])));
    // Four uploads fill the concurrency.
    let busy: Vec<Envelope> = (11..15)
        .map(|seq| version(&format!("b{seq}"), seq))
        .collect();
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    assert_eq!(uploads(&h.input(batch(busy))).len(), 4);
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(reads(&h.input(Input::DatabaseChanged)), 1);
    // Then "hot" at 15, others at 16 and 17, and "hot" again at 18.
    let later = vec![
        version("hot", 15),
        version("c16", 16),
        version("c17", 17),
        version("hot", 18),
    ];
    h.input(batch_at(h.backup.stored_cursor(), later));
    let next = uploads(&h.input(uploaded("b11", 11)));
    assert_eq!(
        next,
        [("hot".to_owned(), 18)],
        "the rewritten job goes at its oldest version's place, 15, not 18"
    );
}

/// A stop before the first step still checks the prefix's marker, and
/// vouches for a known one: a stop in the first seconds is no failure.
#[test]
fn a_stop_before_the_first_step_checks_the_marker_and_drains() {
    let mut h = Harness::new();
    h.stop();
    let first = h.advance(Duration::ZERO);
    assert!(checks_destination(&first).is_some(), "{first:?}");
    assert!(!has(&first, &Command::ScanTriggers), "{first:?}");
    h.input(checked(marker(KNOWN), false));
    h.input(batch(vec![]));
    h.input(Input::CursorSaved(Ok(0)));
    assert_eq!(h.backup.stopped(), Some(drained(0)));
}
