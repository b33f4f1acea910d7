//! The bootstrap-server interface (LwM2M 1.1 TS 5.2.7) on its staged copy:
//! client-initiated (the Bootstrap-Request answered, or refused so the client
//! asks again as 1.0) or server-initiated, then a sequence of Bootstrap-Write
//! (every format, over real object and resource ids, sometimes a consistent
//! server account), -Delete, -Discover, -Read, -Finish, raw datagrams and time
//! passing. A Finish that succeeds must leave a configuration the consistency
//! check accepts, and a client must start from it and register.
#![no_main]

use arbitrary::{Result, Unstructured};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use libfuzzer_sys::fuzz_target;
use lwgate::coap::message::{self, codes};
use lwgate::coap::TxParams;
use lwgate::codec::{self, Format, Record};
use lwgate::lwm2m::bootstrap::{self, Bootstrapper, Outcome};
use lwgate::lwm2m::factory::{self, Account, DeviceInfo};
use lwgate::lwm2m::{Client, ClientConfig, Trees, Version};
use lwgate::model::{Path, Value};
use lwgate_fuzz::client::registry;
use lwgate_fuzz::req;
use std::time::{Duration, Instant};

const URIS: [&str; 6] = [
    "coap://127.0.0.1:5683",
    "coaps://127.0.0.1:5684",
    "coap://[::1]",
    "coap://srv.example:5683",
    "coap://",
    "http://x",
];

fn current() -> lwgate::lwm2m::Tree {
    let acc = Account {
        uri: "coap://127.0.0.1:5683".into(),
        ssid: 101,
        lifetime: 300,
        binding: "U".into(),
        notification_storing: true,
        sms_number: None,
    };
    let mut t = factory::trees(&[acc], &DeviceInfo::default()).gateway;
    t.set(0, 5, 0, Value::String("coap://127.0.0.1:5685".into()));
    t.set(0, 5, 1, Value::Boolean(true));
    t.set(0, 5, 2, Value::Integer(3));
    t
}

fn with_path(method: RequestType, path: &Path) -> Packet {
    let segs: Vec<String> = path.ids().iter().map(u16::to_string).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    message::request(method, &segs, &[])
}

fn put(path: &Path, f: Format, recs: &[Record]) -> Packet {
    let mut p = with_path(RequestType::Put, path);
    message::set_content_format(&mut p, f.number());
    p.payload = codec::encode(f, path, recs).unwrap_or_default();
    p
}

/// A Security and a Server instance that belong together (what Finish wants).
fn account(u: &mut Unstructured) -> Result<Vec<Packet>> {
    let inst: u16 = u.int_in_range(0..=6)?;
    let ssid = i64::from(u.int_in_range(0..=3)?) + 100;
    let uri = (*u.choose(&URIS)?).to_string();
    let f = *u.choose(&[
        Format::Tlv,
        Format::SenmlJson,
        Format::SenmlCbor,
        Format::LwJson,
    ])?;
    let mode = *u.choose(&[3i64, 3, 3, 0, 2, 4])?;
    let sec = Path::new(&[0, inst]);
    let p = |r: u16| Path::new(&[0, inst, r]);
    let mut recs = vec![
        (p(0), Value::String(uri)),
        (p(1), Value::Boolean(u.ratio(1, 8)?)),
        (p(2), Value::Integer(mode)),
        (p(10), Value::Integer(ssid)),
    ];
    if mode == 0 {
        recs.push((p(3), Value::Opaque(b"id".to_vec())));
        recs.push((p(5), Value::Opaque(vec![0x11; 16])));
    }
    recs.sort_by(|a, b| a.0.cmp(&b.0));
    let srv = Path::new(&[1, inst]);
    let s = |r: u16| Path::new(&[1, inst, r]);
    let lifetime = *u.choose(&[300i64, 60, 0, -1])?;
    let binding = (*u.choose(&["U", "UQ", "S", ""])?).to_string();
    let srecs = vec![
        (s(0), Value::Integer(ssid)),
        (s(1), Value::Integer(lifetime)),
        (s(6), Value::Boolean(true)),
        (s(7), Value::String(binding)),
    ];
    Ok(vec![put(&sec, f, &recs), put(&srv, f, &srecs)])
}

/// One thing a bootstrap server sends (a consistent account is two writes).
fn requests(u: &mut Unstructured) -> Result<Vec<Packet>> {
    let reg = registry();
    let path = req::path(u, reg, false)?;
    Ok(match u.int_in_range(0..=9)? {
        0..=2 => {
            let mut p = with_path(RequestType::Put, &path);
            let (cf, body) = req::body(u, reg, &path)?;
            if let Some(cf) = cf {
                message::set_content_format(&mut p, cf);
            }
            p.payload = body;
            vec![p]
        }
        3 => {
            let ids = &path.ids()[..path.len().min(u.int_in_range(0..=3)?)];
            vec![with_path(RequestType::Delete, &Path::new(ids))]
        }
        4 => {
            let ids = &path.ids()[..path.len().min(1)];
            let mut p = with_path(RequestType::Get, &Path::new(ids));
            message::set_uint(&mut p, CoapOption::Accept, u32::from(Format::Link.number()));
            vec![p]
        }
        5 => {
            let obj = *u.choose(&[1u16, 2, 3])?;
            let ids = [obj, u.int_in_range(0..=2)?, u.int_in_range(0..=7)?];
            let n = u.int_in_range(1..=3)?;
            let mut p = with_path(RequestType::Get, &Path::new(&ids[..n]));
            if u.arbitrary()? {
                let f = *u.choose(&[110u16, 112, 11542, 11543, 0, 40, 9999])?;
                message::set_uint(&mut p, CoapOption::Accept, u32::from(f));
            }
            vec![p]
        }
        6 => vec![message::request(RequestType::Post, &["bs"], &[])],
        7 => account(u)?,
        8 => {
            let mut p = req::request(u, reg)?;
            p.header.set_type(MessageType::Confirmable);
            vec![p]
        }
        _ => vec![],
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    let mut now = Instant::now();
    let tx = TxParams::default();
    let version = if u.arbitrary()? {
        Version::V1_1
    } else {
        Version::V1_0
    };
    let mut b = if u.ratio(1, 4)? {
        Bootstrapper::server_initiated(now, tx, 3, version, registry().clone(), current())
    } else {
        let mut b = Bootstrapper::start(now, tx, 3, "fuzz", version, registry().clone(), current());
        // The Bootstrap-Request's answer (a refusal of 1.1 brings a second request).
        for _ in 0..2 {
            let Some(bytes) = b.poll_transmit() else {
                break;
            };
            let Ok(req) = Packet::from_bytes(&bytes) else {
                break;
            };
            let code = *u.choose(&[
                codes::CHANGED,
                codes::CHANGED,
                codes::BAD_REQUEST,
                codes::NOT_FOUND,
            ])?;
            let mut r = message::response(&req, code);
            r.header.set_type(MessageType::Acknowledgement);
            r.header.message_id = req.header.message_id;
            if let Ok(bytes) = r.to_bytes() {
                b.handle_datagram(now, &bytes);
            }
        }
        b
    };
    let mut mid: u16 = 0x2000;
    for _ in 0..48 {
        if u.is_empty() || b.outcome().is_some() {
            break;
        }
        match u.int_in_range(0..=15)? {
            0 => {
                let n = u.int_in_range(0..=48)?;
                b.handle_datagram(now, u.bytes(n)?);
            }
            1 => {
                now += Duration::from_secs(u.int_in_range(0..=300)?);
                b.handle_timeout(now);
            }
            _ => {
                for mut p in requests(u)? {
                    mid = mid.wrapping_add(1);
                    p.header.message_id = mid;
                    p.set_token(vec![7, mid as u8]);
                    if let Ok(bytes) = p.to_bytes() {
                        b.handle_datagram(now, &bytes);
                    }
                }
            }
        }
        while let Some(out) = b.poll_transmit() {
            // Whatever the client answers is a well-formed CoAP response.
            let r = Packet::from_bytes(&out).expect("the client's datagram parses");
            assert!(matches!(
                r.header.code,
                MessageClass::Response(_) | MessageClass::Empty | MessageClass::Request(_)
            ));
        }
    }
    if let Some(Outcome::Done(tree)) = b.outcome() {
        assert!(
            bootstrap::check(tree).is_ok(),
            "Finish accepted what the check refuses"
        );
        let trees = Trees {
            gateway: tree.clone(),
            ..Default::default()
        };
        let mut c = Client::new(ClientConfig::default(), registry().clone(), trees, now, 1);
        c.handle_timeout(now);
        while c.poll_transmit().is_some() {}
        c.handle_timeout(now + Duration::from_secs(100));
        while c.poll_transmit().is_some() {}
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
