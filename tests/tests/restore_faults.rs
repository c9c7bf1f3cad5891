//! Restoring through anything: a store that fails reads, downloads cut part
//! way, a prefix that holds nothing, a target that changes underneath, and
//! a signal mid-restore. Each restore either equals the database or fails
//! with one line and leaves nothing behind.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jobvault::db::JobDb;
use jobvault_core::{JobId, Timestamp};
use jobvault_tests::writers::rows;
use jobvault_tests::{
    Backend, Chaos, Daemon, Emulator, Proxy, StoreReader, Workspace, body, eventually, free_port,
    jobvault, stderr, stdout,
};

const PATIENCE: Duration = Duration::from_secs(180);

/// A database backed up by the real daemon: a snapshot of `jobs` jobs, then
/// changes to a fifth of them and deletes of a fiftieth, every change in the
/// bucket. Restores go through the proxy; the daemon wrote past it.
struct BackedUp {
    workspace: Workspace,
    /// The bucket URL the daemon wrote to.
    url: String,
    bucket: String,
    proxy: Proxy,
    emulator: Emulator,
    _data: tempfile::TempDir,
}

impl BackedUp {
    fn new(jobs: usize, prefix: &str) -> Self {
        BackedUp::in_bucket(jobs, prefix, false)
    }

    /// Like [`BackedUp::new`], in a bucket that keeps object versions if
    /// `versioned`.
    fn in_bucket(jobs: usize, prefix: &str, versioned: bool) -> Self {
        let data = tempfile::tempdir().unwrap();
        let proxy_port = free_port();
        // Only the memory backend keeps versions.
        let backend = if versioned {
            Backend::Memory
        } else {
            Backend::Filesystem(data.path().to_owned())
        };
        let emulator = Emulator::start_on(free_port(), proxy_port, backend);
        let proxy = Proxy::start(proxy_port, emulator.address(), Duration::ZERO);
        // Listings in pages of at most 1,000 objects, as GCS serves them.
        proxy.page_listings(Some(1_000));
        let bucket = if versioned {
            emulator.new_versioned_bucket("restore-faults")
        } else {
            emulator.new_bucket("restore-faults")
        };
        let url = format!("gs://{bucket}/{prefix}");
        let workspace = Workspace::new();
        let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
        let first: Vec<_> = (0..jobs)
            .map(|n| body(&format!("job-{n:05}"), "first"))
            .collect();
        db.put(&first).unwrap();
        workspace.trigger("nightly", "");
        let direct = format!("http://{}", emulator.address());
        let daemon = Daemon::start(&workspace, Some(&direct), &url, "200ms", &[]);
        let reader = StoreReader::connect(&url, Some(&direct));
        eventually("the nightly snapshot", PATIENCE, || {
            let names = reader.names("db-backup/");
            names.iter().any(|n| n.contains("/nightly")).then_some(())
        });
        let changed: Vec<_> = (0..jobs / 5)
            .map(|n| body(&format!("job-{:05}", n * 5), "changed"))
            .collect();
        db.put(&changed).unwrap();
        let deleted: Vec<JobId> = (0..jobs / 50)
            .map(|n| JobId::new(format!("job-{:05}", n * 50 + 1)).unwrap())
            .collect();
        db.delete(&deleted).unwrap();
        let newest = db.newest_seq().unwrap();
        eventually("every change uploaded", PATIENCE, || {
            (db.cursor().unwrap().seq == newest).then_some(())
        });
        assert!(daemon.stop().success());
        BackedUp {
            workspace,
            url,
            bucket,
            proxy,
            emulator,
            _data: data,
        }
    }

    /// `jobvault` reading through the proxy.
    fn jobvault(&self) -> Command {
        jobvault(Some(&self.proxy.endpoint()))
    }

    fn restore(&self, url: &str, to: &Path, extra: &[&str]) -> std::process::Output {
        self.jobvault()
            .args(["restore", "--bucket", url, "--to"])
            .arg(to)
            .args(extra)
            .output()
            .unwrap()
    }
}

/// What a restore may leave beside its target: nothing of its own.
fn leftovers(folder: &Path) -> Vec<String> {
    fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".jobvault-restore"))
        .collect()
}

fn restored_folder() -> (tempfile::TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let to = folder.path().join("restored.db");
    (folder, to)
}

#[test]
fn restore_and_retrieve_equal_the_database_through_a_storm_of_failed_reads() {
    let backed_up = BackedUp::new(3_000, "prod");
    backed_up.proxy.set_chaos(
        Some(Chaos {
            unavailable: 0.08,
            throttled: 0.05,
            cut: 0.03,
            cut_body: 0.03,
            stall: 0.01,
            stall_for: Duration::from_secs(1),
            fail_after_write: 0.0,
        }),
        0x5707,
    );
    let (folder, to) = restored_folder();
    let output = backed_up.restore(&backed_up.url, &to, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(rows(&to), rows(&backed_up.workspace.db()));
    let said = stderr(&output);
    assert_eq!(
        said.matches("reading again until one succeeds").count(),
        1,
        "the retries are said once: {said}"
    );

    let output = backed_up
        .jobvault()
        .args(["retrieve", "--bucket", &backed_up.url])
        .args(["--since", "2000-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let retrieved: Vec<(String, String)> = stdout(&output)
        .lines()
        .map(|line| {
            let job: serde_json::Value = serde_json::from_str(line).unwrap();
            (job["id"].as_str().unwrap().to_owned(), line.to_owned())
        })
        .collect();
    assert_eq!(retrieved, rows(&backed_up.workspace.db()));

    let paged = backed_up
        .proxy
        .seen()
        .iter()
        .any(|s| s.path_and_query.contains("pageToken="));
    assert!(paged, "the day of 3,000 job objects came in pages");
    let counts = backed_up.proxy.chaos_counts();
    for fault in ["503", "429", "cut", "cut body"] {
        assert!(
            counts.get(fault).copied().unwrap_or(0) > 0,
            "no {fault}: {counts:?}"
        );
    }
    assert!(leftovers(folder.path()).is_empty());
}

#[test]
fn downloads_cut_part_way_resume_from_the_byte_reached() {
    let backed_up = BackedUp::new(3_000, "prod");
    // The snapshot's 10-byte header is too short to cut; the snapshot and
    // the first job objects are cut after 20 bytes.
    backed_up.proxy.cut_next_downloads(6, 20);
    let (_folder, to) = restored_folder();
    let output = backed_up.restore(&backed_up.url, &to, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(rows(&to), rows(&backed_up.workspace.db()));
    let seen = backed_up.proxy.seen();
    let resumed: Vec<_> = seen
        .iter()
        .filter(|s| s.path_and_query.contains("db-backup"))
        .filter(|s| s.range.as_deref() == Some("bytes=20-"))
        .collect();
    assert_eq!(
        resumed.len(),
        1,
        "the snapshot resumed at byte 20: {seen:#?}"
    );
    assert!(
        resumed[0].path_and_query.contains("generation="),
        "the resumed read is pinned to the generation first served: {resumed:?}"
    );
}

#[test]
fn a_prefix_that_holds_nothing_fails_with_its_own_exit_code_and_names_its_neighbours() {
    // Versioned, so that a restore to an instant before the first backup
    // can tell that nothing was there.
    let backed_up = BackedUp::in_bucket(50, "scheduler-prod", true);
    let typo = format!("gs://{}/scheduler-prd", backed_up.bucket);
    let (folder, to) = restored_folder();

    let output = backed_up.restore(&typo, &to, &[]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.contains(&typo), "{error}");
    assert!(error.contains("db-backup/ and job-backup/"), "{error}");
    assert!(
        error.contains(&backed_up.url),
        "names the prefix that holds backups: {error}"
    );
    assert!(!to.exists());
    assert!(leftovers(folder.path()).is_empty());

    for command in [
        vec!["retrieve", "--since", "2000-01-01T00:00:00Z"],
        vec!["verify"],
    ] {
        let output = backed_up
            .jobvault()
            .args(&command)
            .args(["--bucket", &typo])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(3),
            "{command:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(&backed_up.url),
            "{}",
            stderr(&output)
        );
    }

    let output = backed_up.restore(&typo, &to, &["--snapshot", "db-backup/2026/12/04/n.bdb"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "a snapshot named in an empty prefix: {}",
        stderr(&output)
    );
    assert!(!to.exists());

    let output = backed_up.restore(&typo, &to, &["--if-replica-exists"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("nothing restored (--if-replica-exists)"));
    assert!(!to.exists());
    // A bucket that does not exist is no empty replica: a container must not
    // start on an empty database because of a typo in the bucket's name.
    let output = backed_up.restore(
        "gs://no-such-bucket-for-replica",
        &to,
        &["--if-replica-exists"],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(!to.exists());

    // Before the first backup: the prefix holds backups, none of then.
    let output = backed_up.restore(&backed_up.url, &to, &["--at", "2001-01-01T00:00:00Z"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("before the first backup"),
        "{}",
        stderr(&output)
    );
    let output = backed_up.restore(
        &backed_up.url,
        &to,
        &["--at", "2001-01-01T00:00:00Z", "--if-replica-exists"],
    );
    assert_eq!(
        output.status.code(),
        Some(3),
        "only an empty prefix is opted out of"
    );
    assert!(!to.exists());

    fs::write(&to, "precious").unwrap();
    let output = backed_up.restore(&backed_up.url, &to, &["--if-db-not-exists"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("nothing restored (--if-db-not-exists)"));
    assert_eq!(fs::read_to_string(&to).unwrap(), "precious");
    let output = backed_up.restore(&backed_up.url, &to, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read_to_string(&to).unwrap(), "precious");

    let output = backed_up.restore(&backed_up.url, folder.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is a directory"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_forced_restore_keeps_the_replaced_files_mode_and_owner_and_a_new_one_follows_the_umask() {
    let backed_up = BackedUp::new(50, "prod");
    let (folder, to) = restored_folder();
    fs::write(&to, "old").unwrap();
    fs::set_permissions(&to, fs::Permissions::from_mode(0o664)).unwrap();
    // The hot journal of a writer that crashed: SQLite would roll it back
    // into the restored file.
    let journal = folder.path().join("restored.db-journal");
    fs::write(&journal, vec![0xd9; 4096]).unwrap();
    let root = is_root();
    if root {
        std::os::unix::fs::chown(&to, Some(65534), Some(65534)).unwrap();
    }
    let output = backed_up.restore(&backed_up.url, &to, &["--force"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let meta = fs::metadata(&to).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o664);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    } else {
        eprintln!("not root: the owner half of this test is skipped");
    }
    assert_eq!(rows(&to), rows(&backed_up.workspace.db()));
    assert!(
        !journal.exists(),
        "the old journal is gone with the old file"
    );

    // --force replaces a database file, never a link, a FIFO or a device.
    let link = folder.path().join("link.db");
    std::os::unix::fs::symlink(&to, &link).unwrap();
    let fifo = folder.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (target, what) in [
        (&link, "a symbolic link"),
        (&fifo, "a device, socket or FIFO"),
    ] {
        let output = backed_up.restore(&backed_up.url, target, &["--force"]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(stderr(&output).contains(what), "{}", stderr(&output));
    }
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let fresh = folder.path().join("fresh.db");
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 027; exec \"$@\"")
        .arg("sh")
        .arg(jobvault_tests::jobvault_bin())
        .args(["restore", "--bucket", &backed_up.url, "--to"])
        .arg(&fresh)
        .env("STORAGE_EMULATOR_HOST", backed_up.proxy.endpoint())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o640);
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Starts a restore slowed by the proxy, and waits for its temporary file.
fn slow_restore(backed_up: &BackedUp, to: &Path) -> std::process::Child {
    backed_up.proxy.set_delay(Duration::from_millis(300));
    let child = backed_up
        .jobvault()
        .args(["restore", "--bucket", &backed_up.url, "--to"])
        .arg(to)
        .args(["--concurrency", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let folder = to.parent().unwrap();
    eventually("the restore's temporary file", PATIENCE, || {
        (!leftovers(folder).is_empty()).then_some(())
    });
    child
}

#[test]
fn a_file_that_appears_at_the_target_during_the_restore_is_kept() {
    let backed_up = BackedUp::new(500, "prod");
    let (folder, to) = restored_folder();
    let child = slow_restore(&backed_up, &to);
    fs::write(&to, "written meanwhile").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read_to_string(&to).unwrap(), "written meanwhile");
    assert!(
        leftovers(folder.path()).is_empty(),
        "{:?}",
        leftovers(folder.path())
    );
}

/// Runs jobvault with `args` through the slowed proxy and a TMPDIR of its
/// own, waits for its copy (a file named `copy...`), stops it with each of
/// SIGTERM and SIGINT, and checks that it said so and left nothing behind.
/// Sends `signal` (`-TERM`, …) to `child` with `kill`; what it printed as
/// it ended.
fn signalled(child: std::process::Child, signal: &str) -> std::process::Output {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait_with_output().unwrap()
}

fn signalled_mid_copy_leaves_nothing_in_tmpdir(backed_up: &BackedUp, args: &[&str], copy: &str) {
    for signal in ["-TERM", "-INT"] {
        let tmp = tempfile::tempdir().unwrap();
        let copies = || {
            fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        backed_up.proxy.set_delay(Duration::from_millis(300));
        let child = backed_up
            .jobvault()
            .args(args)
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        eventually(&format!("the copy {copy}..."), PATIENCE, || {
            copies()
                .iter()
                .any(|name| name.starts_with(copy))
                .then_some(())
        });
        let output = signalled(child, signal);
        backed_up.proxy.set_delay(Duration::ZERO);
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?} {signal}: {said}");
        assert!(said.contains("interrupted"), "{said}");
        assert!(copies().is_empty(), "{args:?} {signal}: {:?}", copies());
    }
}

/// `verify` builds the snapshot's database in TMPDIR (decrypted, if it was
/// encrypted), and `backup` copies the database there (in the clear,
/// whatever it uploads): stopped by a signal, each removes its copy.
#[test]
fn sigterm_or_sigint_mid_verify_or_backup_leaves_nothing_in_tmpdir() {
    let backed_up = BackedUp::new(500, "prod");
    let url = backed_up.url.clone();
    signalled_mid_copy_leaves_nothing_in_tmpdir(
        &backed_up,
        &["verify", "--bucket", &url],
        ".jobvault-verify-",
    );
    let db = backed_up.workspace.db();
    signalled_mid_copy_leaves_nothing_in_tmpdir(
        &backed_up,
        &["backup", "--bucket", &url, "--db", db.to_str().unwrap()],
        ".jobvault-snapshot-",
    );
}

#[test]
fn sigterm_sigint_or_sighup_mid_restore_leaves_no_temporary_file() {
    let backed_up = BackedUp::new(500, "prod");
    for signal in ["-TERM", "-INT", "-HUP"] {
        let (folder, to) = restored_folder();
        let output = signalled(slow_restore(&backed_up, &to), signal);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{signal}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("interrupted"),
            "{}",
            stderr(&output)
        );
        assert!(!to.exists());
        assert!(
            leftovers(folder.path()).is_empty(),
            "{signal}: {:?}",
            leftovers(folder.path())
        );
    }
}

#[test]
fn a_truncated_or_empty_newest_snapshot_is_passed_over_loudly_and_verify_fails_on_it() {
    let backed_up = BackedUp::new(3_000, "prod");
    let direct = format!("http://{}", backed_up.emulator.address());
    let reader = StoreReader::connect(&backed_up.url, Some(&direct));
    // The newest upload: the nightly one, or, when the trigger was served
    // before the destination check answered, the start's own.
    let good = reader
        .list("db-backup/")
        .into_iter()
        .max_by_key(|o| o.updated)
        .unwrap()
        .name
        .into_string();
    let whole = reader.get(&good);
    // A newer snapshot whose gzip stream ends half way, then a sound SQLite
    // file that is no job database, then an empty one (the store refuses
    // any range of it with a 416).
    let other = tempfile::tempdir().unwrap();
    let other_db = other.path().join("other.db");
    jobvault_tests::writers::sqlite3(&other_db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &fs::read(&other_db).unwrap()).unwrap();
    let foreign = gz.finish().unwrap();
    for (name, bytes) in [
        ("zz-truncated", &whole[..whole.len() / 2]),
        ("zz-foreign", &foreign[..]),
        ("zz-empty", &[][..]),
    ] {
        let folder = &good[..good.rfind('/').unwrap()];
        let bad = format!("{folder}/{name}.bdb");
        let framing = jobvault_core::object_name::Framing::for_object(&bad, jobvault::clock::now());
        jobvault_tests::runtime()
            .block_on(reader.store().put(&bad, bytes.to_vec(), &framing))
            .unwrap();

        let (_folder, to) = restored_folder();
        let output = backed_up.restore(&backed_up.url, &to, &[]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        assert_eq!(rows(&to), rows(&backed_up.workspace.db()));
        let warning = stderr(&output);
        assert!(
            warning.contains(&format!("{}/{bad}", backed_up.url)) && warning.contains("unusable"),
            "{warning}"
        );
        assert!(stdout(&output).contains(&good), "{}", stdout(&output));

        let output = backed_up
            .jobvault()
            .args(["verify", "--bucket", &backed_up.url])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        let failed = stdout(&output);
        assert!(
            failed
                .lines()
                .any(|l| l.starts_with("FAIL  ") && l.contains(&bad)),
            "{failed}"
        );
        assert!(
            stderr(&output).contains("checks failed"),
            "{}",
            stderr(&output)
        );
    }

    let output = backed_up
        .jobvault()
        .args(["snapshots", "--bucket", &backed_up.url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("time inside is unknown: the object is empty"),
        "{}",
        stderr(&output)
    );

    let output = backed_up
        .jobvault()
        .args(["status", "--bucket", &backed_up.url])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(said.contains("is empty (0 bytes)"), "{said}");
}

#[test]
fn snapshots_lists_every_snapshot_and_restore_takes_the_one_named() {
    let backed_up = BackedUp::in_bucket(200, "prod", true);
    let direct = format!("http://{}", backed_up.emulator.address());
    let reader = StoreReader::connect(&backed_up.url, Some(&direct));
    let nightly = reader
        .names("db-backup/")
        .into_iter()
        .find(|n| n.contains("/nightly"))
        .unwrap();
    // A second snapshot, and the first written again: its first generation
    // goes noncurrent.
    let output = jobvault(Some(&direct))
        .args(["backup", "--bucket", &backed_up.url, "--db"])
        .arg(backed_up.workspace.db())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let (_, database) = jobvault_tests::gunzip(&reader.get(&nightly));
    let rewritten_at = jobvault::clock::now();
    reader.put_snapshot(&nightly, rewritten_at, &database);

    let output = backed_up
        .jobvault()
        .args(["snapshots", "--json", "--bucket", &backed_up.url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let mut listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    // The daemon's first snapshot of its new destination, unless nightly's
    // (taken first) paid for it.
    let all = listed.len();
    listed.retain(|s| !s["name"].as_str().unwrap().contains("/new-destination-"));
    let summary: Vec<(String, bool)> = listed
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["live"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert_eq!(
        summary[0],
        (nightly.clone(), true),
        "the newest upload first"
    );
    assert_eq!(
        summary[2],
        (nightly.clone(), false),
        "the first generation, noncurrent"
    );
    assert!(summary[1].0.contains("task-scheduler-"), "{summary:?}");
    assert_eq!(
        listed[0]["time_inside"].as_str().unwrap(),
        Timestamp::from_unix_seconds(rewritten_at.unix_seconds()).rfc3339()
    );
    assert!(listed.iter().all(|s| s["generation"].as_i64().is_some()));
    let text = backed_up
        .jobvault()
        .args(["snapshots", "--bucket", &backed_up.url])
        .output()
        .unwrap();
    assert_eq!(stdout(&text).lines().count(), all + 1, "{}", stdout(&text));

    let named = summary[1].0.clone();
    let (_folder, to) = restored_folder();
    let location = format!("{}/{named}", backed_up.url);
    let output = backed_up.restore(&backed_up.url, &to, &["--snapshot", &location]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(&named), "{}", stdout(&output));
    assert_eq!(rows(&to), rows(&backed_up.workspace.db()));

    let (_folder, to) = restored_folder();
    let output = backed_up.restore(
        &backed_up.url,
        &to,
        &["--snapshot", "db-backup/2001/01/01/x.bdb"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no live snapshot db-backup/2001/01/01/x.bdb"),
        "{}",
        stderr(&output)
    );
    assert!(!to.exists());
}

#[test]
fn a_mistyped_directory_bucket_names_the_prefixes_near_it_that_hold_backups() {
    let workspace = Workspace::new();
    let (mut db, _) = JobDb::init(&workspace.db(), jobvault::clock::now()).unwrap();
    db.put(&[body("a", "a")]).unwrap();
    drop(db);
    let root = tempfile::tempdir().unwrap();
    let url = |path: &str| format!("file://{}/{path}", root.path().display());
    let output = jobvault(None)
        .args(["backup", "--bucket", &url("prod/eu"), "--db"])
        .arg(workspace.db())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let (_folder, to) = restored_folder();
    // A typo beside it, the folder above it, and a backup folder in it.
    for typed in ["prod/ue", "prod", "prod/eu/db-backup"] {
        let output = jobvault(None)
            .args(["restore", "--bucket", &url(typed), "--to"])
            .arg(&to)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(3),
            "{typed}: {}",
            stderr(&output)
        );
        let error = stderr(&output);
        assert!(
            error.contains(&format!("backups: {}", url("prod/eu"))),
            "{typed}: {error}"
        );
        assert!(!to.exists());
    }
}
