//! Writers outside jobvault, as a service in another language writes: the
//! `sqlite3` CLI, Python's `sqlite3` module and Go's `database/sql`, each run
//! as its own process on the job database. The README's writer examples are
//! read from the README itself, so what the README shows is what is tested.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use std::time::Duration;

use jobvault::db::JobDb;

use crate::{jobvault, run_with_stdin, stderr, stdout};

/// The README's writer example in `language` (`sql`, `python` or `go`): the
/// code block after `<!-- writer-example: LANGUAGE -->`.
pub fn readme_example(language: &str) -> String {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README is readable");
    let marker = format!("<!-- writer-example: {language} -->\n```{language}\n");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("the README has no {language} writer example"))
        + marker.len();
    let end = start + readme[start..].find("```").expect("the code block ends");
    readme[start..end].to_owned()
}

/// Runs `sql` with the `sqlite3` CLI on `db`, failing the test if it fails.
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let output = sqlite3_output(db, sql);
    assert!(output.status.success(), "sqlite3: {}", stderr(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `sql` with the `sqlite3` CLI on `db`, whatever comes of it.
pub fn sqlite3_output(db: &Path, sql: &str) -> Output {
    let mut command = Command::new("sqlite3");
    command.args(["-bail", "-cmd", ".timeout 10000"]).arg(db);
    run_with_stdin(command, sql)
}

/// Runs a Python script with the database's path as its one argument.
pub fn python(db: &Path, script: &str) -> Output {
    Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .output()
        .expect("python3 runs")
}

/// Runs a Go program with the database's path as its one argument, or
/// returns `None`, after one line on stderr saying `test` skips it, when Go
/// or its SQLite driver is not installed (`scripts/test` installs both).
pub fn go(test: &str, db: &Path, program: &str) -> Option<Output> {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("writer.go");
    fs::write(&source, program).unwrap();
    let gopath = std::env::var("GOPATH").unwrap_or_else(|_| "/usr/share/gocode".to_owned());
    let driver = Path::new(&gopath).join("src/github.com/mattn/go-sqlite3");
    let go = Command::new("go").arg("version").output();
    if go.is_err() || !driver.is_dir() {
        eprintln!(
            "{test}: Go part skipped: go or github.com/mattn/go-sqlite3 (under {gopath}) is not installed"
        );
        return None;
    }
    let output = Command::new("go")
        .arg("run")
        .arg(&source)
        .arg(db)
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .output()
        .expect("go runs");
    Some(output)
}

/// Every job as a reader outside jobvault sees it: `(id, body)` sorted by
/// id, read by Python's `sqlite3`.
pub fn rows(db: &Path) -> Vec<(String, String)> {
    let output = python(
        db,
        "import json, sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         print(json.dumps(db.execute('SELECT id, body FROM jobs ORDER BY id').fetchall()))",
    );
    assert!(output.status.success(), "python: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("python printed JSON")
}

/// `jobvault init --db DB`: its output.
pub fn init(db: &Path) -> String {
    let output = jobvault(None)
        .args(["init", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(output.status.success(), "init: {}", stderr(&output));
    stdout(&output)
}

/// Waits until the daemon's cursor covers every change in the database.
pub fn caught_up(db: &Path) {
    crate::eventually(
        "every change in the bucket",
        Duration::from_secs(60),
        || {
            let db = JobDb::open(db).unwrap();
            (db.cursor().unwrap().seq >= db.newest_seq().unwrap()).then_some(())
        },
    );
}
