//! An HTTP proxy in front of the emulator that adds latency and injects
//! faults. The emulator answers on loopback in microseconds, where GCS takes
//! tens of milliseconds; and it cannot be made to fail one request on demand.
//! This is the one place tests stand something in front of a real part, and
//! only to give it the delays and failures a real network has.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::body::{Body as _, Frame};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::runtime;

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub content_range: Option<String>,
    /// The `Range` a read asked for.
    pub range: Option<String>,
    /// The proxy answered 503 instead of forwarding it.
    pub failed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    delay: Mutex<Duration>,
    /// How many of the next resumable-upload chunk requests to fail.
    fail_chunks: AtomicU32,
    /// How many of the next uploads to damage on the way: one byte of the
    /// object's data flipped, as a bad network card or proxy might.
    corrupt_uploads: AtomicU32,
    /// Answer uploads with this status instead of forwarding them.
    refuse_uploads: Mutex<Option<StatusCode>>,
    /// Answer every request, the lease's and reads too, with this status.
    refuse_all: Mutex<Option<StatusCode>>,
    seen: Mutex<Vec<Seen>>,
    /// Faults for a share of all requests, drawn from a seeded generator.
    chaos: Mutex<Option<(Chaos, fastrand::Rng)>>,
    /// How many requests met each fault.
    chaos_counts: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// How many of the next object downloads to cut, and after how many
    /// bytes of their body.
    cut_downloads: Mutex<(u32, usize)>,
    /// Object downloads come in pieces of this many bytes, this long apart.
    trickle: Mutex<Option<(usize, Duration)>>,
    /// Object listings come in pages of at most this many items.
    page_size: Mutex<Option<u32>>,
}

/// The share of requests that meet each fault, as a real network and store
/// deal them out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chaos {
    /// Answered 503, not forwarded.
    pub unavailable: f64,
    /// Answered 429, not forwarded.
    pub throttled: f64,
    /// The connection is closed, no answer.
    pub cut: f64,
    /// Held for `stall_for`, then forwarded.
    pub stall: f64,
    pub stall_for: Duration,
    /// Forwarded, and then answered 503: the write happened, the writer
    /// does not know.
    pub fail_after_write: f64,
    /// A read (GET) forwarded, and its answer's body cut half way: the
    /// connection drops mid-body.
    pub cut_body: f64,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Unavailable,
    Throttled,
    Cut,
    Stall,
    FailAfterWrite,
    CutBody,
    Pass,
}

impl Chaos {
    fn draw(&self, rng: &mut fastrand::Rng) -> Fate {
        let mut draw = rng.f64();
        for (share, fate) in [
            (self.unavailable, Fate::Unavailable),
            (self.throttled, Fate::Throttled),
            (self.cut, Fate::Cut),
            (self.stall, Fate::Stall),
            (self.fail_after_write, Fate::FailAfterWrite),
            (self.cut_body, Fate::CutBody),
        ] {
            if draw < share {
                return fate;
            }
            draw -= share;
        }
        Fate::Pass
    }
}

impl Shared {
    /// The request seen last was answered with a failure, not forwarded.
    fn mark_last_failed(&self) {
        self.seen
            .lock()
            .unwrap()
            .last_mut()
            .expect("a request is seen before it is answered")
            .failed = true;
    }
}

#[derive(Debug, Clone)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on `port` and forwards to `upstream`.
    pub fn start(port: u16, upstream: SocketAddr, delay: Duration) -> Proxy {
        let shared = Arc::new(Shared {
            delay: Mutex::new(delay),
            ..Shared::default()
        });
        let listener = runtime()
            .block_on(TcpListener::bind(("127.0.0.1", port)))
            .expect("the proxy port is free");
        let serving = shared.clone();
        runtime().spawn(async move {
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        with_chaos(request, upstream, client.clone(), shared.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Fails the next `n` chunk requests of resumable uploads with a 503,
    /// without forwarding them.
    pub fn fail_next_chunks(&self, n: u32) {
        self.shared.fail_chunks.store(n, Ordering::SeqCst);
    }

    /// From now on, asks the emulator for pages of at most `size` objects
    /// in every listing, as GCS serves them (at most 1,000), whatever page
    /// size the client asked for; `None` forwards listings as asked.
    pub fn page_listings(&self, size: Option<u32>) {
        *self.shared.page_size.lock().unwrap() = size;
    }

    /// From now on, sends object downloads (`alt=media`) in pieces of
    /// `piece` bytes, `pause` apart, as a slow link does; `None` stops it.
    pub fn trickle_downloads(&self, trickle: Option<(usize, Duration)>) {
        *self.shared.trickle.lock().unwrap() = trickle;
    }

    /// Cuts the body of the next `n` object downloads (`alt=media`) after
    /// `after` bytes: the connection drops mid-body.
    pub fn cut_next_downloads(&self, n: u32, after: usize) {
        *self.shared.cut_downloads.lock().unwrap() = (n, after);
    }

    /// Flips one byte of the object's data in the next `n` uploads but the
    /// lease's (a one-request upload, or the last chunk of a resumable one),
    /// then forwards them.
    pub fn corrupt_next_uploads(&self, n: u32) {
        self.shared.corrupt_uploads.store(n, Ordering::SeqCst);
    }

    /// Answers every upload but the lease's with `status` (a 403, a 429,
    /// ...) as GCS words it, without forwarding it, until called with `None`.
    /// A refused request is seen as failed.
    pub fn refuse_uploads(&self, status: Option<u16>) {
        *self.shared.refuse_uploads.lock().unwrap() =
            status.map(|s| StatusCode::from_u16(s).expect("a valid status"));
    }

    /// Answers every request (reads, the lease's writes) with `status`, as a
    /// bucket the credentials may not touch does, until called with `None`.
    pub fn refuse_everything(&self, status: Option<u16>) {
        *self.shared.refuse_all.lock().unwrap() =
            status.map(|s| StatusCode::from_u16(s).expect("a valid status"));
    }

    /// Deals out `chaos` to every request from now on (seeded by `seed`), or
    /// stops with `None`.
    pub fn set_chaos(&self, chaos: Option<Chaos>, seed: u64) {
        *self.shared.chaos.lock().unwrap() = chaos.map(|c| (c, fastrand::Rng::with_seed(seed)));
    }

    /// How many requests met each fault so far.
    pub fn chaos_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.shared.chaos_counts.lock().unwrap().clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

/// An answer's body: whole, or cut part way.
type Body = BoxBody<Bytes, std::io::Error>;

/// A request's fate under chaos, then [`forward`] if it is forwarded. A cut
/// is an error: hyper then closes the connection without an answer.
async fn with_chaos(
    request: Request<Incoming>,
    upstream: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, std::io::Error> {
    let is_read = request.method() == hyper::Method::GET;
    let is_download = is_read
        && request
            .uri()
            .query()
            .is_some_and(|q| q.contains("alt=media"));
    let cuts = shared.clone();
    // The next download cut, if this is a download whose body is longer
    // than where the cut falls.
    let cut_at = move |response: &Response<Full<Bytes>>| {
        let length = response.body().size_hint().exact().unwrap_or(0) as usize;
        let mut cut = cuts.cut_downloads.lock().unwrap();
        (is_download && cut.0 > 0 && length > cut.1).then(|| {
            cut.0 -= 1;
            cut.1
        })
    };
    let drawn = shared
        .chaos
        .lock()
        .unwrap()
        .as_mut()
        .map(|(chaos, rng)| (chaos.draw(rng), chaos.stall_for));
    let trickle = (*shared.trickle.lock().unwrap()).filter(|_| is_download);
    let Some((fate, stall_for)) = drawn else {
        let response = forward(request, upstream, client, shared)
            .await
            .unwrap_or_else(|e| match e {});
        if let Some((piece, pause)) = trickle {
            return Ok(trickled(response, piece, pause).await);
        }
        let at = cut_at(&response);
        return Ok(cut_after(response, at).await);
    };
    let fate = if fate == Fate::CutBody && !is_read {
        Fate::Pass
    } else {
        fate
    };
    let label = match fate {
        Fate::Unavailable => "503",
        Fate::Throttled => "429",
        Fate::Cut => "cut",
        Fate::Stall => "stall",
        Fate::FailAfterWrite => "fail after write",
        Fate::CutBody => "cut body",
        Fate::Pass => "pass",
    };
    *shared
        .chaos_counts
        .lock()
        .unwrap()
        .entry(label)
        .or_default() += 1;
    let response = match fate {
        Fate::Unavailable => gcs_error(StatusCode::SERVICE_UNAVAILABLE),
        Fate::Throttled => gcs_error(StatusCode::TOO_MANY_REQUESTS),
        Fate::Cut => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut",
            ));
        }
        Fate::Stall => {
            tokio::time::sleep(stall_for).await;
            forward(request, upstream, client, shared)
                .await
                .unwrap_or_else(|e| match e {})
        }
        Fate::FailAfterWrite => {
            let _ = forward(request, upstream, client, shared).await;
            gcs_error(StatusCode::SERVICE_UNAVAILABLE)
        }
        Fate::CutBody => {
            let response = forward(request, upstream, client, shared)
                .await
                .unwrap_or_else(|e| match e {});
            let half = response.body().size_hint().exact().unwrap_or(0) as usize / 2;
            return Ok(cut_after(response, Some(half)).await);
        }
        Fate::Pass => forward(request, upstream, client, shared)
            .await
            .unwrap_or_else(|e| match e {}),
    };
    let at = cut_at(&response);
    Ok(cut_after(response, at).await)
}

/// A forwarded answer's head, and its whole body.
async fn whole(response: Response<Full<Bytes>>) -> (hyper::http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .unwrap_or_else(|never| match never {})
        .to_bytes();
    (parts, body)
}

/// `response` with its body sent `piece` bytes at a time, `pause` apart.
async fn trickled(
    response: Response<Full<Bytes>>,
    piece: usize,
    pause: Duration,
) -> Response<Body> {
    let (parts, whole) = whole(response).await;
    let pieces: Vec<Bytes> = (0..whole.len())
        .step_by(piece.max(1))
        .map(|start| whole.slice(start..(start + piece).min(whole.len())))
        .collect();
    let frames = futures::stream::unfold(pieces.into_iter(), move |mut rest| async move {
        let next = rest.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok(Frame::data(next)), rest))
    });
    Response::from_parts(parts, StreamBody::new(frames).boxed())
}

/// `response` with its body cut after `at` bytes, if given: the bytes
/// before go out, then the connection drops (the length header still
/// promises the whole).
async fn cut_after(response: Response<Full<Bytes>>, at: Option<usize>) -> Response<Body> {
    let Some(at) = at else {
        return response.map(|body| body.map_err(|never| match never {}).boxed());
    };
    let (parts, whole) = whole(response).await;
    Response::from_parts(parts, {
        let head = whole.slice(..at.min(whole.len()));
        // The head goes out on its own before the cut: hyper would
        // otherwise drop its buffered bytes with the connection.
        let cut = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the proxy cut the body",
            ))
        };
        let pieces = futures::StreamExt::chain(
            futures::stream::once(async { Ok(Frame::data(head)) }),
            futures::stream::once(cut),
        );
        StreamBody::new(pieces).boxed()
    })
}

async fn forward(
    request: Request<Incoming>,
    upstream: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let delay = *shared.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let content_range = request
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    let range = request
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_chunk = request.method() == hyper::Method::PUT
        && content_range
            .as_deref()
            .is_some_and(|range| !range.starts_with("bytes */"));
    let fail = is_chunk
        && shared
            .fail_chunks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    shared.seen.lock().unwrap().push(Seen {
        method: request.method().to_string(),
        path_and_query: path_and_query.clone(),
        content_range,
        range,
        failed: fail,
    });
    let refused = *shared.refuse_all.lock().unwrap();
    if let Some(status) = refused {
        shared.mark_last_failed();
        let _ = request.into_body().collect().await;
        return Ok(gcs_error(status));
    }
    if fail {
        // Drain the body so the client sees a clean response.
        let _ = request.into_body().collect().await;
        return Ok(status_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "injected failure",
        ));
    }
    let (mut parts, body) = request.into_parts();
    let mut body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let refusal = *shared.refuse_uploads.lock().unwrap();
    let is_lease = body.windows(LEASE.len()).any(|w| w == LEASE);
    if let Some(status) = refusal.filter(|_| path_and_query.starts_with("/upload/") && !is_lease) {
        shared.mark_last_failed();
        return Ok(gcs_error(status));
    }
    let is_upload = path_and_query.contains("uploadType=multipart") || is_last_chunk(&parts);
    if is_upload
        && !is_lease
        && shared
            .corrupt_uploads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        body = corrupted(&body);
    }
    let page_size = *shared.page_size.lock().unwrap();
    let path_and_query = match page_size {
        Some(size) if parts.method == hyper::Method::GET => paged(&path_and_query, size),
        _ => path_and_query,
    };
    parts.uri = format!("http://{upstream}{path_and_query}")
        .parse()
        .expect("a valid upstream URI");
    match client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        Err(e) => Ok(status_response(StatusCode::BAD_GATEWAY, &e.to_string())),
    }
}

/// A listing's request (`…/o?…`, not an object's) asking for at most `size`
/// objects a page (or fewer, if it asked for fewer); any other request as
/// it is.
fn paged(path_and_query: &str, size: u32) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if !path.ends_with("/o") {
        return path_and_query.to_owned();
    }
    let asked = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("maxResults="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    let size = size.min(asked);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("maxResults="))
        .collect();
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    format!("{path}?{query}maxResults={size}")
}

/// The request that completes a resumable upload: a chunk whose range
/// states the total (`bytes 0-99/100`, not `bytes 0-99/*` or `bytes */100`).
fn is_last_chunk(parts: &hyper::http::request::Parts) -> bool {
    parts.method == hyper::Method::PUT
        && parts
            .headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|range| !range.ends_with("/*") && !range.starts_with("bytes */"))
}

/// `body` with the last byte of the object's data flipped: before the closing
/// boundary of a multipart body, or at the end of a chunk.
fn corrupted(body: &Bytes) -> Bytes {
    let mut bytes = body.to_vec();
    let data_end = bytes
        .windows(4)
        .rposition(|w| w == b"\r\n--")
        .filter(|_| bytes.ends_with(b"--\r\n"))
        .unwrap_or(bytes.len());
    if data_end > 0 {
        bytes[data_end - 1] ^= 0x20;
    }
    Bytes::from(bytes)
}

/// The lease object's name: its writes pass a refusal, so that the daemon
/// under test keeps its lease.
const LEASE: &[u8] = b"jobvault-lease.json";

/// An error as GCS's JSON API words it.
fn gcs_error(status: StatusCode) -> Response<Full<Bytes>> {
    let message = match status.as_u16() {
        403 => {
            "jobvault@project.iam.gserviceaccount.com does not have storage.objects.create access to the Google Cloud Storage object."
        }
        429 => {
            "The rate of change requests to the object exceeds the rate limit. Please reduce the rate of create, update, and delete requests."
        }
        _ => status.canonical_reason().unwrap_or("error"),
    };
    let body = serde_json::json!({ "error": { "code": status.as_u16(), "message": message } });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

fn status_response(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(text.to_owned())))
        .expect("a valid response")
}
