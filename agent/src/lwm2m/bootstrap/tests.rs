use super::*;
use crate::lwm2m::factory::{self, DeviceInfo};
use coap_lite::MessageType;
use std::time::Duration;

struct H {
    now: Instant,
    b: Bootstrapper,
    mid: u16,
}

fn bs_account_tree() -> Tree {
    let mut t = factory::trees(&[], &DeviceInfo::default()).gateway;
    t.set(0, 5, 0, Value::String("coap://127.0.0.1:5685".into()));
    t.set(0, 5, 1, Value::Boolean(true));
    t.set(0, 5, 2, Value::Integer(3));
    t
}

impl H {
    fn new() -> Self {
        let now = Instant::now();
        let b = Bootstrapper::start(
            now,
            TxParams::default(),
            3,
            "gw",
            Version::V1_1,
            Registry::builtin(),
            bs_account_tree(),
        );
        Self { now, b, mid: 1 }
    }

    fn take(&mut self) -> Vec<Packet> {
        std::iter::from_fn(|| self.b.poll_transmit())
            .map(|b| Packet::from_bytes(&b).unwrap())
            .collect()
    }

    fn accept_request(&mut self) {
        let req = self.take().remove(0);
        assert_eq!(message::uri_path(&req).unwrap(), ["bs"]);
        assert_eq!(message::uri_query(&req).unwrap(), ["ep=gw", "pct=112"]);
        let mut r = message::response(&req, codes::CHANGED);
        r.header.set_type(MessageType::Acknowledgement);
        r.header.message_id = req.header.message_id;
        self.b.handle_datagram(self.now, &r.to_bytes().unwrap());
    }

    fn req(&mut self, method: RequestType, path: &str, build: impl FnOnce(&mut Packet)) -> Packet {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut p = message::request(method, &segs, &[]);
        self.mid += 1;
        p.header.message_id = self.mid;
        p.set_token(vec![9, self.mid as u8]);
        build(&mut p);
        self.b.handle_datagram(self.now, &p.to_bytes().unwrap());
        self.take().remove(0)
    }

    fn write_tlv(&mut self, path: &str, recs: &[codec::Record]) -> u8 {
        let base = Path::parse(path).unwrap();
        let body = codec::encode(Format::Tlv, &base, recs).unwrap();
        let r = self.req(RequestType::Put, path, |p| {
            message::set_content_format(p, Format::Tlv.number());
            p.payload = body;
        });
        message::code_byte(&r)
    }
}

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

fn account_records() -> (Vec<codec::Record>, Vec<codec::Record>) {
    let sec = vec![
        (p("/0/1/0"), Value::String("coap://127.0.0.1:5683".into())),
        (p("/0/1/1"), Value::Boolean(false)),
        (p("/0/1/2"), Value::Integer(3)),
        (p("/0/1/10"), Value::Integer(123)),
    ];
    let srv = vec![
        (p("/1/0/0"), Value::Integer(123)),
        (p("/1/0/1"), Value::Integer(60)),
        (p("/1/0/6"), Value::Boolean(true)),
        (p("/1/0/7"), Value::String("U".into())),
    ];
    (sec, srv)
}

#[test]
fn delete_write_discover_finish() {
    let mut h = H::new();
    h.accept_request();
    assert_eq!(
        message::code_byte(&h.req(RequestType::Delete, "/", |_| {})),
        codes::DELETED
    );
    let (sec, srv) = account_records();
    assert_eq!(h.write_tlv("/0", &sec), codes::CHANGED);
    assert_eq!(h.write_tlv("/1", &srv), codes::CHANGED);
    let d = h.req(RequestType::Get, "/", |p| {
        message::set_uint(p, coap_lite::CoapOption::Accept, 40)
    });
    let text = String::from_utf8(d.payload).unwrap();
    assert!(text.starts_with("</>;lwm2m=1.1"), "{text}");
    assert!(
        text.contains("</0/1>;ssid=123;uri=\"coap://127.0.0.1:5683\""),
        "{text}"
    );
    assert!(
        text.contains("</0/5>"),
        "the bootstrap account survives Delete /: {text}"
    );
    assert!(
        text.contains("</1/0>;ssid=123") && text.contains("</3/0>"),
        "{text}"
    );
    let r = h.req(RequestType::Get, "/1/0", |p| {
        message::set_uint(p, coap_lite::CoapOption::Accept, 110)
    });
    assert_eq!(message::code_byte(&r), codes::CONTENT);
    let r = h.req(RequestType::Get, "/3/0", |_| {});
    assert_eq!(
        message::code_byte(&r),
        codes::METHOD_NOT_ALLOWED,
        "Bootstrap-Read is for /1 and /2"
    );
    let r = h.req(RequestType::Post, "/bs", |_| {});
    assert_eq!(message::code_byte(&r), codes::CHANGED);
    match h.b.outcome() {
        Some(Outcome::Done(t)) => {
            assert_eq!(t.get_i64(1, 0, 1), Some(60));
            assert!(t.instance(0, 5).is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn inconsistent_configuration_is_refused_and_can_be_fixed() {
    let mut h = H::new();
    h.accept_request();
    h.req(RequestType::Delete, "/", |_| {});
    let (sec, srv) = account_records();
    assert_eq!(h.write_tlv("/1", &srv), codes::CHANGED);
    let r = h.req(RequestType::Post, "/bs", |_| {});
    assert_eq!(
        message::code_byte(&r),
        codes::NOT_ACCEPTABLE,
        "a Server without its Security instance"
    );
    assert!(String::from_utf8_lossy(&r.payload)
        .contains("no Security instance for Short Server ID 123"));
    assert!(h.b.outcome().is_none(), "still bootstrapping");
    assert_eq!(h.write_tlv("/0", &sec), codes::CHANGED);
    assert_eq!(
        message::code_byte(&h.req(RequestType::Post, "/bs", |_| {})),
        codes::CHANGED
    );
    assert!(matches!(h.b.outcome(), Some(Outcome::Done(_))));
}

#[test]
fn bad_writes_get_4xx_and_change_nothing() {
    let mut h = H::new();
    h.accept_request();
    let r = h.req(RequestType::Put, "/1/0", |p| {
        message::set_content_format(p, Format::Tlv.number());
        p.payload = vec![0xC8, 0x01, 0x40];
    });
    assert_eq!(message::code_byte(&r), codes::BAD_REQUEST);
    let r = h.req(RequestType::Put, "/9999/0", |p| {
        message::set_content_format(p, 0);
        p.payload = b"1".to_vec();
    });
    assert_eq!(message::code_byte(&r), codes::NOT_FOUND);
    let r = h.req(RequestType::Put, "/1/0/1", |p| {
        message::set_content_format(p, 4242);
        p.payload = b"1".to_vec();
    });
    assert_eq!(message::code_byte(&r), codes::UNSUPPORTED_CONTENT_FORMAT);
    assert_eq!(h.b.staged.instance_ids(1), Vec::<u16>::new());
}

#[test]
fn no_finish_in_time_fails() {
    let mut h = H::new();
    h.accept_request();
    h.now += Duration::from_secs(248);
    h.b.handle_timeout(h.now);
    assert!(matches!(h.b.outcome(), Some(Outcome::Failed(w)) if w.contains("no Bootstrap-Finish")));
}

#[test]
fn refused_request_fails() {
    let mut h = H::new();
    // Refused as 1.1, then as 1.0.
    for _ in 0..2 {
        let req = h.take().remove(0);
        let mut r = message::response(&req, codes::BAD_REQUEST);
        r.header.set_type(MessageType::Acknowledgement);
        r.header.message_id = req.header.message_id;
        h.b.handle_datagram(h.now, &r.to_bytes().unwrap());
    }
    assert!(matches!(h.b.outcome(), Some(Outcome::Failed(w)) if w.contains("4.00")));
    assert!(h.take().is_empty());
}

#[test]
fn a_1_0_bootstrap_server_refusing_pct_is_asked_again_as_1_0() {
    let mut h = H::new();
    let req = h.take().remove(0);
    assert_eq!(message::uri_query(&req).unwrap(), ["ep=gw", "pct=112"]);
    let mut r = message::response(&req, codes::PRECONDITION_FAILED);
    r.header.set_type(MessageType::Acknowledgement);
    r.header.message_id = req.header.message_id;
    h.b.handle_datagram(h.now, &r.to_bytes().unwrap());
    assert!(h.b.outcome().is_none(), "not a failure yet");
    let again = h.take().remove(0);
    assert_eq!(message::uri_query(&again).unwrap(), ["ep=gw"]);
    // Refused again: now it is a failure (no third try).
    let mut r = message::response(&again, codes::PRECONDITION_FAILED);
    r.header.set_type(MessageType::Acknowledgement);
    r.header.message_id = again.header.message_id;
    h.b.handle_datagram(h.now, &r.to_bytes().unwrap());
    assert!(matches!(h.b.outcome(), Some(Outcome::Failed(_))));
}

#[test]
fn finish_accepts_secured_accounts_and_names_what_does_not_fit() {
    let server = |uri: &str, mode: i64, id: &[u8], key: &[u8]| {
        let mut t = Tree::default();
        t.set(0, 1, 0, Value::String(uri.into()));
        t.set(0, 1, 1, Value::Boolean(false));
        t.set(0, 1, 2, Value::Integer(mode));
        t.set(0, 1, 3, Value::Opaque(id.to_vec()));
        t.set(0, 1, 4, Value::Opaque(Vec::new()));
        t.set(0, 1, 5, Value::Opaque(key.to_vec()));
        t.set(0, 1, 10, Value::Integer(101));
        t.set(1, 0, 0, Value::Integer(101));
        t.set(1, 0, 1, Value::Integer(300));
        t
    };
    assert_eq!(check(&server("coaps://h", 0, b"gw", b"k")), Ok(1));
    assert_eq!(check(&server("coap://h", 3, b"", b"")), Ok(1));
    let e = check(&server("coaps://h", 3, b"", b"")).unwrap_err();
    assert!(e.contains("needs DTLS") && e.contains("NoSec"), "{e}");
    let e = check(&server("coap://h", 0, b"gw", b"k")).unwrap_err();
    assert!(e.contains("coaps://"), "{e}");
    let e = check(&server("coaps://h", 0, b"gw", b"")).unwrap_err();
    assert!(e.contains("without a key (/0/1/5)"), "{e}");
    let e = check(&server("coaps://h", 2, b"cert", b"key")).unwrap_err();
    assert!(e.contains("the server's certificate"), "{e}");
    let e = check(&server("coaps://h", 1, b"", b"")).unwrap_err();
    if crate::dtls::RAW_PUBLIC_KEYS {
        assert!(
            e.contains("raw-public-key mode without the server's public key (/0/1/4)"),
            "{e}"
        );
    } else {
        assert!(e.contains("OpenSSL 3.2"), "{e}");
    }
}
