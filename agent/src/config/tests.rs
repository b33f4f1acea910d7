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
    let e = err_text("[[server]]\nuri = \"coap://h\"\nssid = 1\nsecurity = \"psk\"\n");
    assert!(
        e.contains("server[0].security:") && e.contains("nosec"),
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
        "[device]\nid = \"a\"\nprotocol = \"modbus-tcp\"\n",
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
        e.contains("c.toml: device.prefix: prefix \"a\" is also used by"),
        "{e}"
    );
    assert!(
        e.contains("d.toml:3: device.protocol:") && e.contains("telnet"),
        "{e}"
    );
    assert!(
        e.contains("e.toml: device.prefix: expected a prefix"),
        "{e}"
    );
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
