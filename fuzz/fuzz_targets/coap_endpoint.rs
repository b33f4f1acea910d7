//! The CoAP message layer fed arbitrary datagrams while it has a request in flight,
//! and the protocol trace describing each of them.
//!
//! Input: datagrams separated by 0xFE. A datagram with message id 0 gets the id
//! of the request in flight, and an all-zero token of the request's length its
//! token, so answers (ACK, RST, Block1 Continue, Block2 blocks) are matched
//! rather than dropped as strangers'.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate::coap::{message, trace, Endpoint, TxParams};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut e = Endpoint::new(TxParams::default(), 7);
    let mut req = message::request(coap_lite::RequestType::Get, &["3", "0"], &[]);
    req.payload = vec![0; 3000]; // Block1 in progress
    e.send_request(now, req, true);
    let Some(first) = e.poll_transmit() else {
        return;
    };
    let (mid, token) = match coap_lite::Packet::from_bytes(&first) {
        Ok(p) => (p.header.message_id.to_be_bytes(), p.get_token().to_vec()),
        Err(_) => return,
    };
    for chunk in data.split(|b| *b == 0xFE) {
        let mut d = chunk.to_vec();
        if d.len() >= 4 && d[2..4] == [0, 0] {
            d[2..4].copy_from_slice(&mid);
        }
        let tkl = usize::from(d.first().map_or(0, |b| b & 0x0F));
        if tkl == token.len() && d.len() >= 4 + tkl && d[4..4 + tkl].iter().all(|b| *b == 0) {
            d[4..4 + tkl].copy_from_slice(&token);
        }
        let _ = trace::describe(&d);
        let _ = trace::payload(&d);
        e.handle_datagram(now, &d);
        while e.poll_event().is_some() {}
        while e.poll_transmit().is_some() {}
    }
    e.handle_timeout(now + Duration::from_secs(300));
});
