//! A registered gateway client (`lwgate_fuzz::client`) fed raw datagrams as if
//! from its servers: every request path (classification, Block1/Block2, DM,
//! observe) must answer, not panic. Seeds are real requests
//! (fuzz/seeds/make_seeds.py); `client_ops` builds valid ones instead.
//!
//! Input: datagrams, each after a 2-byte big-endian length whose top bit picks
//! the second server.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate_fuzz::client::{Harness, SERVERS};

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::registered();
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi & 0x7F, *lo]));
        let (dgram, after) = tail.split_at(len.min(tail.len()));
        rest = after;
        h.c.handle_datagram(h.now, SERVERS[usize::from(*hi >> 7)], dgram);
        h.drain();
    }
    h.c.handle_timeout(h.now + std::time::Duration::from_secs(30));
    h.drain();
});
