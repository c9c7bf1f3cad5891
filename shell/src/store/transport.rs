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
    match tls_refusal(error).map(advice) {
        Some(advice) => {
            BackendError::with_kind(FailureKind::Permission, format!("{chain}: {advice}"))
        }
        None => BackendError::transient(chain),
    }
}

/// The TLS failure in `error`'s chain that no retry mends: the peer's
/// certificate refused, or a peer that does not speak TLS at all.
fn tls_refusal<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    std::iter::successors(Some(error), |&e| e.source())
        .flat_map(unwrapped)
        .filter_map(|e| e.downcast_ref::<rustls::Error>())
        .find(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::InvalidMessage(_)
            )
        })
}

/// What to do about `refusal`, in words that fit its cause.
fn advice(refusal: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    let rustls::Error::InvalidCertificate(certificate) = refusal else {
        return match refusal {
            rustls::Error::InvalidMessage(_) => "the store did not answer in TLS; if it serves \
                plain HTTP (an emulator), name it with http://"
                .to_owned(),
            _ => "the store presented no TLS certificate".to_owned(),
        };
    };
    match certificate {
        Cert::NotValidForName | Cert::NotValidForNameContext { .. } => {
            "the store's TLS certificate is for another name: check the host jobvault reaches \
             (STORAGE_EMULATOR_HOST, a proxy)"
                .to_owned()
        }
        Cert::Expired
        | Cert::ExpiredContext { .. }
        | Cert::NotValidYet
        | Cert::NotValidYetContext { .. } => "the store's TLS certificate is expired or not yet \
            valid: check this host's clock, then the certificate"
            .to_owned(),
        _ => untrusted_advice(std::env::var_os("SSL_CERT_FILE")),
    }
}

/// For a certificate no authority here vouches for: where to add one, or
/// why the one added did not help.
fn untrusted_advice(ssl_cert_file: Option<std::ffi::OsString>) -> String {
    let base = "the store's TLS certificate is not trusted here";
    match ssl_cert_file.filter(|path| !path.is_empty()) {
        Some(path) => format!(
            "{base}; SSL_CERT_FILE={} is set, but holds no authority that signed it (or \
             cannot be read)",
            std::path::Path::new(&path).display()
        ),
        None => format!(
            "{base}; if a proxy or a private certificate authority stands in between, set \
             SSL_CERT_FILE to a file holding its CA certificate"
        ),
    }
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
    fn the_advice_fits_the_cause() {
        let refused = |error: rustls::Error| {
            let error = Connect(std::io::Error::other(error));
            let failure = transport_error(&error);
            assert_eq!(failure.kind, FailureKind::Permission);
            failure.message
        };
        let name = refused(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        ));
        assert!(name.contains("another name"), "{name}");
        let expired = refused(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired,
        ));
        assert!(expired.contains("clock"), "{expired}");
        let plain = refused(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert!(plain.contains("http://"), "{plain}");
        let set = untrusted_advice(Some("/etc/proxy-ca.pem".into()));
        assert!(
            set.contains("SSL_CERT_FILE=/etc/proxy-ca.pem is set"),
            "{set}"
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
