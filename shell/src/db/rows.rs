//! Rows as SQLite holds them, read as bytes, and as job versions.

use jobvault_core::envelope::check_body;
use jobvault_core::machine::{RowId, Unreadable};
use jobvault_core::{Envelope, JobId, Seq, Timestamp};
use jobvault_crypt::holds_secret_key;

use super::{DbError, JobDb};

/// A row as a job version (`body` `None`: a tombstone), or as the row no
/// job object can hold.
pub(super) fn decode(
    id: &[u8],
    seq: Seq,
    db_modified: i64,
    body: Option<&[u8]>,
) -> Result<Envelope, Unreadable> {
    let unreadable = |why: String| Unreadable {
        seq,
        id: RowId(id.to_vec()),
        why,
        deleted: body.is_none(),
    };
    let Ok(text) = std::str::from_utf8(id) else {
        return Err(unreadable("its id is not UTF-8 text".to_owned()));
    };
    // An id names the job's object: a key in it would be in the bucket's
    // listing, encrypted or not.
    if holds_secret_key(text) {
        return Err(unreadable(
            "its id looks like an age secret key, and would name an object".to_owned(),
        ));
    }
    let job = JobId::new(text).map_err(|e| unreadable(e.to_string()))?;
    let modified = Timestamp::from_unix_nanos(db_modified);
    match body.map(std::str::from_utf8) {
        None => Ok(Envelope::deleted(job, seq, modified)),
        // What the database's rules let through (SQLite's JSON reader stops
        // at a NUL byte) but a restore would refuse must not reach the
        // bucket: one such object failed every restore of its prefix.
        Some(Ok(body)) => match check_body(&job, body) {
            Ok(()) => Ok(Envelope::written(job, seq, modified, body)),
            Err(e) => Err(unreadable(format!("its body cannot be restored: {e}"))),
        },
        Some(Err(_)) => Err(unreadable("its body is not UTF-8 text".to_owned())),
    }
}

/// A row as stored. Text is read as bytes: SQLite does not check that text
/// is UTF-8, so a writer can store any bytes, and such a row must be named,
/// not fail the read of the whole feed.
pub(super) struct RawRow {
    id: Vec<u8>,
    seq: Seq,
    db_modified: i64,
    /// `None` for a tombstone.
    body: Option<Vec<u8>>,
}

pub(super) fn raw_row(row: &rusqlite::Row) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: text_bytes(row, 0)?.expect("ids are NOT NULL"),
        seq: row.get(1)?,
        db_modified: row.get(2)?,
        body: text_bytes(row, 3)?,
    })
}

/// The bytes of a text column, `None` for NULL, without checking UTF-8.
pub(super) fn text_bytes(row: &rusqlite::Row, column: usize) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(text_ref(row, column)?.map(<[u8]>::to_vec))
}

/// The bytes of a text column as SQLite holds them, `None` for NULL.
pub(super) fn text_ref<'r>(
    row: &'r rusqlite::Row,
    column: usize,
) -> rusqlite::Result<Option<&'r [u8]>> {
    let value = row.get_ref(column)?;
    value
        .as_bytes_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, value.data_type(), e.into()))
}

impl JobDb {
    /// A row read whole as a job version; one that is not is a corrupt row.
    pub(super) fn decode_row(&self, raw: RawRow) -> Result<Envelope, DbError> {
        let body = raw.body.as_deref();
        decode(&raw.id, raw.seq, raw.db_modified, body).map_err(|row| DbError::CorruptRow {
            path: self.path.clone(),
            id: row.id.to_string(),
            why: format!("{} (change {})", row.why, row.seq),
        })
    }
}
