//! The client against a scripted server, in simulated time.

mod device_firmware;
mod devices;
mod firmware;
mod software;

use super::*;
use crate::lwm2m::factory::{self, Account, DeviceInfo};
use coap_lite::MessageType;

struct H {
    now: Instant,
    c: Client,
    mid: u16,
    /// Datagrams from the client not yet looked at.
    backlog: Vec<(u16, Packet)>,
}

fn account(ssid: u16, lifetime: u32) -> Account {
    Account {
        uri: format!("coap://127.0.0.1:{}", 5600 + ssid),
        ssid,
        lifetime,
        binding: "U".into(),
        notification_storing: true,
        sms_number: None,
    }
}

fn info() -> DeviceInfo {
    DeviceInfo {
        manufacturer: "ACME".into(),
        model: "GW-1".into(),
        serial: "42".into(),
        firmware_version: "1.0".into(),
        ..Default::default()
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        endpoint: "gw-test".into(),
        ..Default::default()
    }
}

impl H {
    fn new(accounts: &[Account]) -> Self {
        Self::start(accounts, config(), Instant::now(), 1234, |_| {})
    }

    /// A client started as the daemon starts one: `prepare` (wall clock, restored
    /// state) runs before its first timeout.
    fn start(
        accounts: &[Account],
        cfg: ClientConfig,
        now: Instant,
        seed: u64,
        prepare: impl FnOnce(&mut Client),
    ) -> Self {
        let trees = factory::trees(accounts, &info());
        let mut c = Client::new(cfg, Registry::builtin(), trees, now, seed);
        prepare(&mut c);
        let mut h = Self {
            now,
            c,
            mid: 100,
            backlog: Vec::new(),
        };
        h.c.handle_timeout(now);
        h
    }

    fn take(&mut self) -> Vec<(u16, Packet)> {
        let mut v = std::mem::take(&mut self.backlog);
        while let Some((ssid, b)) = self.c.poll_transmit() {
            v.push((ssid, Packet::from_bytes(&b).unwrap()));
        }
        v
    }

    /// Moves time forward, waking the client at each deadline as the driver does.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.c.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.c.handle_timeout(self.now);
            let mut out = Vec::new();
            while let Some((ssid, b)) = self.c.poll_transmit() {
                out.push((ssid, Packet::from_bytes(&b).unwrap()));
            }
            self.backlog.extend(out);
            if self.c.poll_timeout() == Some(t) {
                break;
            }
        }
        self.now = end;
        self.c.handle_timeout(self.now);
    }

    /// Answers the client's request `req` with `code` (piggybacked).
    fn answer(&mut self, ssid: u16, req: &Packet, code: u8, location: &[&str]) {
        let mut r = message::response(req, code);
        r.header.set_type(MessageType::Acknowledgement);
        r.header.message_id = req.header.message_id;
        for l in location {
            r.add_option(CoapOption::LocationPath, l.as_bytes().to_vec());
        }
        self.c
            .handle_datagram(self.now, ssid, &r.to_bytes().unwrap());
    }

    fn register_all(&mut self) {
        for (ssid, p) in self.take() {
            assert_eq!(message::uri_path(&p).unwrap(), ["rd"]);
            let loc = format!("r{ssid}");
            self.answer(ssid, &p, codes::CREATED, &["rd", &loc]);
        }
        assert!(self.c.status(self.now).iter().all(|s| s.registered));
    }

    /// Sends a request from server `ssid`; returns the client's response.
    fn req(
        &mut self,
        ssid: u16,
        method: RequestType,
        path: &str,
        build: impl FnOnce(&mut Packet),
    ) -> Packet {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut p = message::request(method, &segs, &[]);
        self.mid += 1;
        p.header.message_id = self.mid;
        p.set_token(vec![1, 2, self.mid as u8]);
        build(&mut p);
        self.c
            .handle_datagram(self.now, ssid, &p.to_bytes().unwrap());
        let out = self.take();
        let (resp, rest): (Vec<_>, Vec<_>) = out.into_iter().partition(|(s, r)| {
            *s == ssid
                && r.header.message_id == self.mid
                && r.header.get_type() == MessageType::Acknowledgement
        });
        self.backlog = rest;
        resp.into_iter()
            .next()
            .map(|(_, r)| r)
            .expect("a piggybacked response")
    }

    fn get(&mut self, ssid: u16, path: &str, accept: Option<u16>) -> Packet {
        self.req(ssid, RequestType::Get, path, |p| {
            if let Some(a) = accept {
                message::set_uint(p, CoapOption::Accept, u32::from(a));
            }
        })
    }
}

fn code(p: &Packet) -> u8 {
    message::code_byte(p)
}

#[test]
fn registers_with_the_right_parameters_and_payload() {
    let mut h = H::new(&[account(101, 300)]);
    let out = h.take();
    assert_eq!(out.len(), 1);
    let (ssid, p) = &out[0];
    assert_eq!(*ssid, 101);
    assert_eq!(
        p.header.code,
        coap_lite::MessageClass::Request(RequestType::Post)
    );
    assert_eq!(
        message::uri_query(p).unwrap(),
        ["ep=gw-test", "lt=300", "lwm2m=1.1", "b=U"]
    );
    assert_eq!(message::content_format(p), Some(40));
    let body = String::from_utf8(p.payload.clone()).unwrap();
    assert_eq!(
        body,
        "</>;rt=\"oma.lwm2m\";ct=112,</1>;ver=1.1,</1/0>,</3/0>,</4/0>"
    );
    h.answer(101, &p.clone(), codes::CREATED, &["rd", "5a3f"]);
    let st = &h.c.status(h.now)[0];
    assert_eq!(st.state, "registered");
    assert_eq!(st.location.as_deref(), Some("/rd/5a3f"));
}

#[test]
fn three_servers_each_get_a_session() {
    // Found by the bootstrap fuzz target: each session's CoAP seed multiplied
    // without wrapping, so the third server panicked a build with overflow checks.
    let h = H::new(&[account(101, 300), account(102, 300), account(103, 300)]);
    let ssids: Vec<u16> = h.c.servers().into_iter().map(|(s, _)| s).collect();
    assert_eq!(ssids, [101, 102, 103]);
}

#[test]
fn updates_before_the_lifetime_ends() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    h.advance(Duration::from_secs(200));
    assert!(h.take().is_empty(), "not yet: update at 300 - 93 = 207 s");
    h.advance(Duration::from_secs(8));
    let out = h.take();
    assert_eq!(out.len(), 1);
    let p = &out[0].1;
    assert_eq!(message::uri_path(p).unwrap(), ["rd", "r101"]);
    assert!(message::uri_query(p).unwrap().is_empty(), "nothing changed");
    assert!(p.payload.is_empty());
    let p = p.clone();
    h.answer(101, &p, codes::CHANGED, &[]);
    assert_eq!(h.c.status(h.now)[0].state, "registered");
}

#[test]
fn update_answered_404_registers_again() {
    let mut h = H::new(&[account(101, 60)]);
    h.register_all();
    h.advance(Duration::from_secs(31));
    let (_, p) = h.take().remove(0);
    h.answer(101, &p, codes::NOT_FOUND, &[]);
    let (_, p) = h.take().remove(0);
    assert_eq!(message::uri_path(&p).unwrap(), ["rd"]);
    assert!(message::uri_query(&p)
        .unwrap()
        .contains(&"ep=gw-test".to_string()));
}

#[test]
fn update_errors_back_off_before_registering_again() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    let r = h.req(101, RequestType::Post, "/1/0/8", |_| {});
    assert_eq!(code(&r), codes::CHANGED);
    let (_, upd) = h
        .take()
        .into_iter()
        .find(|(_, p)| message::is_request(p))
        .expect("Update");
    h.answer(101, &upd, codes::INTERNAL_SERVER_ERROR, &[]);
    assert!(h.take().is_empty(), "no immediate re-registration");
    let st = &h.c.status(h.now)[0];
    assert_eq!(
        st.last_error.as_deref(),
        Some("server answered 5.00 to Update")
    );
    h.advance(Duration::from_secs(10));
    let (_, reg) = h.take().remove(0);
    assert_eq!(message::uri_path(&reg).unwrap(), ["rd"]);
}

#[test]
fn precondition_failed_downgrades_to_1_0() {
    let mut h = H::new(&[account(101, 300)]);
    let (_, p) = h.take().remove(0);
    h.answer(101, &p, codes::PRECONDITION_FAILED, &[]);
    let (_, p) = h.take().remove(0);
    assert!(message::uri_query(&p)
        .unwrap()
        .contains(&"lwm2m=1.0".to_string()));
    assert_eq!(
        String::from_utf8(p.payload.clone()).unwrap(),
        "</>;rt=\"oma.lwm2m\",</1/0>,</3/0>,</4/0>"
    );
    h.answer(101, &p, codes::CREATED, &["rd", "x"]);
    assert_eq!(h.c.status(h.now)[0].version, "1.0");
    // A 1.0 server gets TLV for an instance read without Accept.
    let r = h.get(101, "/3/0", None);
    assert_eq!(message::content_format(&r), Some(11542));
}

#[test]
fn unanswered_register_retries_with_backoff() {
    let mut h = H::new(&[account(101, 300)]);
    h.take();
    // The CoAP layer gives up between 62 and 93 s.
    let mut waited = 0;
    while h.c.status(h.now)[0].failures == 0 {
        h.advance(Duration::from_secs(1));
        waited += 1;
        assert!(waited <= 94, "no failure after {waited} s");
    }
    assert!(waited >= 62, "gave up after only {waited} s");
    let st = &h.c.status(h.now)[0];
    assert!(st.state.starts_with("retrying in"), "{}", st.state);
    assert_eq!(st.last_error.as_deref(), Some("no answer from the server"));
    assert_eq!(st.failures, 1);
    h.take();
    h.advance(Duration::from_secs(8));
    assert!(h.take().is_empty());
    h.advance(Duration::from_secs(2));
    let out = h.take();
    assert_eq!(out.len(), 1, "second attempt after 10 s");
    let p = out[0].1.clone();
    h.answer(101, &p, codes::CREATED, &["rd", "1"]);
    assert_eq!(h.c.status(h.now)[0].failures, 0);
}

#[test]
fn register_rejected_is_reported() {
    let mut h = H::new(&[account(101, 300)]);
    let (_, p) = h.take().remove(0);
    h.answer(101, &p, 0x83, &[]); // 4.03 Forbidden
    let st = &h.c.status(h.now)[0];
    assert_eq!(
        st.last_error.as_deref(),
        Some("server answered 4.03 to Register")
    );
}

#[test]
fn reads_in_each_format() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    let r = h.get(101, "/3/0/0", None);
    assert_eq!(
        (code(&r), message::content_format(&r)),
        (codes::CONTENT, Some(0))
    );
    assert_eq!(r.payload, b"ACME");
    for f in [11542u16, 11543, 110, 112] {
        let r = h.get(101, "/3/0", Some(f));
        assert_eq!(
            (code(&r), message::content_format(&r)),
            (codes::CONTENT, Some(f)),
            "format {f}"
        );
        let types = |p: &Path| crate::lwm2m::dm::type_of(&Registry::builtin(), p);
        let recs = crate::codec::decode(
            Format::from_number(f).unwrap(),
            &Path::new(&[3, 0]),
            &r.payload,
            &types,
        )
        .unwrap();
        assert!(recs.contains(&(Path::new(&[3, 0, 0]), Value::String("ACME".into()))));
    }
    let r = h.get(101, "/3/0", None);
    assert_eq!(
        message::content_format(&r),
        Some(112),
        "1.1 default: SenML CBOR"
    );
}

#[test]
fn malformed_requests_get_the_right_4xx() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    assert_eq!(code(&h.get(101, "/3/x", None)), codes::BAD_REQUEST);
    assert_eq!(code(&h.get(101, "/3/0/0/1/2", None)), codes::BAD_REQUEST);
    assert_eq!(code(&h.get(101, "/9999", None)), codes::NOT_FOUND);
    assert_eq!(code(&h.get(101, "/3/7", None)), codes::NOT_FOUND);
    assert_eq!(code(&h.get(101, "/0/0", None)), codes::UNAUTHORIZED);
    assert_eq!(code(&h.get(101, "/3/0", Some(0))), codes::NOT_ACCEPTABLE);
    assert_eq!(code(&h.get(101, "/3/0", Some(9999))), codes::NOT_ACCEPTABLE);
    assert_eq!(code(&h.get(101, "/3/0/4", None)), codes::METHOD_NOT_ALLOWED);
    assert_eq!(code(&h.get(101, "/nodevice/3/0", None)), codes::NOT_FOUND);
    let r = h.req(101, RequestType::Get, "/3/0", |p| {
        p.add_option(CoapOption::Unknown(2049), vec![1])
    });
    assert_eq!(code(&r), codes::BAD_OPTION);
    let r = h.req(101, RequestType::Put, "/1/0/1", |p| {
        message::set_content_format(p, 4242);
        p.payload = b"1".to_vec();
    });
    assert_eq!(code(&r), codes::UNSUPPORTED_CONTENT_FORMAT);
    let r = h.req(101, RequestType::Put, "/1/0/1", |p| {
        message::set_content_format(p, 0);
        p.payload = b"soon".to_vec();
    });
    assert_eq!(code(&r), codes::BAD_REQUEST);
    let r = h.req(101, RequestType::Put, "/1/0/1", |p| {
        message::set_content_format(p, 11542);
        p.payload = vec![0xC8, 0x01, 0x40, 0x00];
    });
    assert_eq!(code(&r), codes::BAD_REQUEST, "TLV length past the end");
    let r = h.req(101, RequestType::Post, "/3/0/4", |p| {
        p.payload = b"x=1".to_vec()
    });
    assert_eq!(code(&r), codes::BAD_REQUEST, "bad Execute arguments");
    let r = h.req(101, RequestType::Delete, "/3/0", |_| {});
    assert_eq!(code(&r), codes::METHOD_NOT_ALLOWED);
    let r = h.req(101, RequestType::Put, "/1/0/0", |p| {
        message::set_content_format(p, 0);
        p.payload = b"5".to_vec();
    });
    assert_eq!(code(&r), codes::METHOD_NOT_ALLOWED, "ssid is read-only");
}

#[test]
fn writing_the_lifetime_sends_an_update() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    let r = h.req(101, RequestType::Put, "/1/0/1", |p| {
        message::set_content_format(p, 0);
        p.payload = b"120".to_vec();
    });
    assert_eq!(code(&r), codes::CHANGED);
    h.c.handle_timeout(h.now);
    let out = h.take();
    let upd = out
        .iter()
        .find(|(_, p)| message::uri_path(p).unwrap() == ["rd", "r101"])
        .expect("Update");
    assert_eq!(message::uri_query(&upd.1).unwrap(), ["lt=120"]);
}

#[test]
fn execute_update_trigger_and_disable() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    let r = h.req(101, RequestType::Post, "/1/0/8", |_| {});
    assert_eq!(code(&r), codes::CHANGED);
    let (_, upd) = h
        .take()
        .into_iter()
        .find(|(_, p)| message::is_request(p))
        .expect("Update");
    h.answer(101, &upd, codes::CHANGED, &[]);
    h.c.trees.gateway.set(1, 0, 5, Value::Integer(30));
    let r = h.req(101, RequestType::Post, "/1/0/4", |_| {});
    assert_eq!(code(&r), codes::CHANGED);
    let out = h.take();
    let (_, del) = out
        .iter()
        .find(|(_, p)| message::is_request(p))
        .cloned()
        .expect("De-register");
    assert_eq!(
        del.header.code,
        coap_lite::MessageClass::Request(RequestType::Delete)
    );
    h.answer(101, &del, codes::DELETED, &[]);
    assert!(h.c.status(h.now)[0].state.starts_with("disabled for 30"));
    h.advance(Duration::from_secs(31));
    let (_, reg) = h.take().remove(0);
    assert_eq!(message::uri_path(&reg).unwrap(), ["rd"]);
}

#[test]
fn reboot_is_answered_first_then_acted_on() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    let r = h.req(101, RequestType::Post, "/3/0/4", |_| {});
    assert_eq!(code(&r), codes::CHANGED);
    assert_eq!(h.c.poll_action(), Some(Action::Reboot));
}

#[test]
fn shutdown_deregisters() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    h.c.shutdown(h.now);
    let (_, del) = h.take().remove(0);
    assert_eq!(message::uri_path(&del).unwrap(), ["rd", "r101"]);
    assert!(!h.c.is_stopped());
    h.answer(101, &del, codes::DELETED, &[]);
    assert!(h.c.is_stopped());
}

#[test]
fn observe_notifies_on_change_respecting_pmin() {
    let mut h = H::new(&[account(101, 3000)]);
    h.register_all();
    let r = h.req(101, RequestType::Put, "/3/0/9", |p| {
        p.add_option(CoapOption::UriQuery, b"pmin=5".to_vec())
    });
    // Battery Level: defined for /3, but this gateway has none.
    assert_eq!(code(&r), codes::NOT_FOUND);
    h.c.trees.gateway.set(3, 0, 13, Value::Time(1000));
    let r = h.req(101, RequestType::Put, "/3/0/13", |p| {
        p.add_option(CoapOption::UriQuery, b"pmin=5".to_vec())
    });
    assert_eq!(code(&r), codes::CHANGED);
    let r = h.req(101, RequestType::Get, "/3/0/13", |p| {
        message::set_uint(p, CoapOption::Observe, 0)
    });
    assert_eq!(code(&r), codes::CONTENT);
    assert_eq!(message::observe(&r), Some(0));
    assert_eq!(r.payload, b"1000");
    let token = r.get_token().to_vec();
    h.c.trees.gateway.set(3, 0, 13, Value::Time(1001));
    h.c.values_changed(h.now);
    assert!(h.take().is_empty(), "held back by pmin");
    h.advance(Duration::from_secs(5));
    let out = h.take();
    assert_eq!(out.len(), 1);
    let n = &out[0].1;
    assert_eq!(
        (n.get_token(), message::observe(n), n.payload.as_slice()),
        (token.as_slice(), Some(1), &b"1001"[..])
    );
    // Notification storing is on (/1/0/6): delivery must be known, so CON.
    assert_eq!(n.header.get_type(), MessageType::Confirmable);
    // Cancel with Observe=1.
    let r = h.req(101, RequestType::Get, "/3/0/13", |p| {
        p.set_token(token.clone());
        message::set_uint(p, CoapOption::Observe, 1)
    });
    assert_eq!(code(&r), codes::CONTENT);
    assert_eq!(h.c.observation_count(), 0);
}

#[test]
fn large_reads_use_block2() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    let big = "m".repeat(3000);
    h.c.trees.gateway.set(3, 0, 1, Value::String(big.clone()));
    let r = h.get(101, "/3/0/1", None);
    let b = message::block(&r, CoapOption::Block2).flatten().unwrap();
    assert_eq!((b.num, b.more, b.size()), (0, true, 1024));
    let mut body = r.payload.clone();
    let mut num = 1;
    loop {
        let r = h.req(101, RequestType::Get, "/3/0/1", |p| {
            message::set_block(
                p,
                CoapOption::Block2,
                BlockOpt {
                    num,
                    more: false,
                    szx: 6,
                },
            )
        });
        body.extend_from_slice(&r.payload);
        let b = message::block(&r, CoapOption::Block2).flatten().unwrap();
        if !b.more {
            break;
        }
        num += 1;
    }
    assert_eq!(body, big.as_bytes());
    // A follow-up block whose cached body is gone is cut from a fresh one.
    h.c.sessions[0].block2.clear();
    let r = h.req(101, RequestType::Get, "/3/0/1", |p| {
        message::set_block(
            p,
            CoapOption::Block2,
            BlockOpt {
                num: 2,
                more: false,
                szx: 6,
            },
        )
    });
    assert_eq!(r.payload, big.as_bytes()[2048..]);
    // A server asking for 256-byte blocks gets them.
    let r = h.req(101, RequestType::Get, "/3/0/1", |p| {
        message::set_block(
            p,
            CoapOption::Block2,
            BlockOpt {
                num: 0,
                more: false,
                szx: 4,
            },
        )
    });
    assert_eq!(r.payload.len(), 256);
}

#[test]
fn block1_write_is_reassembled_and_misordered_blocks_get_4_08() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    h.c.reg.insert(crate::model::ObjectDef {
        id: 3341,
        name: "Text".into(),
        version: "1.0".into(),
        multiple: true,
        mandatory: false,
        resources: [(
            5527,
            crate::model::ResourceDef {
                id: 5527,
                name: "Text".into(),
                ops: crate::model::Operations::RW,
                multiple: false,
                mandatory: false,
                data_type: crate::model::DataType::String,
                range: None,
                units: None,
            },
        )]
        .into(),
    });
    h.c.trees
        .gateway
        .set(3341, 0, 5527, Value::String(String::new()));
    let text: Vec<u8> = (0..2500).map(|i| b'a' + (i % 26) as u8).collect();
    for num in 0..3u32 {
        let chunk = &text[num as usize * 1024..((num as usize + 1) * 1024).min(text.len())];
        let r = h.req(101, RequestType::Put, "/3341/0/5527", |p| {
            message::set_content_format(p, 0);
            message::set_block(
                p,
                CoapOption::Block1,
                BlockOpt {
                    num,
                    more: num < 2,
                    szx: 6,
                },
            );
            p.payload = chunk.to_vec();
        });
        assert_eq!(
            code(&r),
            if num < 2 {
                codes::CONTINUE
            } else {
                codes::CHANGED
            }
        );
    }
    assert_eq!(
        h.c.trees.gateway.get(3341, 0, 5527),
        Some(&Value::String(String::from_utf8(text.clone()).unwrap()))
    );
    let r = h.req(101, RequestType::Put, "/3341/0/5527", |p| {
        message::set_content_format(p, 0);
        message::set_block(
            p,
            CoapOption::Block1,
            BlockOpt {
                num: 2,
                more: true,
                szx: 6,
            },
        );
        p.payload = vec![b'x'; 1024];
    });
    assert_eq!(code(&r), codes::REQUEST_ENTITY_INCOMPLETE);
}

#[test]
fn multi_server_access_control() {
    let mut h = H::new(&[account(101, 300), account(102, 300)]);
    h.register_all();
    // Each server reads the Device object; only its own /1 instance.
    assert_eq!(code(&h.get(102, "/3/0/0", None)), codes::CONTENT);
    assert_eq!(code(&h.get(102, "/1/1/0", None)), codes::CONTENT);
    assert_eq!(code(&h.get(102, "/1/0/0", None)), codes::UNAUTHORIZED);
    let r = h.req(102, RequestType::Put, "/1/0/1", |p| {
        message::set_content_format(p, 0);
        p.payload = b"60".to_vec();
    });
    assert_eq!(code(&r), codes::UNAUTHORIZED);
    // Connectivity: read-only for every server.
    let r = h.req(102, RequestType::Post, "/3/0/4", |_| {});
    assert_eq!(code(&r), codes::CHANGED, "Device: RWE for all");
    // An object read lists only readable instances.
    let r = h.get(102, "/1", Some(110));
    let types = |p: &Path| crate::lwm2m::dm::type_of(&Registry::builtin(), p);
    let recs =
        crate::codec::decode(Format::SenmlJson, &Path::new(&[1]), &r.payload, &types).unwrap();
    assert!(!recs.is_empty());
    assert!(
        recs.iter().all(|(p, _)| p.instance() == Some(1)),
        "{recs:?}"
    );
}

/// Observes /3/0/13 from server 101 with pmin=pmax=1; returns the token.
fn observe_time(h: &mut H) -> Vec<u8> {
    h.c.trees.gateway.set(3, 0, 13, Value::Time(0));
    let r = h.req(101, RequestType::Put, "/3/0/13", |p| {
        p.add_option(CoapOption::UriQuery, b"pmin=1".to_vec());
        p.add_option(CoapOption::UriQuery, b"pmax=1".to_vec());
    });
    assert_eq!(code(&r), codes::CHANGED);
    let r = h.req(101, RequestType::Get, "/3/0/13", |p| {
        message::set_uint(p, CoapOption::Observe, 0);
        message::set_uint(p, CoapOption::Accept, 110);
    });
    assert_eq!(
        message::observe(&r),
        Some(0),
        "{} {:?}",
        message::code_text(code(&r)),
        String::from_utf8_lossy(&r.payload)
    );
    r.get_token().to_vec()
}

/// One simulated second: the clock value changes, the client samples it.
fn tick(h: &mut H, t: i64) {
    h.c.set_wall_clock(t as f64);
    h.c.trees.gateway.set(3, 0, 13, Value::Time(t));
    h.advance(Duration::from_secs(1));
    h.c.values_changed(h.now);
}

fn ack(h: &mut H, ssid: u16, p: &Packet) {
    let mut a = Packet::new();
    a.header.set_type(MessageType::Acknowledgement);
    a.header.code = coap_lite::MessageClass::Empty;
    a.header.message_id = p.header.message_id;
    h.c.handle_datagram(h.now, ssid, &a.to_bytes().unwrap());
}

fn persisted(h: &mut H) -> Vec<crate::lwm2m::persist::Persist> {
    std::iter::from_fn(|| h.c.poll_persist()).collect()
}

#[test]
fn unreachable_server_gets_notifications_stored_then_replayed_in_order_with_times() {
    let mut h = H::new(&[account(101, 3000)]);
    h.c.set_wall_clock(1000.0);
    h.register_all();
    let token = observe_time(&mut h);
    // A live notification, acknowledged.
    tick(&mut h, 1001);
    let (_, n) = h
        .take()
        .into_iter()
        .find(|(_, p)| p.get_token() == token)
        .unwrap();
    assert_eq!(n.header.get_type(), MessageType::Confirmable);
    ack(&mut h, 101, &n);
    // The server goes silent: the next notification is not acknowledged ...
    let mut sent_while_down = 0;
    for t in 1002..1100 {
        tick(&mut h, t);
        sent_while_down += h.take().len();
    }
    let st = &h.c.status(h.now)[0];
    assert!(st.queued >= 90, "stored: {}", st.queued);
    assert!(
        sent_while_down < 30,
        "retransmissions and Update attempts only, got {sent_while_down}"
    );
    // What the store holds: written ahead (or stored) and not deleted by an ACK.
    let ops = persisted(&mut h);
    let acked: Vec<u64> = ops
        .iter()
        .flat_map(|p| match p {
            crate::lwm2m::persist::Persist::Dequeue { ids } => ids.clone(),
            _ => Vec::new(),
        })
        .collect();
    let stored: Vec<_> = ops
        .into_iter()
        .filter_map(|p| match p {
            crate::lwm2m::persist::Persist::Enqueue(n) if !acked.contains(&n.id) => {
                Some(n.time as i64)
            }
            _ => None,
        })
        .collect();
    let mut sorted = stored.clone();
    sorted.sort();
    assert_eq!(sorted.first(), Some(&1002), "{stored:?}");
    // ... until it answers the Update again: then the stored ones follow, as SenML packs.
    let mut got: Vec<i64> = Vec::new();
    for t in 1100..1400 {
        tick(&mut h, t);
        for (ssid, p) in h.take() {
            if message::is_request(&p) {
                h.answer(ssid, &p, codes::CHANGED, &[]);
            } else if p.get_token() == token {
                let j: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                let bt = j[0]["bt"].as_f64().unwrap_or(0.0);
                for r in j.as_array().unwrap() {
                    got.push(r["v"].as_i64().unwrap());
                    let t = bt + r["t"].as_f64().unwrap_or(0.0);
                    assert_eq!(
                        t as i64,
                        r["v"].as_i64().unwrap(),
                        "time is the sampling time"
                    );
                }
                ack(&mut h, ssid, &p);
            }
        }
        if h.c.status(h.now)[0].queued == 0 && got.len() > 100 {
            break;
        }
    }
    let first_replayed = got.iter().position(|v| *v == 1002).expect("1002 replayed");
    let tail = &got[first_replayed..];
    assert!(
        tail.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gaps, no repeats: {tail:?}"
    );
    assert_eq!(h.c.status(h.now)[0].dropped, 0);
    assert!(h.c.status(h.now)[0].last_delivery.is_some());
}

#[test]
fn cap_drops_oldest_and_counts() {
    let cfg = ClientConfig {
        queue_cap: 5,
        ..config()
    };
    let mut h = H::start(&[account(101, 3000)], cfg, Instant::now(), 9, |_| {});
    h.register_all();
    observe_time(&mut h);
    tick(&mut h, 1);
    h.take(); // never acknowledged
    for t in 2..200 {
        tick(&mut h, t);
        h.take();
    }
    let st = &h.c.status(h.now)[0];
    assert_eq!(st.queued, 5);
    assert!(st.dropped > 100, "dropped {}", st.dropped);
}

#[test]
fn storing_off_drops_and_counts_instead() {
    let mut h = H::new(&[account(101, 3000)]);
    h.register_all();
    h.c.trees.gateway.set(1, 0, 6, Value::Boolean(false));
    observe_time(&mut h);
    // Not registered any more (the server forgot us): nothing is stored.
    h.c.sessions[0].state = RegState::Waiting {
        at: h.now + Duration::from_secs(3600),
    };
    for t in 1..10 {
        tick(&mut h, t);
    }
    let st = &h.c.status(h.now)[0];
    assert_eq!(st.queued, 0);
    assert!(st.dropped >= 8, "{}", st.dropped);
}

#[test]
fn restart_resumes_with_an_update_and_carries_on_notifying() {
    let mut h = H::new(&[account(101, 3000)]);
    h.c.set_wall_clock(5000.0);
    h.register_all();
    let token = observe_time(&mut h);
    tick(&mut h, 5001);
    let persisted_state = persisted(&mut h);
    // What the store would give back after kill -9.
    let mut restored = crate::lwm2m::persist::Restored::default();
    for p in persisted_state {
        use crate::lwm2m::persist::Persist as P;
        match p {
            P::Registration(r) => restored.registrations = vec![r],
            P::Observation(o) => restored.observations = vec![o],
            P::Attributes { ssid, path, attrs } => restored.attributes.push((ssid, path, attrs)),
            _ => {}
        }
    }
    let seq_before = restored.observations[0].seq;
    let mut h2 = H::start(&[account(101, 3000)], config(), h.now, 77, |c| {
        c.set_wall_clock(5010.0);
        c.restore(restored);
    });
    let (_, upd) = h2.take().remove(0);
    assert_eq!(
        message::uri_path(&upd).unwrap(),
        ["rd", "r101"],
        "Update on the stored location"
    );
    h2.answer(101, &upd, codes::CHANGED, &[]);
    tick(&mut h2, 5011);
    let (_, n) = h2
        .take()
        .into_iter()
        .find(|(_, p)| p.get_token() == token)
        .expect("notification on the old token");
    // Ahead of anything sent before the crash whose number was not yet durable.
    let seq = message::observe(&n).unwrap();
    assert!(
        seq > seq_before + crate::store::batch::MAX_OPS as u32,
        "sequence jumps ahead: {seq_before} -> {seq}"
    );
    assert!(seq - seq_before < 1 << 23, "still 'newer' for RFC 7641");
}

#[test]
fn epmin_limits_how_often_the_observed_value_is_sampled() {
    let mut h = H::new(&[account(101, 3000)]);
    h.c.set_wall_clock(100.0);
    h.register_all();
    let token = observe_time(&mut h);
    // pmin=1 from observe_time; sampling no more often than every 5 s.
    let r = h.req(101, RequestType::Put, "/3/0/13", |p| {
        p.add_option(CoapOption::UriQuery, b"epmin=5".to_vec());
        p.add_option(CoapOption::UriQuery, b"epmax=20".to_vec());
    });
    assert_eq!(code(&r), codes::CHANGED);
    let mut values = Vec::new();
    for t in 101..=120 {
        tick(&mut h, t);
        for (ssid, p) in h.take() {
            if p.get_token() == token {
                let j: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                values.push(j[0]["v"].as_i64().unwrap());
                ack(&mut h, ssid, &p);
            }
        }
    }
    // The clock changes every second and pmax=1 sends every second, but a new
    // reading is taken only every 5 s: the value sent steps by 5.
    // (The first is the reading taken when the observation started.)
    values.dedup();
    let steps: Vec<i64> = values[1..].windows(2).map(|w| w[1] - w[0]).collect();
    assert!(values.len() >= 3, "{values:?}");
    assert!(steps.iter().all(|s| *s == 5), "{values:?}");
}

#[test]
fn an_observed_path_that_disappears_ends_the_observation_with_4_04() {
    let mut h = H::new(&[account(101, 3000)]);
    h.c.set_wall_clock(100.0);
    h.register_all();
    let token = observe_time(&mut h);
    tick(&mut h, 101);
    for (ssid, p) in h.take() {
        ack(&mut h, ssid, &p);
    }
    // A resource without a value for a while (a device not answering): the
    // observation stays, quietly, and does not want the loop woken at once.
    if let Some(inst) =
        h.c.trees
            .gateway
            .objects
            .get_mut(&3)
            .and_then(|o| o.get_mut(&0))
    {
        inst.remove(&13);
    }
    h.advance(Duration::from_secs(1));
    h.c.values_changed(h.now);
    assert!(h.take().iter().all(|(_, p)| p.get_token() != token));
    assert_eq!(h.c.observation_count(), 1);
    assert!(h.c.poll_timeout().is_none_or(|t| t > h.now));
    tick(&mut h, 103);
    let back = h.take();
    assert!(
        back.iter().any(|(_, p)| p.get_token() == token),
        "back with a value"
    );
    for (ssid, p) in back {
        ack(&mut h, ssid, &p);
    }
    // The instance goes away under the observation (an end device unplugged, say).
    let _ = h.c.trees.gateway.delete_instance(3, 0);
    h.advance(Duration::from_secs(1));
    h.c.values_changed(h.now);
    let sent = h.take();
    let (_, end) = sent
        .iter()
        .find(|(_, p)| p.get_token() == token)
        .expect("a last message on the observation");
    assert_eq!(code(end), codes::NOT_FOUND);
    assert_eq!(message::observe(end), None, "an error ends the observation");
    assert_eq!(h.c.observation_count(), 0);
    // Nothing left that would want the client woken in the past (no busy loop).
    assert!(h.c.poll_timeout().is_none_or(|t| t > h.now));
}

#[test]
fn confirmable_notifications_are_written_ahead_and_survive_a_crash_before_their_ack() {
    use crate::lwm2m::persist::Persist as P;
    let mut h = H::new(&[account(101, 3000)]);
    h.c.set_wall_clock(7000.0);
    h.register_all();
    let token = observe_time(&mut h);
    persisted(&mut h);
    // Acknowledged: written ahead, then deleted.
    tick(&mut h, 7001);
    let (_, n) = h
        .take()
        .into_iter()
        .find(|(_, p)| p.get_token() == token)
        .unwrap();
    let ops = persisted(&mut h);
    let id = ops
        .iter()
        .find_map(|p| match p {
            P::Enqueue(q) if q.time == 7001.0 => Some(q.id),
            _ => None,
        })
        .expect("written ahead before the ACK");
    ack(&mut h, 101, &n);
    assert!(persisted(&mut h)
        .iter()
        .any(|p| matches!(p, P::Dequeue { ids } if ids == &[id])));
    // Not acknowledged, then kill -9: the record is what the store gives back.
    tick(&mut h, 7002);
    assert!(h.take().iter().any(|(_, p)| p.get_token() == token));
    let mut restored = crate::lwm2m::persist::Restored::default();
    for p in persisted(&mut h) {
        if let P::Enqueue(q) = p {
            restored.queue.push(q);
        }
    }
    assert_eq!(restored.queue.len(), 1);
    assert_eq!(restored.queue[0].time, 7002.0);
}

#[test]
fn restart_with_the_registration_gone_registers_again() {
    let mut h = H::new(&[account(101, 3000)]);
    h.c.set_wall_clock(100.0);
    h.register_all();
    let reg = persisted(&mut h)
        .into_iter()
        .find_map(|p| match p {
            crate::lwm2m::persist::Persist::Registration(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let mut h2 = H::start(&[account(101, 3000)], config(), h.now, 3, |c| {
        c.set_wall_clock(100.0 + 4000.0); // past the lifetime
        c.restore(crate::lwm2m::persist::Restored {
            registrations: vec![reg],
            ..Default::default()
        });
    });
    let (_, p) = h2.take().remove(0);
    assert_eq!(
        message::uri_path(&p).unwrap(),
        ["rd"],
        "expired: a fresh Register"
    );
}

#[test]
fn server_writes_survive_a_restart_unless_the_operator_changed_the_config() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    let r = h.req(101, RequestType::Put, "/1/0/18", |p| {
        message::set_content_format(p, 0);
        p.payload = b"1".to_vec();
    });
    assert_eq!(code(&r), codes::CHANGED);
    let mut restored = crate::lwm2m::persist::Restored::default();
    for p in persisted(&mut h) {
        if let crate::lwm2m::persist::Persist::Instance {
            obj,
            inst,
            data,
            factory,
        } = p
        {
            restored.instances.push((obj, inst, data, factory));
        }
    }
    assert_eq!(restored.instances.len(), 1);
    let restart = |acc: Account, r: crate::lwm2m::persist::Restored| {
        let trees = factory::trees(&[acc], &info());
        let mut c = Client::new(
            ClientConfig::default(),
            Registry::builtin(),
            trees,
            Instant::now(),
            5,
        );
        c.restore(r);
        c
    };
    let c = restart(account(101, 300), restored.clone());
    assert_eq!(
        c.trees.gateway.get_i64(1, 0, 18),
        Some(1),
        "the server's write is kept"
    );
    let c = restart(account(101, 600), restored);
    assert_eq!(
        c.trees.gateway.get_i64(1, 0, 18),
        None,
        "lwgate.toml changed: factory wins"
    );
    assert_eq!(c.trees.gateway.get_i64(1, 0, 1), Some(600));
}

#[test]
fn stored_values_of_a_lost_registration_go_out_with_send() {
    let mut h = H::new(&[account(101, 3000)]);
    h.c.set_wall_clock(100.0);
    h.register_all();
    let token = observe_time(&mut h);
    tick(&mut h, 101);
    h.take(); // not acknowledged: the server is gone
    for t in 102..220 {
        tick(&mut h, t);
        h.take();
    }
    let stored = h.c.status(h.now)[0].queued;
    assert!(stored > 100, "{stored}");
    // The server comes back having forgotten us: 4.04 to the Update, a fresh Register.
    let mut sent = Vec::new();
    for t in 220..600 {
        tick(&mut h, t);
        for (ssid, p) in h.take() {
            if !message::is_request(&p) {
                assert_ne!(p.get_token(), token.as_slice(), "old observation is gone");
                continue;
            }
            match message::uri_path(&p).unwrap().as_slice() {
                [rd, _] if rd == "rd" => h.answer(ssid, &p, codes::NOT_FOUND, &[]),
                [rd] if rd == "rd" => h.answer(ssid, &p, codes::CREATED, &["rd", "new"]),
                [dp] if dp == "dp" => {
                    assert_eq!(message::content_format(&p), Some(112));
                    let v: ciborium::Value = ciborium::from_reader(p.payload.as_slice()).unwrap();
                    sent.push(v);
                    h.answer(ssid, &p, codes::CHANGED, &[]);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if h.c.status(h.now)[0].queued == 0 && !sent.is_empty() {
            break;
        }
    }
    // Every stored reading went out, once, in order, each with the time it was
    // taken (the clock's value is its own time here).
    let got: Vec<(String, i64, f64)> = sent.iter().flat_map(senml_cbor_records).collect();
    assert!(got.len() >= stored, "{} sent of {stored} stored", got.len());
    assert!(
        got.iter()
            .all(|(n, v, t)| n == "/3/0/13" && *v as f64 == *t),
        "{got:?}"
    );
    let values: Vec<i64> = got.iter().map(|r| r.1).collect();
    assert_eq!(values[0], 101, "from the first unacknowledged one");
    assert!(
        values.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no repeat: {values:?}"
    );
    assert_eq!(h.c.status(h.now)[0].dropped, 0);
}

/// (name, integer value, time) of each record of a SenML CBOR pack, with the base
/// name and base time applied.
fn senml_cbor_records(pack: &ciborium::Value) -> Vec<(String, i64, f64)> {
    use ciborium::Value as C;
    let num = |v: &C| match v {
        C::Integer(i) => i128::from(*i) as f64,
        C::Float(f) => *f,
        _ => panic!("not a number: {v:?}"),
    };
    let (mut bn, mut bt) = (String::new(), 0.0);
    let mut out = Vec::new();
    for rec in pack.as_array().unwrap() {
        let (mut n, mut v, mut t) = (String::new(), None, 0.0);
        for (k, val) in rec.as_map().unwrap() {
            match k.as_integer().map(i128::from) {
                Some(-2) => bn = val.as_text().unwrap().to_string(),
                Some(-3) => bt = num(val),
                Some(0) => n = val.as_text().unwrap().to_string(),
                Some(2) => v = Some(num(val) as i64),
                Some(6) => t = num(val),
                _ => {}
            }
        }
        out.push((format!("{bn}{n}"), v.unwrap(), bt + t));
    }
    out
}

#[test]
fn send_honours_mute_send() {
    let mut h = H::new(&[account(101, 3000)]);
    h.register_all();
    h.c.trees.gateway.set(3, 0, 13, Value::Time(5));
    assert!(h.c.send(h.now, 101, &[Path::new(&[3, 0, 13])]).is_ok());
    let (_, p) = h.take().remove(0);
    assert_eq!(message::uri_path(&p).unwrap(), ["dp"]);
    h.c.trees.gateway.set(1, 0, 23, Value::Boolean(true));
    assert!(h
        .c
        .send(h.now, 101, &[Path::new(&[3, 0, 13])])
        .unwrap_err()
        .contains("muted"));
}

#[test]
fn queue_mode_sleeps_stores_then_wakes_updates_and_flushes() {
    let mut acc = account(101, 3000);
    acc.binding = "UQ".into();
    let mut h = H::new(&[acc]);
    h.c.set_wall_clock(1000.0);
    let (_, reg) = h.take().remove(0);
    assert!(
        message::uri_query(&reg).unwrap().contains(&"Q".to_string()),
        "1.1: Q parameter"
    );
    h.answer(101, &reg, codes::CREATED, &["rd", "q"]);
    // Observe with pmin 30: a notification at most every 30 s.
    h.c.trees.gateway.set(3, 0, 13, Value::Time(0));
    let r = h.req(101, RequestType::Put, "/3/0/13", |p| {
        p.add_option(CoapOption::UriQuery, b"pmin=30".to_vec())
    });
    assert_eq!(code(&r), codes::CHANGED);
    let r = h.req(101, RequestType::Get, "/3/0/13", |p| {
        message::set_uint(p, CoapOption::Observe, 0);
        message::set_uint(p, CoapOption::Accept, 110);
    });
    let token = r.get_token().to_vec();
    // Idle for MAX_TRANSMIT_WAIT (93 s): asleep. Values change but pmin holds them back.
    h.advance(Duration::from_secs(94));
    assert!(h.c.is_asleep(101));
    h.take();
    // Asleep: requests get no answer at all.
    let mut p = message::request(RequestType::Get, &["3", "0", "0"], &[]);
    p.header.message_id = 999;
    h.c.handle_datagram(h.now, 101, &p.to_bytes().unwrap());
    assert!(h.take().is_empty(), "silent while asleep");
    // A value change due for notification wakes it: Update first ...
    tick(&mut h, 1100);
    let out = h.take();
    assert_eq!(out.len(), 1, "only the Update: {out:?}");
    let upd = out[0].1.clone();
    assert_eq!(message::uri_path(&upd).unwrap(), ["rd", "q"]);
    assert!(h.c.status(h.now)[0].queued >= 1);
    h.answer(101, &upd, codes::CHANGED, &[]);
    // ... then the stored notification, with its time.
    let (_, n) = h
        .take()
        .into_iter()
        .find(|(_, p)| p.get_token() == token)
        .expect("flushed notification");
    let j: serde_json::Value = serde_json::from_slice(&n.payload).unwrap();
    assert_eq!(j[0]["bt"].as_f64(), Some(1100.0));
    ack(&mut h, 101, &n);
    assert_eq!(h.c.status(h.now)[0].queued, 0);
    // And back to sleep after another idle period.
    h.advance(Duration::from_secs(94));
    assert!(h.c.is_asleep(101));
    h.take();
    // `lwgate send` while asleep wakes it too: the Update, then the Send.
    assert!(h.c.send(h.now, 101, &[Path::new(&[3, 0, 0])]).is_ok());
    let out = h.take();
    assert_eq!(out.len(), 1, "the Update first (NSTART=1): {out:?}");
    assert_eq!(message::uri_path(&out[0].1).unwrap(), ["rd", "q"]);
    h.answer(101, &out[0].1, codes::CHANGED, &[]);
    let out = h.take();
    assert_eq!(message::uri_path(&out[0].1).unwrap(), ["dp"]);
}

#[test]
fn current_time_sent_is_the_time_of_the_notification() {
    // The driver gives the wall clock before every evaluation; nothing else moves
    // /3/0/13. Whatever the phase between the clock and the observation's timers,
    // the value sent at time t is t.
    let mut h = H::new(&[account(101, 3000)]);
    let wall0 = 1000.6;
    h.c.set_wall_clock(wall0);
    h.register_all();
    let token = observe_time(&mut h);
    let start = h.now;
    let mut checked = 0;
    for step in 1..=48u32 {
        let now = start + Duration::from_millis(250 * u64::from(step));
        h.now = now;
        h.c.set_wall_clock(wall0 + 0.25 * f64::from(step));
        h.c.handle_timeout(now);
        for (ssid, p) in h.take() {
            if p.get_token() != token {
                continue;
            }
            let j: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            let (bt, v) = (j[0]["bt"].as_f64().unwrap(), j[0]["v"].as_i64().unwrap());
            assert_eq!(v, bt.floor() as i64, "value {v} sent with time {bt}");
            checked += 1;
            ack(&mut h, ssid, &p);
        }
    }
    assert!(checked >= 10, "{checked} notifications in 12 s with pmax=1");
}

#[test]
fn a_register_accepted_during_shutdown_is_deregistered() {
    let mut h = H::new(&[account(101, 300)]);
    let out = h.take();
    let (_, reg) = out.first().unwrap();
    assert_eq!(message::uri_path(reg).unwrap(), ["rd"]);
    // SIGTERM arrives while the server's 2.01 is on its way.
    h.c.shutdown(h.now);
    assert!(!h.c.is_stopped(), "the answer to the Register is awaited");
    h.answer(101, reg, codes::CREATED, &["rd", "late"]);
    let out = h.take();
    let del: Vec<_> = out
        .iter()
        .filter(|(_, p)| p.header.code == coap_lite::MessageClass::Request(RequestType::Delete))
        .collect();
    assert_eq!(del.len(), 1, "{out:?}");
    assert_eq!(message::uri_path(&del[0].1).unwrap(), ["rd", "late"]);
    let d = del[0].1.clone();
    h.answer(101, &d, codes::DELETED, &[]);
    assert!(h.c.is_stopped());
}

#[test]
fn a_register_refused_at_shutdown_is_not_awaited() {
    let mut h = H::new(&[account(101, 300)]);
    h.take();
    h.c.refused(h.now, 101, "127.0.0.1:5701 refused the datagram");
    h.c.shutdown(h.now);
    assert!(h.c.is_stopped());
    assert!(h.take().is_empty(), "nothing to de-register");
}

#[test]
fn a_deregister_refused_at_shutdown_ends_at_once() {
    let mut h = H::new(&[account(101, 300)]);
    h.register_all();
    h.c.shutdown(h.now);
    let out = h.take();
    assert_eq!(message::uri_path(&out[0].1).unwrap(), ["rd", "r101"]);
    assert!(!h.c.is_stopped());
    h.c.refused(h.now, 101, "127.0.0.1:5701 refused the datagram");
    assert!(h.c.is_stopped());
}

#[test]
fn an_unreachable_server_fails_the_attempt_at_once_and_backs_off() {
    let mut h = H::new(&[account(101, 300)]);
    assert_eq!(h.take().len(), 1, "Register");
    h.c.unreachable(h.now, 101, "cannot resolve gw.example: no such host");
    let st = &h.c.status(h.now)[0];
    assert_eq!(st.state, "retrying in 10s (attempt 1 failed)");
    assert_eq!(
        st.last_error.as_deref(),
        Some("cannot resolve gw.example: no such host")
    );
    // The next look-up is the next attempt, on the back-off, not on a timer.
    h.advance(Duration::from_secs(9));
    assert!(h.take().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(h.take().len(), 1, "second Register");
    h.c.unreachable(h.now, 101, "cannot resolve gw.example: no such host");
    assert_eq!(
        h.c.status(h.now)[0].state,
        "retrying in 20s (attempt 2 failed)"
    );
}

#[test]
fn a_refused_port_is_the_reason_when_the_register_times_out() {
    let mut h = H::new(&[account(101, 300)]);
    h.take();
    h.c.refused(h.now, 101, "127.0.0.1:5701 refused the datagram");
    h.advance(Duration::from_secs(100));
    assert_eq!(
        h.c.status(h.now)[0].last_error.as_deref(),
        Some("no answer from the server: 127.0.0.1:5701 refused the datagram")
    );
}

#[test]
fn attributes_written_during_an_observation_take_effect() {
    let mut h = H::new(&[account(101, 3000)]);
    h.c.set_wall_clock(100.0);
    h.register_all();
    let token = observe_time(&mut h);
    let sent_at = |h: &mut H, from: i64, to: i64| {
        let mut at = Vec::new();
        for t in from..to {
            tick(h, t);
            for (ssid, p) in h.take() {
                if p.get_token() == token {
                    at.push(t);
                    ack(h, ssid, &p);
                }
            }
        }
        at
    };
    // pmin=pmax=1: every second (the attributes are looked up and kept meanwhile).
    assert_eq!(sent_at(&mut h, 101, 106).len(), 5);
    // The server slows it down: pmin=pmax=5 on the same resource.
    let r = h.req(101, RequestType::Put, "/3/0/13", |p| {
        p.add_option(CoapOption::UriQuery, b"pmin=5".to_vec());
        p.add_option(CoapOption::UriQuery, b"pmax=5".to_vec());
    });
    assert_eq!(code(&r), codes::CHANGED);
    let at = sent_at(&mut h, 106, 126);
    assert!((3..=5).contains(&at.len()), "{at:?}");
    assert!(at.windows(2).all(|w| w[1] - w[0] >= 5), "{at:?}");
}

#[test]
fn an_observation_with_pmin_alone_sets_no_deadline_in_the_past() {
    // pmin without a change held back is no reason to wake: a deadline left in the
    // past made the driver spin at 100% CPU.
    let mut h = H::new(&[account(101, 3000)]);
    h.register_all();
    let r = h.req(101, RequestType::Put, "/3/0/0", |p| {
        p.add_option(CoapOption::UriQuery, b"pmin=1".to_vec());
    });
    assert_eq!(code(&r), codes::CHANGED);
    let r = h.req(101, RequestType::Get, "/3/0/0", |p| {
        message::set_uint(p, CoapOption::Observe, 0)
    });
    assert_eq!(message::observe(&r), Some(0));
    let token = r.get_token().to_vec();
    h.advance(Duration::from_secs(3));
    h.c.values_changed(h.now);
    assert!(
        h.c.poll_timeout().is_none_or(|t| t > h.now),
        "a deadline in the past"
    );
    // A change during pmin goes out when pmin ends, and only then.
    h.c.trees
        .gateway
        .set(3, 0, 0, Value::String("ACME 2".into()));
    h.c.values_changed(h.now);
    let sent = |h: &mut H| {
        let notes: Vec<_> = h
            .take()
            .into_iter()
            .filter(|(_, p)| p.get_token() == token)
            .collect();
        for (ssid, p) in &notes {
            ack(h, *ssid, p);
        }
        notes.len()
    };
    assert_eq!(sent(&mut h), 1, "pmin has passed: at once");
    h.c.trees
        .gateway
        .set(3, 0, 0, Value::String("ACME 3".into()));
    h.c.values_changed(h.now);
    assert_eq!(sent(&mut h), 0, "held back by pmin");
    assert!(h.c.poll_timeout().is_some_and(|t| t > h.now));
    h.advance(Duration::from_secs(1));
    assert_eq!(sent(&mut h), 1, "at the end of pmin");
    assert!(h.c.poll_timeout().is_none_or(|t| t > h.now));
}

#[test]
fn an_sms_trigger_brings_an_update_over_the_servers_transport() {
    let mut h = H::new(&[account(101, 300), account(102, 300)]);
    h.register_all();
    assert!(h.take().is_empty());
    let servers = h.c.sms_servers();
    assert_eq!(
        servers
            .iter()
            .map(|s| (s.ssid, s.server_instance))
            .collect::<Vec<_>>(),
        [(101, 0), (102, 1)]
    );
    assert!(servers.iter().all(|s| s.number.is_none()), "no /0/x/9 set");
    h.c.sms_trigger(h.now, 1, crate::lwm2m::sms::Trigger::Update);
    let sent = h.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (ssid, upd) = &sent[0];
    assert_eq!(
        *ssid, 102,
        "the Update goes to the server the trigger names"
    );
    assert_eq!(message::uri_path(upd).unwrap(), ["rd", "r102"]);
    // An unknown /1 instance does nothing.
    h.c.sms_trigger(h.now, 9, crate::lwm2m::sms::Trigger::Update);
    assert!(
        h.take().iter().all(|(s, _)| *s == 102),
        "only retransmissions, if any"
    );
}
