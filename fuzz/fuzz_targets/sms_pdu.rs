//! What a modem hands the SMS bridge: PDUs (as octets and as the hex of
//! AT+CMGR/+CMGL/+CMT), user data headers, 7-bit and UCS2 text, the AT port's byte
//! stream (lines, unsolicited codes, the `> ` prompt), and concatenated parts.
//! The same body runs as a proptest in bridges/tests/modem_pdu.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate_bridges::modem::at::At;
use lwgate_bridges::modem::concat::{Key, Limits, Reassembler};
use lwgate_bridges::modem::pdu::{self, Pdu};
use lwgate_bridges::modem::{text, udh::Udh};

fuzz_target!(|data: &[u8]| {
    let _ = Udh::parse(data);
    let _ = text::unpack_septets(data, data.len() % 7, data.len() * 8 / 7);
    let _ = text::decode_ucs2(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = pdu::decode_hex(s);
        let mut at = At::default();
        at.start("AT+CMGL=4", data.first().is_some_and(|b| b % 2 == 0));
        at.push(data);
        while at.poll().is_some() {}
    }
    // Parts, each a PDU after a length octet, through one reassembler.
    let mut r = Reassembler::new(Limits::default());
    let mut rest = data;
    let mut i = 0;
    while let [len, tail @ ..] = rest {
        let (part, after) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = after;
        i += 1;
        match pdu::decode(part) {
            Ok(Pdu::Deliver(d)) => {
                let _ = d.text();
                let _ = d.timestamp.unix();
                let _ = d.encode();
                if let Some(c) = d.concat() {
                    let key = Key {
                        sender: d.sender.to_string(),
                        reference: c.reference,
                        total: c.total,
                    };
                    let _ = r.push(i as f64, key, c.seq, 0.0, d.user_data.body, i);
                }
            }
            Ok(Pdu::Submit(s)) => {
                let _ = s.encode();
            }
            Err(_) => {}
        }
    }
    let _ = r.expire(1e9);
});
