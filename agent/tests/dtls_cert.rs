//! DTLS with certificates (ECDSA P-256) against libcoap's servers on OpenSSL and
//! GnuTLS, which also check our client certificate against the test CA.

mod dtls_support;

use dtls_support::*;
use lwgate::dtls::{CertUsage, DtlsConfig, DtlsContext, DtlsSession, Security, ServerTrust};
use std::time::{Duration, Instant};

const PEERS: [&str; 2] = ["coap-server-openssl", "coap-server-gnutls"];

fn cert_config(pki: &Pki, server: ServerTrust, sni: Option<&str>) -> DtlsContext {
    let mut c = DtlsConfig::new(Security::Certificate {
        own_cert: Pki::read(&pki.client_cert),
        own_key: Pki::read(&pki.client_key),
        server,
    });
    c.sni = sni.map(String::from);
    c.handshake_timeout = Duration::from_secs(3);
    DtlsContext::new(&c).unwrap()
}

fn handshake(peer: &Peer, ctx: &DtlsContext) -> DtlsSession {
    let mut s = DtlsSession::new(ctx, None, Instant::now()).unwrap();
    Driver::new(peer.port).handshake(&mut s, Duration::from_secs(10));
    s
}

fn pinned(path: &std::path::Path, usage: CertUsage) -> ServerTrust {
    ServerTrust::Pinned {
        cert: Pki::read(path),
        usage,
    }
}

#[test]
fn ca_file_and_name_then_coap_get() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    for bin in PEERS {
        let peer = coap_server_pki(bin, &pki, dir.path());
        for sni in ["localhost", "127.0.0.1"] {
            let ctx = cert_config(&pki, ServerTrust::CaFile(pki.ca_cert.clone()), Some(sni));
            let mut s = DtlsSession::new(&ctx, None, Instant::now()).unwrap();
            let mut d = Driver::new(peer.port);
            s.send(&coap_get_well_known(7)).unwrap();
            let app = d.run(&mut s, Duration::from_secs(10), |_, a| !a.is_empty());
            let (_, cipher) = established(&s);
            assert!(cipher.starts_with("ECDHE-ECDSA-"), "{cipher}");
            assert_eq!(coap_code(&app[0]), "2.05", "{}", peer.output());
            println!("{bin} ({sni}): {cipher}");
        }
    }
}

#[test]
fn pinned_certificate_usages() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    // DER as LwM2M's /0/x/4 holds it.
    let der = openssl::x509::X509::from_pem(&Pki::read(&pki.server_cert))
        .unwrap()
        .to_der()
        .unwrap();
    let der_path = dir.path().join("server.der");
    std::fs::write(&der_path, der).unwrap();
    for bin in PEERS {
        let peer = coap_server_pki(bin, &pki, dir.path());
        let ok = [
            // 3: exactly this certificate, no CA and no name (a wrong SNI is fine).
            (
                pinned(&der_path, CertUsage::DomainIssued),
                Some("wrong.example"),
            ),
            // 1: the server's own certificate, or one it chains to.
            (
                pinned(&pki.server_cert, CertUsage::ServiceCertificate),
                None,
            ),
            (
                pinned(&pki.ca_cert, CertUsage::ServiceCertificate),
                Some("localhost"),
            ),
            // 2 and 0: the CA as trust anchor.
            (
                pinned(&pki.ca_cert, CertUsage::TrustAnchor),
                Some("localhost"),
            ),
            (pinned(&pki.ca_cert, CertUsage::CaConstraint), None),
        ];
        for (trust, sni) in ok {
            let what = format!("{trust:?} sni={sni:?}");
            let s = handshake(&peer, &cert_config(&pki, trust, sni));
            assert!(s.is_established(), "{bin} {what}: {:?}", s.state());
        }
        let bad = [
            // 3 with the CA: the CA is not the server's certificate.
            (
                pinned(&pki.ca_cert, CertUsage::DomainIssued),
                "not the pinned",
            ),
            (
                pinned(&pki.other_ca_cert, CertUsage::TrustAnchor),
                "not trusted",
            ),
            (
                pinned(&pki.client_cert, CertUsage::ServiceCertificate),
                "not trusted",
            ),
        ];
        for (trust, expect) in bad {
            let what = format!("{trust:?}");
            let s = handshake(&peer, &cert_config(&pki, trust, None));
            let why = failure(&s);
            assert!(why.contains(expect), "{bin} {what}: {why}");
        }
    }
}

#[test]
fn untrusted_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    for bin in PEERS {
        let peer = coap_server_pki(bin, &pki, dir.path());
        let ctx = cert_config(&pki, ServerTrust::CaFile(pki.other_ca_cert.clone()), None);
        let t0 = Instant::now();
        let s = handshake(&peer, &ctx);
        let why = failure(&s);
        println!("{bin}: other CA → {why:?} after {:?}", t0.elapsed());
        // libcoap-openssl sends its CA along, so OpenSSL names the unknown root.
        assert!(
            [
                "server certificate not trusted: self-signed certificate in certificate chain",
                "server certificate not trusted: unable to get local issuer certificate"
            ]
            .contains(&why.as_str()),
            "{why}"
        );
        // We end it with unknown_ca: what /1/x/11 is given.
        assert_eq!(s.last_alert(), Some((48, true)), "{why}");
    }
}

/// The names failure messages give alerts (those the servers here send).
fn alert_name(code: u8) -> &'static str {
    match code {
        42 => "bad_certificate",
        46 => "certificate_unknown",
        48 => "unknown_ca",
        _ => "another alert",
    }
}

/// A server certificate from the right CA whose validity ended yesterday (made
/// with the openssl crate: the CLI of OpenSSL 3.0 cannot back-date one).
fn expired_server_cert(pki: &Pki) -> std::path::PathBuf {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::X509;
    let ca = X509::from_pem(&Pki::read(&pki.ca_cert)).unwrap();
    let ca_key = PKey::private_key_from_pem(&Pki::read(&pki.dir.join("ca.key"))).unwrap();
    let old = X509::from_pem(&Pki::read(&pki.server_cert)).unwrap();
    let key = PKey::private_key_from_pem(&Pki::read(&pki.server_key)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(old.subject_name()).unwrap();
    b.set_issuer_name(ca.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(now - 30 * 86_400).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now - 86_400).unwrap())
        .unwrap();
    let serial = openssl::bn::BigNum::from_u32(4242).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    let san = openssl::x509::extension::SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(Some(&ca), None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let path = pki.dir.join("expired-server.pem");
    std::fs::write(&path, b.build().to_pem().unwrap()).unwrap();
    path
}

#[test]
fn expired_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = Pki::generate(dir.path());
    pki.server_cert = expired_server_cert(&pki);
    for bin in PEERS {
        let peer = coap_server_pki(bin, &pki, dir.path());
        let ctx = cert_config(&pki, ServerTrust::CaFile(pki.ca_cert.clone()), None);
        let t0 = Instant::now();
        let s = handshake(&peer, &ctx);
        let why = failure(&s);
        println!("{bin}: expired → {why:?} after {:?}", t0.elapsed());
        assert_eq!(
            why,
            "server certificate not trusted: certificate has expired"
        );
        assert_eq!(s.last_alert(), Some((45, true)), "certificate_expired");
    }
}

#[test]
fn wrong_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    for bin in PEERS {
        let peer = coap_server_pki(bin, &pki, dir.path());
        for sni in ["wrong.example", "127.0.0.2"] {
            let ctx = cert_config(&pki, ServerTrust::CaFile(pki.ca_cert.clone()), Some(sni));
            let why = failure(&handshake(&peer, &ctx));
            println!("{bin}: SNI {sni} → {why:?}");
            assert!(why.contains(&format!("not valid for \"{sni}\"")), "{why}");
        }
    }
}

#[test]
fn server_refuses_our_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let other = tempfile::tempdir().unwrap();
    let stranger = Pki::generate(other.path());
    for bin in PEERS {
        let peer = coap_server_pki(bin, &pki, dir.path());
        // Our certificate from a CA the server does not know.
        let mut c = DtlsConfig::new(Security::Certificate {
            own_cert: Pki::read(&stranger.client_cert),
            own_key: Pki::read(&stranger.client_key),
            server: ServerTrust::CaFile(pki.ca_cert.clone()),
        });
        c.handshake_timeout = Duration::from_secs(3);
        let s = handshake(&peer, &DtlsContext::new(&c).unwrap());
        let why = failure(&s);
        println!("{bin}: our certificate refused → {why:?}");
        assert!(
            why.contains("server rejected our certificate (alert: "),
            "{why}"
        );
        // The server's alert, received: what /1/x/11 is given.
        let (code, sent) = s.last_alert().expect("an alert");
        assert!(
            !sent && why.ends_with(&format!("{})", alert_name(code))),
            "{why}"
        );
    }
}

#[test]
fn bad_own_key_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let c = DtlsConfig::new(Security::Certificate {
        own_cert: Pki::read(&pki.client_cert),
        own_key: Pki::read(&pki.server_key),
        server: ServerTrust::CaFile(pki.ca_cert.clone()),
    });
    let e = DtlsContext::new(&c).unwrap_err().to_string();
    assert!(e.contains("does not belong"), "{e}");
    let c = DtlsConfig::new(Security::Rpk {
        own_key: Pki::read(&pki.client_key),
        server_key: b"x".to_vec(),
    });
    let e = DtlsContext::new(&c).unwrap_err().to_string();
    println!("RPK: {e}");
    if lwgate::dtls::RAW_PUBLIC_KEYS {
        assert!(
            e.contains("the server public key is not a PEM or DER public key"),
            "{e}"
        );
    } else {
        assert!(
            e.contains("has no raw public keys (RFC 7250 needs 3.2"),
            "{e}"
        );
    }
}
