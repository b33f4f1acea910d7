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

#[test]
fn devices_are_loaded_sorted_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "lwgate.toml", "");
    let dd = dir.path().join("devices.d");
    fs::create_dir(&dd).unwrap();
    write(&dd, "b.toml", "[device]\nid = \"b\"\nprotocol = \"mqtt\"\n");
    write(
        &dd,
        "a.toml",
        "[device]\nid = \"a\"\nprotocol = \"serial\"\n",
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
        "[device]\nid = \"c\"\nprefix = \"a\"\nprotocol = \"mqtt\"\n",
    );
    write(
        &dd,
        "d.toml",
        "[device]\nid = \"d\"\nprotocol = \"telnet\"\n",
    );
    write(
        &dd,
        "e.toml",
        "[device]\nid = \"e\"\nprefix = \"5\"\nprotocol = \"mqtt\"\n",
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
