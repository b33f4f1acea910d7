use super::*;
use crate::lwm2m::factory::{self, Account, DeviceInfo};
use crate::model::{ObjectDef, Operations, ResourceDef, Value};

fn setup() -> (Registry, Trees, AttrStore) {
    let mut reg = Registry::builtin();
    reg.insert(ObjectDef {
        id: 3303,
        name: "Temperature".into(),
        version: "1.1".into(),
        multiple: true,
        mandatory: false,
        resources: [
            (
                5700,
                ResourceDef {
                    id: 5700,
                    name: "Sensor Value".into(),
                    ops: Operations::R,
                    multiple: false,
                    mandatory: true,
                    data_type: DataType::Float,
                    range: None,
                    units: Some("Cel".into()),
                },
            ),
            (
                5750,
                ResourceDef {
                    id: 5750,
                    name: "Application Type".into(),
                    ops: Operations::RW,
                    multiple: false,
                    mandatory: false,
                    data_type: DataType::String,
                    range: None,
                    units: None,
                },
            ),
            (
                5605,
                ResourceDef {
                    id: 5605,
                    name: "Reset".into(),
                    ops: Operations::E,
                    multiple: false,
                    mandatory: false,
                    data_type: DataType::None,
                    range: None,
                    units: None,
                },
            ),
        ]
        .into(),
    });
    let acc = Account {
        uri: "coap://h".into(),
        ssid: 1,
        lifetime: 60,
        binding: "U".into(),
        notification_storing: true,
        sms_number: None,
    };
    let mut trees = factory::trees(&[acc], &DeviceInfo::default());
    trees.gateway.set(3303, 0, 5700, Value::Float(21.5));
    let mut dev = Tree::default();
    dev.set(3303, 0, 5700, Value::Float(7.0));
    trees.devices.insert("dev1".into(), dev);
    (reg, trees, AttrStore::new())
}

fn dm<'a>(reg: &'a Registry, trees: &'a mut Trees, attrs: &'a mut AttrStore) -> Dm<'a> {
    Dm {
        reg,
        trees,
        attrs,
        servers: 1,
        ssid: 1,
        default_format: Format::SenmlJson,
    }
}

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

#[test]
fn exec_args() {
    assert_eq!(parse_exec_args(b"").unwrap(), vec![]);
    assert_eq!(
        parse_exec_args(b"0='abc',1").unwrap(),
        vec![(0, Some("abc".into())), (1, None)]
    );
    assert_eq!(
        parse_exec_args(b"5=''").unwrap(),
        vec![(5, Some(String::new()))]
    );
    for bad in ["a", "0=", "0='x", "0,", "10", "0='a'b", "0;1"] {
        assert!(parse_exec_args(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn discover_lists_instances_resources_and_attributes() {
    let (reg, mut trees, mut attrs) = setup();
    let mut d = dm(&reg, &mut trees, &mut attrs);
    let r = d.handle(Op::WriteAttributes {
        path: p("/3303/0/5700"),
        queries: vec!["pmin=10".into(), "gt=30".into()],
    });
    assert_eq!(r.code, codes::CHANGED);
    let r = d.handle(Op::Discover { path: p("/3303") });
    assert_eq!(r.code, codes::CONTENT);
    let text = String::from_utf8(r.payload).unwrap();
    assert_eq!(
        text,
        "</3303>;ver=1.1,</3303/0>,</3303/0/5700>;pmin=10;gt=30,</3303/0/5605>"
    );
    let r = d.handle(Op::Discover { path: p("/3/0/11") });
    assert_eq!(String::from_utf8(r.payload).unwrap(), "</3/0/11>;dim=1");
    assert_eq!(
        d.handle(Op::Discover { path: p("/0") }).code,
        codes::UNAUTHORIZED
    );
    assert_eq!(
        d.handle(Op::Discover { path: p("/3303/9") }).code,
        codes::NOT_FOUND
    );
}

#[test]
fn create_and_delete() {
    let (reg, mut trees, mut attrs) = setup();
    let mut d = dm(&reg, &mut trees, &mut attrs);
    // SenML create with the instance id in the names.
    let body = br#"[{"bn":"/3303/7/","n":"5750","vs":"boiler"}]"#.to_vec();
    let r = d.handle(Op::Create {
        path: p("/3303"),
        format: Some(110),
        payload: body,
    });
    assert_eq!(
        (r.code, r.location.clone()),
        (codes::CREATED, vec!["3303".to_string(), "7".to_string()])
    );
    // TLV without an instance id: the client picks the lowest free one.
    let tlv = crate::codec::encode(
        Format::Tlv,
        &p("/3303/0"),
        &[(p("/3303/0/5750"), Value::String("x".into()))],
    )
    .unwrap();
    let r = d.handle(Op::Create {
        path: p("/3303"),
        format: Some(11542),
        payload: tlv,
    });
    assert_eq!(r.location, vec!["3303".to_string(), "1".to_string()]);
    // Read-only resources cannot be created by a server.
    let body = br#"[{"bn":"/3303/9/","n":"5700","v":1}]"#.to_vec();
    assert_eq!(
        d.handle(Op::Create {
            path: p("/3303"),
            format: Some(110),
            payload: body
        })
        .code,
        codes::BAD_REQUEST
    );
    let body = br#"[{"bn":"/3303/7/","n":"5750","vs":"again"}]"#.to_vec();
    assert_eq!(
        d.handle(Op::Create {
            path: p("/3303"),
            format: Some(110),
            payload: body
        })
        .code,
        codes::BAD_REQUEST
    );
    assert_eq!(
        d.handle(Op::Delete { path: p("/3303/7") }).code,
        codes::DELETED
    );
    assert_eq!(
        d.handle(Op::Delete { path: p("/3303/7") }).code,
        codes::NOT_FOUND
    );
    assert_eq!(
        d.handle(Op::Delete { path: p("/3303") }).code,
        codes::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        d.handle(Op::Create {
            path: p("/1"),
            format: Some(110),
            payload: vec![]
        })
        .code,
        codes::UNAUTHORIZED
    );
}

#[test]
fn prefixed_paths_reach_end_device_trees() {
    let (reg, mut trees, mut attrs) = setup();
    let mut d = dm(&reg, &mut trees, &mut attrs);
    let r = d.handle(Op::Read {
        path: p("/dev1/3303/0/5700"),
        accept: None,
    });
    assert_eq!((r.code, r.payload.as_slice()), (codes::CONTENT, &b"7"[..]));
    let r = d.handle(Op::Read {
        path: p("/dev1/3303/0"),
        accept: Some(110),
    });
    let j: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(j[0]["bn"], "/dev1/3303/0/");
}

#[test]
fn composite_read_and_atomic_write() {
    let (reg, mut trees, mut attrs) = setup();
    let mut d = dm(&reg, &mut trees, &mut attrs);
    let q = br#"[{"n":"/3303/0/5700"},{"n":"/dev1/3303/0/5700"},{"n":"/1/0/1"}]"#.to_vec();
    let r = d.handle(Op::ReadComposite {
        format: Some(110),
        accept: Some(112),
        payload: q,
    });
    assert_eq!(
        (r.code, r.format),
        (codes::CONTENT, Some(Format::SenmlCbor))
    );
    let names = crate::codec::decode_paths(Format::SenmlCbor, &r.payload).unwrap();
    assert_eq!(
        names,
        vec![p("/3303/0/5700"), p("/dev1/3303/0/5700"), p("/1/0/1")]
    );
    // One bad record (read-only /3303/0/5700) rejects the whole write.
    let w = br#"[{"n":"/1/0/1","v":99},{"n":"/3303/0/5700","v":1.0}]"#.to_vec();
    assert_eq!(
        d.handle(Op::WriteComposite {
            format: Some(110),
            payload: w
        })
        .code,
        codes::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        d.trees.gateway.get_i64(1, 0, 1),
        Some(60),
        "nothing applied"
    );
    // Across the gateway and an end device: checked whole first (a bad end-device
    // record rejects all), then the gateway's part applied and the device's handed
    // to its bridge; its tree waits for the device.
    let w = br#"[{"n":"/1/0/1","v":99},{"n":"/dev1/3303/0/5700","v":1.0}]"#.to_vec();
    assert_eq!(
        d.handle(Op::WriteComposite {
            format: Some(110),
            payload: w
        })
        .code,
        codes::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        d.trees.gateway.get_i64(1, 0, 1),
        Some(60),
        "nothing applied"
    );
    let w = br#"[{"n":"/1/0/1","v":77},{"n":"/dev1/3303/0/5750","vs":"x"}]"#.to_vec();
    let r = d.handle(Op::WriteComposite {
        format: Some(110),
        payload: w,
    });
    assert_eq!(r.code, codes::CHANGED);
    assert_eq!(d.trees.gateway.get_i64(1, 0, 1), Some(77));
    assert_eq!(
        r.devices,
        vec![DeviceOp::Write {
            prefix: "dev1".into(),
            path: p("/3303/0"),
            records: vec![(p("/3303/0/5750"), Value::String("x".into()))],
        }]
    );
    assert_eq!(r.effects, vec![Effect::Written(p("/1/0"))]);
    assert_ne!(
        d.trees.devices["dev1"].get(3303, 0, 5750),
        Some(&Value::String("x".into())),
        "the device's tree waits for the device"
    );
    let w = br#"[{"n":"/1/0/1","v":99},{"n":"/3303/0/5750","vs":"air"}]"#.to_vec();
    assert_eq!(
        d.handle(Op::WriteComposite {
            format: Some(110),
            payload: w
        })
        .code,
        codes::CHANGED
    );
    assert_eq!(d.trees.gateway.get_i64(1, 0, 1), Some(99));
    assert_eq!(
        d.handle(Op::WriteComposite {
            format: Some(11542),
            payload: vec![]
        })
        .code,
        codes::UNSUPPORTED_CONTENT_FORMAT
    );
}

#[test]
fn write_replace_and_partial_update_in_tlv() {
    let (reg, mut trees, mut attrs) = setup();
    let mut d = dm(&reg, &mut trees, &mut attrs);
    let recs = vec![
        (p("/1/0/1"), Value::Integer(45)),
        (p("/1/0/6"), Value::Boolean(false)),
        (p("/1/0/7"), Value::String("U".into())),
    ];
    let tlv = crate::codec::encode(Format::Tlv, &p("/1/0"), &recs).unwrap();
    let r = d.handle(Op::Write {
        path: p("/1/0"),
        format: Some(11542),
        payload: tlv,
        replace: true,
    });
    assert_eq!(r.code, codes::CHANGED);
    assert_eq!(d.trees.gateway.get(1, 0, 6), Some(&Value::Boolean(false)));
    let r = d.handle(Op::Write {
        path: p("/1/0"),
        format: Some(0),
        payload: b"1".to_vec(),
        replace: false,
    });
    assert_eq!(r.code, codes::BAD_REQUEST, "text/plain is for one resource");
}

#[test]
fn server_object_rejects_values_that_break_registration() {
    let (reg, mut trees, mut attrs) = setup();
    let mut d = dm(&reg, &mut trees, &mut attrs);
    for (path, body) in [
        ("/1/0/1", "0"),
        ("/1/0/1", "-5"),
        ("/1/0/2", "-1"),
        ("/1/0/7", "X"),
    ] {
        let r = d.handle(Op::Write {
            path: p(path),
            format: Some(0),
            payload: body.into(),
            replace: true,
        });
        assert_eq!(r.code, codes::BAD_REQUEST, "{path} = {body}");
    }
    let r = d.handle(Op::Write {
        path: p("/1/0/7"),
        format: Some(0),
        payload: b"UQ".to_vec(),
        replace: true,
    });
    assert_eq!(r.code, codes::CHANGED);
}
