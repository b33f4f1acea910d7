use super::*;
use std::fs;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

fn load_text(text: &str) -> Result<Loaded, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "lwgate.toml", text);
    load(&p)
}

fn err_text(text: &str) -> String {
    load_text(text).unwrap_err().to_string()
}

#[test]
fn the_packaged_default_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/lwgate.toml");
    let text = fs::read_to_string(&path).unwrap();
    let cfg = parse(&path, &text).unwrap();
    assert!(validate(&path, &cfg).is_empty());
    assert_eq!(cfg.servers.len(), 1);
}

#[test]
fn empty_config_takes_defaults() {
    let l = load_text("").unwrap();
    assert_eq!(
        l.config.store.path,
        PathBuf::from("/var/lib/lwgate/state.db")
    );
    assert_eq!(
        l.config.control.socket,
        PathBuf::from("/run/lwgate/control.sock")
    );
    assert_eq!(l.config.log.level, LogLevel::Info);
    assert!(!l.endpoint.is_empty());
    assert_eq!(
        l.warnings.len(),
        1,
        "no servers is a warning: {:?}",
        l.warnings
    );
}

#[test]
fn full_server_table() {
    let l = load_text(
        "[endpoint]\nname = \"gw-0001\"\n[[server]]\nuri = \"coap://127.0.0.1:5683\"\nssid = 101\nlifetime = 300\nbinding = \"UQ\"\nsecurity = \"nosec\"\nnotification_storing = false\n",
    )
    .unwrap();
    assert_eq!(l.endpoint, "gw-0001");
    let s = &l.config.servers[0];
    assert_eq!(s.ssid, 101);
    assert_eq!(s.lifetime, Seconds(300));
    assert_eq!(s.binding, "UQ");
    assert!(!s.notification_storing);
}

#[test]
fn wrongly_typed_value_names_file_key_and_expectation() {
    let e = err_text("[[server]]\nuri = \"coap://h\"\nssid = 1\nlifetime = \"fast\"\n");
    assert!(e.contains("lwgate.toml:4: server[0].lifetime: expected a positive number of seconds, got string \"fast\""), "{e}");
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let e = err_text("[[server]]\nuri = \"coap://h\"\nssid = 1\nlifetmie = 30\n");
    assert!(
        e.contains("server[0].lifetmie: unknown key, expected one of"),
        "{e}"
    );
    let e = err_text("[log]\nlevel = \"info\"\ncolour = true\n");
    assert!(e.contains("log.colour: unknown key"), "{e}");
    let e = err_text("bogus = 1\n");
    assert!(
        e.contains("lwgate.toml") && e.contains("bogus: unknown key"),
        "{e}"
    );
}

#[test]
fn bad_enum_value() {
    let e = err_text("[log]\nlevel = \"loud\"\n");
    assert!(e.contains("log.level:"), "{e}");
    assert!(e.contains("loud"), "{e}");
    let e = err_text("[[server]]\nuri = \"coap://h\"\nssid = 1\nsecurity = \"dtls\"\n");
    assert!(
        e.contains("lwgate.toml:4: server[0].security: expected one of \"psk\", \"rpk\", \"certificate\" or \"nosec\", got \"dtls\""),
        "{e}"
    );
}

#[test]
fn missing_required_key() {
    let e = err_text("[[server]]\nuri = \"coap://h\"\n");
    assert!(e.contains("server[0]: missing required key `ssid`"), "{e}");
}

#[test]
fn syntax_error_names_line() {
    let e = err_text("[log\nlevel = 1\n");
    assert!(e.contains("lwgate.toml:1"), "{e}");
}

#[test]
fn syntax_error_is_one_line_with_line_and_column() {
    let e = err_text("[log]\nlevel = \"info\"\n[store\npath = \"/x\"\n");
    assert!(
        e.ends_with(
            "lwgate.toml:3:7: TOML syntax error: invalid table header, expected `.` or `]`"
        ),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    let e = err_text("a = = 1\n");
    assert!(
        e.ends_with("lwgate.toml:1:5: TOML syntax error: invalid string, expected `\"` or `'`"),
        "{e}"
    );
    let e = err_text("[log]\nlevel = \"info\"\nlevel = \"debug\"\n");
    assert!(
        e.ends_with(":3:1: TOML syntax error: duplicate key `level` in table `log`"),
        "{e}"
    );
}

#[test]
fn semantic_errors_are_all_reported() {
    let e = err_text(
        "[[server]]\nuri = \"http://h\"\nssid = 0\nbinding = \"X\"\n[[server]]\nuri = \"coap://h\"\nssid = 7\n[[server]]\nuri = \"coap://h\"\nssid = 7\n",
    );
    assert!(e.contains("server[0].uri: expected scheme coap://"), "{e}");
    assert!(
        e.contains("server[0].ssid: expected a Short Server ID"),
        "{e}"
    );
    assert!(
        e.contains("server[0].binding: expected one of U, UQ"),
        "{e}"
    );
    assert!(
        e.contains("server[2].ssid: ssid 7 is used by an earlier"),
        "{e}"
    );
}

/// Every value check, with the line of its key, as the parser's errors have.
#[test]
fn value_check_errors_carry_the_line_of_their_key() {
    let e = err_text(concat!(
        "[endpoint]\n",              // 1
        "name = \"\"\n",             // 2
        "[store]\n",                 // 3
        "queue_cap = 0\n",           // 4
        "[[server]]\n",              // 5
        "uri = \"http://h\"\n",      // 6
        "ssid = 0\n",                // 7
        "binding = \"X\"\n",         // 8
        "max_retransmit = 21\n",     // 9
        "[[server]]\n",              // 10
        "ssid = 7\n",                // 11
        "uri = \"coap://h:0\"\n",    // 12
        "[[server]]\n",              // 13
        "uri = \"coap://h\"\n",      // 14
        "\n",                        // 15
        "ssid = 7\n",                // 16
        "[system]\n",                // 17
        "reboot_command = [\"\"]\n", // 18
        "[bootstrap.smartcard]\n",   // 19
        "pin = \"1\"\n",             // 20
        "pin_file = \"/p\"\n",       // 21
        "[bootstrap.server]\n",      // 22
        "uri = \"coap://::1\"\n",    // 23
    ));
    for want in [
        "lwgate.toml:2: endpoint.name: expected 1 to 255 printable characters, got \"\"",
        "lwgate.toml:4: store.queue_cap: expected a whole number, 1 or more, got 0",
        "lwgate.toml:6: server[0].uri: expected scheme coap://",
        "lwgate.toml:7: server[0].ssid: expected a Short Server ID, a whole number from 1 to 65534, got 0",
        "lwgate.toml:8: server[0].binding: expected one of U, UQ, S, SQ, US, UQS, got \"X\"",
        "lwgate.toml:9: server[0].max_retransmit: expected a whole number from 0 to 20, got 21",
        "lwgate.toml:12: server[1].uri: expected a port from 1 to 65535, got \"0\"",
        "lwgate.toml:16: server[2].ssid: ssid 7 is used by an earlier [[server]] table",
        "lwgate.toml:18: system.reboot_command: expected a command",
        "lwgate.toml:21: bootstrap.smartcard.pin_file: expected either pin or pin_file",
        "lwgate.toml:23: bootstrap.server.uri: expected an IPv6 address in brackets",
    ] {
        assert!(e.contains(want), "{want}\nnot in\n{e}");
    }
}

#[test]
fn value_check_lines_follow_inline_tables_and_dotted_keys() {
    let e = err_text("server = [\n  { uri = \"coap://h\", ssid = 1 },\n  { uri = \"coap://h\", ssid = 1 },\n]\nstore.queue_cap = 0\n");
    assert!(
        e.contains("lwgate.toml:3: server[1].ssid: ssid 1 is used"),
        "{e}"
    );
    assert!(e.contains("lwgate.toml:5: store.queue_cap:"), "{e}");
}

fn server_err(uri: &str) -> String {
    err_text(&format!("[[server]]\nssid = 1\nuri = \"{uri}\"\n"))
}

#[test]
fn unbracketed_ipv6_is_rejected_with_the_bracketed_form() {
    let e = server_err("coap://::1");
    assert!(
        e.contains("lwgate.toml:3: server[0].uri: expected an IPv6 address in brackets, e.g. \"coap://[::1]:5683\", got \"coap://::1\""),
        "{e}"
    );
    let l = load_text("[[server]]\nssid = 1\nuri = \"coap://[::1]:5683\"\n").unwrap();
    assert_eq!(l.config.servers[0].uri, "coap://[::1]:5683");
}

#[test]
fn uris_that_cannot_work_are_rejected_with_a_reason() {
    for (uri, why) in [
        ("coap://host name", "(a space is not allowed)"),
        ("coap://h:0", "expected a port from 1 to 65535, got \"0\""),
        (
            "coap://h:65536",
            "expected a port from 1 to 65535, got \"65536\"",
        ),
        ("coap://:5683", "expected a host in"),
        ("coap://user@h", "expected no user name (user@)"),
        ("coap://h?x=1", "expected no query (?…)"),
        ("coap://h#x", "expected no fragment (#…)"),
        (
            "coap://999.0.0.1",
            "expected an IPv4 address like 192.0.2.1",
        ),
        ("coap://[::g]", "expected an IPv6 address between [ and ]"),
        ("coap://a..b", "(an empty label between dots)"),
        (
            "coap://-gw.example",
            "(label \"-gw\" starts or ends with '-')",
        ),
        ("coap://bücher.example", "('ü' is not allowed)"),
        ("coap://h%41", "('%' is not allowed)"),
        ("coap://h ", "(a space is not allowed)"),
        (
            "coap://[gw]",
            "expected an IPv6 address between [ and ], got \"[gw]\"",
        ),
        (
            "coap://[fe80::1%]",
            "expected an IPv6 address between [ and ]",
        ),
        (
            "coap://h:+80",
            "expected a port from 1 to 65535, got \"+80\"",
        ),
        ("coap://h:", "expected a port from 1 to 65535, got \"\""),
        (
            "coap://2001:db8::1:5683",
            "e.g. \"coap://[2001:db8::1]:5683\"",
        ),
    ] {
        let e = server_err(uri);
        assert!(e.contains("lwgate.toml:3: server[0].uri: "), "{uri}: {e}");
        assert!(e.contains(why), "{uri}: {e}");
    }
    let e = err_text("[bootstrap.server]\nuri = \"coap://host name\"\n");
    assert!(
        e.contains("lwgate.toml:2: bootstrap.server.uri: expected a host name"),
        "{e}"
    );
}

#[test]
fn out_of_range_ssid_says_the_range_not_the_rust_type() {
    for (v, got) in [
        ("70000", "70000"),
        ("-1", "-1"),
        ("\"7\"", "string \"7\""),
        ("1.5", "1.5"),
    ] {
        let e = err_text(&format!("[[server]]\nuri = \"coap://h\"\nssid = {v}\n"));
        assert!(
            e.contains(&format!("lwgate.toml:3: server[0].ssid: expected a Short Server ID, a whole number from 1 to 65534, got {got}")),
            "{e}"
        );
        assert!(!e.contains("u16"), "{e}");
    }
}

#[test]
fn a_single_server_table_is_told_to_use_double_brackets() {
    let e = err_text("[server]\nuri = \"coap://h\"\nssid = 1\n");
    assert!(
        e.contains("lwgate.toml:1: server: expected one [[server]] table per server (an array of tables: the header has double brackets), got the table [server]"),
        "{e}"
    );
    assert!(!e.contains("sequence") && !e.contains("map"), "{e}");
    let e = err_text("server = { uri = \"coap://h\", ssid = 1 }\n");
    assert!(e.contains("got an inline table"), "{e}");
    let e = err_text("server = 5\n");
    assert!(
        e.contains("table per server (an array of tables: the header has double brackets), got 5"),
        "{e}"
    );
    // The inline form of the array of tables is still an array of tables.
    let l = load_text("server = [{ uri = \"coap://h\", ssid = 1 }]\n").unwrap();
    assert_eq!(l.config.servers[0].ssid, 1);
}

/// The words serde uses for each type a config holds, as an operator meets them.
#[test]
fn type_errors_are_in_the_words_of_the_file() {
    for (text, want) in [
        ("[[server]]\nuri = \"coap://h\"\nssid = 1\nnotification_storing = \"yes\"\n", "lwgate.toml:4: server[0].notification_storing: expected true or false, got string \"yes\""),
        ("[[server]]\nuri = 5\nssid = 1\n", "lwgate.toml:2: server[0].uri: expected a string in quotes, got 5"),
        ("[[server]]\nuri = \"coap://h\"\nssid = 1\nmax_retransmit = -3\n", "server[0].max_retransmit: expected a whole number from 0 to 20, got -3"),
        ("[store]\nqueue_cap = -1\n", "lwgate.toml:2: store.queue_cap: expected a whole number, 1 or more, got -1"),
        ("[store]\nqueue_cap = 2.5\n", "store.queue_cap: expected a whole number, 1 or more, got 2.5"),
        ("[store]\npath = 3\n", "store.path: expected a path in quotes, got 3"),
        ("store = 5\n", "lwgate.toml:1: store: expected a table, got 5"),
        ("[bootstrap.server]\nuri = \"coap://h\"\nhold_off = 99999999999\n", "lwgate.toml:3: bootstrap.server.hold_off: expected a whole number from 0 to 4294967295, got 99999999999"),
        ("[bootstrap.server]\nuri = \"coap://h\"\nhold_off = true\n", "bootstrap.server.hold_off: expected a whole number from 0 to 4294967295, got true"),
        ("[system]\nreboot_command = \"reboot\"\n", "system.reboot_command: expected an array such as [\"a\", \"b\"], got string \"reboot\""),
        ("[system]\nreboot_command = [1]\n", "system.reboot_command[0]: expected a string in quotes, got 1"),
        ("[system]\nreboot_command = { a = 1 }\n", "system.reboot_command: expected an array such as [\"a\", \"b\"], got an inline table"),
        ("[endpoint]\nname = 2026-01-01\n", "lwgate.toml:2: endpoint.name: expected a string in quotes, got a date-time"),
        ("[lwm2m]\nversion = \"2.0\"\n", "lwm2m.version: expected \"1.0\" or \"1.1\", got \"2.0\""),
        ("[lwm2m]\nformat_1_0 = \"xml\"\n", "lwm2m.format_1_0: expected one of \"tlv\", \"senml-json\", \"senml-cbor\" or \"lwm2m-json\", got \"xml\""),
        ("[log]\nlevel = \"loud, very\"\n", "log.level: expected one of \"error\", \"warn\", \"info\", \"debug\" or \"trace\", got \"loud, very\""),
        ("[lwm2m]\nversion = 1.0\n", "lwgate.toml:2: lwm2m.version: expected \"1.0\" or \"1.1\" (in quotes), got 1.0"),
        ("[log]\nlevel = 3\n", "lwgate.toml:2: log.level: expected one of \"error\", \"warn\", \"info\", \"debug\" or \"trace\" (in quotes), got 3"),
        ("[log]\nlevel = {}\n", "log.level: expected one of \"error\", \"warn\", \"info\", \"debug\" or \"trace\" (in quotes), got {}"),
        ("[[server]]\nuri = \"coap://h\"\nssid = 1\nsecurity = [\n\"psk\"]\n", "lwgate.toml:4: server[0].security: expected one of \"psk\", \"rpk\", \"certificate\" or \"nosec\" (in quotes), got […"),
    ] {
        let e = err_text(text);
        assert!(e.contains(want), "{want}\nnot in\n{e}");
        for jargon in ["u16", "u32", "usize", "sequence", "map", "struct", "wanted", "variant", "`"] {
            assert!(!e.contains(jargon), "{jargon:?} in {e}");
        }
    }
}

#[test]
fn a_key_not_in_the_file_points_at_its_table_or_nowhere() {
    // A default value has no line of its own; its table may have one.
    let mut errors = vec![ConfigError::new(Path::new("x"), "store.queue_cap", "m")];
    error::locate("[store]\npath = \"/x\"\n", &mut errors);
    assert_eq!(errors[0].line, Some(1), "falls back to the enclosing table");
    let mut errors = vec![ConfigError::new(Path::new("x"), "store.queue_cap", "m")];
    error::locate("[log]\n", &mut errors);
    assert_eq!(errors[0].line, None);
}

#[test]
fn missing_file_is_named() {
    let e = load(Path::new("/nonexistent/lwgate.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/lwgate.toml: cannot read the file"),
        "{e}"
    );
}

/// A [modbus] table that loads (the device files' checks are what these tests see).
const MODBUS_TABLE: &str = "[modbus]\nhost = \"127.0.0.1\"\nunit = 1\n[[modbus.point]]\npath = \"3303/0/5700\"\nregister = \"holding-register\"\naddress = 0\ntype = \"i16\"\n";

#[test]
fn devices_are_loaded_sorted_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "lwgate.toml", "");
    let dd = dir.path().join("devices.d");
    fs::create_dir(&dd).unwrap();
    write(
        &dd,
        "b.toml",
        &format!("[device]\nid = \"b\"\nprotocol = \"modbus-tcp\"\n{MODBUS_TABLE}"),
    );
    write(
        &dd,
        "a.toml",
        &format!("[device]\nid = \"a\"\nprotocol = \"modbus-tcp\"\n{MODBUS_TABLE}"),
    );
    write(&dd, "README", "not a device");
    let l = load(&cfg).unwrap();
    let ids: Vec<_> = l
        .devices
        .iter()
        .map(|d| d.spec.device.id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);

    write(
        &dd,
        "c.toml",
        &format!("[device]\nid = \"c\"\nprefix = \"a\"\nprotocol = \"modbus-tcp\"\n{MODBUS_TABLE}"),
    );
    write(
        &dd,
        "d.toml",
        "[device]\nid = \"d\"\nprotocol = \"telnet\"\n",
    );
    write(
        &dd,
        "e.toml",
        &format!("[device]\nid = \"e\"\nprefix = \"5\"\nprotocol = \"modbus-tcp\"\n{MODBUS_TABLE}"),
    );
    let e = load(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("c.toml:3: device.prefix: prefix \"a\" is also used by"),
        "{e}"
    );
    assert!(
        e.contains("d.toml:3: device.protocol:") && e.contains("telnet"),
        "{e}"
    );
    assert!(
        e.contains("e.toml:3: device.prefix: expected a prefix"),
        "{e}"
    );
}

#[test]
fn device_file_errors_name_the_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "lwgate.toml", "");
    let dd = dir.path().join("devices.d");
    fs::create_dir(&dd).unwrap();
    write(
        &dd,
        "a.toml",
        "[device]\nprotocol = \"mqtt\"\nid = \"12\"\n",
    );
    write(
        &dd,
        "b.toml",
        "[device]\nid = \"a b\"\nprotocol = \"mqtt\"\n",
    );
    write(&dd, "c.toml", "[device]\nid = \"c\"\nprotocol = \"mqtt\"\n");
    write(
        &dd,
        "d.toml",
        "# again\n[device]\nid = \"c\"\nprotocol = \"mqtt\"\n",
    );
    write(&dd, "e.toml", "[device\nid = \"e\"\n");
    let e = load(&cfg).unwrap_err().to_string();
    for want in [
        "a.toml:3: device.id: expected an id that is not purely numeric (without a `prefix` key the id is also the path prefix, where a number would read as an LwM2M object id), got \"12\"",
        "b.toml:2: device.id: expected an id of 1 to 64 letters, digits, '.', '_' or '-', got \"a b\"",
        "d.toml:3: device.id: id \"c\" is also used by",
        "e.toml:1:8: TOML syntax error: invalid table header",
    ] {
        assert!(e.contains(want), "{want}\nnot in\n{e}");
    }
    assert!(!e.contains("a.toml:3: device.id: expected a prefix"), "{e}");
}

#[test]
fn devices_dir_is_relative_to_the_config() {
    let cfg: Config = toml::from_str("[devices]\ndir = \"devs\"\n").unwrap();
    assert_eq!(
        devices_dir(Path::new("/etc/lwgate/lwgate.toml"), &cfg),
        PathBuf::from("/etc/lwgate/devs")
    );
    assert_eq!(
        devices_dir(Path::new("/etc/lwgate/lwgate.toml"), &Config::default()),
        PathBuf::from("/etc/lwgate/devices.d")
    );
}

#[test]
fn pin_and_pin_file_conflict() {
    let e = err_text("[bootstrap.smartcard]\nenabled = true\npin = \"1234\"\npin_file = \"/x\"\n");
    assert!(
        e.contains("bootstrap.smartcard.pin_file: expected either pin or pin_file"),
        "{e}"
    );
}

// ---- DTLS security keys ----

mod security {
    use super::*;
    use crate::lwm2m::factory::{self, Credentials, SecuredAccount};
    use crate::model::Value;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::{X509NameBuilder, X509};
    use std::os::unix::fs::PermissionsExt;

    const PSK_HEX: &str = "00112233445566778899aabbccddeeff";

    fn ec_key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    /// A certificate for `cn` with `key`, signed by `issuer` (self-signed without).
    fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        match issuer {
            Some((ic, ik)) => {
                b.set_issuer_name(ic.subject_name()).unwrap();
                b.sign(ik, MessageDigest::sha256()).unwrap();
            }
            None => {
                b.set_issuer_name(&name).unwrap();
                b.sign(key, MessageDigest::sha256()).unwrap();
            }
        }
        b.build()
    }

    fn put(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// Certificates and keys in a temporary directory, with the config beside them.
    struct Fixture {
        dir: tempfile::TempDir,
        key: PKey<Private>,
        leaf: X509,
        ca: X509,
        server: X509,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ca_key = ec_key();
            let ca = cert("lwgate test CA", &ca_key, None);
            let key = ec_key();
            let leaf = cert("gw-0001", &key, Some((&ca, &ca_key)));
            let server = cert("lwm2m.example", &ec_key(), None);
            let d = dir.path();
            let mut chain = leaf.to_pem().unwrap();
            chain.extend(ca.to_pem().unwrap());
            put(d, "client.pem", &chain, 0o644);
            put(d, "client.der", &leaf.to_der().unwrap(), 0o644);
            put(
                d,
                "client.key",
                &key.private_key_to_pem_pkcs8().unwrap(),
                0o600,
            );
            put(
                d,
                "client-key.der",
                &key.private_key_to_der().unwrap(),
                0o640,
            );
            put(d, "server.der", &server.to_der().unwrap(), 0o644);
            put(d, "server.pem", &server.to_pem().unwrap(), 0o644);
            put(d, "ca.pem", &ca.to_pem().unwrap(), 0o644);
            put(
                d,
                "other.key",
                &ec_key().private_key_to_pem_pkcs8().unwrap(),
                0o600,
            );
            put(d, "garbage", b"not a certificate", 0o600);
            put(d, "psk.hex", format!("{PSK_HEX}\n").as_bytes(), 0o600);
            put(
                d,
                "server.pub",
                &server.public_key().unwrap().public_key_to_pem().unwrap(),
                0o644,
            );
            Self {
                dir,
                key,
                leaf,
                ca,
                server,
            }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        fn load(&self, text: &str) -> Result<Loaded, ConfigErrors> {
            let p = write(self.dir.path(), "lwgate.toml", text);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
            load(&p)
        }

        fn err(&self, text: &str) -> String {
            self.load(text).unwrap_err().to_string()
        }
    }

    fn creds(l: &Loaded) -> &factory::AccountSecurity {
        l.config.servers[0].credentials.as_ref().unwrap()
    }

    fn psk_server(extra: &str) -> String {
        format!("[[server]]\nuri = \"coaps://lwm2m.example\"\nssid = 1\nsecurity = \"psk\"\npsk_identity = \"gw-0001\"\n{extra}")
    }

    #[test]
    fn psk_inline_end_to_end() {
        let f = Fixture::new();
        let l = f
            .load(&psk_server(&format!("psk_key = \"{PSK_HEX}\"\n")))
            .unwrap();
        let s = &l.config.servers[0];
        assert_eq!(s.security, SecurityMode::Psk);
        assert_eq!(s.handshake_timeout, Seconds(15));
        assert_eq!(s.ca_file, None);
        let c = creds(&l);
        assert_eq!(
            c.credentials,
            Credentials::Psk {
                identity: b"gw-0001".to_vec(),
                key: factory::SecretBytes(hex::decode(PSK_HEX).unwrap()),
            }
        );
        assert_eq!(c.sni.as_deref(), Some("lwm2m.example"), "the URI's host");
        assert!(c.cipher_suites.is_empty());
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);

        let accounts = accounts(&l);
        let t = factory::trees(&accounts, &Default::default());
        let g = &t.gateway;
        assert_eq!(
            g.get(0, 0, 0),
            Some(&Value::String("coaps://lwm2m.example".into()))
        );
        assert_eq!(g.get(0, 0, 2), Some(&Value::Integer(0)));
        assert_eq!(g.get(0, 0, 3), Some(&Value::Opaque(b"gw-0001".to_vec())));
        assert_eq!(g.get(0, 0, 4), Some(&Value::Opaque(Vec::new())));
        assert_eq!(
            g.get(0, 0, 5),
            Some(&Value::Opaque(hex::decode(PSK_HEX).unwrap()))
        );
        assert_eq!(
            g.get(0, 0, 14),
            Some(&Value::String("lwm2m.example".into()))
        );
        assert_eq!(g.get(0, 0, 15), None);
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let f = Fixture::new();
        let l = f
            .load(&psk_server(&format!("psk_key = \"{PSK_HEX}\"\n")))
            .unwrap();
        let dbg = format!("{:?} {:?}", l.config, accounts(&l));
        assert!(
            !dbg.contains(PSK_HEX) && !dbg.contains("0, 17, 34"),
            "{dbg}"
        );
        assert!(
            dbg.contains("<32 hex digits redacted>") && dbg.contains("<16 bytes redacted>"),
            "{dbg}"
        );
        let l = f
            .load("[[server]]\nuri = \"coaps://h\"\nssid = 1\nsecurity = \"certificate\"\ncertificate = \"client.pem\"\nprivate_key = \"client.key\"\nserver_certificate = \"server.der\"\n")
            .unwrap();
        let der = f.key.private_key_to_pkcs8().unwrap();
        let dbg = format!("{:?}", l.config);
        assert!(
            dbg.contains(&format!("<{} bytes redacted>", der.len())),
            "{dbg}"
        );
        assert!(
            !dbg.contains(&format!("{:?}", &der[..8]).trim_end_matches(']').to_string()),
            "{dbg}"
        );
        // A non-hex key: the error says where, not what.
        let e = f.err(&psk_server("psk_key = \"00112233zz5566\"\n"));
        assert!(e.contains("lwgate.toml:6: server[0].psk_key: expected hex digits (0-9, a-f), got a character that is none at position 9"), "{e}");
        assert!(!e.contains("0011") && !e.contains("zz"), "{e}");
        let e = f.err(&psk_server("psk_key = 1234567\n"));
        assert!(
            e.contains(
                "lwgate.toml:6: server[0].psk_key: expected the key as hex digits in quotes"
            ),
            "{e}"
        );
        assert!(!e.contains("1234567"), "{e}");
    }

    /// The accounts the daemon makes of a loaded config.
    fn accounts(l: &Loaded) -> Vec<SecuredAccount> {
        crate::daemon::bootstrap::factory_accounts(l)
    }

    #[test]
    fn psk_key_file_needs_owner_only_or_group_read() {
        let f = Fixture::new();
        let text = psk_server("psk_key_file = \"psk.hex\"\n");
        let l = f.load(&text).unwrap();
        assert_eq!(
            l.config.servers[0].psk_key_file,
            Some(f.dir.path().join("psk.hex"))
        );
        assert!(
            matches!(&creds(&l).credentials, Credentials::Psk { key, .. } if key.0 == hex::decode(PSK_HEX).unwrap())
        );
        let p = f.path("psk.hex");
        for mode in [0o640, 0o400, 0o440] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            assert!(f.load(&text).is_ok(), "{mode:o}");
        }
        for (mode, why) in [
            (0o644, "0644, open to other users"),
            (0o604, "0604, open to other users"),
            (0o660, "0660, writable by its group"),
        ] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let e = f.err(&text);
            assert!(
                e.contains(&format!("lwgate.toml:6: server[0].psk_key_file: {p} has mode {why}: a key file must be mode 0600 (or 0640 with group lwgate); run chmod 600 {p}")),
                "{e}"
            );
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        put(f.dir.path(), "bad.hex", b"0011zz\n", 0o600);
        let e = f.err(&psk_server("psk_key_file = \"bad.hex\"\n"));
        assert!(
            e.contains("server[0].psk_key_file: ") && e.contains("bad.hex: expected hex digits"),
            "{e}"
        );
        assert!(!e.contains("0011"), "{e}");
        let e = f.err(&psk_server("psk_key_file = \"/nonexistent/psk\"\n"));
        assert!(
            e.contains("lwgate.toml:6: server[0].psk_key_file: cannot read /nonexistent/psk: "),
            "{e}"
        );
    }

    #[test]
    fn psk_needs_identity_and_one_key() {
        let f = Fixture::new();
        let e = f.err("[[server]]\nuri = \"coaps://h\"\nssid = 1\nsecurity = \"psk\"\n");
        assert!(e.contains("lwgate.toml:1: server[0].psk_identity: missing required key `psk_identity` for security = \"psk\" (the PSK identity the server knows this client by, LwM2M /0/x/3)"), "{e}");
        assert!(e.contains("lwgate.toml:1: server[0].psk_key: missing required key `psk_key` for security = \"psk\""), "{e}");
        let e = f.err(&psk_server(&format!(
            "psk_key = \"{PSK_HEX}\"\npsk_key_file = \"psk.hex\"\n"
        )));
        assert!(e.contains("lwgate.toml:7: server[0].psk_key_file: expected either psk_key or psk_key_file, not both"), "{e}");
        let e = f.err(&psk_server("psk_key = \"abc\"\n"));
        assert!(
            e.contains(
                "server[0].psk_key: expected an even number of hex digits (two per byte), got 3"
            ),
            "{e}"
        );
        let e = f.err(&psk_server("psk_key = \"\"\n"));
        assert!(
            e.contains("server[0].psk_key: expected hex digits (0-9, a-f), got none"),
            "{e}"
        );
        let e = f.err(&format!("[[server]]\nuri = \"coaps://h\"\nssid = 1\nsecurity = \"psk\"\npsk_identity = \"\"\npsk_key = \"{PSK_HEX}\"\n"));
        assert!(e.contains("lwgate.toml:5: server[0].psk_identity: expected 1 to 256 bytes without NUL, got 0 bytes"), "{e}");
    }

    #[test]
    fn scheme_and_mode_must_agree() {
        let f = Fixture::new();
        let e = f.err("[[server]]\nuri = \"coaps://h\"\nssid = 1\n");
        assert!(e.contains("lwgate.toml:1: server[0].security: coaps:// needs security = psk, rpk or certificate"), "{e}");
        let e = f.err("[[server]]\nuri = \"coaps://h\"\nssid = 1\nsecurity = \"nosec\"\n");
        assert!(
            e.contains("lwgate.toml:4: server[0].security: coaps:// needs"),
            "{e}"
        );
        let e = f.err(&format!("[[server]]\nuri = \"coap://h\"\nssid = 1\nsecurity = \"psk\"\npsk_identity = \"x\"\npsk_key = \"{PSK_HEX}\"\n"));
        assert!(e.contains("lwgate.toml:2: server[0].uri: security = \"psk\" needs a coaps:// URI (DTLS, default port 5684), got \"coap://h\": coap:// is plain UDP; use coaps://, or security = \"nosec\" for a server without DTLS"), "{e}");
        let l = f
            .load("[[server]]\nuri = \"coap://h\"\nssid = 1\n")
            .unwrap();
        assert_eq!(creds(&l), &factory::AccountSecurity::default());
    }

    #[test]
    fn keys_of_another_mode_are_refused() {
        let f = Fixture::new();
        let e = f.err(&psk_server(&format!("psk_key = \"{PSK_HEX}\"\nserver_certificate = \"server.der\"\nserver_public_key = \"server.pub\"\nprivate_key = \"client.key\"\n")));
        assert!(e.contains("lwgate.toml:7: server[0].server_certificate: applies to security = \"certificate\" only, and security is \"psk\""), "{e}");
        assert!(
            e.contains(
                "lwgate.toml:8: server[0].server_public_key: applies to security = \"rpk\" only"
            ),
            "{e}"
        );
        assert!(e.contains("lwgate.toml:9: server[0].private_key: applies to security = \"certificate\" or \"rpk\" only"), "{e}");
        let e = f.err("[[server]]\nuri = \"coap://h\"\nssid = 1\nsni = \"h\"\ncipher_suites = [49320]\npsk_identity = \"x\"\n");
        assert!(e.contains("lwgate.toml:4: server[0].sni: applies to DTLS (security = \"psk\", \"rpk\" or \"certificate\") only, and security is \"nosec\""), "{e}");
        assert!(
            e.contains("lwgate.toml:5: server[0].cipher_suites: applies to DTLS"),
            "{e}"
        );
        assert!(
            e.contains("lwgate.toml:6: server[0].psk_identity: applies to security = \"psk\" only"),
            "{e}"
        );
    }

    fn cert_server(extra: &str) -> String {
        format!("[[server]]\nuri = \"coaps://[2001:db8::1]\"\nssid = 1\nsecurity = \"certificate\"\n{extra}")
    }

    #[test]
    fn certificate_pem_chain_and_der_become_der() {
        let f = Fixture::new();
        let l = f
            .load(&cert_server("certificate = \"client.pem\"\nprivate_key = \"client.key\"\nserver_certificate = \"server.pem\"\nhandshake_timeout = 30\n"))
            .unwrap();
        let s = &l.config.servers[0];
        assert_eq!(s.handshake_timeout, Seconds(30));
        assert_eq!(
            s.certificate,
            Some(f.dir.path().join("client.pem")),
            "absolute, for the chain"
        );
        let c = creds(&l);
        assert_eq!(c.sni, None, "no SNI for an IP literal");
        let Credentials::Certificate {
            certificate,
            server_certificate,
            private_key,
            usage,
        } = &c.credentials
        else {
            panic!("{c:?}")
        };
        assert_eq!(
            certificate,
            &f.leaf.to_der().unwrap(),
            "the leaf alone, not the chain"
        );
        assert_eq!(server_certificate, &f.server.to_der().unwrap());
        assert_eq!(*usage, Some(3), "domain-issued by default");
        let back = PKey::private_key_from_pkcs8(&private_key.0).unwrap();
        assert!(back.public_eq(&f.key));

        let accounts = accounts(&l);
        let t = factory::trees(&accounts, &Default::default());
        let g = &t.gateway;
        assert_eq!(g.get(0, 0, 2), Some(&Value::Integer(2)));
        assert_eq!(
            g.get(0, 0, 3),
            Some(&Value::Opaque(f.leaf.to_der().unwrap()))
        );
        assert_eq!(
            g.get(0, 0, 4),
            Some(&Value::Opaque(f.server.to_der().unwrap()))
        );
        assert_eq!(g.get(0, 0, 5), Some(&Value::Opaque(private_key.0.clone())));
        assert_eq!(g.get(0, 0, 15), Some(&Value::Unsigned(3)));
        assert_eq!(g.get(0, 0, 14), None);

        // DER files (the key in SEC1 DER, mode 0640), an explicit usage and SNI.
        let l = f
            .load(&cert_server("certificate = \"client.der\"\nprivate_key = \"client-key.der\"\nserver_certificate = \"server.der\"\ncertificate_usage = 1\nsni = \"lwm2m.example\"\n"))
            .unwrap();
        let c = creds(&l);
        assert_eq!(c.sni.as_deref(), Some("lwm2m.example"));
        assert!(
            matches!(&c.credentials, Credentials::Certificate { usage: Some(1), certificate, .. } if *certificate == f.leaf.to_der().unwrap())
        );
    }

    #[test]
    fn certificate_with_a_ca_file_pins_nothing() {
        let f = Fixture::new();
        let l = f
            .load(&cert_server("certificate = \"client.pem\"\nprivate_key = \"client.key\"\nca_file = \"ca.pem\"\n"))
            .unwrap();
        assert_eq!(
            l.config.servers[0].ca_file,
            Some(f.dir.path().join("ca.pem"))
        );
        assert!(
            matches!(&creds(&l).credentials, Credentials::Certificate { server_certificate, usage: None, .. } if server_certificate.is_empty())
        );
        let t = factory::trees(&accounts(&l), &Default::default());
        assert_eq!(t.gateway.get(0, 0, 4), Some(&Value::Opaque(Vec::new())));
        assert_eq!(t.gateway.get(0, 0, 15), None);
        let _ = &f.ca;
    }

    #[test]
    fn certificate_errors_name_the_file_and_key() {
        let f = Fixture::new();
        let e = f.err(&cert_server(""));
        for want in [
            "lwgate.toml:1: server[0].certificate: missing required key `certificate` for security = \"certificate\"",
            "lwgate.toml:1: server[0].private_key: missing required key `private_key`",
            "lwgate.toml:1: server[0].server_certificate: missing required key `server_certificate` for security = \"certificate\" (the server's certificate, LwM2M /0/x/4; or ca_file, the CAs its chain must lead to)",
        ] {
            assert!(e.contains(want), "{want}\nnot in\n{e}");
        }
        let e = f.err(&cert_server("certificate = \"client.pem\"\nprivate_key = \"other.key\"\nserver_certificate = \"server.der\"\n"));
        assert!(e.contains(&format!("lwgate.toml:6: server[0].private_key: {} is not the private key of the certificate {}", f.path("other.key"), f.path("client.pem"))), "{e}");
        let e = f.err(&cert_server("certificate = \"garbage\"\nprivate_key = \"garbage\"\nserver_certificate = \"nope.der\"\n"));
        assert!(
            e.contains(&format!(
                "lwgate.toml:5: server[0].certificate: {} is not a PEM or DER certificate",
                f.path("garbage")
            )),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "lwgate.toml:6: server[0].private_key: {} is not a PEM or DER private key",
                f.path("garbage")
            )),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "lwgate.toml:7: server[0].server_certificate: cannot read {}: ",
                f.path("nope.der")
            )),
            "{e}"
        );
        fs::set_permissions(f.path("client.key"), fs::Permissions::from_mode(0o644)).unwrap();
        let e = f.err(&cert_server("certificate = \"client.pem\"\nprivate_key = \"client.key\"\nserver_certificate = \"server.der\"\n"));
        assert!(e.contains(&format!("lwgate.toml:6: server[0].private_key: {0} has mode 0644, open to other users: a key file must be mode 0600 (or 0640 with group lwgate); run chmod 600 {0}", f.path("client.key"))), "{e}");
        fs::set_permissions(f.path("client.key"), fs::Permissions::from_mode(0o600)).unwrap();
        let base = "certificate = \"client.pem\"\nprivate_key = \"client.key\"\n";
        let e = f.err(&cert_server(&format!(
            "{base}server_certificate = \"server.der\"\nca_file = \"ca.pem\"\n"
        )));
        assert!(e.contains("lwgate.toml:8: server[0].ca_file: expected either server_certificate or ca_file, not both"), "{e}");
        let e = f.err(&cert_server(&format!(
            "{base}ca_file = \"ca.pem\"\ncertificate_usage = 2\n"
        )));
        assert!(
            e.contains("lwgate.toml:8: server[0].certificate_usage: applies to server_certificate"),
            "{e}"
        );
        let e = f.err(&cert_server(&format!(
            "{base}server_certificate = \"server.der\"\ncertificate_usage = 4\n"
        )));
        assert!(e.contains("lwgate.toml:8: server[0].certificate_usage: expected a Certificate Usage from 0 to 3, got 4"), "{e}");
        let e = f.err(&cert_server(&format!(
            "{base}server_certificate = \"server.der\"\ncertificate_usage = -1\n"
        )));
        assert!(e.contains("lwgate.toml:8: server[0].certificate_usage: expected a Certificate Usage, a whole number from 0 to 3, got -1"), "{e}");
        let e = f.err(&cert_server(&format!("{base}ca_file = \"server.der\"\n")));
        assert!(
            e.contains(&format!(
                "lwgate.toml:7: server[0].ca_file: {} holds no PEM certificate",
                f.path("server.der")
            )),
            "{e}"
        );
    }

    #[test]
    fn rpk_is_accepted_or_refused_naming_the_openssl() {
        let f = Fixture::new();
        let good = "[[server]]\nuri = \"coaps://h\"\nssid = 1\nsecurity = \"rpk\"\nprivate_key = \"client.key\"\nserver_public_key = \"server.pub\"\n";
        if crate::dtls::RAW_PUBLIC_KEYS {
            let l = f.load(good).unwrap();
            let c = creds(&l);
            assert!(
                matches!(&c.credentials, Credentials::Rpk { public_key, server_public_key, .. }
                    if *public_key == f.key.public_key_to_der().unwrap()
                        && *server_public_key == f.server.public_key().unwrap().public_key_to_der().unwrap()),
                "DER public keys as /0/x/3 and /0/x/4 hold them"
            );
        } else {
            let e = f.err(good);
            assert!(
                e.contains("lwgate.toml:4: server[0].security: security = \"rpk\""),
                "{e}"
            );
            assert!(e.contains(openssl::version::version()), "{e}");
            assert!(
                e.contains("needs RFC 7250 raw public keys, which this build's OpenSSL")
                    && e.contains("need OpenSSL 3.2 or later")
                    && e.contains("--features vendored-openssl"),
                "{e}"
            );
            assert_eq!(e.lines().count(), 1, "the keys themselves are fine: {e}");
        }
        let e = f.err("[[server]]\nuri = \"coaps://h\"\nssid = 1\nsecurity = \"rpk\"\npublic_key = \"server.pub\"\nprivate_key = \"client.key\"\n");
        assert!(e.contains("lwgate.toml:1: server[0].server_public_key: missing required key `server_public_key`"), "{e}");
        assert!(
            e.contains("lwgate.toml:5: server[0].public_key: ")
                && e.contains("is not the public key of the private key"),
            "{e}"
        );
    }

    #[test]
    fn sni_is_a_host_name() {
        let f = Fixture::new();
        let k = format!("psk_key = \"{PSK_HEX}\"\n");
        let l = f
            .load(&psk_server(&format!("{k}sni = \"other.example\"\n")))
            .unwrap();
        assert_eq!(creds(&l).sni.as_deref(), Some("other.example"));
        let e = f.err(&psk_server(&format!("{k}sni = \"192.0.2.1\"\n")));
        assert!(e.contains("lwgate.toml:7: server[0].sni: expected a host name, got the IP address \"192.0.2.1\" (SNI carries host names only, RFC 6066)"), "{e}");
        let e = f.err(&psk_server(&format!("{k}sni = \"a b\"\n")));
        assert!(
            e.contains("server[0].sni: expected a host name, got \"a b\" (a space is not allowed)"),
            "{e}"
        );
        let l = f
            .load(&format!("[[server]]\nuri = \"coaps://192.0.2.1:15684\"\nssid = 1\nsecurity = \"psk\"\npsk_identity = \"x\"\n{k}"))
            .unwrap();
        assert_eq!(creds(&l).sni, None);
    }

    #[test]
    fn cipher_suites_by_number_or_name() {
        let f = Fixture::new();
        let k = format!("psk_key = \"{PSK_HEX}\"\n");
        let l = f
            .load(&psk_server(&format!("{k}cipher_suites = [\"TLS_PSK_WITH_AES_128_CCM_8\", 168, \"PSK-AES128-CBC-SHA256\", \"0xC037\"]\n")))
            .unwrap();
        assert_eq!(creds(&l).cipher_suites, [0xC0A8, 0x00A8, 0x00AE, 0xC037]);
        let t = factory::trees(&accounts(&l), &Default::default());
        let want: Vec<u64> = vec![0xC0A8, 0x00A8, 0x00AE, 0xC037];
        let Some(crate::lwm2m::tree::Res::Multi(m)) =
            t.gateway.instance(0, 0).and_then(|i| i.get(&16))
        else {
            panic!("/0/0/16 is not multiple")
        };
        let got: Vec<u64> = m
            .values()
            .map(|v| match v {
                Value::Unsigned(n) => *n,
                v => panic!("{v:?}"),
            })
            .collect();
        assert_eq!(got, want);
        let e = f.err(&psk_server(&format!(
            "{k}cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8\"]\n"
        )));
        assert!(e.contains("lwgate.toml:7: server[0].cipher_suites: cipher suite 0xC0AE TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (ECDHE-ECDSA-AES128-CCM8) needs certificate credentials, not PSK"), "{e}");
        let e = f.err(&psk_server(&format!("{k}cipher_suites = [4865]\n")));
        assert!(e.contains("server[0].cipher_suites: cipher suite 0x1301 is not one lwgate maps to OpenSSL (lwgate knows: TLS_PSK_WITH_AES_128_CCM_8"), "{e}");
        let e = f.err(&psk_server(&format!(
            "{k}cipher_suites = [\n\"AES-FAST\"]\n"
        )));
        assert!(e.contains("lwgate.toml:8: server[0].cipher_suites[0]: expected a cipher suite: its IANA number"), "{e}");
        let e = f.err(&psk_server(&format!("{k}cipher_suites = [70000]\n")));
        assert!(
            e.contains("server[0].cipher_suites[0]: expected a cipher suite")
                && e.contains("got 70000"),
            "{e}"
        );
        let e = f.err(&psk_server(&format!("{k}cipher_suites = []\n")));
        assert!(
            e.contains("server[0].cipher_suites: the cipher-suite list is empty"),
            "{e}"
        );
    }

    #[test]
    fn every_suite_lwgate_maps_has_its_iana_name() {
        for (n, name) in crate::dtls::ciphers::known() {
            let iana = iana_name(n).unwrap_or_else(|| panic!("0x{n:04X} {name}"));
            assert!(iana.starts_with("TLS_"), "{iana}");
        }
    }

    #[test]
    fn the_bootstrap_server_takes_the_same_keys() {
        let f = Fixture::new();
        let l = f
            .load("[bootstrap.server]\nuri = \"coaps://bs.example:5784\"\nhold_off = 5\nsecurity = \"psk\"\npsk_identity = \"gw-bs\"\npsk_key_file = \"psk.hex\"\nhandshake_timeout = 20\n")
            .unwrap();
        let bs = l
            .config
            .bootstrap
            .as_ref()
            .and_then(|b| b.server.as_ref())
            .unwrap();
        assert_eq!(bs.handshake_timeout, Seconds(20));
        let c = bs.credentials.as_ref().unwrap();
        assert!(
            matches!(&c.credentials, Credentials::Psk { identity, .. } if identity == b"gw-bs")
        );
        assert_eq!(c.sni.as_deref(), Some("bs.example"));
        let e = f.err(
            "[bootstrap.server]\nuri = \"coaps://bs\"\npsk_identity = \"x\"\npsk_kye = \"00\"\n",
        );
        assert!(
            e.contains("lwgate.toml:4: bootstrap.server.psk_kye: unknown key, expected one of"),
            "{e}"
        );
        let e = f.err("[bootstrap.server]\nuri = \"coaps://bs\"\nsecurity = \"psk\"\n");
        assert!(
            e.contains(
                "lwgate.toml:1: bootstrap.server.psk_identity: missing required key `psk_identity`"
            ),
            "{e}"
        );
        let e = f.err("[bootstrap.server]\nuri = \"coaps://bs\"\n");
        assert!(
            e.contains(
                "bootstrap.server.security: coaps:// needs security = psk, rpk or certificate"
            ),
            "{e}"
        );
    }

    #[test]
    fn an_inline_key_in_a_world_readable_file_is_a_warning() {
        let f = Fixture::new();
        let p = write(
            f.dir.path(),
            "lwgate.toml",
            &psk_server(&format!("psk_key = \"{PSK_HEX}\"\n")),
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let l = load(&p).unwrap();
        assert!(
            l.warnings.iter().any(|w| w.contains(
                "server[0].psk_key: the file is mode 0644, so other users can read this key"
            )),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_directory() {
        let f = Fixture::new();
        let sub = f.dir.path().join("etc");
        fs::create_dir(&sub).unwrap();
        let p = write(
            &sub,
            "lwgate.toml",
            &psk_server("psk_key_file = \"../psk.hex\"\n"),
        );
        let l = load(&p).unwrap();
        assert_eq!(
            l.config.servers[0].psk_key_file,
            Some(sub.join("../psk.hex"))
        );
    }
}

/// Every packaged example loads as it is once copied to `<name>.toml`.
#[test]
fn the_packaged_device_examples_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "lwgate.toml", "");
    let dd = dir.path().join("devices.d");
    fs::create_dir(&dd).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/devices.d");
    let mut n = 0;
    for e in fs::read_dir(&examples).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".toml.example") {
            fs::copy(&p, dd.join(format!("{stem}.toml"))).unwrap();
            n += 1;
        }
    }
    assert!(n >= 6, "{n} examples");
    let l = load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.devices.len(), n);
}
