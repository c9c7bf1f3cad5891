//! What each of the shell's errors means to the core.
//!
//! The core acts on a [`FailureKind`]: it cannot tell a missing bucket from a
//! refused permission by reading a message. Every error a command can end in
//! is mapped here, once, with its whole chain of causes as the message.

use jobvault_core::{Failure, FailureKind};
use rusqlite::ErrorCode;

use crate::db::DbError;
use crate::drive::DriveError;
use crate::prune::PruneError;
use crate::snapshot::SnapshotError;
use crate::store::{StoreError, error_chain, io_kind};
use crate::triggers::TriggerError;

/// An error the core can be told about.
pub trait ToFailure: std::error::Error + Sized {
    fn kind(&self) -> FailureKind;

    fn to_failure(&self) -> Failure {
        Failure::new(self.kind(), error_chain(self))
    }
}

impl ToFailure for StoreError {
    fn kind(&self) -> FailureKind {
        self.kind
    }
}

impl ToFailure for DbError {
    fn kind(&self) -> FailureKind {
        match self {
            DbError::Missing { .. } => FailureKind::NotFound,
            DbError::CorruptRow { .. } => FailureKind::Corrupt,
            DbError::CursorChanged { .. } => FailureKind::Conflict,
            DbError::Refused { .. }
            | DbError::UpgradeRefused { .. }
            | DbError::NewerSchema { .. }
            | DbError::ForeignJobs { .. }
            | DbError::SecondName { .. } => FailureKind::Rejected,
            DbError::Sqlite { source, .. } => sqlite_kind(source),
            DbError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                FailureKind::NotFound
            }
            DbError::Io { .. } => FailureKind::Transient,
        }
    }
}

impl ToFailure for TriggerError {
    fn kind(&self) -> FailureKind {
        match self {
            TriggerError::Io { source, .. } => io_kind(source),
            TriggerError::BadName(_) | TriggerError::Hidden(_) => FailureKind::Rejected,
        }
    }
}

impl ToFailure for SnapshotError {
    fn kind(&self) -> FailureKind {
        match self {
            SnapshotError::Db(e) => e.kind(),
            SnapshotError::Io { source, .. } => io_kind(source),
            SnapshotError::Store(e) => e.kind,
            SnapshotError::Task(_) => FailureKind::Internal,
            SnapshotError::NoRoom { .. } => FailureKind::Transient,
            SnapshotError::Copy { source, .. } => source.kind(),
        }
    }
}

impl ToFailure for DriveError {
    fn kind(&self) -> FailureKind {
        match self {
            DriveError::Store(e) => e.kind,
            DriveError::Corrupt { .. } => FailureKind::Corrupt,
            DriveError::NotRestorable { .. } => FailureKind::Rejected,
            DriveError::NoKey { .. } => FailureKind::Permission,
            DriveError::Planner(_)
            | DriveError::Stalled
            | DriveError::NowhereToPut { .. }
            | DriveError::Download(_)
            | DriveError::CheckTask(_)
            | DriveError::CheckHere { .. }
            | DriveError::NoRoom { .. } => FailureKind::Internal,
        }
    }
}

impl ToFailure for PruneError {
    fn kind(&self) -> FailureKind {
        match self {
            PruneError::Store(e) => e.kind,
            PruneError::Drive(e) => e.kind(),
            PruneError::Plan(_) => FailureKind::Internal,
        }
    }
}

fn sqlite_kind(error: &rusqlite::Error) -> FailureKind {
    let Some(code) = error.sqlite_error_code() else {
        // A value that cannot be read as what it should be will not read
        // better later.
        return match error {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => FailureKind::Corrupt,
            _ => FailureKind::Transient,
        };
    };
    match code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => FailureKind::Transient,
        ErrorCode::PermissionDenied
        | ErrorCode::ReadOnly
        | ErrorCode::AuthorizationForStatementDenied => FailureKind::Permission,
        ErrorCode::CannotOpen => FailureKind::NotFound,
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => FailureKind::Corrupt,
        ErrorCode::ConstraintViolation => FailureKind::Conflict,
        _ => FailureKind::Transient,
    }
}
