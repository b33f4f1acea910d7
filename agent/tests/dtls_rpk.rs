//! DTLS with RFC 7250 raw public keys (LwM2M Security Mode 1) against libcoap's
//! GnuTLS server (`-M`: its key pair, any client key accepted). Only a build whose
//! OpenSSL is 3.2 or later can do them (`--features vendored-openssl` on Debian
//! 12); any other build must refuse them with the reason, which is checked here
//! too, so the test means something in both builds.

mod dtls_support;

use dtls_support::*;
use lwgate::dtls::{DtlsConfig, DtlsContext, DtlsSession, Security, RAW_PUBLIC_KEYS};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// An EC P-256 key pair: (private key PEM path, public key PEM path).
fn key_pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    require("openssl", "openssl");
    let (k, p) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let ok = Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&k)
        .status()
        .unwrap()
        .success()
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&k)
            .arg("-out")
            .arg(&p)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl could not make {name}'s key pair");
    (k, p)
}

/// libcoap's GnuTLS server in RPK mode: `-M` takes a PEM with the EC private key.
fn coap_server_rpk(key: &Path, dir: &Path) -> Peer {
    let bin = "coap-server-gnutls";
    require(bin, "libcoap3-bin");
    let p = free_port_pair();
    Peer::spawn(
        bin,
        Command::new(bin)
            .args(["-A", "127.0.0.1", "-p", &p.to_string(), "-M"])
            .arg(key),
        p + 1,
        dir,
    )
}

fn rpk_context(own_key: &Path, server_pub: &[u8]) -> Result<DtlsContext, String> {
    let mut c = DtlsConfig::new(Security::Rpk {
        own_key: Pki::read(own_key),
        server_key: server_pub.to_vec(),
    });
    c.handshake_timeout = Duration::from_secs(3);
    DtlsContext::new(&c).map_err(|e| e.to_string())
}

/// The server's public key as LwM2M's /0/x/4 holds it: DER SubjectPublicKeyInfo.
fn der_public_key(pem: &Path) -> Vec<u8> {
    openssl::pkey::PKey::public_key_from_pem(&Pki::read(pem))
        .unwrap()
        .public_key_to_der()
        .unwrap()
}

#[test]
fn without_openssl_3_2_raw_public_keys_are_refused_by_name() {
    if RAW_PUBLIC_KEYS {
        return; // the tests below run instead
    }
    let dir = tempfile::tempdir().unwrap();
    let (client_key, _) = key_pair(dir.path(), "client");
    let (_, server_pub) = key_pair(dir.path(), "server");
    let e = rpk_context(&client_key, &Pki::read(&server_pub)).unwrap_err();
    assert!(
        e.contains("has no raw public keys (RFC 7250 needs 3.2; build lwgate with --features vendored-openssl)"),
        "{e}"
    );
}

#[test]
fn raw_public_keys_then_coap_get() {
    if !RAW_PUBLIC_KEYS {
        return; // refused above; CI runs this file in the vendored-openssl build
    }
    let dir = tempfile::tempdir().unwrap();
    let (client_key, _) = key_pair(dir.path(), "client");
    let (server_key, server_pub) = key_pair(dir.path(), "server");
    let peer = coap_server_rpk(&server_key, dir.path());
    // PEM as lwgate.toml names it, DER as a bootstrap server writes /0/x/4.
    for server in [Pki::read(&server_pub), der_public_key(&server_pub)] {
        let ctx = rpk_context(&client_key, &server).unwrap();
        let t0 = Instant::now();
        let mut s = DtlsSession::new(&ctx, None, t0).unwrap();
        let mut d = Driver::new(peer.port);
        s.send(&coap_get_well_known(9)).unwrap();
        let app = d.run(&mut s, Duration::from_secs(10), |_, a| !a.is_empty());
        let (_, cipher) = established(&s);
        assert!(cipher.starts_with("ECDHE-ECDSA-"), "{cipher}");
        assert_eq!(coap_code(&app[0]), "2.05", "{}", peer.output());
        println!(
            "coap-server-gnutls RPK: {cipher}, handshake {:?}",
            s.handshake_time().unwrap()
        );
    }
}

#[test]
fn a_server_with_another_key_is_refused() {
    if !RAW_PUBLIC_KEYS {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client_key, _) = key_pair(dir.path(), "client");
    let (server_key, _) = key_pair(dir.path(), "server");
    let (_, other_pub) = key_pair(dir.path(), "other");
    let peer = coap_server_rpk(&server_key, dir.path());
    let ctx = rpk_context(&client_key, &Pki::read(&other_pub)).unwrap();
    let t0 = Instant::now();
    let mut s = DtlsSession::new(&ctx, None, t0).unwrap();
    Driver::new(peer.port).handshake(&mut s, Duration::from_secs(5));
    let why = failure(&s);
    println!("other server key → {why:?} after {:?}", t0.elapsed());
    assert_eq!(
        why,
        "server's raw public key is not the configured server_public_key (/0/x/4)"
    );
    assert!(s.last_alert().is_some_and(|(_, sent)| sent), "we end it");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_key_that_is_no_key_is_a_config_error() {
    if !RAW_PUBLIC_KEYS {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client_key, _) = key_pair(dir.path(), "client");
    let e = rpk_context(&client_key, b"not a key").unwrap_err();
    assert!(
        e.contains("the server public key is not a PEM or DER public key"),
        "{e}"
    );
}
