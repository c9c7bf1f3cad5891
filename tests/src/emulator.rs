//! fake-gcs-server, started on a free port for the tests of one process.
//!
//! The server runs under a small `sh` guard that kills it when its stdin
//! closes, so it never outlives the test process, however that ends.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::http;

/// Where the emulator keeps objects.
#[derive(Debug, Clone)]
pub enum Backend {
    Memory,
    /// On disk, so a stopped emulator restarts with its objects.
    Filesystem(PathBuf),
}

#[derive(Debug)]
pub struct Emulator {
    port: u16,
    /// Where clients are told to send follow-up requests (resumable upload
    /// sessions): the emulator itself, or a proxy in front of it.
    public_port: u16,
    backend: Backend,
    /// The port it also serves HTTPS on, with the certificate in
    /// `tests/fixtures/tls/` (see [`Emulator::start_tls`]).
    tls_port: Option<u16>,
    process: Option<(Child, ChildStdin)>,
}

/// The certificate authority that signed the TLS emulator's certificate,
/// for `SSL_CERT_FILE`.
pub fn test_ca() -> PathBuf {
    tls_fixture("ca.pem")
}

fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

/// The fake-gcs-server binary: `$FAKE_GCS_SERVER`, or installed on demand by
/// `scripts/install-emulator`.
pub fn emulator_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("FAKE_GCS_SERVER") {
                return PathBuf::from(path);
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-emulator");
            let output = Command::new(&script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(output.status.success(), "{} failed", script.display());
            PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
        })
        .clone()
}

/// A port nobody listens on right now, below the kernel's ephemeral range
/// (32768 to 60999 by default). One the kernel hands out for `127.0.0.1:0`
/// comes from that range, where the local end of any outgoing connection
/// can take it before the server binds it: a test's proxy failed with
/// "Address already in use".
pub fn free_port() -> u16 {
    const BELOW_EPHEMERAL: std::ops::Range<u16> = 20_000..32_000;
    std::iter::repeat_with(|| fastrand::u16(BELOW_EPHEMERAL))
        .take(1_000)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}

impl Emulator {
    /// The emulator shared by the tests of this process (memory backend).
    pub fn shared() -> &'static Emulator {
        static SHARED: OnceLock<Emulator> = OnceLock::new();
        SHARED.get_or_init(|| Emulator::start(Backend::Memory))
    }

    pub fn start(backend: Backend) -> Emulator {
        let port = free_port();
        Emulator::start_on(port, port, backend)
    }

    /// Starts on `port`, telling clients to come back through `public_port`.
    pub fn start_on(port: u16, public_port: u16, backend: Backend) -> Emulator {
        let mut emulator = Emulator {
            port,
            public_port,
            backend,
            tls_port: None,
            process: None,
        };
        emulator.restart();
        emulator
    }

    /// Serves HTTPS for jobvault, with a certificate for 127.0.0.1 signed by
    /// [`test_ca`], and plain HTTP on [`Emulator::port`] for the tests' own
    /// set-up (creating buckets).
    pub fn start_tls(backend: Backend) -> Emulator {
        let port = free_port();
        let mut emulator = Emulator {
            port,
            public_port: port,
            backend,
            tls_port: Some(free_port()),
            process: None,
        };
        emulator.restart();
        emulator
    }

    /// For `STORAGE_EMULATOR_HOST`: the emulator's HTTPS address.
    pub fn tls_endpoint(&self) -> String {
        let port = self.tls_port.expect("started with Emulator::start_tls");
        format!("https://127.0.0.1:{port}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// For `STORAGE_EMULATOR_HOST`: where clients should connect.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.public_port)
    }

    /// Stops the server; a filesystem backend keeps its objects.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.process.take() {
            drop(stdin);
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "the emulator did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server (again) on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let mut args: Vec<String> = vec![
            "-host".into(),
            "127.0.0.1".into(),
            "-log-level".into(),
            "error".into(),
        ];
        args.extend(self.scheme_args());
        match &self.backend {
            Backend::Memory => args.extend(["-backend".into(), "memory".into()]),
            Backend::Filesystem(root) => args.extend([
                "-backend".into(),
                "filesystem".into(),
                "-filesystem-root".into(),
                root.display().to_string(),
            ]),
        }
        // The guard: run the server, and kill it once stdin closes.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$@" </dev/null & pid=$!; read -r _; kill "$pid"; wait "$pid""#)
            .arg(emulator_binary())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start fake-gcs-server");
        let stdin = child.stdin.take().expect("piped stdin");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listing = format!("http://127.0.0.1:{}/storage/v1/b", self.port);
            let tls_up = self
                .tls_port
                .is_none_or(|port| TcpStream::connect(("127.0.0.1", port)).is_ok());
            if tls_up && http::get(&listing).is_ok_and(|(status, _)| status == 200) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .ok();
                panic!("fake-gcs-server exited with {status}: {stderr}");
            }
            assert!(Instant::now() < deadline, "fake-gcs-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some((child, stdin));
    }

    /// Where it listens and what it tells clients to come back to.
    fn scheme_args(&self) -> Vec<String> {
        let Some(tls_port) = self.tls_port else {
            let public = format!("127.0.0.1:{}", self.public_port);
            return [
                "-scheme",
                "http",
                "-port",
                &self.port.to_string(),
                "-public-host",
                &public,
                "-external-url",
                &format!("http://{public}"),
            ]
            .map(String::from)
            .to_vec();
        };
        let public = format!("127.0.0.1:{tls_port}");
        let fixture = |name| tls_fixture(name).display().to_string();
        [
            "-scheme",
            "both",
            "-port",
            &tls_port.to_string(),
            "-port-http",
            &self.port.to_string(),
            "-cert-location",
            &fixture("server.pem"),
            "-private-key-location",
            &fixture("server.key"),
            "-public-host",
            &public,
            "-external-url",
            &format!("https://{public}"),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Creates a bucket named `<prefix>-<n>`, unique in this process, and
    /// returns its name.
    pub fn new_bucket(&self, prefix: &str) -> String {
        self.create_bucket(prefix, false)
    }

    /// Like [`Emulator::new_bucket`], with object versioning on.
    pub fn new_versioned_bucket(&self, prefix: &str) -> String {
        self.create_bucket(prefix, true)
    }

    fn create_bucket(&self, prefix: &str, versioning: bool) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = format!("http://127.0.0.1:{}/storage/v1/b", self.port);
        let (status, body) = http::post_json(
            &url,
            &serde_json::json!({ "name": name, "versioning": { "enabled": versioning } }),
        )
        .expect("the emulator answers");
        assert!(status == 200, "creating bucket {name}: {status} {body}");
        name
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
