//! Prometheus metrics on `--metrics-addr`, at `/metrics`, read-only: an
//! open port answers nothing but scrapes (`jobvault backup` asks through a
//! socket beside the database, [`crate::control`]). The listener keeps the
//! limits of `jobvault_core::listen`: at most [`METRICS_CONNECTIONS`], each
//! closed after one response or [`METRICS_CONNECTION_DEADLINE`].
//!
//! The core keeps the numbers ([`jobvault_core::Metrics`]); the daemon
//! publishes a copy after every step on a watch channel, and each scrape
//! renders the latest copy. How long uploads take is the shell's to measure
//! ([`UploadTimes`]), since the core reads no clock of its own. Times are Unix seconds, 0 when unknown, so an
//! alert on age fires rather than going quiet.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use jobvault_core::listen::{
    METRICS_CONNECTION_DEADLINE, METRICS_CONNECTIONS, METRICS_HEADER_DEADLINE,
};
use jobvault_core::object_name::ObjectKind;
use jobvault_core::{Metrics, Timestamp};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use crate::listener::Bounded;

/// How long successful uploads took, by object kind: a histogram.
#[derive(Debug, Clone)]
pub struct UploadTimes(Family<KindLabel, Histogram, fn() -> Histogram>);

/// `kind="job"` or `kind="snapshot"` ([`ObjectKind::label`]).
type KindLabel = [(&'static str, &'static str); 1];

/// Upload time buckets, in seconds: a job object takes tens of milliseconds,
/// a snapshot minutes.
const UPLOAD_SECONDS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 1800.0,
];

impl UploadTimes {
    pub fn new() -> Self {
        UploadTimes(Family::new_with_constructor(|| {
            Histogram::new(UPLOAD_SECONDS)
        }))
    }

    /// Records one successful upload of an object of `kind`.
    pub fn observe(&self, kind: ObjectKind, took: std::time::Duration) {
        self.0
            .get_or_create(&[("kind", kind.label())])
            .observe(took.as_secs_f64());
    }
}

impl Default for UploadTimes {
    fn default() -> Self {
        UploadTimes::new()
    }
}

/// Renders the latest metrics on each scrape.
#[derive(Debug)]
struct Exporter {
    metrics: watch::Receiver<Metrics>,
}

fn seconds(at: Option<Timestamp>) -> f64 {
    at.map_or(0.0, |t| t.unix_nanos() as f64 / 1e9)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn counter_by_kind(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    per_kind: jobvault_core::machine::PerKind,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (kind, value) in [
        (ObjectKind::Snapshot, per_kind.snapshot),
        (ObjectKind::Job, per_kind.job),
    ] {
        let labels = [("kind", kind.label())];
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = self.metrics.borrow().clone().seen_at(crate::clock::now());
        let e = &mut encoder;
        gauge(
            e,
            "jobvault_last_snapshot_timestamp_seconds",
            "When the newest snapshot was uploaded.",
            seconds(m.last_snapshot),
        )?;
        gauge(
            e,
            "jobvault_snapshots_last_24h",
            "Snapshots uploaded in the last 24 hours.",
            m.snapshots_last_24h as f64,
        )?;
        gauge(
            e,
            "jobvault_trigger_check_timestamp_seconds",
            "When the trigger directory was last checked successfully.",
            seconds(m.trigger_check_alive),
        )?;
        gauge(
            e,
            "jobvault_incremental_backup_timestamp_seconds",
            "Every change committed before this time is in the bucket, but rows set aside: when the last read of the change feed whose changes are all there began (0 until the destination is checked, while it is new, until the first read is in, and after the clock is seen to step back until a read since is in).",
            seconds(m.incremental_alive),
        )?;
        gauge(
            e,
            "jobvault_new_destination",
            "1 while the bucket prefix is new to this database (created, wiped, or another database's) and no snapshot of it has landed there yet.",
            f64::from(u8::from(m.new_destination)),
        )?;
        gauge(
            e,
            "jobvault_encryption_dropped",
            "1 when this daemon writes in the clear and the prefix's newest snapshot was encrypted when it started (--encrypt-to lost?).",
            f64::from(u8::from(m.encryption_dropped)),
        )?;
        counter(
            e,
            "jobvault_jobs_backed_up",
            "Job versions uploaded.",
            m.jobs_backed_up,
        )?;
        gauge(
            e,
            "jobvault_change_feed_resets_since_snapshot",
            "Times the change feed was rescanned since the last snapshot.",
            m.feed_resets_since_snapshot as f64,
        )?;
        gauge(
            e,
            "jobvault_pending_jobs",
            "Changes committed to the job database and not yet in the bucket, as of the last read of the change feed.",
            m.pending_jobs as f64,
        )?;
        gauge(
            e,
            "jobvault_jobs_set_aside",
            "Job rows no job object can hold (not UTF-8, over the size limit, an id no object name can carry), passed by the cursor and recorded in the database until a writer fixes or deletes each.",
            m.jobs_set_aside as f64,
        )?;
        gauge(
            e,
            "jobvault_cursor_seq",
            "Change sequence up to which every job is in the bucket.",
            m.cursor.seq as f64,
        )?;
        gauge(
            e,
            "jobvault_cursor_timestamp_seconds",
            "Every job committed before this time is in the bucket.",
            seconds(Some(m.cursor.time)),
        )?;
        counter_by_kind(
            e,
            "jobvault_uploads",
            "Objects uploaded, by kind.",
            m.uploads,
        )?;
        counter_by_kind(
            e,
            "jobvault_upload_bytes",
            "Bytes uploaded, by kind.",
            m.upload_bytes,
        )?;
        counter_by_kind(
            e,
            "jobvault_upload_errors",
            "Failed uploads, by kind.",
            m.upload_errors,
        )?;
        counter(
            e,
            "jobvault_trigger_attempts",
            "Snapshot attempts started from trigger files.",
            m.trigger_attempts,
        )?;
        counter(
            e,
            "jobvault_triggers_quarantined",
            "Malformed trigger files moved aside.",
            m.triggers_quarantined,
        )?;
        counter(
            e,
            "jobvault_triggers_exhausted",
            "Triggers given up after their last attempt failed.",
            m.triggers_exhausted,
        )?;
        counter(
            e,
            "jobvault_store_refusals",
            "Job uploads and lease writes the store refused (permission denied, no such bucket, an untrusted certificate); nothing is written while they last.",
            m.store_refusals,
        )?;
        counter(
            e,
            "jobvault_pruned_objects",
            "Objects the daemon's prunes deleted (run --keep).",
            m.pruned_objects,
        )?;
        gauge(
            e,
            "jobvault_oldest_restorable_timestamp_seconds",
            "The oldest instant the bucket restores, as the last prune found it (0 until a prune ran).",
            seconds(m.oldest_restorable),
        )?;
        gauge(
            e,
            "jobvault_keep_seconds",
            "How far back restores are promised to work (run --keep; 0: never pruned).",
            m.keep.map_or(0.0, |keep| keep.as_secs_f64()),
        )?;
        counter(
            e,
            "jobvault_database_went_back",
            "Times the job database was found gone back to an older copy written over it in place: the prefix starts over with a full snapshot of the copy.",
            m.went_back,
        )?;
        counter(
            e,
            "jobvault_unexpected_reports",
            "Reports that answered nothing outstanding and were dropped (a bug if not zero).",
            m.unexpected_reports,
        )?;
        Ok(())
    }
}

/// Renders `metrics` and `upload_times` in the OpenMetrics text format,
/// every series labelled with the database name.
pub fn render(
    database: &str,
    metrics: watch::Receiver<Metrics>,
    upload_times: &UploadTimes,
) -> String {
    let labels = [(Cow::Borrowed("database"), Cow::Owned(database.to_owned()))];
    let mut registry = Registry::with_labels(labels.into_iter());
    registry.register_collector(Box::new(Exporter { metrics }));
    registry.register(
        "jobvault_upload_duration_seconds",
        "How long successful uploads took, by object kind.",
        upload_times.0.clone(),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

/// Binds `addr` and serves `/metrics` until the runtime stops. Returns the
/// bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    database: String,
    metrics: watch::Receiver<Metrics>,
    upload_times: UploadTimes,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let mut bounded = Bounded::new("metrics", METRICS_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let ((stream, _), permit) = bounded.accept(|| listener.accept()).await;
            let (database, metrics) = (database.clone(), metrics.clone());
            let upload_times = upload_times.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(&request, &database, metrics.clone(), &upload_times);
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(METRICS_HEADER_DEADLINE)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(METRICS_CONNECTION_DEADLINE, connection).await {
                    Ok(Err(e)) => debug!(error = %e, "metrics connection ended with an error"),
                    Err(_) => debug!("metrics connection closed at its deadline"),
                    Ok(Ok(())) => {}
                }
                drop(permit);
            });
        }
    });
    Ok(bound)
}

fn respond(
    request: &Request<Incoming>,
    database: &str,
    metrics: watch::Receiver<Metrics>,
    upload_times: &UploadTimes,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(
                b"not found; metrics are at /metrics\n",
            )))
            .expect("a static response is valid");
    }
    if !matches!(*request.method(), hyper::Method::GET | hyper::Method::HEAD) {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(hyper::header::ALLOW, "GET, HEAD")
            .body(Full::new(Bytes::from_static(
                b"metrics are read with GET\n",
            )))
            .expect("a static response is valid");
    }
    Response::builder()
        .header(
            hyper::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Full::new(Bytes::from(render(
            database,
            metrics,
            upload_times,
        ))))
        .expect("a static response is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_signal_with_the_database_label() {
        let metrics = Metrics {
            last_snapshot: Some(Timestamp::from_unix_seconds(1_700_000_000)),
            jobs_backed_up: 7,
            uploads: jobvault_core::machine::PerKind {
                snapshot: 1,
                job: 7,
            },
            ..Metrics::default()
        };
        let (_tx, rx) = watch::channel(metrics);
        let times = UploadTimes::new();
        times.observe(ObjectKind::Job, std::time::Duration::from_millis(30));
        let text = render("scheduler", rx, &times);
        assert!(
            text.contains(
                "jobvault_last_snapshot_timestamp_seconds{database=\"scheduler\"} 1700000000"
            ),
            "{text}"
        );
        assert!(
            text.contains("jobvault_jobs_backed_up_total{database=\"scheduler\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("jobvault_uploads_total{database=\"scheduler\",kind=\"job\"} 7"),
            "{text}"
        );
        assert!(
            text.contains(
                "jobvault_incremental_backup_timestamp_seconds{database=\"scheduler\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "jobvault_upload_duration_seconds_bucket{database=\"scheduler\",le=\"0.05\",kind=\"job\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
