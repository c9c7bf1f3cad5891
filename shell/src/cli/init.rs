//! `jobvault init`: the job database's schema, created or upgraded.

use std::process::ExitCode;

use clap::Args;
use jobvault::clock;
use jobvault::db::JobDb;

use super::DbArg;

/// Create the job database's schema, or upgrade one made by an earlier
/// jobvault in place, in one transaction, keeping every job and the cursor.
/// Running it again changes nothing.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    db: DbArg,
}

pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let (db, change) = JobDb::init(&args.db.db, clock::now())?;
    let path = db.path().display();
    match change.from {
        0 => println!(
            "{path}: created the job database (schema version {})",
            change.to
        ),
        from if change.changed() => {
            println!(
                "{path}: upgraded the schema from version {from} to {}",
                change.to
            )
        }
        _ => println!(
            "{path}: schema version {} is current; nothing to do",
            change.to
        ),
    }
    Ok(ExitCode::SUCCESS)
}
