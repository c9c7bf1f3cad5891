//! Finding out, at start, whether the database's cursor belongs to the
//! destination ([`crate::destination`]).
//!
//! The driver reads the prefix's marker and makes it this database's
//! ([`Command::CheckDestination`]): unless it names the id the database
//! records, it writes one with a fresh id in its place. Two databases that
//! took turns on one prefix each adopted the other's marker: the second's
//! full snapshot became the newest, the first went on uploading its changes
//! as if the prefix held it, and a restore gave both databases' jobs mixed,
//! exit 0. With the marker replaced, the first finds it new again and takes
//! its own full snapshot. The machine compares what the driver found with
//! the id the database records ([`assess`]). A check that fails is made again after a
//! doubling wait. Until a check has answered, what the bucket holds is not
//! known to match the cursor, so the machine does not report itself caught
//! up. The check is made again at every snapshot listing (10 min): a wipe
//! that spared the lease took the marker with it, and the running daemon
//! would otherwise go on as if the prefix held everything.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{error, warn};

use super::io::{Command, Failure, FoundDestination};
use crate::destination::{Destination, DestinationId, NewBecause, assess};
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
    /// The destination the database records its cursor for at start.
    recorded: Option<DestinationId>,
    /// The one the machine works for since a check: the recorded one, or a
    /// new one the database records once its snapshot lands.
    expected: Option<DestinationId>,
    state: State,
    /// A check has answered.
    checked: bool,
    /// The check out was asked before [`Self::start_over`]: its answer is
    /// not taken.
    stale: bool,
    /// Since [`Self::start_over`], until a check says the destination is
    /// new: why.
    starting_over: Option<NewBecause>,
    failures: u32,
}

impl DestinationCheck {
    pub fn new(recorded: Option<DestinationId>) -> Self {
        DestinationCheck {
            recorded,
            expected: recorded,
            state: State::Due(None),
            checked: false,
            stale: false,
            starting_over: None,
            failures: 0,
        }
    }

    /// The destination the database records.
    pub fn recorded(&self) -> Option<DestinationId> {
        self.recorded
    }

    /// A check has answered.
    pub fn is_done(&self) -> bool {
        self.checked
    }

    /// Makes the check again at the next step, unless one is due or out.
    pub fn recheck(&mut self) {
        if self.state == State::Done {
            self.state = State::Due(None);
        }
    }

    /// The database no longer matches what the prefix holds (it went back
    /// to an older copy, or the prefix's backups were deleted): checked
    /// again as if it recorded no destination, so a fresh marker is
    /// written and a full snapshot owed.
    pub fn start_over(&mut self, because: NewBecause) {
        self.expected = None;
        self.checked = false;
        self.failures = 0;
        self.starting_over = Some(because);
        match self.state {
            State::InFlight => self.stale = true,
            State::Due(_) | State::Done => self.state = State::Due(None),
        }
    }

    /// Since [`Self::start_over`], until a check says the destination is
    /// new: the prefix already does not hold the database.
    pub fn is_starting_over(&self) -> bool {
        self.starting_over.is_some()
    }

    pub fn is_quiet(&self) -> bool {
        self.state != State::InFlight
    }

    pub fn tick(&mut self, now: Timestamp, out: &mut VecDeque<Command>) {
        if let State::Due(not_before) = self.state
            && not_before.is_none_or(|at| now >= at)
        {
            self.state = State::InFlight;
            out.push_back(Command::CheckDestination {
                keep: self.expected,
            });
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
        if std::mem::take(&mut self.stale) {
            self.state = State::Due(None);
            return Ok(None);
        }
        match result {
            Ok(found) => {
                self.state = State::Done;
                self.checked = true;
                let mut destination = assess(&found, self.expected);
                if let Destination::New { id, why } = &mut destination {
                    self.expected = Some(*id);
                    if let Some(because) = self.starting_over.take() {
                        *why = because;
                    }
                }
                Ok(Some(destination))
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
                    warn!(error = %failure, retry_in_seconds = wait.as_secs_f64(), "cannot read the destination marker yet");
                }
                Ok(None)
            }
        }
    }
}
