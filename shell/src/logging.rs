//! Logs on stderr: text for people, or one JSON object a line for Cloud
//! Logging, which reads `severity`, `message`, `time` and
//! `logging.googleapis.com/sourceLocation` from such a line (tracing's own
//! JSON says `level`, which Cloud Logging does not read, so every line would
//! show as the default severity). Under JSON every line is an object: the
//! fatal line, a panic, and an argument error too, which comes before the
//! arguments are parsed ([`json_requested`]).
//!
//! Text logs escape every control character in what they print
//! ([`OneLine`]): a trigger, job id or path from outside once forged a
//! whole log line with a newline, or drove the terminal with an escape
//! sequence. JSON escapes them by itself.

use std::ffi::OsString;
use std::fmt;
use std::sync::OnceLock;

use jobvault_core::escape::OneLine;
use jobvault_crypt::redact_secret_keys;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::clock;

/// Whether [`init`] chose JSON lines, for the lines commands write
/// themselves ([`say`]).
static JSON: OnceLock<bool> = OnceLock::new();

/// Sets up logging to stderr through `filter`, as text or as JSON lines.
pub fn init(filter: EnvFilter, json: bool) {
    let _ = JSON.set(json);
    // A line that cannot be written is dropped: tracing's own report of it
    // is an `eprintln!` to the same stderr, which panicked when stderr was
    // a closed pipe and took the daemon down with exit 101.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactedStderr)
        .log_internal_errors(false);
    if json {
        builder.event_format(CloudLoggingJson).init();
        std::panic::set_hook(Box::new(|panic| {
            eprintln!(
                "{}",
                line("CRITICAL", &format!("jobvault panicked: {panic}"))
            );
        }));
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(EscapedFields::default())
            .init();
    }
}

/// stderr, with every age secret key cut from each line: a key pasted into
/// a path (`--workdir`, `--db`) came back whole in the daemon's start line.
/// tracing writes each event in one call.
struct RedactedStderr;

impl std::io::Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let redacted = redact_secret_keys(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(redacted.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// tracing's own fields, with control characters escaped.
#[derive(Default)]
struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut plain = String::new();
        self.0.format_fields(Writer::new(&mut plain), fields)?;
        write!(writer, "{}", OneLine(&plain))
    }
}

/// The one line a command that fails ends with, on stderr: `jobvault:
/// error: ...` with control characters escaped (a path from outside once
/// forged a line with it), or, for JSON logs, a JSON line of severity ERROR.
pub fn fatal(json: bool, error: &str) {
    // A key pasted where a path or a name goes comes back in the error.
    let message = format!("jobvault: error: {}", redact_secret_keys(error));
    if json {
        eprintln!("{}", line("ERROR", &message));
    } else {
        eprintln!("{}", OneLine(&message));
    }
}

/// How bad a line a command writes itself is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    Error,
    Warning,
    Notice,
}

/// A line a command writes on stderr itself, beside its logs: `jobvault:
/// error: ...` (or `warning:`, or no word for a notice) as text, one JSON
/// line of that severity under JSON logs.
pub fn say(said: Said, text: &str) {
    let text = redact_secret_keys(text);
    let message = match said {
        Said::Error => format!("jobvault: error: {text}"),
        Said::Warning => format!("jobvault: warning: {text}"),
        Said::Notice => format!("jobvault: {text}"),
    };
    let severity = match said {
        Said::Error => "ERROR",
        Said::Warning => "WARNING",
        Said::Notice => "NOTICE",
    };
    if JSON.get().copied().unwrap_or(false) {
        eprintln!("{}", line(severity, &message));
    } else {
        eprintln!("{}", OneLine(&message));
    }
}

/// An argument error as one JSON line of severity ERROR.
pub fn usage(message: &str) {
    eprintln!("{}", line("ERROR", message));
}

/// Whether `--log-format json` (the last one given) or, with none,
/// `JOBVAULT_LOG_FORMAT=json` asks for JSON: read from the raw arguments,
/// so that an error in the others is logged as the user asked.
pub fn json_requested(args: impl IntoIterator<Item = OsString>, env: Option<OsString>) -> bool {
    let mut asked = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--log-format" {
            asked = args.next();
        } else if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--log-format=")) {
            asked = Some(value.into());
        }
    }
    asked
        .or(env)
        .is_some_and(|format| format.eq_ignore_ascii_case("json"))
}

/// A JSON line of `severity` with no event behind it.
fn line(severity: &str, message: &str) -> Value {
    serde_json::json!({
        "severity": severity,
        "time": clock::now().rfc3339(),
        "target": "jobvault",
        "message": message,
    })
}

/// One JSON object per event: `severity`, `time`, `target`, `message` and
/// the event's own fields.
struct CloudLoggingJson;

impl<S, N> FormatEvent<S, N> for CloudLoggingJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("severity".into(), severity(meta.level()).into());
        line.insert("time".into(), clock::now().rfc3339().into());
        line.insert("target".into(), meta.target().into());
        if let (Some(file), Some(at)) = (meta.file(), meta.line()) {
            // As Cloud Logging's LogEntrySourceLocation spells it: the line
            // an int64 in a string.
            let location = serde_json::json!({
                "file": file,
                "line": at.to_string(),
                "function": meta.module_path().unwrap_or_default(),
            });
            line.insert("logging.googleapis.com/sourceLocation".into(), location);
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Cloud Logging's name for a level.
fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(args: &[&str], env: Option<&str>) -> bool {
        json_requested(args.iter().map(OsString::from), env.map(OsString::from))
    }

    #[test]
    fn the_last_log_format_argument_wins_over_the_environment() {
        assert!(asked(&["jobvault", "run", "--log-format", "json"], None));
        assert!(asked(&["jobvault", "--log-format=json", "x"], Some("text")));
        assert!(!asked(
            &["jobvault", "--log-format", "json", "--log-format=text"],
            None
        ));
        assert!(!asked(
            &["jobvault", "run", "--log-format", "text"],
            Some("json")
        ));
        assert!(asked(&["jobvault", "run", "--bogus"], Some("json")));
        assert!(!asked(&["jobvault", "run"], None));
        assert!(
            !asked(&["jobvault", "--", "--log-format", "json"], None),
            "after --, an argument is a value"
        );
    }
}
