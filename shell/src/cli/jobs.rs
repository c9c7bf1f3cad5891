//! `jobvault jobs put|get|list`: the job database from the command line.

use std::io::{self, BufRead};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use jobvault::clock;
use jobvault::db::JobDb;
use jobvault_core::{Job, JobId};
use jobvault_crypt::holds_secret_key;

use super::{DbArg, print_bodies};

/// Read and write the job database.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Write jobs given as JSON lines on stdin, all of them or none. Each
    /// needs "id" and "name"; the line is stored as given, with any field
    /// jobvault does not know. Creates the database if it does not exist.
    Put {
        #[command(flatten)]
        db: DbArg,
    },
    /// Print one job's body as stored.
    Get {
        #[command(flatten)]
        db: DbArg,
        /// The job's id.
        id: String,
    },
    /// Print every job's body as JSON lines, sorted by id.
    List {
        #[command(flatten)]
        db: DbArg,
    },
}

pub fn jobs(command: JobsCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::Put { db } => {
            let jobs = parse_job_lines(io::stdin().lock())?;
            JobDb::init(&db.db, clock::now())?.0.put(&jobs)?;
        }
        JobsCommand::Get { db, id } => {
            let id = JobId::new(id)?;
            let Some(envelope) = JobDb::open(&db.db)?.get(&id)? else {
                bail!("job {id} is not in {}", db.db.display());
            };
            print_bodies([&envelope])?;
        }
        JobsCommand::List { db } => {
            print_bodies(&JobDb::open(&db.db)?.list()?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks JSON lines against the job model and returns each job's id and the
/// line as given. Blank lines are skipped; the first bad line fails the whole
/// batch, named by its line number.
fn parse_job_lines(input: impl BufRead) -> anyhow::Result<Vec<(JobId, String)>> {
    let mut jobs = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("cannot read stdin line {number}"))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let job = parse_job(line).with_context(|| format!("stdin line {number}"))?;
        if holds_secret_key(job.id.as_str()) {
            bail!(
                "stdin line {number}: its id looks like an age secret key (not repeated here); \
                 an id names the job's object in the bucket"
            );
        }
        jobs.push((job.id, line.to_owned()));
    }
    Ok(jobs)
}

fn parse_job(line: &str) -> anyhow::Result<Job> {
    // The job model would also take a JSON array, field by field.
    if !line.starts_with('{') {
        bail!("not a JSON object");
    }
    serde_json::from_str(line).map_err(without_position)
}

/// serde_json ends its messages with "at line 1 column N", which within one
/// JSON line only confuses.
fn without_position(error: serde_json::Error) -> anyhow::Error {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    anyhow::anyhow!(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_each_line_as_given_and_skips_blank_lines() {
        let first = r#"{"id":"a", "name":"A", "owner":"team-x"}"#;
        let second = r#"{"name":"B","id":"b","priority":1e0}"#;
        let input = format!("{first}\n\n  {second}\n");
        let jobs = parse_job_lines(input.as_bytes()).unwrap();
        let lines: Vec<(&str, &str)> = jobs
            .iter()
            .map(|(id, l)| (id.as_str(), l.as_str()))
            .collect();
        assert_eq!(lines, [("a", first), ("b", second)]);
    }

    #[test]
    fn an_id_that_is_a_secret_key_is_refused_unrepeated() {
        let key = format!("AGE-SECRET-KEY-1{}", "Q".repeat(58));
        let input = format!("{{\"id\":\"{key}\",\"name\":\"A\"}}\n");
        let error = format!("{:#}", parse_job_lines(input.as_bytes()).unwrap_err());
        assert!(error.contains("looks like an age secret key"), "{error}");
        assert!(!error.contains("QQQQ"), "{error}");
    }

    #[test]
    fn a_bad_line_fails_the_batch_and_is_named() {
        for (input, why) in [
            (
                "{\"id\":\"a\",\"name\":\"A\"}\n{\"id\":\"b\"}\n",
                "stdin line 2: missing field `name`",
            ),
            ("[1]\n", "stdin line 1: not a JSON object"),
            (
                "{\"id\":\"a/b\",\"name\":\"A\"}\n",
                "stdin line 1: job id \"a/b\" contains '/'",
            ),
            (
                "{\"id\":\"a\",\"name\":\"A\",\"status\":\"done\"}\n",
                "stdin line 1: unknown variant `done`",
            ),
            ("{\"id\":", "stdin line 1: EOF while parsing"),
        ] {
            let err = format!("{:#}", parse_job_lines(input.as_bytes()).unwrap_err());
            assert!(err.starts_with(why), "{input:?}: {err}");
            assert!(!err.contains("column"), "{err}");
        }
    }
}
