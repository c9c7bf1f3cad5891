//! Putting a plan's job versions on top of its snapshot: the step a restore
//! ends with. The shell writes them into SQLite, the simulator into its copy
//! of the database; both call [`apply_versions`], so the simulator's check
//! of "a restore equals the database" judges the step that ships, not a
//! mirror of it.

use super::supersedes;
use crate::Seq;
use crate::envelope::Envelope;
use crate::job_id::JobId;

/// The database a restore builds.
pub trait RestoreTarget {
    type Error;
    /// The change counter of what it was built from (0 for nothing): every
    /// change numbered up to it is in it, or was replaced or deleted there.
    fn counter(&mut self) -> Result<Seq, Self::Error>;
    /// The sequence of what it holds for `id`, a row or a tombstone.
    fn held(&mut self, id: &JobId) -> Result<Option<Seq>, Self::Error>;
    /// Writes `version` as it was backed up, with its own sequence, in
    /// place of the job's row or tombstone.
    fn write(&mut self, version: &Envelope) -> Result<(), Self::Error>;
}

/// Writes each of `versions` that supersedes what `target` holds of its
/// job, in order; returns how many were written.
///
/// A version numbered at or below the base's counter is never newer than
/// the base, even for a job the base lacks: the base was copied after that
/// change, so it holds it, or what replaced it, or the job was deleted
/// since (a tombstone need not be kept). A database that went back to an
/// older copy under a running daemon has its counter raised past what it
/// had uploaded before its next snapshot, and the versions it abandoned
/// are left out this way; before, a restore within the clock allowance of
/// that snapshot gave them back over the copy.
pub fn apply_versions<T: RestoreTarget>(
    target: &mut T,
    versions: &[Envelope],
) -> Result<usize, T::Error> {
    let counter = target.counter()?;
    let mut written = 0;
    for version in versions {
        if version.seq > counter && supersedes(version.seq, target.held(&version.id)?) {
            target.write(version)?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    use super::*;
    use crate::timestamp::Timestamp;

    #[derive(Default)]
    struct Rows(BTreeMap<JobId, Envelope>, Seq);

    impl RestoreTarget for Rows {
        type Error = Infallible;
        fn counter(&mut self) -> Result<Seq, Infallible> {
            Ok(self.1)
        }
        fn held(&mut self, id: &JobId) -> Result<Option<Seq>, Infallible> {
            Ok(self.0.get(id).map(|e| e.seq))
        }
        fn write(&mut self, version: &Envelope) -> Result<(), Infallible> {
            self.0.insert(version.id.clone(), version.clone());
            Ok(())
        }
    }

    fn version(id: &str, seq: Seq) -> Envelope {
        Envelope::written(JobId::new(id).unwrap(), seq, Timestamp::UNIX_EPOCH, "{}")
    }

    #[test]
    fn only_a_newer_version_replaces_what_the_database_holds() {
        let mut rows = Rows::default();
        rows.write(&Envelope::deleted(
            JobId::new("b").unwrap(),
            7,
            Timestamp::UNIX_EPOCH,
        ))
        .unwrap();
        let versions = [
            version("a", 3),
            version("a", 2),
            version("b", 5),
            version("b", 8),
        ];
        assert_eq!(apply_versions(&mut rows, &versions), Ok(2));
        assert_eq!(
            rows.0[&JobId::new("a").unwrap()].seq,
            3,
            "2 is older than 3"
        );
        assert_eq!(
            rows.0[&JobId::new("b").unwrap()].seq,
            8,
            "5 is older than the tombstone"
        );
    }

    #[test]
    fn a_version_the_base_counter_covers_is_never_applied() {
        let mut rows = Rows(BTreeMap::new(), 10);
        rows.write(&version("a", 4)).unwrap();
        let versions = [version("a", 9), version("b", 10), version("c", 11)];
        assert_eq!(apply_versions(&mut rows, &versions), Ok(1));
        assert_eq!(rows.0[&JobId::new("a").unwrap()].seq, 4, "9 is covered");
        assert!(
            !rows.0.contains_key(&JobId::new("b").unwrap()),
            "10 is covered: the base lacks the job because it was deleted"
        );
        assert_eq!(rows.0[&JobId::new("c").unwrap()].seq, 11);
    }
}
