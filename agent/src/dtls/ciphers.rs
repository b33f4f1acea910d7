//! Cipher suites: LwM2M's /0/x/16 names them by IANA number, OpenSSL by its own
//! names, so the numbers we accept are the ones in this table.

use super::DtlsError;

/// What kind of credential a suite authenticates with: a suite of the other kind
/// can never complete, so a PSK session must not offer certificate suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteKind {
    Psk,
    Certificate,
}

/// (IANA number, OpenSSL name, kind). The first seven are the defaults.
const SUITES: &[(u16, &str, SuiteKind)] = &[
    // RFC 7925's mandatory suites.
    (0xC0A8, "PSK-AES128-CCM8", SuiteKind::Psk),
    (0xC0AE, "ECDHE-ECDSA-AES128-CCM8", SuiteKind::Certificate),
    // What Californium-based servers (Leshan, ThingsBoard) offer besides.
    (0x00A8, "PSK-AES128-GCM-SHA256", SuiteKind::Psk),
    (0x00AE, "PSK-AES128-CBC-SHA256", SuiteKind::Psk),
    (0xC037, "ECDHE-PSK-AES128-CBC-SHA256", SuiteKind::Psk),
    (
        0xC02B,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        SuiteKind::Certificate,
    ),
    (0xC023, "ECDHE-ECDSA-AES128-SHA256", SuiteKind::Certificate),
    // Accepted when a server's /0/x/16 asks for them; not offered by default.
    (0xC0A4, "PSK-AES128-CCM", SuiteKind::Psk),
    (0xC0A5, "PSK-AES256-CCM", SuiteKind::Psk),
    (0xC0A9, "PSK-AES256-CCM8", SuiteKind::Psk),
    (0x00A9, "PSK-AES256-GCM-SHA384", SuiteKind::Psk),
    (0xCCAB, "PSK-CHACHA20-POLY1305", SuiteKind::Psk),
    (0xCCAC, "ECDHE-PSK-CHACHA20-POLY1305", SuiteKind::Psk),
    (0xC0AC, "ECDHE-ECDSA-AES128-CCM", SuiteKind::Certificate),
    (0xC0AD, "ECDHE-ECDSA-AES256-CCM", SuiteKind::Certificate),
    (0xC0AF, "ECDHE-ECDSA-AES256-CCM8", SuiteKind::Certificate),
    (
        0xC02C,
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        SuiteKind::Certificate,
    ),
    (0xC024, "ECDHE-ECDSA-AES256-SHA384", SuiteKind::Certificate),
    (
        0xCCA9,
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        SuiteKind::Certificate,
    ),
    (
        0xC02F,
        "ECDHE-RSA-AES128-GCM-SHA256",
        SuiteKind::Certificate,
    ),
    (0xC027, "ECDHE-RSA-AES128-SHA256", SuiteKind::Certificate),
];

const DEFAULTS: usize = 7;

/// The OpenSSL name of an IANA cipher-suite number, when we know it.
pub fn openssl_name(iana: u16) -> Option<&'static str> {
    SUITES.iter().find(|s| s.0 == iana).map(|s| s.1)
}

/// The IANA number of an OpenSSL suite name (to report what was negotiated).
pub fn iana_number(openssl_name: &str) -> Option<u16> {
    SUITES.iter().find(|s| s.1 == openssl_name).map(|s| s.0)
}

/// Every IANA number this table maps, for tests and diagnostics.
pub fn known() -> impl Iterator<Item = (u16, &'static str)> {
    SUITES.iter().map(|s| (s.0, s.1))
}

/// The OpenSSL cipher string for a session of `kind`: the given IANA list in its
/// order (a suite of the other kind is refused, it could not complete), or the
/// defaults of that kind.
pub fn cipher_string(list: Option<&[u16]>, kind: SuiteKind) -> Result<String, DtlsError> {
    let names: Vec<&str> = match list {
        None => SUITES[..DEFAULTS]
            .iter()
            .filter(|s| s.2 == kind)
            .map(|s| s.1)
            .collect(),
        Some(list) => {
            let mut names = Vec::with_capacity(list.len());
            for &n in list {
                let Some(&(_, name, k)) = SUITES.iter().find(|s| s.0 == n) else {
                    return Err(DtlsError::Config(format!(
                        "cipher suite 0x{n:04X} is not one lwgate maps to OpenSSL"
                    )));
                };
                if k != kind {
                    return Err(DtlsError::Config(format!(
                        "cipher suite 0x{n:04X} ({name}) needs {} credentials, not {}",
                        kind_name(k),
                        kind_name(kind)
                    )));
                }
                names.push(name);
            }
            names
        }
    };
    if names.is_empty() {
        return Err(DtlsError::Config("the cipher-suite list is empty".into()));
    }
    Ok(names.join(":"))
}

fn kind_name(k: SuiteKind) -> &'static str {
    match k {
        SuiteKind::Psk => "PSK",
        SuiteKind::Certificate => "certificate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ssl::{Ssl, SslContext, SslMethod};

    #[test]
    fn defaults_per_kind() {
        assert_eq!(
            cipher_string(None, SuiteKind::Psk).unwrap(),
            "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:PSK-AES128-CBC-SHA256:ECDHE-PSK-AES128-CBC-SHA256"
        );
        assert_eq!(
            cipher_string(None, SuiteKind::Certificate).unwrap(),
            "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256"
        );
    }

    #[test]
    fn override_keeps_order_and_refuses_strangers() {
        assert_eq!(
            cipher_string(Some(&[0x00A8, 0xC0A8]), SuiteKind::Psk).unwrap(),
            "PSK-AES128-GCM-SHA256:PSK-AES128-CCM8"
        );
        let e = cipher_string(Some(&[0x1301]), SuiteKind::Psk).unwrap_err();
        assert!(e.to_string().contains("0x1301"), "{e}");
        let e = cipher_string(Some(&[0xC0AE]), SuiteKind::Psk).unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
        assert!(cipher_string(Some(&[]), SuiteKind::Psk).is_err());
    }

    #[test]
    fn lookups() {
        assert_eq!(openssl_name(0xC0A8), Some("PSK-AES128-CCM8"));
        assert_eq!(iana_number("ECDHE-ECDSA-AES128-SHA256"), Some(0xC023));
        assert_eq!(openssl_name(0x0001), None);
    }

    /// The table against OpenSSL itself: each number decodes to the name we give,
    /// and each name is one this OpenSSL accepts.
    #[test]
    fn table_matches_openssl() {
        let ctx = SslContext::builder(SslMethod::dtls()).unwrap().build();
        let ssl = Ssl::new(&ctx).unwrap();
        for (n, name) in known() {
            let lists = ssl.bytes_to_cipher_list(&n.to_be_bytes(), false).unwrap();
            let got: Vec<&str> = lists.suites.iter().map(|c| c.name()).collect();
            assert_eq!(got, vec![name], "0x{n:04X}");
            let mut b = SslContext::builder(SslMethod::dtls()).unwrap();
            b.set_cipher_list(name).unwrap();
        }
    }
}
