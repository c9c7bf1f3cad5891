//! `jobvault jobs put|get|list`: the job database from the command line.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use jobvault::clock;
use jobvault::db::JobDb;
use jobvault_core::{Job, JobId, Timestamp};

use super::DbArg;

/// Read and write the job database.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Write jobs given as JSON lines on stdin, all of them or none. Each
    /// needs "id" and "name"; other fields default ("created" to now).
    /// Creates the database if it does not exist.
    Put {
        #[command(flatten)]
        db: DbArg,
    },
    /// Print one job as JSON.
    Get {
        #[command(flatten)]
        db: DbArg,
        /// The job's id.
        id: String,
    },
    /// Print every job as JSON lines, sorted by id.
    List {
        #[command(flatten)]
        db: DbArg,
    },
}

pub fn jobs(command: JobsCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::Put { db } => {
            let now = clock::now();
            let jobs = parse_job_lines(io::stdin().lock(), now)?;
            JobDb::create(&db.db, now)?.put(jobs, now)?;
        }
        JobsCommand::Get { db, id } => {
            let id = JobId::new(id)?;
            let Some(envelope) = JobDb::open(&db.db)?.get(&id)? else {
                bail!("job {id} is not in {}", db.db.display());
            };
            print_jobs([&envelope.job])?;
        }
        JobsCommand::List { db } => {
            let envelopes = JobDb::open(&db.db)?.list()?;
            print_jobs(envelopes.iter().map(|e| &e.job))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses JSON lines into jobs. Blank lines are skipped; the first bad line
/// fails the whole batch, named by its line number.
fn parse_job_lines(input: impl BufRead, now: Timestamp) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("cannot read stdin line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let job = parse_job(&line, now).with_context(|| format!("stdin line {number}"))?;
        jobs.push(job);
    }
    Ok(jobs)
}

fn parse_job(line: &str, now: Timestamp) -> anyhow::Result<Job> {
    let mut value: serde_json::Value = serde_json::from_str(line).map_err(without_position)?;
    let Some(fields) = value.as_object_mut() else {
        bail!("not a JSON object");
    };
    fields
        .entry("created")
        .or_insert_with(|| serde_json::Value::String(now.rfc3339()));
    serde_json::from_value(value).map_err(without_position)
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

fn print_jobs<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for job in jobs {
        serde_json::to_writer(&mut out, job)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000)
    }

    #[test]
    fn defaults_created_to_now_and_skips_blank_lines() {
        let input = "{\"id\":\"a\",\"name\":\"A\"}\n\n{\"id\":\"b\",\"name\":\"B\",\"created\":\"2016-11-16T22:04:25Z\"}\n";
        let jobs = parse_job_lines(input.as_bytes(), now()).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].created, now());
        assert_eq!(jobs[1].created.rfc3339(), "2016-11-16T22:04:25Z");
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
            let err = format!(
                "{:#}",
                parse_job_lines(input.as_bytes(), now()).unwrap_err()
            );
            assert!(err.starts_with(why), "{input:?}: {err}");
            assert!(!err.contains("column"), "{err}");
        }
    }
}
