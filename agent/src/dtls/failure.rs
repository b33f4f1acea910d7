//! Why a handshake failed, in words an operator can act on, naming the alert.

use super::alert::{self, ERR_LIB_SSL};
use super::ciphers::SuiteKind;
use openssl::error::ErrorStack;
use openssl::ssl::{self, SslRef};
use openssl::x509::X509VerifyResult;

/// What the failure is about, besides OpenSSL's error.
pub struct Facts<'a> {
    pub kind: SuiteKind,
    pub sni: Option<&'a str>,
    pub rpk: bool,
}

pub fn describe(e: &ssl::Error, ssl: &SslRef, facts: &Facts<'_>) -> String {
    from_stack(e.ssl_error(), e.io_error(), ssl, facts)
}

pub fn from_stack(
    stack: Option<&ErrorStack>,
    io: Option<&std::io::Error>,
    ssl: &SslRef,
    facts: &Facts<'_>,
) -> String {
    let errors = stack.map(|s| s.errors()).unwrap_or_default();
    for err in errors {
        if let Some(a) = alert::received(err.library_code(), err.reason_code()) {
            return from_alert(a, facts.kind);
        }
    }
    let verify = ssl.verify_result();
    if verify != X509VerifyResult::OK {
        return untrusted(verify, facts);
    }
    let reason = errors
        .iter()
        .find(|e| e.library_code() == ERR_LIB_SSL)
        .or(errors.first())
        .and_then(|e| e.reason());
    match (reason, io) {
        (Some(r), _) => format!("DTLS failed: {r} (at {})", ssl.state_string_long()),
        (None, Some(io)) => format!("DTLS failed: {io}"),
        (None, None) => format!("DTLS failed at {}", ssl.state_string_long()),
    }
}

/// A fatal alert from the server, read for what it means in this mode.
pub fn from_alert(a: u8, kind: SuiteKind) -> String {
    let name = alert::name(a);
    let what = match (a, kind) {
        (115, _) => "PSK identity unknown to the server",
        (20 | 21 | 51, SuiteKind::Psk) => "PSK rejected by server",
        (40, SuiteKind::Psk) => {
            "server refused the handshake (no PSK suite in common, or identity or key refused)"
        }
        (40 | 71, SuiteKind::Certificate) => {
            "server refused the handshake (no suite, curve or signature algorithm in common)"
        }
        (41 | 42 | 43 | 44 | 45 | 46 | 48 | 49 | 116, SuiteKind::Certificate) => {
            "server rejected our certificate"
        }
        (112, _) => "server does not know the name we sent as SNI",
        (70, _) => "server does not speak DTLS 1.2",
        (0, _) => "server closed the connection during the handshake",
        _ => "server ended the handshake",
    };
    format!("{what} (alert: {name})")
}

fn untrusted(v: X509VerifyResult, facts: &Facts<'_>) -> String {
    if v == X509VerifyResult::APPLICATION_VERIFICATION && facts.rpk {
        return "server's raw public key is not the configured server_public_key (/0/x/4)".into();
    }
    if v == X509VerifyResult::APPLICATION_VERIFICATION {
        return "server certificate is not the pinned server certificate (certificate usage 3)"
            .into();
    }
    // X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH.
    if matches!(v.as_raw(), 62 | 64) {
        if let Some(name) = facts.sni {
            return format!(
                "server certificate not valid for {name:?}: {}",
                v.error_string()
            );
        }
    }
    format!("server certificate not trusted: {}", v.error_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_read_for_the_mode() {
        assert_eq!(
            from_alert(51, SuiteKind::Psk),
            "PSK rejected by server (alert: decrypt_error)"
        );
        assert_eq!(
            from_alert(115, SuiteKind::Psk),
            "PSK identity unknown to the server (alert: unknown_psk_identity)"
        );
        assert!(
            from_alert(48, SuiteKind::Certificate).starts_with("server rejected our certificate")
        );
        assert!(from_alert(80, SuiteKind::Psk).ends_with("(alert: internal_error)"));
    }

    #[test]
    fn verification_errors_in_words() {
        let f = Facts {
            kind: SuiteKind::Certificate,
            sni: Some("lwm2m.example"),
            rpk: false,
        };
        let s = untrusted(X509VerifyResult::APPLICATION_VERIFICATION, &f);
        assert!(s.contains("pinned"), "{s}");
    }
}
