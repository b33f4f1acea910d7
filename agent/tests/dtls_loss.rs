//! Lost handshake datagrams (our driver discards them) are recovered by
//! retransmission; a server that never answers fails at our deadline.

mod dtls_support;

use dtls_support::*;
use lwgate::dtls::{DtlsConfig, DtlsContext, DtlsSession, DtlsState};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const KEY: &str = "lwgate-test-secret";

fn ctx(deadline: Duration) -> DtlsContext {
    let mut c = DtlsConfig::psk("lwgate-dev", KEY.as_bytes().to_vec());
    c.handshake_timeout = deadline;
    DtlsContext::new(&c).unwrap()
}

#[test]
fn lost_datagrams_are_retransmitted() {
    let dir = tempfile::tempdir().unwrap();
    for bin in ["coap-server-openssl", "coap-server-gnutls"] {
        let peer = coap_server_psk(bin, KEY, dir.path());
        // Our first two ClientHellos; the server's first reply; one of each.
        for (drop_out, drop_in) in [(2, 0), (0, 1), (1, 1)] {
            let t0 = Instant::now();
            let mut s = DtlsSession::new(&ctx(Duration::from_secs(10)), None, t0).unwrap();
            let mut d = Driver::new(peer.port);
            d.drop_out = drop_out;
            d.drop_in = drop_in;
            s.send(&coap_get_well_known(9)).unwrap();
            let app = d.run(&mut s, Duration::from_secs(12), |_, a| !a.is_empty());
            assert!(s.is_established(), "{bin}: {:?}", s.state());
            assert_eq!(coap_code(&app[0]), "2.05");
            let took = t0.elapsed();
            println!(
                "{bin}: {drop_out} out, {drop_in} in lost → established after {took:?} ({} sent, {} received)",
                d.sent, d.received
            );
            // Retransmission after 1 s, then 2 s: never OpenSSL's long back-off.
            assert!(took < Duration::from_secs(5), "{took:?}");
        }
    }
}

#[test]
fn lost_finished_flights_are_retransmitted() {
    let dir = tempfile::tempdir().unwrap();
    for bin in ["coap-server-openssl", "coap-server-gnutls"] {
        let peer = coap_server_psk(bin, KEY, dir.path());
        for (out, inn) in [(1, 0), (0, 1)] {
            let t0 = Instant::now();
            let mut s = DtlsSession::new(&ctx(Duration::from_secs(10)), None, t0).unwrap();
            let mut d = Driver::new(peer.port);
            d.drop_finished_out = out;
            d.drop_finished_in = inn;
            s.send(&coap_get_well_known(10)).unwrap();
            let app = d.run(&mut s, Duration::from_secs(12), |_, a| !a.is_empty());
            assert_eq!(coap_code(&app[0]), "2.05", "{bin}: {:?}", s.state());
            println!(
                "{bin}: our Finished lost {out}, theirs {inn} → {:?}",
                t0.elapsed()
            );
            assert!(t0.elapsed() < Duration::from_secs(3));
        }
    }
}

#[test]
fn silent_server_times_out_at_the_deadline() {
    // A socket that reads nothing and answers nothing.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Duration::from_secs(2);
    let t0 = Instant::now();
    let mut s = DtlsSession::new(&ctx(deadline), None, t0).unwrap();
    let mut d = Driver::new(silent.local_addr().unwrap().port());
    d.handshake(&mut s, Duration::from_secs(5));
    let took = t0.elapsed();
    let why = failure(&s);
    println!(
        "silent server: {why:?} after {took:?}, {} datagrams sent",
        d.sent
    );
    assert!(why.starts_with("handshake timed out after 2.0 s"), "{why}");
    assert!(why.contains("no answer"), "{why}");
    assert!(took >= deadline && took < deadline + Duration::from_millis(300));
    // The first ClientHello and retransmissions at 1 s and 2 s... within 2 s: two.
    assert!(d.sent >= 2, "{}", d.sent);
    assert_eq!(s.poll_timeout(), None);
    assert!(s.send(b"x").is_err());
}

#[test]
fn nothing_listening_times_out_too() {
    // ICMP port unreachable comes back; DTLS cannot tell it from loss.
    let port = free_port();
    let t0 = Instant::now();
    let mut s = DtlsSession::new(&ctx(Duration::from_secs(2)), None, t0).unwrap();
    Driver::new(port).handshake(&mut s, Duration::from_secs(5));
    let why = failure(&s);
    assert!(why.starts_with("handshake timed out after 2.0 s"), "{why}");
    assert!(t0.elapsed() < Duration::from_millis(2_300));
}

#[test]
fn timers_follow_the_given_clock() {
    // Our deadline uses the `now` passed in, not the wall clock.
    let t0 = Instant::now();
    let mut s = DtlsSession::new(&ctx(Duration::from_secs(15)), None, t0).unwrap();
    assert!(s.poll_transmit().is_some(), "a ClientHello");
    let first = s.poll_timeout().unwrap();
    assert!(first <= t0 + Duration::from_millis(1_050), "{first:?}");
    s.handle_timeout(t0 + Duration::from_secs(14));
    assert_eq!(s.state(), &DtlsState::Handshaking);
    s.handle_timeout(t0 + Duration::from_secs(15));
    assert!(failure(&s).starts_with("handshake timed out after 15.0 s"));
}
