//! The command line. Each subcommand lives in a module of its own; this one
//! holds what they share.

mod backup;
mod check;
mod demo;
mod duration;
mod generate;
mod init;
mod jobs;
mod keygen;
mod prune;
mod report;
mod restore;
mod retrieve;
mod run;
mod snapshots;
pub(crate) mod status;
mod trigger;
mod verify;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::PathBufValueParser;
use clap::{Args, Parser, Subcommand};
use jobvault::logging::{Said, say};
use jobvault::nothing::{NOTHING_FOUND_EXIT, check_store};
use jobvault::reads::Reads;
use jobvault::store::BucketUrl;
use jobvault::store::Store;
use jobvault_core::Envelope;
use jobvault_core::restore_plan::OnCorrupt;
use jobvault_crypt::{Keyring, Recipients, Sealer, holds_secret_key};

/// Keeps a job database safe in Google Cloud Storage: scheduled snapshots,
/// every job change in the bucket within seconds, one-command restore.
#[derive(Debug, Parser)]
#[command(name = "jobvault", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How logs are written to stderr: text for people, json (one object a
    /// line, with "severity", "message" and "time") for Cloud Logging.
    #[arg(
        long,
        global = true,
        value_enum,
        ignore_case = true,
        default_value = "text",
        env = "JOBVAULT_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

/// `--log-format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::InitArgs),
    Run(run::RunArgs),
    Backup(backup::BackupArgs),
    Trigger(trigger::TriggerArgs),
    #[command(after_help = EXIT_CODES)]
    Retrieve(retrieve::RetrieveArgs),
    #[command(after_help = EXIT_CODES)]
    Restore(restore::RestoreArgs),
    #[command(after_help = EXIT_CODES)]
    Snapshots(snapshots::SnapshotsArgs),
    Prune(prune::PruneArgs),
    Status(status::StatusArgs),
    #[command(after_help = EXIT_CODES)]
    Verify(verify::VerifyArgs),
    Check(check::CheckArgs),
    Keygen(keygen::KeygenArgs),
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    Demo(demo::DemoArgs),
    Completions(generate::CompletionsArgs),
    Man(generate::ManArgs),
}

impl Command {
    /// The log level when `RUST_LOG` is not set: the daemon tells what it
    /// does; one-shot commands stay quiet unless something is wrong. The
    /// platform's certificate verifier logs an error line of its own at
    /// every handshake it fails; the store's error says the same once.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Run(_) => "info,rustls_platform_verifier=off",
            // The core logs a failed snapshot for the daemon's log; here the
            // error line says it once.
            Command::Backup(_) => "warn,jobvault_core=off,rustls_platform_verifier=off",
            _ => "warn,rustls_platform_verifier=off",
        }
    }

    /// Whether the command writes to a Unix socket (the daemon's control
    /// socket, served by `run`, asked by `backup`), where a peer gone must
    /// be an error, not SIGPIPE.
    pub fn writes_to_unix_sockets(&self) -> bool {
        matches!(self, Command::Run(_) | Command::Backup(_))
    }

    /// The async runtime the command runs on. The daemon runs on one
    /// thread: it waits on the store and the database far more than it
    /// computes, its heavy work (SQLite, snapshot compression) runs on
    /// blocking threads anyway, and a multi-threaded scheduler spends more
    /// CPU waking and stealing between its workers than the daemon spends
    /// on each upload (0.53 ms of CPU per job upload multi-threaded, 0.31 ms
    /// on one thread, for 10,000 uploads to the emulator). One-shot commands
    /// decode what
    /// they download while more arrives, on every core.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self {
            Command::Run(_) => tokio::runtime::Builder::new_current_thread(),
            _ => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build()
    }

    pub async fn execute(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Init(args) => init::init(args),
            Command::Run(args) => run::run(args).await,
            Command::Backup(args) => backup::backup(args).await,
            Command::Trigger(args) => trigger::trigger(args),
            Command::Retrieve(args) => retrieve::retrieve(args).await,
            Command::Restore(args) => restore::restore(args).await,
            Command::Snapshots(args) => snapshots::snapshots(args).await,
            Command::Prune(args) => prune::prune(args).await,
            Command::Status(args) => status::status(args).await,
            Command::Verify(args) => verify::verify(args).await,
            Command::Check(args) => check::check(args).await,
            Command::Keygen(args) => keygen::keygen(args),
            Command::Jobs(command) => jobs::jobs(command),
            Command::Demo(args) => demo::demo(args).await,
            Command::Completions(args) => generate::completions(args),
            Command::Man(args) => generate::man(args),
        }
    }
}

/// `--db PATH`
#[derive(Debug, Clone, Args)]
pub struct DbArg {
    /// The job database (SQLite).
    #[arg(long, value_name = "PATH", env = "JOBVAULT_DB", value_parser = NoKeys(PathBufValueParser::new()))]
    pub db: PathBuf,
}

/// `--bucket URL`
#[derive(Debug, Clone, Args)]
pub struct BucketArg {
    /// Where backups live: gs://bucket[/prefix], or file:///dir for a local directory.
    #[arg(long, value_name = "URL", env = "JOBVAULT_BUCKET", value_parser = NoKeys(|url: &str| url.parse::<BucketUrl>()))]
    pub bucket: BucketUrl,
}

/// `--encrypt-to RECIPIENT` and `--encrypt-to-file FILE`, for commands
/// that write job objects or snapshots.
#[derive(Debug, Clone, Args)]
pub struct EncryptArgs {
    /// Encrypt every job object and snapshot written to this age X25519
    /// recipient (age1…, as `jobvault keygen` or `age-keygen` prints it);
    /// repeatable (in the environment, separated by commas), and any one
    /// recipient's identity reads the backups. The lease and markers stay
    /// in the clear; object names, sizes and times stay visible.
    #[arg(
        long,
        value_name = "RECIPIENT",
        env = "JOBVAULT_ENCRYPT_TO",
        value_delimiter = ',',
        value_parser = RecipientParser
    )]
    encrypt_to: Vec<String>,
    /// Encrypt to the recipients in this file as well: one age1… a line,
    /// `#` comments (the file `age -R` reads).
    #[arg(long, value_name = "FILE", env = "JOBVAULT_ENCRYPT_TO_FILE")]
    encrypt_to_file: Option<PathBuf>,
}

impl EncryptArgs {
    /// `store`, encrypting what it writes if recipients were given.
    pub fn apply(&self, store: Store) -> anyhow::Result<Store> {
        Ok(match self.sealer()? {
            Some(sealer) => store.sealing_with(sealer),
            None => store,
        })
    }

    /// What encrypts objects to the recipients given, if any were.
    pub fn sealer(&self) -> anyhow::Result<Option<Sealer>> {
        let given = Recipients::parse(self.encrypt_to.iter().map(String::as_str))?;
        let from_file = self
            .encrypt_to_file
            .as_deref()
            .map(Recipients::from_file)
            .transpose()?;
        let recipients = match (given, from_file) {
            (Some(given), Some(file)) => Some(given.merged(file)),
            (given, file) => given.or(file),
        };
        Ok(recipients.map(|recipients| Sealer::new(&recipients)))
    }
}

/// Checks a recipient as the arguments are read (a typo is a usage error,
/// exit 2) without ever quoting it: a value may be a key pasted whole or
/// in part (its payload alone, `1…` as a double-click selects it), and
/// clap's own "invalid value" error repeats what it refuses.
#[derive(Debug, Clone, Copy)]
struct RecipientParser;

impl clap::builder::TypedValueParser for RecipientParser {
    type Value = String;

    fn parse_ref(
        &self,
        _: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refused = |why: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--encrypt-to (or JOBVAULT_ENCRYPT_TO): {why}\n"),
            )
        };
        let text = value
            .to_str()
            .ok_or_else(|| refused("a value is not UTF-8"))?;
        if text.trim().is_empty() {
            return Err(refused(
                "a value is empty (unset JOBVAULT_ENCRYPT_TO to write in the clear)",
            ));
        }
        Recipients::parse([text])
            .map(|_| text.trim().to_owned())
            .map_err(|e| {
                if holds_secret_key(text) {
                    refused(&e.why)
                } else {
                    refused(&format!(
                        "a value is not an age X25519 recipient (age1…): {}; it is not repeated \
                         here, in case it is a key",
                        e.why
                    ))
                }
            })
    }
}

/// A value parser that refuses, without repeating it, a value holding an
/// age secret key, then parses as `P` does: for names, which go into object
/// names, metric labels and logs (a trial's key given as `backup --name`
/// was uploaded as a snapshot's name), and for paths and URLs, which
/// commands print (`status`, `restore`), where clap's own refusals quote
/// the value.
#[derive(Clone)]
pub(crate) struct NoKeys<P>(pub P);

impl<P: clap::builder::TypedValueParser> clap::builder::TypedValueParser for NoKeys<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<P::Value, clap::Error> {
        if value.to_str().is_some_and(holds_secret_key) {
            let named = arg.map_or_else(|| "a value".to_owned(), ToString::to_string);
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "{named} holds what looks like an age secret key (AGE-SECRET-KEY-1…); it is \
                     not repeated here, and a key goes in an identity file, never on a command \
                     line\n"
                ),
            ));
        }
        self.0.parse_ref(command, arg, value)
    }
}

/// `--concurrency N` and `--read-patience DURATION`, for commands that list
/// and fetch many objects. A restore of 100,000 job objects at 20 ms a
/// request is the latency times the count over the concurrency (`bench
/// restore-at-scale`). The default was 32 while one failed read failed the
/// command; with reads retried it is 64: about 3,200 reads a second at GCS's
/// latencies, under the 5,000 a new bucket serves before it throttles (and
/// a 429 is now retried, not fatal).
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Requests to the store in flight at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Give up once no read of the bucket has succeeded for this long.
    /// Until then a failed read (5xx, 429, a reset, a download cut part way
    /// or silent for 60 s) is made again after a growing wait; a refusal
    /// (403, no such bucket or object) ends the command at once.
    #[arg(long, value_name = "DURATION", default_value = "10min", value_parser = duration::parse_duration)]
    read_patience: Duration,
    /// An age identity file (`jobvault keygen`, `age-keygen`) to open
    /// encrypted objects with; repeatable, for keys rotated over time
    /// (several files are separated by `:`, as in PATH). Objects written in
    /// the clear need none.
    #[arg(
        long,
        value_name = "FILE",
        env = "JOBVAULT_IDENTITY",
        value_delimiter = ':'
    )]
    identity: Vec<PathBuf>,
}

impl ReadArgs {
    pub fn concurrency(&self) -> usize {
        usize::from(self.concurrency)
    }

    /// The retry policy of this command's reads, and the identities they
    /// open encrypted objects with. An identity file others may read is
    /// used, with a warning.
    pub fn reads(&self) -> anyhow::Result<Reads> {
        let keyring = load_identities(&self.identity)?;
        Ok(Reads::new(self.read_patience).with_keyring(keyring))
    }
}

/// The identities in the files `--identity` names; a file others may read
/// is used, with a warning.
fn load_identities(paths: &[PathBuf]) -> anyhow::Result<Keyring> {
    let keyring = Keyring::load(paths)?;
    for path in keyring.exposed_files() {
        say(
            Said::Warning,
            &format!(
                "{}: the identity file is readable by others than its owner; chmod 600 it",
                path.display()
            ),
        );
    }
    Ok(keyring)
}

/// The exit statuses every command documents in its `--help`.
const EXIT_CODES: &str = "Exit status: 0 success; 1 an error (one line on stderr names what and why), \
or a failed check; 2 a usage error; 3 nothing found: the bucket prefix holds no backup (of the \
instant asked for).";

/// What `--skip-corrupt` asks of a retrieval.
fn on_corrupt(skip_corrupt: bool) -> OnCorrupt {
    if skip_corrupt {
        OnCorrupt::Skip
    } else {
        OnCorrupt::Fail
    }
}

/// Prints job bodies as JSON lines, each as stored, except that a line break
/// becomes a space so each job stays on one line. In valid JSON a line break
/// can only be whitespace between tokens (strings escape theirs), so the line
/// is the same JSON. Tombstones print nothing.
fn print_bodies<'a>(envelopes: impl IntoIterator<Item = &'a Envelope>) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for body in envelopes.into_iter().filter_map(Envelope::body) {
        if body.contains(['\n', '\r']) {
            out.write_all(body.replace(['\n', '\r'], " ").as_bytes())?;
        } else {
            out.write_all(body.as_bytes())?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Checks that the bucket can be read: `Some` exit status (3, said on
/// stderr) when it, or the directory, does not exist.
async fn unless_missing(store: &Store, reads: &Reads) -> anyhow::Result<Option<ExitCode>> {
    Ok(match check_store(store, reads).await? {
        Ok(()) => None,
        Err(nothing) => {
            say(Said::Error, &nothing.to_string());
            Some(ExitCode::from(NOTHING_FOUND_EXIT))
        }
    })
}

/// Completes on SIGINT, SIGTERM or SIGHUP (a terminal or ssh session that
/// went away: its default would end the process with no clean-up). The
/// handlers are in place once this returns, before the future is first
/// polled: a signal during a slow start (the store not answering) is kept
/// for it, not left to kill the process with no drain.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind: SignalKind| signal(kind).expect("installing a signal handler cannot fail");
    let mut interrupt = install(SignalKind::interrupt());
    let mut terminate = install(SignalKind::terminate());
    let mut hangup = install(SignalKind::hangup());
    async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
    }
}

/// Runs `work` to its end, or until SIGINT or SIGTERM: then `work` is
/// dropped (which removes what it had written so far) and this fails.
async fn until_signal<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    tokio::select! {
        done = work => Ok(done),
        () = stop_signal() => anyhow::bail!("interrupted by a signal; stopped before the end"),
    }
}
