//! Whether a snapshot written in the clear sits beside encrypted ones.
//!
//! A daemon or `backup` started without its `--encrypt-to` (a unit file or
//! an environment that lost it) writes every change readable to a prefix
//! meant to be encrypted. The first alarm looked at the newest snapshot
//! only: once the plain writer's own snapshot was the newest, a restart
//! cleared it, and `backup`, `check` and `status` said nothing at all. Here
//! any encrypted snapshot of the last [`SEALED_LOOKBACK`] counts, so the
//! alarm holds until the encrypted ones are that old. Litestream's users
//! called a silently ignored encryption setting a critical security issue.

use std::time::Duration;

use crate::machine::ListedObject;
use crate::object_name::{ObjectKind, parse_object_name};

/// How far back writers and `status` look for encrypted snapshots, as far
/// as the daemon's first listing reaches. Turning encryption off on purpose
/// raises the alarm until the last encrypted snapshot is this old, or is
/// pruned; a new prefix starts without it.
pub const SEALED_LOOKBACK: Duration = Duration::from_secs(7 * 86_400);

/// The newest encrypted snapshot in `listed`, if a writer that does not
/// encrypt (`encrypts` false) is about to write in the clear beside it.
pub fn plain_writer_beside(encrypts: bool, listed: &[ListedObject]) -> Option<&ListedObject> {
    if encrypts {
        return None;
    }
    newest(listed, |object| object.sealed)
}

/// The newest encrypted snapshot in `listed`, if the newest snapshot of all
/// is in the clear: what `status` warns about.
pub fn plain_after_sealed(listed: &[ListedObject]) -> Option<&ListedObject> {
    let newest_is_plain = newest(listed, |_| true).is_some_and(|object| !object.sealed);
    newest_is_plain
        .then(|| newest(listed, |object| object.sealed))
        .flatten()
}

fn newest(listed: &[ListedObject], keep: impl Fn(&ListedObject) -> bool) -> Option<&ListedObject> {
    listed
        .iter()
        .filter(|object| {
            parse_object_name(&object.name).is_ok_and(|p| p.kind == ObjectKind::Snapshot)
        })
        .filter(|object| keep(object))
        .max_by_key(|object| (object.updated, &object.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_name::ObjectName;
    use crate::timestamp::Timestamp;

    fn snapshot(name: &str, hour: i64, sealed: bool) -> ListedObject {
        ListedObject {
            name: ObjectName::listed(name),
            updated: Timestamp::from_unix_nanos(hour * 3_600_000_000_000),
            size: 1,
            generation: None,
            sealed,
        }
    }

    #[test]
    fn status_warns_only_when_the_newest_snapshot_is_plain_beside_an_encrypted_one() {
        let sealed = snapshot("db-backup/1970/01/01/a.bdb", 1, true);
        let plain = snapshot("db-backup/1970/01/01/b.bdb", 2, false);
        // A job object is not a snapshot, whatever it is.
        let job = snapshot("job-backup/1970/01/01/j.job", 3, false);
        let listed = [sealed.clone(), plain.clone(), job];
        assert_eq!(plain_after_sealed(&listed), Some(&sealed));
        let newest_sealed = snapshot("db-backup/1970/01/01/c.bdb", 3, true);
        assert_eq!(plain_after_sealed(&[plain.clone(), newest_sealed]), None);
        assert_eq!(plain_after_sealed(std::slice::from_ref(&plain)), None);
        assert_eq!(plain_after_sealed(&[]), None);
        assert_eq!(
            plain_writer_beside(false, &[sealed.clone(), plain.clone()]),
            Some(&sealed)
        );
        assert_eq!(plain_writer_beside(true, &[sealed, plain.clone()]), None);
        assert_eq!(plain_writer_beside(false, &[plain]), None);
    }
}
