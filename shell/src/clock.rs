//! The wall clock. The core never reads it; the shell does, here only.

use jobvault_core::Timestamp;
use time::OffsetDateTime;

pub fn now() -> Timestamp {
    Timestamp::from_offset_date_time(OffsetDateTime::now_utc())
}
