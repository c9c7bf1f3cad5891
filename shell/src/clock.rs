//! The wall clock. The core never reads it; the shell does, here only.

use jobvault_core::Timestamp;
use time::OffsetDateTime;

pub fn now() -> Timestamp {
    Timestamp::from_offset_date_time(OffsetDateTime::now_utc())
}

/// The wall clock's reading at the core's latest call, beside the monotonic
/// clock's: a wake-up the core asks for is timed from that call on the
/// monotonic clock. Timed from the wall clock when the loop came round, a
/// clock stepped back after the call put the next wake-up off by the whole
/// step, minutes in which nothing was read or renewed (the simulator).
#[derive(Debug, Clone, Copy)]
pub struct LastCall {
    wall: Timestamp,
    at: tokio::time::Instant,
}

impl LastCall {
    /// As of now, before the first call.
    pub fn starting() -> Self {
        LastCall {
            wall: now(),
            at: tokio::time::Instant::now(),
        }
    }

    /// The time to hand the core's next call: now.
    pub fn now(&mut self) -> Timestamp {
        *self = LastCall::starting();
        self.wall
    }

    /// When to wake for a time `due` the core asked for.
    pub fn wake_at(&self, due: Timestamp) -> tokio::time::Instant {
        self.at + due.duration_since(self.wall)
    }
}
