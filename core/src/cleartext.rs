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

/// The newest snapshot in `listed` written in the clear after an encrypted
/// one, with the oldest encrypted one: what `status` and `check` warn
/// about while it is in the listing, though encrypted ones came after it
/// (it stays readable in the bucket until pruned). Plain snapshots from
/// before the first encrypted one are how a bucket turns encryption on.
pub fn plain_after_sealed(listed: &[ListedObject]) -> Option<(&ListedObject, &ListedObject)> {
    let first_sealed = snapshots(listed)
        .filter(|object| object.sealed)
        .min_by_key(|object| (object.updated, &object.name))?;
    let plain = snapshots(listed)
        .filter(|object| !object.sealed && object.updated > first_sealed.updated)
        .max_by_key(|object| (object.updated, &object.name))?;
    Some((plain, first_sealed))
}

fn newest(listed: &[ListedObject], keep: impl Fn(&ListedObject) -> bool) -> Option<&ListedObject> {
    snapshots(listed)
        .filter(|object| keep(object))
        .max_by_key(|object| (object.updated, &object.name))
}

fn snapshots(listed: &[ListedObject]) -> impl Iterator<Item = &ListedObject> {
    listed.iter().filter(|object| {
        parse_object_name(&object.name).is_ok_and(|p| p.kind == ObjectKind::Snapshot)
    })
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
    fn status_warns_of_a_plain_snapshot_written_after_an_encrypted_one() {
        let before = snapshot("db-backup/1970/01/01/0.bdb", 0, false);
        let sealed = snapshot("db-backup/1970/01/01/a.bdb", 1, true);
        let plain = snapshot("db-backup/1970/01/01/b.bdb", 2, false);
        // A job object is not a snapshot, whatever it is.
        let job = snapshot("job-backup/1970/01/01/j.job", 3, false);
        let listed = [before.clone(), sealed.clone(), plain.clone(), job];
        assert_eq!(plain_after_sealed(&listed), Some((&plain, &sealed)));
        let newest_sealed = snapshot("db-backup/1970/01/01/c.bdb", 3, true);
        let again = [sealed.clone(), plain.clone(), newest_sealed.clone()];
        assert_eq!(
            plain_after_sealed(&again),
            Some((&plain, &sealed)),
            "encrypted again since, the plain one is still there"
        );
        assert_eq!(
            plain_after_sealed(&[before.clone(), newest_sealed]),
            None,
            "plain before encryption was turned on"
        );
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
