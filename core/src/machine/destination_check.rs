//! Finding out, at start, whether the database's cursor belongs to the
//! destination ([`crate::destination`]).
//!
//! The driver reads the prefix's marker, creating it if there is none
//! ([`Command::CheckDestination`]); the machine compares it with the id the
//! database records ([`assess`]). A check that fails is made again after a
//! doubling wait. Until a check has answered, what the bucket holds is not
//! known to match the cursor, so the machine does not report itself caught
//! up.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{error, warn};

use super::io::{Command, Failure, FoundDestination};
use crate::destination::{Destination, DestinationId, assess};
use crate::timestamp::Timestamp;

const FIRST_WAIT: Duration = Duration::from_secs(1);
const LONGEST_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// To be made at the next step after this time, if any.
    Due(Option<Timestamp>),
    InFlight,
    Done,
}

#[derive(Debug)]
pub(crate) struct DestinationCheck {
    /// The destination the database records its cursor for.
    recorded: Option<DestinationId>,
    state: State,
    failures: u32,
}

impl DestinationCheck {
    pub fn new(recorded: Option<DestinationId>) -> Self {
        DestinationCheck {
            recorded,
            state: State::Due(None),
            failures: 0,
        }
    }

    /// A check that has answered, or a machine that was told the answer.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn is_quiet(&self) -> bool {
        self.state != State::InFlight
    }

    pub fn tick(&mut self, now: Timestamp, out: &mut VecDeque<Command>) {
        if let State::Due(not_before) = self.state
            && not_before.is_none_or(|at| now >= at)
        {
            self.state = State::InFlight;
            out.push_back(Command::CheckDestination);
        }
    }

    /// Whether a check was outstanding; the destination, once known.
    pub fn on_checked(
        &mut self,
        now: Timestamp,
        result: Result<FoundDestination, Failure>,
    ) -> Result<Option<Destination>, ()> {
        if self.state != State::InFlight {
            return Err(());
        }
        match result {
            Ok(found) => {
                self.state = State::Done;
                Ok(Some(assess(&found.marker, found.created, self.recorded)))
            }
            Err(failure) => {
                self.failures += 1;
                let wait = FIRST_WAIT
                    .saturating_mul(1 << (self.failures - 1).min(10))
                    .min(LONGEST_WAIT);
                self.state = State::Due(Some(now + wait));
                if self.failures == 1 {
                    error!(error = %failure, "cannot read the destination marker; retrying");
                } else {
                    warn!(error = %failure, retry_in = ?wait, "cannot read the destination marker yet");
                }
                Ok(None)
            }
        }
    }
}
