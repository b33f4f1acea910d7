//! The message layer against a second endpoint over a simulated network with a
//! virtual clock: loss, duplication and reordering, no sleeping.

use super::*;
use crate::coap::message::{self, codes};
use coap_lite::RequestType;

type Handler = Box<dyn FnMut(&Packet) -> Option<Packet>>;

struct Net {
    now: Instant,
    client: Endpoint,
    server: Endpoint,
    /// (deliver_at, to_server, bytes)
    transit: Vec<(Instant, bool, Vec<u8>)>,
    rng: u64,
    loss: f64,
    dup: f64,
    jitter_ms: u64,
    /// Drop the next N datagrams in each direction regardless of `loss`.
    drop_to_server: usize,
    drop_to_client: usize,
    handler: Handler,
    handled: usize,
    client_events: Vec<Event>,
    sent_to_server: usize,
    server_events: Vec<Event>,
}

impl Net {
    fn new(handler: Handler) -> Self {
        Self {
            now: Instant::now(),
            client: Endpoint::new(TxParams::default(), 42),
            server: Endpoint::new(TxParams::default(), 7),
            transit: Vec::new(),
            rng: 99,
            loss: 0.0,
            dup: 0.0,
            jitter_ms: 0,
            drop_to_server: 0,
            drop_to_client: 0,
            handler,
            handled: 0,
            client_events: Vec::new(),
            sent_to_server: 0,
            server_events: Vec::new(),
        }
    }

    fn rand(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn collect(&mut self) {
        let mut out = Vec::new();
        while let Some(b) = self.client.poll_transmit() {
            out.push((true, b));
        }
        while let Some(b) = self.server.poll_transmit() {
            out.push((false, b));
        }
        for (to_server, b) in out {
            if to_server {
                self.sent_to_server += 1;
                if self.drop_to_server > 0 {
                    self.drop_to_server -= 1;
                    continue;
                }
            } else if self.drop_to_client > 0 {
                self.drop_to_client -= 1;
                continue;
            }
            if self.rand() < self.loss {
                continue;
            }
            let copies = if self.rand() < self.dup { 2 } else { 1 };
            for _ in 0..copies {
                let jitter = if self.jitter_ms > 0 {
                    (self.rand() * self.jitter_ms as f64) as u64
                } else {
                    0
                };
                let at = self.now + Duration::from_millis(10 + jitter);
                self.transit.push((at, to_server, b.clone()));
            }
        }
    }

    fn serve(&mut self) {
        while let Some(ev) = self.server.poll_event() {
            match ev {
                Event::Request(inc) => {
                    self.handled += 1;
                    if let Some(resp) = (self.handler)(&inc.packet) {
                        self.server.respond(&inc, resp);
                    }
                }
                other => self.server_events.push(other),
            }
        }
        while let Some(ev) = self.client.poll_event() {
            self.client_events.push(ev);
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.collect();
            self.serve();
            self.collect();
            let next = [
                self.transit.iter().map(|t| t.0).min(),
                self.client.poll_timeout(),
                self.server.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = self.transit.drain(..).partition(|t| t.0 <= now);
            self.transit = later;
            for (_, to_server, b) in due {
                if to_server {
                    self.server.handle_datagram(now, &b);
                } else {
                    self.client.handle_datagram(now, &b);
                }
            }
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
        }
    }

    fn get(&mut self, path: &str) -> Handle {
        let p = message::request(RequestType::Get, &[path], &[]);
        self.client.send_request(self.now, p, true)
    }

    fn responses(&self) -> Vec<(Handle, Vec<u8>)> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                Event::Response { handle, packet } => Some((*handle, packet.payload.clone())),
                _ => None,
            })
            .collect()
    }

    fn failures(&self) -> Vec<(Handle, Failure)> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                Event::Failed { handle, reason } => Some((*handle, reason.clone())),
                _ => None,
            })
            .collect()
    }
}

fn echo() -> Handler {
    Box::new(|req: &Packet| {
        let mut r = message::response(req, codes::CONTENT);
        let path = message::uri_path(req).unwrap_or_default().join("/");
        r.payload = path.into_bytes();
        Some(r)
    })
}

#[test]
fn piggybacked_response() {
    let mut n = Net::new(echo());
    let h = n.get("hello");
    n.run_for(Duration::from_secs(1));
    assert_eq!(n.responses(), vec![(h, b"hello".to_vec())]);
    assert_eq!(n.sent_to_server, 1);
    assert!(!n.client.busy());
}

#[test]
fn lost_requests_are_retransmitted_with_backoff() {
    let mut n = Net::new(echo());
    n.drop_to_server = 3;
    let start = n.now;
    let h = n.get("x");
    n.run_for(Duration::from_secs(120));
    assert_eq!(n.responses(), vec![(h, b"x".to_vec())]);
    assert_eq!(n.sent_to_server, 4, "original + 3 retransmissions");
    assert_eq!(n.handled, 1);
    // First timeout in [2, 3] s, doubling: the 4th transmission is at 7..10.5 s.
    let _ = start;
}

#[test]
fn gives_up_after_max_retransmit() {
    let mut n = Net::new(echo());
    n.loss = 1.0;
    let h = n.get("x");
    n.run_for(Duration::from_secs(60));
    assert!(n.failures().is_empty(), "still retrying before 62 s");
    n.run_for(Duration::from_secs(40));
    assert_eq!(n.failures(), vec![(h, Failure::Timeout)]);
    assert_eq!(n.sent_to_server, 5, "1 + MAX_RETRANSMIT");
}

#[test]
fn timeout_window_matches_rfc() {
    // The failure comes between 31 * ACK_TIMEOUT and 31 * ACK_TIMEOUT * 1.5.
    for seed in 1..20u64 {
        let mut n = Net::new(echo());
        n.client = Endpoint::new(TxParams::default(), seed * 7919);
        n.loss = 1.0;
        n.get("x");
        n.run_for(Duration::from_millis(61_900));
        assert!(n.failures().is_empty());
        n.run_for(Duration::from_millis(31_200));
        assert_eq!(n.failures().len(), 1, "seed {seed}");
    }
}

#[test]
fn lost_ack_is_answered_from_cache_without_re_executing() {
    let mut n = Net::new(echo());
    n.drop_to_client = 2;
    let h = n.get("y");
    n.run_for(Duration::from_secs(30));
    assert_eq!(n.responses(), vec![(h, b"y".to_vec())]);
    assert_eq!(
        n.handled, 1,
        "the request ran once; retransmissions got the cached answer"
    );
    assert_eq!(n.sent_to_server, 3);
}

#[test]
fn nstart_one_queues_the_second_request() {
    let mut n = Net::new(echo());
    let a = n.get("a");
    let b = n.get("b");
    n.collect();
    assert_eq!(n.sent_to_server, 1, "second request waits for the first");
    n.run_for(Duration::from_secs(1));
    assert_eq!(n.responses(), vec![(a, b"a".to_vec()), (b, b"b".to_vec())]);
}

#[test]
fn separate_response_is_acknowledged() {
    let mut n = Net::new(Box::new(|_req: &Packet| None));
    let h = n.get("slow");
    n.run_for(Duration::from_millis(50));
    // The server acknowledges with an empty ACK, then answers in its own CON.
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = n.client.in_flight.as_ref().unwrap().mid;
    n.client.handle_datagram(n.now, &ack.to_bytes().unwrap());
    n.run_for(Duration::from_secs(20));
    assert_eq!(n.sent_to_server, 1, "no retransmission after the empty ACK");
    let mut resp = Packet::new();
    resp.header.set_type(MessageType::Confirmable);
    resp.header.code = message::code(codes::CONTENT);
    resp.header.message_id = 4242;
    resp.set_token(
        n.client
            .in_flight
            .as_ref()
            .unwrap()
            .packet
            .get_token()
            .to_vec(),
    );
    resp.payload = b"late".to_vec();
    let bytes = resp.to_bytes().unwrap();
    n.client.handle_datagram(n.now, &bytes);
    n.client.handle_datagram(n.now, &bytes); // duplicate
    n.serve();
    assert_eq!(n.responses(), vec![(h, b"late".to_vec())]);
    // Two empty ACKs for mid 4242 went out.
    let mut acks = 0;
    while let Some(b) = n.client.poll_transmit() {
        let p = Packet::from_bytes(&b).unwrap();
        if p.header.get_type() == MessageType::Acknowledgement && p.header.message_id == 4242 {
            acks += 1;
        }
    }
    assert_eq!(acks, 2);
}

#[test]
fn separate_response_that_never_comes_times_out() {
    let mut n = Net::new(Box::new(|_req: &Packet| None));
    let h = n.get("slow");
    n.run_for(Duration::from_millis(50));
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = n.client.in_flight.as_ref().unwrap().mid;
    n.client.handle_datagram(n.now, &ack.to_bytes().unwrap());
    n.run_for(Duration::from_secs(300));
    assert_eq!(n.failures(), vec![(h, Failure::Timeout)]);
}

#[test]
fn unmatched_confirmable_response_gets_reset() {
    let mut c = Endpoint::new(TxParams::default(), 1);
    let mut resp = Packet::new();
    resp.header.set_type(MessageType::Confirmable);
    resp.header.code = message::code(codes::CONTENT);
    resp.header.message_id = 9;
    resp.set_token(vec![1, 2, 3]);
    c.handle_datagram(Instant::now(), &resp.to_bytes().unwrap());
    let out = Packet::from_bytes(&c.poll_transmit().unwrap()).unwrap();
    assert_eq!(out.header.get_type(), MessageType::Reset);
    assert_eq!(out.header.message_id, 9);
    assert!(c.poll_event().is_none());
}

#[test]
fn an_unknown_method_gets_4_05() {
    let mut c = Endpoint::new(TxParams::default(), 1);
    let now = Instant::now();
    for (ty, code) in [(0x41u8, 0x08u8), (0x41, 0x1F), (0x51, 0x09)] {
        c.handle_datagram(now, &[ty, code, 0x00, 0x21, 0xAB, 0xB1, b'3']);
        let p = Packet::from_bytes(&c.poll_transmit().unwrap()).unwrap();
        let want = if ty == 0x41 {
            MessageType::Acknowledgement
        } else {
            MessageType::NonConfirmable
        };
        assert_eq!(p.header.get_type(), want);
        assert_eq!(message::code_byte(&p), 0x85, "4.05");
        assert_eq!(p.get_token(), &[0xAB]);
        if ty == 0x41 {
            assert_eq!(p.header.message_id, 0x21);
        }
    }
    assert!(c.poll_event().is_none(), "nothing reaches the client");
}

#[test]
fn the_payload_marker_finder_walks_options() {
    assert!(marker_without_payload(&[0x40, 0x01, 0, 1, 0xFF]));
    assert!(!marker_without_payload(&[0x40, 0x01, 0, 1, 0xFF, 0x00]));
    // Token AB, Uri-Path "3" then the marker alone.
    assert!(marker_without_payload(&[
        0x41, 0x01, 0, 1, 0xAB, 0xB1, b'3', 0xFF
    ]));
    // An extended length (13 + 2 = 15 bytes of Uri-Path, the last 0xFF).
    let mut d = vec![0x40, 0x01, 0, 1, 0xBD, 2];
    d.extend([b'a'; 14]);
    d.push(0xFF);
    assert!(!marker_without_payload(&d));
    d.push(0xFF);
    assert!(marker_without_payload(&d));
    assert!(!marker_without_payload(&[]));
    assert!(!marker_without_payload(&[0x40, 0x01, 0, 1, 0xF0]));
}

#[test]
fn ping_and_malformed_confirmable_get_reset() {
    let mut c = Endpoint::new(TxParams::default(), 1);
    let now = Instant::now();
    // Empty CON (CoAP ping)
    c.handle_datagram(now, &[0x40, 0x00, 0x12, 0x34]);
    let p = Packet::from_bytes(&c.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        (p.header.get_type(), p.header.message_id),
        (MessageType::Reset, 0x1234)
    );
    // CON GET with a token length of 9 (invalid)
    c.handle_datagram(now, &[0x49, 0x01, 0x00, 0x07, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let p = Packet::from_bytes(&c.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        (p.header.get_type(), p.header.message_id),
        (MessageType::Reset, 7)
    );
    // A payload marker with no payload, and a reserved class (1.20): format errors.
    c.handle_datagram(now, &[0x40, 0x01, 0x00, 0x09, 0xB1, b'3', 0xFF]);
    let p = Packet::from_bytes(&c.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        (p.header.get_type(), p.header.message_id),
        (MessageType::Reset, 9)
    );
    c.handle_datagram(now, &[0x40, 0x34, 0x00, 0x0A]);
    let p = Packet::from_bytes(&c.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        (p.header.get_type(), p.header.message_id),
        (MessageType::Reset, 0x0A)
    );
    // An option value ending in 0xFF is no payload marker (Uri-Port 255).
    c.handle_datagram(now, &[0x50, 0x01, 0x00, 0x0B, 0x71, 0xFF]);
    assert!(c.poll_transmit().is_none());
    assert!(matches!(c.poll_event(), Some(Event::Request(_))));
    // Same, but NON: silently ignored. Version 2: ignored.
    c.handle_datagram(now, &[0x59, 0x01, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    c.handle_datagram(now, &[0x80, 0x01, 0x00, 0x08]);
    c.handle_datagram(now, &[0x40]);
    assert!(c.poll_transmit().is_none());
    assert!(c.poll_event().is_none());
}

#[test]
fn confirmable_notification_delivery_and_reset() {
    let mut n = Net::new(echo());
    let mut note = message::response(&Packet::new(), codes::CONTENT);
    note.set_token(vec![7; 4]);
    message::set_uint(&mut note, CoapOption::Observe, 5);
    let h1 = n.server.send_notification(n.now, note.clone(), true);
    n.run_for(Duration::from_secs(1));
    // The client endpoint has no request with that token: it answers Reset.
    assert!(n
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Failed { handle, reason: Failure::Reset } if *handle == h1)));
}

#[test]
fn confirmable_notification_is_acknowledged_by_a_real_observer() {
    let mut s = Endpoint::new(TxParams::default(), 3);
    let now = Instant::now();
    let mut note = message::response(&Packet::new(), codes::CONTENT);
    note.set_token(vec![7; 4]);
    let h = s.send_notification(now, note, true);
    let sent = Packet::from_bytes(&s.poll_transmit().unwrap()).unwrap();
    assert_eq!(sent.header.get_type(), MessageType::Confirmable);
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = sent.header.message_id;
    s.handle_datagram(now, &ack.to_bytes().unwrap());
    assert!(matches!(s.poll_event(), Some(Event::Delivered { handle }) if handle == h));
    assert!(!s.busy());
}

#[test]
fn block1_sends_a_large_request_in_blocks() {
    let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let received = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let r2 = received.clone();
    let mut n = Net::new(Box::new(move |req: &Packet| {
        let b = message::block(req, CoapOption::Block1).flatten().unwrap();
        assert_eq!(b.offset(), r2.borrow().len());
        r2.borrow_mut().extend_from_slice(&req.payload);
        let mut r = message::response(
            req,
            if b.more {
                codes::CONTINUE
            } else {
                codes::CHANGED
            },
        );
        message::set_block(&mut r, CoapOption::Block1, b);
        Some(r)
    }));
    let mut req = message::request(RequestType::Post, &["rd"], &[]);
    req.payload = body.clone();
    let h = n.client.send_request(n.now, req, true);
    n.run_for(Duration::from_secs(5));
    assert_eq!(*received.borrow(), body);
    assert_eq!(n.handled, 3, "1024 + 1024 + 952");
    assert_eq!(n.responses().len(), 1);
    assert_eq!(n.responses()[0].0, h);
}

#[test]
fn block1_follows_a_server_asking_for_smaller_blocks() {
    let body: Vec<u8> = (0..2100u32).map(|i| i as u8).collect();
    let received = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let r2 = received.clone();
    let mut n = Net::new(Box::new(move |req: &Packet| {
        let b = message::block(req, CoapOption::Block1).flatten().unwrap();
        let mut got = r2.borrow_mut();
        let mut r;
        if b.szx == 6 {
            // Take only the first 512 bytes and ask for 512-byte blocks from now on.
            got.extend_from_slice(&req.payload[..512]);
            r = message::response(req, codes::CONTINUE);
            message::set_block(
                &mut r,
                CoapOption::Block1,
                BlockOpt {
                    num: 0,
                    more: true,
                    szx: 5,
                },
            );
        } else {
            assert_eq!(b.offset(), got.len());
            got.extend_from_slice(&req.payload);
            r = message::response(
                req,
                if b.more {
                    codes::CONTINUE
                } else {
                    codes::CHANGED
                },
            );
            message::set_block(&mut r, CoapOption::Block1, b);
        }
        Some(r)
    }));
    let mut req = message::request(RequestType::Post, &["rd"], &[]);
    req.payload = body.clone();
    n.client.send_request(n.now, req, true);
    n.run_for(Duration::from_secs(5));
    assert_eq!(*received.borrow(), body);
    assert_eq!(n.responses().len(), 1);
}

#[test]
fn block2_response_is_reassembled() {
    let body: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
    let b2 = body.clone();
    let mut n = Net::new(Box::new(move |req: &Packet| {
        let want = message::block(req, CoapOption::Block2)
            .flatten()
            .unwrap_or(BlockOpt {
                num: 0,
                more: false,
                szx: 6,
            });
        let (chunk, more) = block::slice(&b2, want).unwrap();
        let mut r = message::response(req, codes::CONTENT);
        r.payload = chunk.to_vec();
        message::set_block(&mut r, CoapOption::Block2, BlockOpt { more, ..want });
        Some(r)
    }));
    let h = n.get("big");
    n.run_for(Duration::from_secs(5));
    assert_eq!(n.responses(), vec![(h, body)]);
    assert_eq!(n.handled, 3);
}

#[test]
fn a_request_naming_its_block2_gets_that_block_only() {
    let body: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
    let b2 = body.clone();
    let mut n = Net::new(Box::new(move |req: &Packet| {
        let want = message::block(req, CoapOption::Block2).flatten().unwrap();
        let (chunk, more) = block::slice(&b2, want).unwrap();
        let mut r = message::response(req, codes::CONTENT);
        r.payload = chunk.to_vec();
        message::set_block(&mut r, CoapOption::Block2, BlockOpt { more, ..want });
        Some(r)
    }));
    let mut req = message::request(RequestType::Get, &["big"], &[]);
    let want = BlockOpt {
        num: 1,
        more: false,
        szx: 6,
    };
    message::set_block(&mut req, CoapOption::Block2, want);
    let h = n.client.send_request(n.now, req, true);
    n.run_for(Duration::from_secs(5));
    assert_eq!(n.responses(), vec![(h, body[1024..2048].to_vec())]);
    assert_eq!(n.handled, 1, "no follow-up request for block 2");
}

#[test]
fn cancel_drops_without_events() {
    let mut n = Net::new(echo());
    n.loss = 1.0;
    let h = n.get("x");
    n.client.cancel(h);
    n.run_for(Duration::from_secs(200));
    assert!(n.client_events.is_empty());
    assert_eq!(n.sent_to_server, 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]

    /// Under loss, duplication and reordering every request ends exactly once (a
    /// response or a timeout), responses match their requests, and the server
    /// executes each request at most once.
    #[test]
    fn lossy_network_properties(seed in 1u64..u64::MAX, loss in 0.0f64..0.5, dup in 0.0f64..0.5) {
        let mut n = Net::new(echo());
        n.rng = seed;
        n.loss = loss;
        n.dup = dup;
        n.jitter_ms = 3000;
        let mut handles = Vec::new();
        for i in 0..10 {
            handles.push((n.get(&format!("r{i}")), format!("r{i}")));
        }
        n.run_for(Duration::from_secs(3000));
        let responses = n.responses();
        let failures = n.failures();
        proptest::prop_assert_eq!(responses.len() + failures.len(), handles.len());
        for (h, name) in &handles {
            let r: Vec<_> = responses.iter().filter(|(rh, _)| rh == h).collect();
            let f: Vec<_> = failures.iter().filter(|(fh, _)| fh == h).collect();
            proptest::prop_assert_eq!(r.len() + f.len(), 1);
            if let Some((_, payload)) = r.first() {
                proptest::prop_assert_eq!(payload, &name.as_bytes().to_vec());
            }
        }
        proptest::prop_assert!(n.handled <= handles.len());
        proptest::prop_assert!(!n.client.busy());
    }

    #[test]
    fn datagrams_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
        let mut e = Endpoint::new(TxParams::default(), 5);
        let now = Instant::now();
        e.send_request(now, message::request(RequestType::Get, &["x"], &[]), true);
        e.handle_datagram(now, &bytes);
        e.handle_timeout(now + Duration::from_secs(10));
    }
}
