//! What a request that got no HTTP answer means.
//!
//! Most such failures pass (a reset, a refused connection, a timeout) and are
//! retried. A certificate the platform does not trust does not pass: behind
//! a TLS-intercepting proxy or a private CA, every attempt fails the same
//! way. Retried as transient, a restore waited out its whole
//! `--read-patience` (ten minutes by default) before it said so; it is now a
//! refusal, which a one-shot command reports at once and the daemon says
//! loudly, counts and retries slowly.

use std::error::Error;

use jobvault_core::FailureKind;

use super::backend::BackendError;
use super::error_chain;

/// The error a request that failed before any answer stands for.
pub(super) fn transport_error(error: &(dyn Error + 'static)) -> BackendError {
    let chain = error_chain(error);
    if untrusted_certificate(error) {
        let why = format!(
            "{chain}: the store's TLS certificate is not trusted here; if a proxy or a \
             private certificate authority stands in between, set SSL_CERT_FILE to a file \
             holding its CA certificate"
        );
        return BackendError::with_kind(FailureKind::Permission, why);
    }
    BackendError::transient(chain)
}

/// Whether rustls rejected the peer's certificate anywhere in `error`'s
/// chain.
fn untrusted_certificate(error: &(dyn Error + 'static)) -> bool {
    std::iter::successors(Some(error), |&e| e.source()).any(|e| {
        unwrapped(e).any(|e| {
            matches!(
                e.downcast_ref::<rustls::Error>(),
                Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
            )
        })
    })
}

/// `error`, and the errors inside it if it is an `io::Error`: hyper hands
/// rustls's error over in an `io::Error` inside another, and an `io::Error`'s
/// `source` skips the error it wraps.
fn unwrapped<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&e| {
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        Some(inner as &(dyn Error + 'static))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped as hyper-util returns it (a real handshake is in the
    /// end-to-end test `tests/tests/tls.rs`): an error whose source is an
    /// `io::Error` around an `io::Error` around rustls's.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Connect(#[source] std::io::Error);

    #[test]
    fn an_untrusted_certificate_is_a_refusal_naming_ssl_cert_file() {
        let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let invalid = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls);
        let error = Connect(std::io::Error::other(invalid));
        let failure = transport_error(&error);
        assert_eq!(failure.kind, FailureKind::Permission);
        assert!(
            failure.message.contains("UnknownIssuer"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("SSL_CERT_FILE"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn other_failures_before_an_answer_pass() {
        let reset = Connect(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(transport_error(&reset).kind, FailureKind::Transient);
        let alert = Connect(std::io::Error::other(rustls::Error::DecryptError));
        assert_eq!(transport_error(&alert).kind, FailureKind::Transient);
    }
}
