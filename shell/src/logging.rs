//! Logs on stderr: text for people, or one JSON object a line for Cloud
//! Logging, which reads `severity`, `message` and `time` from such a line
//! (tracing's own JSON says `level`, which Cloud Logging does not read, so
//! every line would show as the default severity).
//!
//! Text logs escape every control character in what they print
//! ([`OneLine`]): a trigger, job id or path from outside once forged a
//! whole log line with a newline, or drove the terminal with an escape
//! sequence. JSON escapes them by itself.

use std::fmt;

use jobvault_core::escape::OneLine;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::clock;

/// Sets up logging to stderr through `filter`, as text or as JSON lines.
pub fn init(filter: EnvFilter, json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.event_format(CloudLoggingJson).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(EscapedFields::default())
            .init();
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
    let message = format!("jobvault: error: {error}");
    if json {
        let line = serde_json::json!({
            "severity": "ERROR",
            "time": clock::now().rfc3339(),
            "target": "jobvault",
            "message": message,
        });
        eprintln!("{line}");
    } else {
        eprintln!("{}", OneLine(&message));
    }
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
