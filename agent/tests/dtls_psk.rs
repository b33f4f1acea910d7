//! DTLS PSK against independent peers: libcoap's servers on OpenSSL and GnuTLS,
//! `gnutls-serv` and `openssl s_server`.

mod dtls_support;

use dtls_support::*;
use lwgate::dtls::{DtlsConfig, DtlsContext, DtlsSession};
use std::time::{Duration, Instant};

const KEY: &str = "lwgate-test-secret";

fn psk(identity: &str, key: &[u8], deadline: Duration) -> DtlsContext {
    let mut c = DtlsConfig::psk(identity, key.to_vec());
    c.handshake_timeout = deadline;
    DtlsContext::new(&c).unwrap()
}

/// Handshake, then a CoAP GET whose 2.05 response must decrypt.
fn get_well_known(peer: &Peer, ctx: &DtlsContext) -> (bool, String) {
    try_get_well_known(peer, ctx).unwrap()
}

fn try_get_well_known(peer: &Peer, ctx: &DtlsContext) -> Result<(bool, String), String> {
    let mut s = DtlsSession::new(ctx, None, Instant::now()).unwrap();
    let mut d = Driver::new(peer.port);
    // Sent before the handshake ends: queued, then encrypted.
    s.send(&coap_get_well_known(0x1234))
        .map_err(|e| e.to_string())?;
    let app = d.run(&mut s, Duration::from_secs(10), |_, app| !app.is_empty());
    if let lwgate::dtls::DtlsState::Failed(why) = s.state() {
        return Err(why.clone());
    }
    let got = established(&s);
    assert_eq!(coap_code(&app[0]), "2.05", "{}", peer.output());
    assert!(
        String::from_utf8_lossy(&app[0]).contains("</>"),
        "{:?}",
        app[0]
    );
    s.close();
    while let Some(d2) = s.poll_transmit() {
        let _ = d.sock.send(&d2);
    }
    Ok(got)
}

#[test]
fn psk_coap_get_against_libcoap_openssl_and_gnutls() {
    let dir = tempfile::tempdir().unwrap();
    for bin in ["coap-server-openssl", "coap-server-gnutls"] {
        let peer = coap_server_psk(bin, KEY, dir.path());
        let ctx = psk("lwgate-dev", KEY.as_bytes(), Duration::from_secs(5));
        let (resumed, cipher) = get_well_known(&peer, &ctx);
        assert!(!resumed);
        println!("{bin}: established with {cipher}");
    }
}

#[test]
fn wrong_psk_fails_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    for bin in ["coap-server-openssl", "coap-server-gnutls"] {
        let peer = coap_server_psk(bin, KEY, dir.path());
        let ctx = psk("lwgate-dev", b"not-the-key", Duration::from_secs(2));
        let t0 = Instant::now();
        let mut s = DtlsSession::new(&ctx, None, t0).unwrap();
        Driver::new(peer.port).handshake(&mut s, Duration::from_secs(5));
        let why = failure(&s);
        let took = t0.elapsed();
        println!("{bin}: wrong PSK → {why:?} after {took:?}");
        assert!(took < Duration::from_millis(2_600), "{took:?}");
        assert!(why.contains("PSK"), "{why}");
    }
}

#[test]
fn psk_echo_against_gnutls_serv() {
    let dir = tempfile::tempdir().unwrap();
    let peer = gnutls_serv_psk("lwgate-dev", KEY.as_bytes(), dir.path());
    let ctx = psk("lwgate-dev", KEY.as_bytes(), Duration::from_secs(5));
    let mut s = DtlsSession::new(&ctx, None, Instant::now()).unwrap();
    let mut d = Driver::new(peer.port);
    d.handshake(&mut s, Duration::from_secs(10));
    let (_, cipher) = established(&s);
    let max = s.max_app_datagram().unwrap();
    assert!(max > 1000 && max < MTU, "{max}");
    // The largest datagram that fits goes out as one datagram within the MTU
    // (the driver checks every datagram for that).
    let big: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    s.send(&big).unwrap();
    let one = s.poll_transmit().unwrap();
    assert!(s.poll_transmit().is_none());
    assert_whole_records(&one);
    // gnutls-serv's echo answers in pieces of its own size, so echo small ones.
    s.send(b"hello").unwrap();
    s.send(&[7u8; 200]).unwrap();
    let app = d.run(&mut s, Duration::from_secs(5), |_, app| app.len() >= 2);
    assert_eq!(
        app,
        vec![b"hello".to_vec(), vec![7u8; 200]],
        "{}",
        peer.output()
    );
    println!("gnutls-serv: {cipher}, largest datagram {max} bytes in MTU {MTU}");
}

#[test]
fn unknown_identity() {
    let dir = tempfile::tempdir().unwrap();
    // gnutls-serv knows "lwgate-dev" only.
    let peer = gnutls_serv_psk("lwgate-dev", KEY.as_bytes(), dir.path());
    let ctx = psk("stranger", KEY.as_bytes(), Duration::from_secs(2));
    let t0 = Instant::now();
    let mut s = DtlsSession::new(&ctx, None, t0).unwrap();
    Driver::new(peer.port).handshake(&mut s, Duration::from_secs(5));
    let why = failure(&s);
    println!(
        "gnutls-serv: unknown identity → {why:?} after {:?}",
        t0.elapsed()
    );
    assert!(why.contains("identity"), "{why}");
    assert!(t0.elapsed() < Duration::from_millis(2_600));
    // GnuTLS drops what it cannot decrypt: no alert for /1/x/11.
    assert_eq!(s.last_alert(), None, "{why}");

    // libcoap's servers use their default key (-k) for any identity they do not
    // match, and openssl s_server only warns: a stranger with the right key gets
    // in, one with a wrong key times out as above.
    let peer = s_server_psk(KEY.as_bytes(), "lwgate-dev", dir.path());
    let mut s = DtlsSession::new(&ctx, None, Instant::now()).unwrap();
    Driver::new(peer.port).handshake(&mut s, Duration::from_secs(5));
    // s_server logs "client identity not what we expected" to a buffered stdout,
    // too late to assert on reliably; getting in is the point.
    established(&s);
}

#[test]
fn each_default_suite_by_iana_number() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    for bin in ["coap-server-openssl", "coap-server-gnutls"] {
        let peer = coap_server_psk(bin, KEY, dir.path());
        for n in [0xC0A8u16, 0x00A8, 0x00AE, 0xC037] {
            let mut c = DtlsConfig::psk("lwgate-dev", KEY.as_bytes().to_vec());
            c.ciphers = Some(vec![n]);
            match try_get_well_known(&peer, &DtlsContext::new(&c).unwrap()) {
                Ok((_, cipher)) => {
                    assert_eq!(lwgate::dtls::ciphers::iana_number(&cipher), Some(n))
                }
                // libcoap 4.3.1's OpenSSL server leaves the CBC PSK suites out.
                Err(why) if bin == "coap-server-openssl" && matches!(n, 0x00AE | 0xC037) => {
                    assert_eq!(
                        why,
                        "server refused the handshake (no PSK suite in common, \
                         or identity or key refused) (alert: handshake_failure)"
                    );
                }
                Err(why) => panic!("{bin}: 0x{n:04X} → {why}"),
            }
        }
        drop(peer);
        let peer = coap_server_pki(bin, &pki, dir.path());
        for n in [0xC0AEu16, 0xC02B, 0xC023] {
            let mut c = DtlsConfig::new(lwgate::dtls::Security::Certificate {
                own_cert: Pki::read(&pki.client_cert),
                own_key: Pki::read(&pki.client_key),
                server: lwgate::dtls::ServerTrust::CaFile(pki.ca_cert.clone()),
            });
            c.ciphers = Some(vec![n]);
            let (_, cipher) = get_well_known(&peer, &DtlsContext::new(&c).unwrap());
            assert_eq!(lwgate::dtls::ciphers::iana_number(&cipher), Some(n));
        }
    }
    // The two libcoap-openssl refuses, against openssl s_server.
    let peer = s_server_psk(KEY.as_bytes(), "lwgate-dev", dir.path());
    for n in [0x00AEu16, 0xC037] {
        let mut c = DtlsConfig::psk("lwgate-dev", KEY.as_bytes().to_vec());
        c.ciphers = Some(vec![n]);
        let mut s = DtlsSession::new(&DtlsContext::new(&c).unwrap(), None, Instant::now()).unwrap();
        let mut d = Driver::new(peer.port);
        d.handshake(&mut s, Duration::from_secs(5));
        let (_, cipher) = established(&s);
        assert_eq!(lwgate::dtls::ciphers::iana_number(&cipher), Some(n));
        s.close();
        while let Some(x) = s.poll_transmit() {
            let _ = d.sock.send(&x);
        }
    }
}
