//! Rows the daemon cannot back up, set aside so they never stall the rest.
//!
//! SQLite does not check that text is UTF-8, so a writer can store a row no
//! job object can hold: an id or body that is not UTF-8, an id no object name
//! can carry, a body over [`crate::envelope::MAX_BODY_BYTES`]. The
//! database's rules refuse most of these at the writer's commit, but not a
//! row written before the rules, by a writer that dropped them, or in a gap
//! SQL cannot check. The first release failed the whole read of the change
//! feed on such a row: the cursor stayed put, every later change waited, and
//! `pending_jobs` read 0 because nothing had been read.
//!
//! Now the driver hands such a row over as [`Unreadable`], the cursor passes
//! it, and the cursor's save records it in the database beside the cursor
//! (only if the row still holds that version), so the cursor's promise reads
//! "every version up to it is in the bucket, or recorded as set aside". The
//! writer's next change to the job clears the record, in the writer's own
//! transaction, and the metric reads the database's count, so it stays true
//! across restarts and mends.

use std::collections::BTreeMap;
use std::fmt;

use crate::Seq;
use crate::escape::escape_bytes;

/// A row's id as stored: any bytes, since SQLite does not check text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowId(pub Vec<u8>);

/// Escaped so a log line stays one line of plain text
/// ([`escape_bytes`]).
impl fmt::Display for RowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_bytes(&self.0))
    }
}

impl fmt::Debug for RowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A row of the change feed that no job object can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub seq: Seq,
    pub id: RowId,
    /// Which rule it breaks, in the driver's words.
    pub why: String,
    /// A tombstone: the job is gone from the database. The cursor passes it
    /// and nothing records it (a writer could never clear such a record:
    /// the id is refused at insert), but no job object can say it is gone
    /// either, and the snapshots taken while it lived hold it: the machine
    /// owes a snapshot ([`super::io::Owed::AfterDeletion`]). A restore
    /// brought such a job back after a stop that exited 0 (a hostile
    /// trial).
    pub deleted: bool,
}

/// The rows set aside: those to record with the next cursor save, and how
/// many the database records.
#[derive(Debug, Default)]
pub(super) struct SetAside {
    /// Passed by the cursor in memory, not yet recorded: by sequence.
    unsaved: BTreeMap<Seq, Unreadable>,
    /// How many the database recorded as of the last read or save.
    recorded: u64,
}

impl SetAside {
    /// Rows found by a read; the database recorded `recorded` when it ran.
    pub fn found(&mut self, rows: Vec<Unreadable>, recorded: u64) {
        self.recorded = recorded;
        self.unsaved
            .extend(rows.into_iter().map(|row| (row.seq, row)));
    }

    /// The rows a cursor save up to `seq` records.
    pub fn to_record(&self, seq: Seq) -> Vec<Unreadable> {
        self.unsaved
            .range(..=seq)
            .map(|(_, row)| row.clone())
            .collect()
    }

    /// A save up to `seq` landed; the database then recorded `recorded`
    /// (a row a writer changed before the save is not recorded).
    pub fn saved(&mut self, seq: Seq, recorded: u64) {
        self.unsaved = self.unsaved.split_off(&(seq + 1));
        self.recorded = recorded;
    }

    /// The feed is read again from the database's cursor: what was found
    /// past it is found again.
    pub fn forget_unsaved(&mut self) {
        self.unsaved.clear();
    }

    pub fn count(&self) -> u64 {
        self.recorded + self.unsaved.len() as u64
    }
}

/// The one line a batch's unreadable rows are named in.
pub(super) struct Named<'a>(pub &'a [Unreadable]);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        for (i, row) in self.0.iter().take(SHOWN).enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}job {:?} change {}: {}", row.id, row.seq, row.why)?;
        }
        if self.0.len() > SHOWN {
            write!(f, "; and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_prints_on_one_line_whatever_its_bytes() {
        let id = RowId(b"caf\xe9\nINFO forged \x1b[31m".to_vec());
        assert_eq!(id.to_string(), r"caf\xe9\nINFO forged \u{1b}[31m");
    }

    #[test]
    fn a_save_records_only_what_it_covers() {
        let row = |seq| Unreadable {
            seq,
            id: RowId(b"x".to_vec()),
            why: "bad".to_owned(),
            deleted: false,
        };
        let mut set_aside = SetAside::default();
        set_aside.found(vec![row(3), row(7)], 2);
        assert_eq!(set_aside.to_record(5), vec![row(3)]);
        set_aside.saved(5, 3);
        assert_eq!(set_aside.count(), 4);
        assert_eq!(set_aside.to_record(9), vec![row(7)]);
        set_aside.forget_unsaved();
        assert_eq!(set_aside.count(), 3);
    }
}
