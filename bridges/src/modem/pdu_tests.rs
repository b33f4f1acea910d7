use super::*;

const SINGLE: &str =
    "0791447700090000040C914477000910320004523041010300000E44023A7FA1B2C3D4B13101300138";

#[test]
fn an_8bit_deliver() {
    let d = decode_deliver(SINGLE).unwrap();
    assert_eq!(d.smsc.as_ref().unwrap().to_string(), "+447700900000");
    assert_eq!(d.sender.to_string(), "+447700900123");
    assert_eq!(d.sender.kind, NumberType::International);
    assert_eq!((d.pid, d.dcs.alphabet()), (0, Alphabet::Eight));
    assert!(!d.more_messages);
    assert_eq!(d.user_data.header, None);
    assert_eq!(to_hex(&d.user_data.body), "44023A7FA1B2C3D4B13101300138");
    assert_eq!(d.text(), None);
    // 2025-03-14 10:30:00 +00:00
    assert_eq!(d.timestamp.unix(), Some(1_741_948_200));
    assert_eq!(tpdu_len(&from_hex(SINGLE).unwrap()), Some(33));
    // Encoding gives back the same octets.
    assert_eq!(to_hex(&d.encode().unwrap()), SINGLE);
}

#[test]
fn the_zone_is_in_quarter_hours_with_a_sign() {
    // 2025-03-14 10:30:00 at +02:00 (8 quarters) and at -05:30 (22 quarters).
    let plus = Timestamp {
        raw: [0x52, 0x30, 0x41, 0x01, 0x03, 0x00, 0x80],
    };
    assert_eq!(plus.unix(), Some(1_741_948_200 - 7200));
    let minus = Timestamp {
        raw: [0x52, 0x30, 0x41, 0x01, 0x03, 0x00, 0x2A],
    };
    assert_eq!(minus.unix(), Some(1_741_948_200 + 5 * 3600 + 1800));
    assert_eq!(Timestamp::from_unix(1_741_948_200 + 19_800, -22), minus);
    assert_eq!(Timestamp::from_unix(1_741_948_200 - 7200, 8), plus);
    // Not a date: month 13, February 30, a hex digit.
    for raw in [
        [0x52, 0x31, 0x41, 0x01, 0x03, 0x00, 0x00],
        [0x52, 0x20, 0x03, 0x01, 0x03, 0x00, 0x00],
        [0x5A, 0x30, 0x41, 0x01, 0x03, 0x00, 0x00],
    ] {
        assert_eq!(Timestamp { raw }.unix(), None, "{raw:02X?}");
    }
    // 2024-02-29 exists.
    assert!(Timestamp {
        raw: [0x42, 0x20, 0x92, 0, 0, 0, 0]
    }
    .unix()
    .is_some());
}

fn deliver(sender: Address, dcs: u8, header: Option<Udh>, body: Vec<u8>) -> Deliver {
    Deliver {
        smsc: None,
        more_messages: false,
        reply_path: false,
        status_report: false,
        sender,
        pid: 0,
        dcs: Dcs { raw: dcs },
        timestamp: Timestamp::from_unix(1_700_000_000, 4),
        user_data: UserData { header, body },
    }
}

#[test]
fn alphanumeric_sender_and_7bit_text_after_a_header() {
    let sender = Address {
        kind: NumberType::Alphanumeric,
        plan: 0,
        value: "Operator".into(),
    };
    let header = Udh {
        ies: vec![Concat {
            reference: 9,
            wide: false,
            total: 2,
            seq: 1,
        }
        .ie()],
    };
    let body = text::encode_gsm7("Wake up, €100 [ok]").unwrap();
    let d = deliver(sender, 0x00, Some(header), body);
    let pdu = d.encode().unwrap();
    let back = decode_deliver(&to_hex(&pdu)).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.sender.to_string(), "Operator");
    assert_eq!(back.text().as_deref(), Some("Wake up, €100 [ok]"));
    assert_eq!(back.concat().map(|c| c.seq), Some(1));
}

#[test]
fn a_known_alphanumeric_address() {
    // "Vodafone" as networks send it: 14 semi-octets, type D0, D637396C7EBBCB.
    let pdu = "00040ED0D637396C7EBBCB00005230410103000000";
    let d = decode_deliver(pdu).unwrap();
    assert_eq!(d.sender.kind, NumberType::Alphanumeric);
    assert_eq!(d.sender.value, "Vodafone");
}

#[test]
fn ucs2_text_is_decoded_for_the_log() {
    let d = deliver(
        Address::number("0612345678").unwrap(),
        0x08,
        None,
        text::encode_ucs2("Grüße"),
    );
    let back = decode_deliver(&to_hex(&d.encode().unwrap())).unwrap();
    assert_eq!(back.sender.to_string(), "0612345678");
    assert_eq!(back.text().as_deref(), Some("Grüße"));
}

#[test]
fn data_codings() {
    for raw in [
        0x04, 0x05, 0x06, 0x07, 0x14, 0x15, 0x44, 0xF4, 0xF5, 0xF6, 0xF7,
    ] {
        assert_eq!(Dcs { raw }.alphabet(), Alphabet::Eight, "{raw:02X}");
    }
    for raw in [0x00, 0x10, 0xF0, 0xF1, 0xC0, 0xD0, 0x80, 0x0C] {
        assert_eq!(Dcs { raw }.alphabet(), Alphabet::Gsm7, "{raw:02X}");
    }
    for raw in [0x08, 0x18, 0x48, 0xE0] {
        assert_eq!(Dcs { raw }.alphabet(), Alphabet::Ucs2, "{raw:02X}");
    }
    assert_eq!(Dcs { raw: 0xF6 }.class(), Some(2));
    assert_eq!(Dcs { raw: 0x04 }.class(), None);
    assert!(Dcs { raw: 0x24 }.compressed());
    assert!(!Dcs { raw: 0xF4 }.compressed());
}

#[test]
fn submit_single_and_split() {
    let one = encode_submit(
        "+447700900123",
        &[0x44, 0x02, 0x3A, 0x7F],
        Reference::Eight(1),
    )
    .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].hex, "0001000C9144770009103200040444023A7F");
    assert_eq!(one[0].tpdu_len, one[0].hex.len() / 2 - 1);

    let data: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let parts = encode_submit("07700900123", &data, Reference::Eight(0x5C)).unwrap();
    assert_eq!(parts.len(), 3);
    let mut joined = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let Pdu::Submit(s) = decode_hex(&p.hex).unwrap() else {
            panic!()
        };
        assert_eq!(s.destination.kind, NumberType::Unknown);
        assert_eq!(s.destination.to_string(), "07700900123");
        let c = s.concat().unwrap();
        assert_eq!((c.reference, c.total, c.seq), (0x5C, 3, i as u8 + 1));
        assert!(s.user_data.body.len() <= 134);
        joined.extend(s.user_data.body);
    }
    assert_eq!(joined, data);

    let wide = encode_submit("+1555", &data, Reference::Sixteen(0xBEEF)).unwrap();
    let Pdu::Submit(s) = decode_hex(&wide[0].hex).unwrap() else {
        panic!()
    };
    assert_eq!(s.user_data.body.len(), 133);
    assert_eq!(
        s.concat().map(|c| (c.reference, c.wide)),
        Some((0xBEEF, true))
    );
}

#[test]
fn submit_refuses_what_cannot_be_sent() {
    for bad in ["", "+", "12a4", "+123456789012345678901", "++1"] {
        assert!(
            encode_submit(bad, b"x", Reference::Eight(0)).is_err(),
            "{bad}"
        );
    }
    let huge = vec![0u8; MAX_CONCAT_OCTETS + 1];
    assert!(encode_submit("+1", &huge, Reference::Eight(0)).is_err());
    assert_eq!(
        encode_submit("+1", &huge[1..], Reference::Eight(0))
            .unwrap()
            .len(),
        255
    );
}

#[test]
fn malformed_pdus_name_the_field() {
    let field = |hex: &str| decode_hex(hex).unwrap_err().field;
    assert_eq!(field(""), "SMSC address");
    assert_eq!(field("0"), "PDU");
    assert_eq!(field("zz"), "PDU");
    assert_eq!(field("0D"), "SMSC address");
    assert_eq!(field("00"), "first octet");
    assert_eq!(field("0002"), "TP-MTI");
    assert_eq!(field("00041591"), "TP-OA");
    assert_eq!(field("00040C9144770009103200"), "TP-DCS");
    assert_eq!(field("00040C914477000910320004523041"), "TP-SCTS");
    assert_eq!(
        field("00040C9144770009103200045230410103000005AABB"),
        "TP-UD"
    );
    // Octets after the user data.
    assert_eq!(
        field("00040C9144770009103200045230410103000001AABB"),
        "TP-UD"
    );
    // UDL over 140 for 8-bit data.
    assert_eq!(field("00040C914477000910320004523041010300008D"), "TP-UDL");
    // A header longer than the user data.
    assert_eq!(
        field("00440C914477000910320004523041010300000205AA"),
        "UDHL"
    );
    // A header element running past the header.
    assert_eq!(
        field("00440C9144770009103200045230410103000003020001"),
        "UDH"
    );
    // 7-bit: a 6-octet header needs 7 septets, UDL says 6.
    assert_eq!(
        field("00440C9144770009103200005230410103000006050003010201"),
        "TP-UDL"
    );
    let long = "00".repeat(MAX_PDU_OCTETS + 1);
    assert_eq!(field(&long), "PDU");
}
