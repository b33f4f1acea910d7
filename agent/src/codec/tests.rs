use super::*;
use crate::model::{DataType, Path, Value};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

fn device_types(path: &Path) -> Option<DataType> {
    crate::model::Registry::builtin()
        .get(path.object()?)?
        .resource(path.resource()?)
        .map(|r| r.data_type)
}

fn device_example() -> Vec<Record> {
    let s = |x: &str| Value::String(x.into());
    vec![
        (p("/3/0/0"), s("Open Mobile Alliance")),
        (p("/3/0/1"), s("Lightweight M2M Client")),
        (p("/3/0/2"), s("345000123")),
        (p("/3/0/3"), s("1.0")),
        (p("/3/0/6/0"), Value::Integer(1)),
        (p("/3/0/6/1"), Value::Integer(5)),
        (p("/3/0/7/0"), Value::Integer(3800)),
        (p("/3/0/7/1"), Value::Integer(5000)),
        (p("/3/0/8/0"), Value::Integer(125)),
        (p("/3/0/8/1"), Value::Integer(900)),
        (p("/3/0/9"), Value::Integer(100)),
        (p("/3/0/10"), Value::Integer(15)),
        (p("/3/0/11/0"), Value::Integer(0)),
        (p("/3/0/13"), Value::Time(1367491215)),
        (p("/3/0/14"), s("+02:00")),
        (p("/3/0/16"), s("U")),
    ]
}

/// Spec 6.4.3.1, with the Model Number bytes corrected: the spec's hex drops an 'h'
/// from "Lightweight" while its length byte (0x16 = 22) and total count it.
const DEVICE_TLV: &str = "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
    C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
    C8 02 09 33 34 35 30 30 30 31 32 33
    C3 03 31 2E 30
    86 06 41 00 01 41 01 05
    88 07 08 42 00 0E D8 42 01 13 88
    87 08 41 00 7D 42 01 03 84
    C1 09 64
    C1 0A 0F
    83 0B 41 00 00
    C4 0D 51 82 42 8F
    C6 0E 2B 30 32 3A 30 30
    C1 10 55";

#[test]
fn tlv_spec_example_single_instance() {
    let bytes = hex(DEVICE_TLV);
    assert_eq!(bytes.len(), 121, "the spec's total");
    assert_eq!(
        encode(Format::Tlv, &p("/3/0"), &device_example()).unwrap(),
        bytes
    );
    assert_eq!(
        decode(Format::Tlv, &p("/3/0"), &bytes, &device_types).unwrap(),
        device_example()
    );
}

#[test]
fn tlv_spec_example_object_with_instances_wrapper() {
    let mut wrapped = hex("08 00 79");
    wrapped.extend(hex(DEVICE_TLV));
    assert_eq!(
        encode(Format::Tlv, &p("/3"), &device_example()).unwrap(),
        wrapped
    );
    assert_eq!(
        decode(Format::Tlv, &p("/3"), &wrapped, &device_types).unwrap(),
        device_example()
    );
    // An instance write wrapped in its instance TLV is accepted too.
    assert_eq!(
        decode(Format::Tlv, &p("/3/0"), &wrapped, &device_types).unwrap(),
        device_example()
    );
    assert!(decode(Format::Tlv, &p("/3/1"), &wrapped, &device_types).is_err());
}

fn objlnk_types(path: &Path) -> Option<DataType> {
    Some(match (path.object()?, path.resource()?) {
        (65, 0) | (66, 2) => DataType::ObjLnk,
        (65, 1) | (66, 0) | (66, 1) => DataType::String,
        (65, 2) => DataType::Integer,
        _ => return None,
    })
}

#[test]
fn tlv_spec_example_object_links() {
    let bytes = hex("88 00 0C 44 00 00 42 00 00 44 01 00 42 00 01
        C8 01 0D 38 36 31 33 38 30 30 37 35 35 35 30 30
        C4 02 12 34 56 78");
    let recs = vec![
        (p("/65/0/0/0"), Value::ObjLnk(66, 0)),
        (p("/65/0/0/1"), Value::ObjLnk(66, 1)),
        (p("/65/0/1"), Value::String("8613800755500".into())),
        (p("/65/0/2"), Value::Integer(0x12345678)),
    ];
    assert_eq!(
        decode(Format::Tlv, &p("/65/0"), &bytes, &objlnk_types).unwrap(),
        recs
    );
    assert_eq!(encode(Format::Tlv, &p("/65/0"), &recs).unwrap(), bytes);

    // The spec's instance lengths (0x23) undercount its own resource bytes (38 each).
    let two = hex("08 00 26 C8 00 0B 6D 79 53 65 72 76 69 63 65 20 31
        C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 34 C4 02 00 43 00 00
        08 01 26 C8 00 0B 6D 79 53 65 72 76 69 63 65 20 32
        C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 35 C4 02 FF FF FF FF");
    let recs = decode(Format::Tlv, &p("/66"), &two, &objlnk_types).unwrap();
    assert_eq!(recs.len(), 6);
    assert_eq!(recs[2], (p("/66/0/2"), Value::ObjLnk(67, 0)));
    assert_eq!(recs[5], (p("/66/1/2"), Value::ObjLnk(0xFFFF, 0xFFFF)));
    assert_eq!(encode(Format::Tlv, &p("/66"), &recs).unwrap(), two);
}

#[test]
fn tlv_rejects_hostile_lengths_and_mismatched_ids() {
    for bad in [
        "C8 00",
        "C8 00 14 4F",
        "D8 00",
        "FF",
        "C1",
        "E8 00 01 05 41",
        "C3 05 31 2E 30",
    ] {
        assert!(
            decode(Format::Tlv, &p("/3/0/0"), &hex(bad), &device_types).is_err(),
            "{bad}"
        );
    }
    // 3-byte integers do not exist.
    assert!(decode(
        Format::Tlv,
        &p("/3/0"),
        &hex("C3 09 00 00 01"),
        &device_types
    )
    .is_err());
    // booleans are exactly 0 or 1
    let bool_types = |_: &Path| Some(DataType::Boolean);
    assert!(decode(Format::Tlv, &p("/1/0/6"), &hex("C1 06 02"), &bool_types).is_err());
}

#[test]
fn tlv_uses_16_bit_ids_and_long_lengths() {
    let big = "x".repeat(70_000);
    let recs = vec![(p("/3303/0/5750"), Value::String(big.clone()))];
    let bytes = encode(Format::Tlv, &p("/3303/0/5750"), &recs).unwrap();
    assert_eq!(&bytes[..6], &[0b1111_1000, 0x16, 0x76, 0x01, 0x11, 0x70]);
    let types = |_: &Path| Some(DataType::String);
    assert_eq!(
        decode(Format::Tlv, &p("/3303/0/5750"), &bytes, &types).unwrap(),
        recs
    );
}

#[test]
fn text_plain() {
    let r = [(p("/3/0/9"), Value::Integer(95))];
    assert_eq!(encode(Format::Text, &p("/3/0/9"), &r).unwrap(), b"95");
    assert_eq!(
        decode(Format::Text, &p("/3/0/9"), b"95", &device_types).unwrap(),
        r
    );
    assert!(decode(Format::Text, &p("/3/0/9"), b"ninety", &device_types).is_err());
    assert!(decode(Format::Text, &p("/3/0"), b"1", &device_types).is_err());
    assert!(encode(Format::Text, &p("/3/0"), &device_example()).is_err());
    let f = [(p("/1/0/1"), Value::Float(21.5))];
    assert_eq!(encode(Format::Text, &p("/1/0/1"), &f).unwrap(), b"21.5");
    let o = [(p("/5/0/0"), Value::Opaque(vec![1, 2, 3]))];
    assert_eq!(encode(Format::Text, &p("/5/0/0"), &o).unwrap(), b"AQID");
    let ol = |_: &Path| Some(DataType::ObjLnk);
    assert_eq!(
        decode(Format::Text, &p("/1/0/10"), b"11:0", &ol).unwrap()[0].1,
        Value::ObjLnk(11, 0)
    );
}

#[test]
fn opaque_only_for_opaque() {
    let o = [(p("/5/0/0"), Value::Opaque(vec![9, 8]))];
    assert_eq!(
        encode(Format::Opaque, &p("/5/0/0"), &o).unwrap(),
        vec![9, 8]
    );
    assert!(encode(
        Format::Opaque,
        &p("/3/0/9"),
        &[(p("/3/0/9"), Value::Integer(1))]
    )
    .is_err());
}

#[test]
fn senml_json_device_read() {
    let bytes = encode(Format::SenmlJson, &p("/3/0"), &device_example()).unwrap();
    let j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(j[0]["bn"], "/3/0/");
    assert_eq!(j[0]["n"], "0");
    assert_eq!(j[0]["vs"], "Open Mobile Alliance");
    assert_eq!(j[4]["n"], "6/0");
    assert_eq!(
        decode(Format::SenmlJson, &p("/3/0"), &bytes, &device_types).unwrap(),
        device_example()
    );
}

#[test]
fn senml_json_as_leshan_writes_it() {
    let body = br#"[{"bn":"/1/0/","n":"1","v":120},{"n":"6","vb":false},{"n":"7","vs":"UQ"}]"#;
    let server_types = |path: &Path| {
        device_types(path).or_else(|| {
            crate::model::Registry::builtin()
                .get(1)?
                .resource(path.resource()?)
                .map(|r| r.data_type)
        })
    };
    let recs = decode(Format::SenmlJson, &p("/1/0"), body, &server_types).unwrap();
    assert_eq!(
        recs,
        vec![
            (p("/1/0/1"), Value::Integer(120)),
            (p("/1/0/6"), Value::Boolean(false)),
            (p("/1/0/7"), Value::String("UQ".into())),
        ]
    );
    // A name outside the target is rejected.
    let outside = br#"[{"bn":"/1/1/","n":"1","v":120}]"#;
    assert!(decode(Format::SenmlJson, &p("/1/0"), outside, &server_types).is_err());
    // A float into an integer resource is rejected; whole floats are accepted.
    assert!(decode(
        Format::SenmlJson,
        &p("/1/0"),
        br#"[{"bn":"/1/0/1","v":1.5}]"#,
        &server_types
    )
    .is_err());
    assert!(decode(
        Format::SenmlJson,
        &p("/1/0"),
        br#"[{"bn":"/1/0/1","v":15.0}]"#,
        &server_types
    )
    .is_ok());
}

#[test]
fn senml_cbor_device_read_round_trip() {
    let bytes = encode(Format::SenmlCbor, &p("/3/0"), &device_example()).unwrap();
    assert_eq!(
        decode(Format::SenmlCbor, &p("/3/0"), &bytes, &device_types).unwrap(),
        device_example()
    );
    // First record: {-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}
    assert_eq!(bytes[0], 0x90, "array of 16");
    assert_eq!(&bytes[1..3], &[0xA3, 0x21]);
}

#[test]
fn senml_times_are_relative_to_base_time() {
    let recs = vec![
        (p("/3303/0/5700"), Value::Float(20.5)),
        (p("/3303/0/5700"), Value::Float(21.0)),
    ];
    let bytes = encode_absolute(Format::SenmlJson, &recs, Some(&[1000.0, 1010.0])).unwrap();
    let j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(j[0]["bt"], 1000.0);
    assert_eq!(j[1]["t"], 10.0);
    assert_eq!(j[0]["n"], "/3303/0/5700");
    let resolved = senml::resolve(vec![
        senml::Raw {
            bn: Some("/a/".into()),
            bt: Some(100.0),
            n: Some("3/0/1".into()),
            t: Some(-5.0),
            value: None,
        },
        senml::Raw {
            n: Some("3/0/2".into()),
            ..Default::default()
        },
    ])
    .unwrap();
    assert_eq!(resolved[0].0, p("/a/3/0/1"));
    assert_eq!(resolved[0].2, Some(95.0));
    assert_eq!(resolved[1].0, p("/a/3/0/2"));
}

#[test]
fn composite_paths() {
    let body = br#"[{"n":"/3/0/0"},{"n":"/1/0/1"},{"n":"/dev1/3303/0/5700"}]"#;
    assert_eq!(
        decode_paths(Format::SenmlJson, body).unwrap(),
        vec![p("/3/0/0"), p("/1/0/1"), p("/dev1/3303/0/5700")]
    );
    assert!(decode_paths(Format::Tlv, b"").is_err());
}

#[test]
fn lwm2m_json_spec_example() {
    let body = br#"{"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"6/0","v":1},{"n":"13","v":1367491215},{"n":"16","sv":"U"}]}"#;
    let recs = decode(Format::LwJson, &p("/3/0"), body, &device_types).unwrap();
    assert_eq!(
        recs[0],
        (p("/3/0/0"), Value::String("Open Mobile Alliance".into()))
    );
    assert_eq!(recs[1], (p("/3/0/6/0"), Value::Integer(1)));
    assert_eq!(recs[2], (p("/3/0/13"), Value::Time(1367491215)));
    let out = encode(Format::LwJson, &p("/3/0"), &device_example()).unwrap();
    assert_eq!(
        decode(Format::LwJson, &p("/3/0"), &out, &device_types).unwrap(),
        device_example()
    );
}

#[test]
fn link_format_round_trip() {
    let s = r#"</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>,</3303>;ver=1.1,</3303/0>"#;
    let links = link::parse(s).unwrap();
    assert_eq!(links.len(), 5);
    assert_eq!(links[0].get("rt"), Some("oma.lwm2m"));
    assert_eq!(links[3].get("ver"), Some("1.1"));
    assert!(link::parse("<unterminated").is_err());
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<u64>().prop_map(Value::Unsigned),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Opaque),
        any::<i64>().prop_map(Value::Time),
        (any::<u16>(), any::<u16>()).prop_map(|(o, i)| Value::ObjLnk(o, i)),
    ]
}

/// Random instance content: resource id → single value or resource instances.
fn arb_instance() -> impl Strategy<Value = Vec<Record>> {
    proptest::collection::btree_map(0u16..2000, (arb_value(), 0usize..3), 1..8).prop_map(|m| {
        let mut out = Vec::new();
        for (rid, (v, multi)) in m {
            if multi == 0 {
                out.push((Path::new(&[9999, 3, rid]), v));
            } else {
                for ri in 0..multi as u16 {
                    out.push((Path::new(&[9999, 3, rid, ri * 7]), v.clone()));
                }
            }
        }
        out
    })
}

fn types_of(records: &[Record]) -> impl Fn(&Path) -> Option<DataType> + '_ {
    move |path: &Path| {
        records
            .iter()
            .find(|(rp, _)| rp.resource() == path.resource())
            .map(|(_, v)| v.data_type())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tlv_round_trips(recs in arb_instance()) {
        let base = Path::new(&[9999, 3]);
        let bytes = encode(Format::Tlv, &base, &recs).unwrap();
        prop_assert_eq!(decode(Format::Tlv, &base, &bytes, &types_of(&recs)).unwrap(), recs.clone());
        let obj = Path::new(&[9999]);
        let bytes = encode(Format::Tlv, &obj, &recs).unwrap();
        prop_assert_eq!(decode(Format::Tlv, &obj, &bytes, &types_of(&recs)).unwrap(), recs.clone());
    }

    #[test]
    fn senml_json_round_trips(recs in arb_instance()) {
        let base = Path::new(&[9999, 3]);
        let bytes = encode(Format::SenmlJson, &base, &recs).unwrap();
        prop_assert_eq!(decode(Format::SenmlJson, &base, &bytes, &types_of(&recs)).unwrap(), recs.clone());
    }

    #[test]
    fn senml_cbor_round_trips(recs in arb_instance()) {
        let base = Path::new(&[9999, 3]);
        let bytes = encode(Format::SenmlCbor, &base, &recs).unwrap();
        prop_assert_eq!(decode(Format::SenmlCbor, &base, &bytes, &types_of(&recs)).unwrap(), recs.clone());
    }

    #[test]
    fn lwm2m_json_round_trips(recs in arb_instance()) {
        let base = Path::new(&[9999, 3]);
        // LwM2M JSON carries u64 beyond i64 and all floats as numbers: exact for these.
        let bytes = encode(Format::LwJson, &base, &recs).unwrap();
        prop_assert_eq!(decode(Format::LwJson, &base, &bytes, &types_of(&recs)).unwrap(), recs.clone());
    }

    #[test]
    fn text_round_trips(v in arb_value()) {
        let path = Path::new(&[9999, 3, 1]);
        let recs = vec![(path.clone(), v)];
        let bytes = encode(Format::Text, &path, &recs).unwrap();
        prop_assert_eq!(decode(Format::Text, &path, &bytes, &types_of(&recs)).unwrap(), recs);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), depth in 0usize..5) {
        let ids = [3u16, 0, 1, 0];
        let base = Path::new(&ids[..depth]);
        for f in [Format::Text, Format::Opaque, Format::Tlv, Format::SenmlJson, Format::SenmlCbor, Format::LwJson] {
            let _ = decode(f, &base, &bytes, &device_types);
        }
        let _ = decode_paths(Format::SenmlCbor, &bytes);
        let _ = link::parse(&String::from_utf8_lossy(&bytes));
    }
}
