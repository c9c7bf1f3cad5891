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
    /// The sequence of what it holds for `id`, a row or a tombstone.
    fn held(&mut self, id: &JobId) -> Result<Option<Seq>, Self::Error>;
    /// Writes `version` as it was backed up, with its own sequence, in
    /// place of the job's row or tombstone.
    fn write(&mut self, version: &Envelope) -> Result<(), Self::Error>;
}

/// Writes each of `versions` that supersedes what `target` holds of its
/// job, in order; returns how many were written.
pub fn apply_versions<T: RestoreTarget>(
    target: &mut T,
    versions: &[Envelope],
) -> Result<usize, T::Error> {
    let mut written = 0;
    for version in versions {
        if supersedes(version.seq, target.held(&version.id)?) {
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
    struct Rows(BTreeMap<JobId, Envelope>);

    impl RestoreTarget for Rows {
        type Error = Infallible;
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
}
