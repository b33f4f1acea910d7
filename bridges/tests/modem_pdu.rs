//! The SMS codec against the verified vectors of tests/fixtures/modem/vectors.json
//! (decoded independently by two PDU libraries and a CoAP decoder), and property
//! tests: encode → decode round trips of SMS-SUBMIT and SMS-DELIVER, concatenated
//! messages split and put together again, and arbitrary bytes (the body of the
//! `sms_pdu` fuzz target) never panicking.

use std::path::PathBuf;

use lwgate_bridges::modem::at::At;
use lwgate_bridges::modem::concat::{Key, Limits, Outcome, Reassembler};
use lwgate_bridges::modem::pdu::{
    self, decode, decode_deliver, decode_hex, encode_submit, from_hex, to_hex, Address, Alphabet,
    Dcs, Deliver, NumberType, Pdu, Reference, Submit, Timestamp, UserData, Validity,
};
use lwgate_bridges::modem::text;
use lwgate_bridges::modem::udh::{Concat, Ie, Udh};
use proptest::prelude::*;

fn vectors() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/modem/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_single_vector_carries_its_coap_message() {
    let v = &vectors()["single_8bit_post_1_0_8"];
    let hex = v["pdu"].as_str().unwrap();
    let d = decode_deliver(hex).unwrap();
    assert_eq!(d.sender.to_string(), v["sender"].as_str().unwrap());
    assert_eq!(d.dcs.alphabet(), Alphabet::Eight);
    assert_eq!(d.concat(), None);
    assert_eq!(to_hex(&d.user_data.body), v["coap_hex"].as_str().unwrap());
    assert_eq!(
        pdu::tpdu_len(&from_hex(hex).unwrap()),
        Some(v["tpdu_len"].as_u64().unwrap() as usize)
    );
    // CON POST, token length 4, MID 0x3A7F; Uri-Path 1, 0, 8.
    let coap = &d.user_data.body;
    assert_eq!(
        (coap[0], coap[1], &coap[2..4]),
        (0x44, 0x02, &[0x3A, 0x7F][..])
    );
    assert_eq!(&coap[8..], &[0xB1, b'1', 0x01, b'0', 0x01, b'8']);
}

#[test]
fn the_two_parts_make_the_put() {
    let v = &vectors()["concat_2part_put_5_0_1"];
    let mut r = Reassembler::new(Limits::default());
    let mut whole = None;
    // In reverse order: the order of arrival does not matter.
    for (i, part) in v["parts"].as_array().unwrap().iter().enumerate().rev() {
        let hex = part["pdu"].as_str().unwrap();
        assert_eq!(
            pdu::tpdu_len(&from_hex(hex).unwrap()),
            Some(part["tpdu_len"].as_u64().unwrap() as usize)
        );
        let d = decode_deliver(hex).unwrap();
        assert_eq!(d.sender.to_string(), v["sender"].as_str().unwrap());
        let c = d.concat().unwrap();
        assert_eq!(
            (c.reference, c.wide, c.total, c.seq),
            (92, false, 2, i as u8 + 1)
        );
        let key = Key {
            sender: d.sender.to_string(),
            reference: c.reference,
            total: c.total,
        };
        let time = d.timestamp.unix().unwrap() as f64;
        match r.push(0.0, key, c.seq, time, d.user_data.body, i) {
            Outcome::Complete(w) => whole = Some(w),
            Outcome::Pending { evicted: None } => {}
            other => panic!("{other:?}"),
        }
    }
    let w = whole.unwrap();
    assert_eq!(w.data.len(), v["coap_len"].as_u64().unwrap() as usize);
    assert_eq!(w.tags, vec![0, 1]);
    // CON PUT with a 4-octet token, Uri-Path 5/0/1, Content-Format text/plain (an
    // empty value), then the URI as payload.
    assert_eq!(&w.data[..2], &[0x44, 0x03]);
    assert_eq!(
        &w.data[8..16],
        &[0xB1, b'5', 0x01, b'0', 0x01, b'1', 0x10, 0xFF]
    );
    let text = String::from_utf8_lossy(&w.data);
    assert!(
        text.contains("coaps://fw.example.com:5684/fw/gw-agent/2.3.1/"),
        "{text}"
    );
}

fn number() -> impl Strategy<Value = String> {
    (any::<bool>(), "[0-9]{1,20}").prop_map(|(intl, d)| if intl { format!("+{d}") } else { d })
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        number().prop_map(|n| Address::number(&n).unwrap()),
        (0u8..8, 0u8..16, "[0-9*#abc]{0,20}").prop_map(|(kind, plan, value)| Address {
            kind: [
                NumberType::Unknown,
                NumberType::International,
                NumberType::National,
                NumberType::NetworkSpecific,
                NumberType::Subscriber,
                NumberType::Unknown,
                NumberType::Abbreviated,
                NumberType::Reserved,
            ][usize::from(kind)],
            plan,
            value,
        }),
        "[A-Za-z0-9 ]{1,11}".prop_map(|value| Address {
            kind: NumberType::Alphanumeric,
            plan: 0,
            value,
        }),
    ]
}

fn header() -> impl Strategy<Value = Option<Udh>> {
    proptest::option::of(
        proptest::collection::vec(
            prop_oneof![
                (any::<u16>(), any::<bool>(), 1u8..=255, any::<u8>()).prop_map(
                    |(reference, wide, total, seq)| Concat {
                        reference: if wide { reference } else { reference & 0xFF },
                        wide,
                        total,
                        seq: seq % total + 1,
                    }
                    .ie()
                ),
                (0x20u8..0xFF, proptest::collection::vec(any::<u8>(), 0..6))
                    .prop_map(|(iei, data)| Ie { iei, data }),
            ],
            0..3,
        )
        .prop_map(|ies| Udh { ies }),
    )
}

/// A body that fits beside `header` in one SMS of `dcs`'s alphabet.
fn user_data(alphabet: Alphabet) -> impl Strategy<Value = UserData> {
    header().prop_flat_map(move |header| {
        let h = header.as_ref().map_or(0, |h| h.encode().len() + 1);
        let room = match alphabet {
            Alphabet::Gsm7 => 160 - (h * 8).div_ceil(7),
            _ => 140 - h,
        };
        let body = match alphabet {
            Alphabet::Gsm7 => proptest::collection::vec(0u8..128, 0..=room).boxed(),
            _ => proptest::collection::vec(any::<u8>(), 0..=room).boxed(),
        };
        (Just(header), body).prop_map(|(header, body)| UserData { header, body })
    })
}

fn dcs() -> impl Strategy<Value = Dcs> {
    any::<u8>().prop_map(|raw| Dcs { raw })
}

fn deliver() -> impl Strategy<Value = Deliver> {
    (
        proptest::option::of(number().prop_map(|n| Address::number(&n).unwrap())),
        any::<[bool; 3]>(),
        address(),
        any::<u8>(),
        dcs(),
        (0i64..4_000_000_000, -56i8..=56),
    )
        .prop_flat_map(|(smsc, flags, sender, pid, dcs, (t, q))| {
            user_data(dcs.alphabet()).prop_map(move |user_data| Deliver {
                smsc: smsc.clone(),
                more_messages: flags[0],
                reply_path: flags[1],
                status_report: flags[2],
                sender: sender.clone(),
                pid,
                dcs,
                timestamp: Timestamp::from_unix(t, q),
                user_data,
            })
        })
}

fn submit() -> impl Strategy<Value = Submit> {
    (
        any::<[bool; 3]>(),
        any::<u8>(),
        address(),
        any::<u8>(),
        dcs(),
        prop_oneof![
            Just(Validity::None),
            any::<u8>().prop_map(Validity::Relative),
            (prop_oneof![Just(1u8), Just(3u8)], any::<[u8; 7]>())
                .prop_map(|(format, raw)| Validity::Other { format, raw }),
        ],
    )
        .prop_flat_map(|(flags, reference, destination, pid, dcs, validity)| {
            user_data(dcs.alphabet()).prop_map(move |user_data| Submit {
                smsc: None,
                reject_duplicates: flags[0],
                status_report: flags[1],
                reply_path: flags[2],
                reference,
                destination: destination.clone(),
                pid,
                dcs,
                validity,
                user_data,
            })
        })
}

/// What the `sms_pdu` fuzz target does with its input.
fn throw_at_everything(data: &[u8]) {
    let _ = decode(data);
    let _ = Udh::parse(data);
    let _ = text::unpack_septets(data, data.len() % 7, data.len() * 8 / 7);
    let _ = text::decode_ucs2(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = decode_hex(s);
        let mut at = At::default();
        at.start("AT+CMGL=4", data.first().is_some_and(|b| b % 2 == 0));
        at.push(data);
        while at.poll().is_some() {}
    }
    if let Ok(Pdu::Deliver(d)) = decode(data) {
        let _ = d.text();
        let _ = d.timestamp.unix();
        let _ = d.encode();
        if let Some(c) = d.concat() {
            let mut r = Reassembler::new(Limits::default());
            let key = Key {
                sender: d.sender.to_string(),
                reference: c.reference,
                total: c.total,
            };
            let _ = r.push(0.0, key, c.seq, 0.0, d.user_data.body.clone(), ());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn deliver_round_trips(d in deliver()) {
        let octets = d.encode().unwrap();
        prop_assert!(octets.len() <= pdu::MAX_PDU_OCTETS);
        let back = decode_hex(&to_hex(&octets)).unwrap();
        prop_assert_eq!(back, Pdu::Deliver(d));
    }

    #[test]
    fn submit_round_trips(s in submit()) {
        let octets = s.encode().unwrap();
        let back = decode(&octets).unwrap();
        prop_assert_eq!(back, Pdu::Submit(s));
    }

    #[test]
    fn timestamps_round_trip(t in 0i64..4_000_000_000, q in -56i8..=56) {
        prop_assume!(t + i64::from(q) * 900 >= 631_152_000); // 1990 on, local
        prop_assume!(t + i64::from(q) * 900 < 3_786_912_000); // before 2090
        prop_assert_eq!(Timestamp::from_unix(t, q).unix(), Some(t));
    }

    #[test]
    fn septets_round_trip(s in proptest::collection::vec(0u8..128, 0..160), fill in 0usize..7) {
        let packed = text::pack_septets(&s, fill);
        prop_assert_eq!(packed.len(), (fill + 7 * s.len()).div_ceil(8));
        prop_assert_eq!(text::unpack_septets(&packed, fill, s.len()).unwrap(), s);
    }

    /// Sent split, received whole, in any order, with duplicates.
    #[test]
    fn a_split_message_comes_back_whole(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        wide in any::<bool>(),
        reference in any::<u16>(),
        order in any::<u64>(),
    ) {
        let r = if wide { Reference::Sixteen(reference) } else { Reference::Eight(reference as u8) };
        let parts = encode_submit("+447700900123", &data, r).unwrap();
        prop_assert_eq!(parts.len() == 1, data.len() <= 140);
        let mut decoded: Vec<Submit> = parts
            .iter()
            .map(|p| {
                prop_assert_eq!(p.tpdu_len, p.hex.len() / 2 - 1);
                match decode_hex(&p.hex) {
                    Ok(Pdu::Submit(s)) => Ok(s),
                    other => Err(TestCaseError::fail(format!("{other:?}"))),
                }
            })
            .collect::<Result<_, _>>()?;
        if decoded.len() == 1 {
            prop_assert_eq!(&decoded[0].user_data.body, &data);
            return Ok(());
        }
        // Shuffle by the seed, and repeat the first part before the message is whole.
        let n = decoded.len();
        for i in 0..n {
            decoded.swap(i, (order as usize).wrapping_mul(31).wrapping_add(i * 7) % n);
        }
        let again = decoded[0].clone();
        decoded.insert(1, again);
        let mut re = Reassembler::new(Limits { max_bytes: 4096, ..Limits::default() });
        let mut whole = None;
        let mut duplicates = 0;
        for s in decoded {
            let c = s.concat().unwrap();
            let key = Key { sender: s.destination.to_string(), reference: c.reference, total: c.total };
            match re.push(0.0, key, c.seq, 0.0, s.user_data.body, c.seq) {
                Outcome::Complete(w) => whole = Some(w),
                Outcome::Duplicate(_) => duplicates += 1,
                Outcome::Pending { evicted: None } => {}
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
        }
        prop_assert_eq!(duplicates, 1);
        let w = whole.unwrap();
        prop_assert_eq!(w.data, data);
        prop_assert_eq!(w.tags, (1..=n as u8).collect::<Vec<_>>());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        throw_at_everything(&data);
    }

    /// Bytes that start like an SMS-DELIVER get deeper into the decoder.
    #[test]
    fn mangled_delivers_never_panic(
        d in deliver(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut octets = d.encode().unwrap();
        for (at, x) in flips {
            let i = at % octets.len();
            octets[i] ^= x;
        }
        octets.truncate(cut % (octets.len() + 1));
        throw_at_everything(&octets);
        throw_at_everything(to_hex(&octets).as_bytes());
    }
}
