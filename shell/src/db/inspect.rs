//! Inspection: SQLite's checks, a job-by-job check, the newest change, and
//! a consistent copy for a snapshot.

use std::path::Path;
use std::time::{Duration, Instant};

use jobvault_core::envelope::check_body;
use jobvault_core::locked_copy::{LockedCopy, after_locked};
use jobvault_core::{Change, Timestamp};
use rusqlite::Connection;
use rusqlite::backup::StepResult;
use tokio_util::sync::CancellationToken;

use super::meta::WENT_BACK_AT;
use super::rows::raw_row;

use super::{DbError, InDb, JobDb, schema};

impl JobDb {
    /// Reads every job, one row at a time, without holding them, checking
    /// each body as a restore would; returns how many there are, or the first
    /// that does not hold its job.
    pub fn check_every_job(&self) -> Result<usize, DbError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, seq, db_modified, body FROM jobs")
            .in_db(&self.path)?;
        let mut rows = statement.query([]).in_db(&self.path)?;
        let mut count = 0;
        while let Some(row) = rows.next().in_db(&self.path)? {
            let raw = raw_row(row).in_db(&self.path)?;
            let envelope = self.decode_row(raw)?;
            if let Change::Written(body) = &envelope.change {
                check_body(&envelope.id, body).map_err(|e| DbError::CorruptRow {
                    path: self.path.clone(),
                    id: envelope.id.to_string(),
                    why: e.to_string(),
                })?;
            }
            count += 1;
        }
        Ok(count)
    }

    /// When the newest change the database holds (a row or, from schema 2
    /// on, a tombstone) was committed; `None` when it holds none.
    pub fn newest_change(&self) -> Result<Option<Timestamp>, DbError> {
        newest_change(&self.conn).in_db(&self.path)
    }

    /// Writes a consistent copy of the database to `dest` with SQLite's
    /// online backup API, in one step: one read transaction, so in WAL mode
    /// writers carry on while it runs. While another connection's lock keeps
    /// the step from starting, whether and when to try again is the core's
    /// ([`after_locked`]), told the time since the first try and whether
    /// `cancel` is cancelled (the snapshot's deadline passed: a step cannot
    /// be stopped, the waiting between steps can). A try may itself wait in
    /// SQLite's busy handler on the database; the copy's own connection
    /// does not wait.
    pub fn snapshot_to(&self, dest: &Path, cancel: &CancellationToken) -> Result<(), DbError> {
        let mut target = Connection::open(dest).in_db(&self.path)?;
        target.busy_timeout(Duration::ZERO).in_db(&self.path)?;
        let backup = rusqlite::backup::Backup::new(&self.conn, &mut target).in_db(&self.path)?;
        let started = Instant::now();
        while backup.step(-1).in_db(&self.path)? != StepResult::Done {
            let why = match after_locked(started.elapsed(), cancel.is_cancelled()) {
                LockedCopy::TryAgainAfter(wait) => {
                    std::thread::sleep(wait);
                    continue;
                }
                LockedCopy::GiveUp(why) => why,
            };
            let busy = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY);
            let error = rusqlite::Error::SqliteFailure(busy, Some(why.to_owned()));
            return Err(error).in_db(&self.path);
        }
        drop(backup);
        // The copy is a standalone file: no WAL beside it.
        target
            .pragma_update(None, "journal_mode", "delete")
            .in_db(&self.path)?;
        Ok(())
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite found. The
    /// file's soundness, not the rules: SQLite versions read some bodies
    /// differently (see [`JobDb::apply_versions`]), and
    /// [`JobDb::check_every_job`] checks bodies.
    pub fn integrity_check(&self) -> Result<Result<(), String>, DbError> {
        self.check("integrity_check")
    }

    /// `PRAGMA quick_check`: [`JobDb::integrity_check`] less the check that
    /// indexes match their tables, in time linear in the file's size.
    pub fn quick_check(&self) -> Result<Result<(), String>, DbError> {
        self.check("quick_check")
    }

    pub(super) fn check(&self, pragma: &str) -> Result<Result<(), String>, DbError> {
        self.set_rules_checked(false)?;
        let lines = self.check_lines(pragma);
        self.set_rules_checked(true)?;
        let lines = lines?;
        Ok(if lines == ["ok"] {
            Ok(())
        } else {
            Err(lines.join("; "))
        })
    }

    pub(super) fn check_lines(&self, pragma: &str) -> Result<Vec<String>, DbError> {
        let mut statement = self
            .conn
            .prepare(&format!("PRAGMA {pragma}"))
            .in_db(&self.path)?;
        statement
            .query_map([], |row| row.get::<_, String>(0))
            .in_db(&self.path)?
            .collect::<Result<Vec<_>, _>>()
            .in_db(&self.path)
    }

    /// Whether this connection checks the schema's CHECK constraints.
    pub(super) fn set_rules_checked(&self, checked: bool) -> Result<(), DbError> {
        self.conn
            .pragma_update(None, "ignore_check_constraints", !checked)
            .in_db(&self.path)
    }
}

/// The newest change of the rows and tombstones, or when the database went
/// back to an older copy if later: a snapshot of the copy stands for the
/// database from then on, not from its newest row, so a restore to an
/// instant before takes an older base and the versions the copy left
/// behind.
pub(super) fn newest_change(conn: &Connection) -> rusqlite::Result<Option<Timestamp>> {
    let sql = if schema::has_table(conn, "deleted_jobs")? {
        format!(
            "SELECT MAX(m) FROM (SELECT MAX(db_modified) AS m FROM jobs
                                 UNION ALL SELECT MAX(db_modified) FROM deleted_jobs
                                 UNION ALL SELECT value FROM meta WHERE key = '{WENT_BACK_AT}')"
        )
    } else {
        "SELECT MAX(db_modified) FROM jobs".to_owned()
    };
    let nanos: Option<i64> = conn.query_row(&sql, [], |row| row.get(0))?;
    Ok(nanos.map(Timestamp::from_unix_nanos))
}
