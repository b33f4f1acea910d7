use super::*;
use crate::spec::DeviceFile;

/// What the agent reports: the key path, the line and the message.
fn error(text: &str) -> (String, Option<usize>, String) {
    let de = toml::Deserializer::new(text);
    let e = serde_path_to_error::deserialize::<_, DeviceFile>(de).unwrap_err();
    let line = e
        .inner()
        .span()
        .map(|s| text[..s.start].matches('\n').count() + 1);
    (e.path().to_string(), line, e.inner().message().to_string())
}

fn parse(text: &str) -> DeviceFile {
    toml::from_str(text).unwrap()
}

const TCP: &str = r#"[device]
id = "pump"
protocol = "modbus-tcp"
[modbus]
host = "127.0.0.1"
unit = 1
"#;

const POINT: &str = r#"[[modbus.point]]
path = "3303/0/5700"
register = "holding-register"
address = 0
type = "i16"
"#;

#[test]
fn defaults() {
    let f = parse(&format!("{TCP}{POINT}"));
    let m = f.modbus.unwrap();
    assert_eq!(
        m.transport,
        Transport::Tcp {
            host: "127.0.0.1".into(),
            port: 502
        }
    );
    assert_eq!(
        (
            m.poll_ms,
            m.timeout_ms,
            m.retries,
            m.delay_ms,
            m.reconnect_max_ms,
            m.max_gap
        ),
        (1000, 1000, 1, 0, 30000, 8)
    );
    assert!(!m.points[0].writable);
    let rtu = parse(&format!(
        "[device]\nid = \"m\"\nprotocol = \"modbus-rtu\"\n[modbus]\ntty = \"/dev/ttyUSB0\"\nunit = 3\n{POINT}"
    ));
    let m = rtu.modbus.unwrap();
    assert_eq!(m.delay_ms, 20);
    let Transport::Rtu(line) = m.transport else {
        panic!()
    };
    assert_eq!(line.to_string(), "/dev/ttyUSB0 at 9600 baud 8N1");
}

#[test]
fn device_order_applies_unless_a_point_has_its_own() {
    let f = parse(&format!(
        "{TCP}order = \"CDAB\"\n{POINT}[[modbus.point]]\npath = \"3303/0/5701\"\nregister = \"holding-register\"\naddress = 2\ntype = \"f32\"\norder = \"BADC\"\nwritable = true\n"
    ));
    let p = &f.modbus.unwrap().points;
    assert_eq!(p[0].codec.word_order(), WordOrder::Little);
    assert_eq!(p[0].codec.byte_order(), ByteOrder::Big);
    assert_eq!(p[1].codec.word_order(), WordOrder::Big);
    assert_eq!(p[1].codec.byte_order(), ByteOrder::Little);
}

#[test]
fn execute_value_is_encoded_with_the_device_order() {
    let f = parse(&format!(
        "{TCP}order = \"DCBA\"\n[[modbus.point]]\npath = \"3311/0/5850\"\nregister = \"holding-register\"\naddress = 9\ntype = \"u32\"\nexecute_value = 1\n"
    ));
    let p = &f.modbus.unwrap().points[0];
    assert_eq!(p.execute, Some(Encoded::Registers(vec![0x0100, 0])));
    assert!(!p.is_polled());
}

#[test]
fn single_keys_are_refused_at_their_own_path_and_line() {
    let cases = [
        (
            "poll_ms = 5\n",
            "modbus.poll_ms",
            7,
            "expected a poll period of at least 10 milliseconds, got 5",
        ),
        (
            "order = \"ABDC\"\n",
            "modbus.order",
            7,
            "expected one of \"ABCD\", \"CDAB\", \"BADC\" or \"DCBA\", got \"ABDC\"",
        ),
        ("colour = 1\n", "modbus.colour", 7, "unknown field `colour`"),
    ];
    for (extra, path, line, msg) in cases {
        let (p, l, m) = error(&format!("{TCP}{extra}{POINT}"));
        assert_eq!((p.as_str(), l), (path, Some(line)), "{extra}: {m}");
        assert!(m.starts_with(msg), "{extra}: {m}");
    }
    let (p, l, m) = error(&format!("{TCP}{POINT}bit = 16\n"));
    assert_eq!((p.as_str(), l), ("modbus.point[0].bit", Some(12)));
    assert_eq!(m, "expected a bit number from 0 to 15, got 16");
    let (p, _, m) = error(&format!("{TCP}{}", POINT.replace("i16", "int16")));
    assert_eq!(p, "modbus.point[0].type");
    assert!(m.starts_with("unknown variant `int16`"), "{m}");
    let (p, _, m) = error(&format!("{TCP}{}", POINT.replace("3303/0/5700", "3303/0")));
    assert_eq!(p, "modbus.point[0].path");
    assert!(m.starts_with("expected a resource path"), "{m}");
}

#[test]
fn combinations_are_refused_at_the_point() {
    let cases = [
        (
            "coil",
            "f32",
            "",
            "a coil holds one bit: expected type \"bool\", got type \"f32\"",
        ),
        (
            "discrete-input",
            "bool",
            "writable = true\n",
            "Modbus cannot write discrete inputs",
        ),
        (
            "input-register",
            "string",
            "",
            "type \"string\" needs `registers`",
        ),
        (
            "holding-register",
            "u16",
            "bit = 3\n",
            "`bit` picks one bit",
        ),
        (
            "holding-register",
            "bool",
            "scale = 2.0\n",
            "`scale` and `offset` apply to numbers",
        ),
        (
            "holding-register",
            "u16",
            "scale = 0.0\n",
            "expected a finite `scale` other than 0",
        ),
        (
            "holding-register",
            "u16",
            "writable = true\nexecute_value = 1\n",
            "got both",
        ),
        (
            "holding-register",
            "u16",
            "execute_value = 70000\n",
            "expected an `execute_value` that fits the point, got integer 70000",
        ),
        ("coil", "bool", "bit = 1\n", "a coil is a single bit"),
    ];
    for (register, ty, extra, msg) in cases {
        let point = POINT
            .replace("holding-register", register)
            .replace("i16", ty);
        let (p, l, m) = error(&format!("{TCP}{point}{extra}"));
        assert_eq!(p, "modbus.point[0]", "{register} {ty} {extra}: {m}");
        assert!(l.is_some(), "{m}");
        assert!(m.contains(msg), "{register} {ty} {extra}: {m}");
    }
    let point = POINT
        .replace("address = 0", "address = 65535")
        .replace("i16", "f32");
    let (_, _, m) = error(&format!("{TCP}{point}"));
    assert!(
        m.contains(
            "runs past the last address 65535: expected an address of at most 65534, got 65535"
        ),
        "{m}"
    );
    let point = POINT
        .replace("address = 0", "address = 65534")
        .replace("i16", "f32");
    parse(&format!("{TCP}{point}"));
}

#[test]
fn table_and_file_checks() {
    let (p, _, m) = error(&format!(
        "{TCP}{POINT}{}",
        POINT.replace("address = 0", "address = 5")
    ));
    assert_eq!(p, "modbus");
    assert_eq!(m, "point[1].path: expected a path no other point maps, got /3303/0/5700 again (point[0] has it)");
    let (p, _, m) = error(&format!("{TCP}baud = 9600\n{POINT}"));
    assert_eq!(p, "modbus");
    assert!(m.starts_with("`baud` is a serial line setting"), "{m}");
    let (_, _, m) = error(&format!("{TCP}tty = \"/dev/ttyS0\"\n{POINT}"));
    assert!(m.contains("got both"), "{m}");
    let (_, _, m) = error(TCP);
    assert!(m.contains("expected at least one [[modbus.point]]"), "{m}");
    let rtu = TCP.replace("modbus-tcp", "modbus-rtu");
    let (p, l, m) = error(&format!("{rtu}{POINT}"));
    // The agent shows "." as no key; the message names the keys.
    assert_eq!((p.as_str(), l), (".", None));
    assert!(
        m.starts_with("device.protocol is \"modbus-rtu\": expected `tty`"),
        "{m}"
    );
    let rtu = rtu
        .replace("host = \"127.0.0.1\"", "tty = \"/dev/ttyS0\"")
        .replace("unit = 1", "unit = 0");
    let (_, _, m) = error(&format!("{rtu}{POINT}"));
    assert!(m.contains("expected a unit id from 1 to 247, got 0"), "{m}");
    assert_eq!(
        parse("[device]\nid = \"x\"\nprotocol = \"modbus-tcp\"\n").modbus,
        None
    );
    let (_, _, m) = error(&format!("{}{POINT}", TCP.replace("modbus-tcp", "mqtt")));
    assert!(m.contains("expected a [mqtt] table, got [modbus]"), "{m}");
    // TCP unit ids are 0..255: gateways use 0 and 255.
    parse(&format!("{}{POINT}", TCP.replace("unit = 1", "unit = 255")));
}

#[test]
fn identity_fields() {
    let f = parse(&format!(
        "{}{POINT}",
        TCP.replace("protocol", "manufacturer = \"ACME\"\nmodel = \"P-1\"\nserial = \"42\"\nfirmware_version = \"1.2\"\nprotocol")
    ));
    assert_eq!(f.device.manufacturer.as_deref(), Some("ACME"));
    assert_eq!(f.device.firmware_version.as_deref(), Some("1.2"));
}

#[test]
fn the_packaged_examples_parse() {
    for name in ["modbus-tcp", "modbus-rtu"] {
        let path = format!(
            "{}/../etc/devices.d/{name}.toml.example",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let f: DeviceFile = toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(f.modbus.unwrap().points.len() >= 2);
    }
}

#[test]
fn device_errors_keep_their_paths_through_the_checked_file() {
    let (p, l, m) = error("[device]\nid = \"d\"\nprotocol = \"telnet\"\n");
    assert_eq!((p.as_str(), l), ("device.protocol", Some(3)));
    assert!(m.starts_with("unknown variant `telnet`"), "{m}");
    let (p, _, m) = error("[device]\nid = \"d\"\nprotocol = \"mqtt\"\n[extra]\n");
    assert_eq!(p, "extra");
    assert!(m.starts_with("unknown field `extra`"), "{m}");
}
