//! The CoAP message layer fed arbitrary datagrams while it has a request in flight,
//! and the protocol trace describing each of them.
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
    for chunk in data.split(|b| *b == 0xFE) {
        let _ = trace::describe(chunk);
        let _ = trace::payload(chunk);
        e.handle_datagram(now, chunk);
        while e.poll_event().is_some() {}
        while e.poll_transmit().is_some() {}
    }
    e.handle_timeout(now + Duration::from_secs(300));
});
