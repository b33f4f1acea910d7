//! The `[modem]` table of lwgate.toml, checked as it is parsed (as `[modbus]` is),
//! so that `lwgate check-config` names the file, line and key of a mistake.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Which program talks to the modem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// lwgate opens the modem's AT port itself (nothing else may use that port).
    At,
    /// ModemManager owns the modem and lwgate asks it over D-Bus, so that
    /// NetworkManager can keep the data connection on the same modem.
    ModemManager,
}

/// Which of ModemManager's modems is ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModemSelector {
    /// The first one (by its number in ModemManager's object path).
    Any,
    /// The one whose `EquipmentIdentifier` (the IMEI) is this; survives restarts
    /// and re-plugging, which renumber the paths.
    Equipment(String),
    /// The one at this object path, e.g. `/org/freedesktop/ModemManager1/Modem/0`.
    Path(String),
}

impl fmt::Display for ModemSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModemSelector::Any => f.write_str("any"),
            ModemSelector::Equipment(s) | ModemSelector::Path(s) => f.write_str(s),
        }
    }
}

/// The D-Bus bus ModemManager is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// Where ModemManager runs (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket).
    System,
    /// `DBUS_SESSION_BUS_ADDRESS`: for ModemManager's test mode (`--test-session`).
    Session,
}

/// How received messages reach us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Stored by the modem and announced (`AT+CNMI=2,1`, `+CMTI`); deleted only once
    /// handed over, so nothing is lost across a restart.
    Stored,
    /// Routed to us without storage (`AT+CNMI=2,2`, `+CMT`), acknowledged with
    /// `AT+CNMA`; for modems whose storage is unusable.
    Direct,
}

/// A SIM PIN; never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// 4 to 8 digits (3GPP TS 31.101 9.5).
    pub fn parse(s: &str) -> Option<Pin> {
        let s = s.trim();
        ((4..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Pin(s.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Where the PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    Value(Pin),
    /// Read when the modem asks for it (so the file may be root-only).
    File(PathBuf),
}

impl PinSource {
    /// The PIN, reading the file if it is one; the error says what is wrong in words.
    pub fn load(&self) -> Result<Pin, String> {
        match self {
            PinSource::Value(p) => Ok(p.clone()),
            PinSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read modem.pin_file {}: {e}", path.display()))?;
                Pin::parse(&text).ok_or_else(|| {
                    format!(
                        "modem.pin_file {}: expected a PIN of 4 to 8 digits, got something else",
                        path.display()
                    )
                })
            }
        }
    }
}

/// A validated `[modem]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawModem")]
pub struct ModemConfig {
    pub backend: Backend,
    /// The AT port, e.g. `/dev/ttyUSB2`; empty with ModemManager.
    pub port: String,
    pub baud: u32,
    pub pin: Option<PinSource>,
    pub delivery: Delivery,
    /// Message storage (`AT+CPMS`): `SM` (the SIM), `ME` (the modem), `MT` (both).
    pub storage: String,
    /// The gateway's MSISDN when the SIM does not say it (`AT+CNUM`).
    pub own_number: Option<String>,
    /// Seconds between reopening attempts at most (doubling from 1).
    pub reconnect_max: u32,
    /// Seconds between signal/operator/registration reads (also the modem's
    /// liveness check).
    pub status_interval: u32,
    /// Seconds from the first part of a concatenated message to its last (with
    /// ModemManager, which joins them: until an incomplete one is deleted).
    pub concat_timeout: u32,
    /// ModemManager: which modem.
    pub modem: ModemSelector,
    /// ModemManager: which bus.
    pub bus: Bus,
    /// ModemManager: enable a disabled modem ourselves (else its owner does).
    pub enable: bool,
}

impl ModemConfig {
    /// A configuration for `port` with every default.
    pub fn at(port: &str) -> Self {
        ModemConfig {
            backend: Backend::At,
            port: port.to_string(),
            baud: DEFAULT_BAUD,
            pin: None,
            delivery: Delivery::Stored,
            storage: DEFAULT_STORAGE.into(),
            own_number: None,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            status_interval: DEFAULT_STATUS_INTERVAL,
            concat_timeout: DEFAULT_CONCAT_TIMEOUT,
            modem: ModemSelector::Any,
            bus: Bus::System,
            enable: false,
        }
    }

    /// The ModemManager backend, any modem on the system bus, with every default.
    pub fn modemmanager() -> Self {
        ModemConfig {
            backend: Backend::ModemManager,
            port: String::new(),
            ..ModemConfig::at("")
        }
    }
}

const DEFAULT_BAUD: u32 = 115_200;
const DEFAULT_STORAGE: &str = "SM";
const DEFAULT_RECONNECT_MAX: u32 = 30;
const DEFAULT_STATUS_INTERVAL: u32 = 60;
const DEFAULT_CONCAT_TIMEOUT: u32 = 180;

/// Every key optional: which ones apply depends on the backend, and a key of the
/// other backend is refused rather than ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModem {
    #[serde(default, deserialize_with = "backend")]
    backend: Option<Backend>,
    port: Option<String>,
    #[serde(default, deserialize_with = "baud")]
    baud: Option<u32>,
    #[serde(default, deserialize_with = "pin")]
    pin: Option<Pin>,
    pin_file: Option<PathBuf>,
    delivery: Option<Delivery>,
    #[serde(default, deserialize_with = "storage")]
    storage: Option<String>,
    #[serde(default, deserialize_with = "own_number")]
    own_number: Option<String>,
    #[serde(default, deserialize_with = "reconnect_max")]
    reconnect_max: Option<u32>,
    #[serde(default, deserialize_with = "status_interval")]
    status_interval: Option<u32>,
    #[serde(default, deserialize_with = "concat_timeout")]
    concat_timeout: Option<u32>,
    #[serde(default, deserialize_with = "selector")]
    modem: Option<ModemSelector>,
    bus: Option<Bus>,
    enable: Option<bool>,
}

fn ranged<'de, D: Deserializer<'de>>(
    d: D,
    range: std::ops::RangeInclusive<u32>,
    what: &str,
) -> Result<Option<u32>, D::Error> {
    let v = i64::deserialize(d)?;
    match u32::try_from(v) {
        Ok(v) if range.contains(&v) => Ok(Some(v)),
        _ => Err(de::Error::custom(format!("expected {what}, got {v}"))),
    }
}

fn baud<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    ranged(d, 50..=4_000_000, "a baud rate such as 115200")
}
fn reconnect_max<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    ranged(d, 1..=3600, "a number of seconds from 1 to 3600")
}
fn status_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    ranged(d, 5..=86_400, "a number of seconds from 5 to 86400")
}
fn concat_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    ranged(d, 10..=86_400, "a number of seconds from 10 to 86400")
}

fn backend<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Backend>, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "at" => Ok(Some(Backend::At)),
        #[cfg(feature = "modemmanager")]
        "modemmanager" => Ok(Some(Backend::ModemManager)),
        #[cfg(not(feature = "modemmanager"))]
        "modemmanager" => Err(de::Error::custom(super::NO_MODEMMANAGER)),
        _ => Err(de::Error::custom(format!(
            "expected \"at\" (lwgate opens the modem's AT port) or \"modemmanager\" (ModemManager owns the modem, over D-Bus), got \"{s}\""
        ))),
    }
}

fn selector<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ModemSelector>, D::Error> {
    let s = String::deserialize(d)?;
    ModemSelector::parse(&s).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "expected \"any\", the modem's equipment identifier (IMEI) such as \"490154203237518\", or its D-Bus path such as \"/org/freedesktop/ModemManager1/Modem/0\", got \"{s}\""
        ))
    })
}

impl ModemSelector {
    pub fn parse(s: &str) -> Option<ModemSelector> {
        if s == "any" {
            return Some(ModemSelector::Any);
        }
        if let Some(rest) = s.strip_prefix('/') {
            // D-Bus object path syntax: `/`-separated non-empty [A-Za-z0-9_] elements.
            let ok = !rest.is_empty()
                && rest.split('/').all(|e| {
                    !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            return ok.then(|| ModemSelector::Path(s.to_string()));
        }
        // IMEI (15 digits), MEID (14 hex digits) or ESN (8): what ModemManager puts in
        // EquipmentIdentifier.
        ((1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| ModemSelector::Equipment(s.to_string()))
    }
}

fn pin<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Pin>, D::Error> {
    let s = String::deserialize(d)?;
    // The value itself is not repeated: it may be nearly right.
    Pin::parse(&s).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "expected a SIM PIN of 4 to 8 digits in quotes, got something else ({} characters)",
            s.chars().count()
        ))
    })
}

fn storage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(Some(s))
    } else {
        Err(de::Error::custom(format!(
            "expected a message storage of AT+CPMS such as \"SM\", \"ME\" or \"MT\", got \"{s}\""
        )))
    }
}

fn own_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let digits = s.strip_prefix('+').unwrap_or(&s);
    if (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Some(s))
    } else {
        Err(de::Error::custom(format!(
            "expected an MSISDN such as \"+447700900123\" (up to 20 digits, + when international), got \"{s}\""
        )))
    }
}

/// A combination of keys that does not go together, named in the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl TryFrom<RawModem> for ModemConfig {
    type Error = ConfigError;

    fn try_from(raw: RawModem) -> Result<Self, ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_string()));
        let backend = raw.backend.unwrap_or(Backend::At);
        let shared = |mut c: ModemConfig| {
            c.own_number = raw.own_number.clone();
            c.reconnect_max = raw.reconnect_max.unwrap_or(DEFAULT_RECONNECT_MAX);
            c.concat_timeout = raw.concat_timeout.unwrap_or(DEFAULT_CONCAT_TIMEOUT);
            c.status_interval = raw.status_interval.unwrap_or(DEFAULT_STATUS_INTERVAL);
            c
        };
        if backend == Backend::ModemManager {
            let at_only = [
                ("port", raw.port.is_some()),
                ("baud", raw.baud.is_some()),
                ("pin", raw.pin.is_some()),
                ("pin_file", raw.pin_file.is_some()),
                ("delivery", raw.delivery.is_some()),
                ("storage", raw.storage.is_some()),
            ];
            if let Some((key, _)) = at_only.iter().find(|(_, given)| *given) {
                return Err(ConfigError(format!(
                    "`{key}` is a key of backend \"at\"; with backend \"modemmanager\" ModemManager owns the port and unlocks the SIM: expected no `{key}`, got one"
                )));
            }
            let mut c = shared(ModemConfig::modemmanager());
            c.modem = raw.modem.unwrap_or(ModemSelector::Any);
            c.bus = raw.bus.unwrap_or(Bus::System);
            c.enable = raw.enable.unwrap_or(false);
            return Ok(c);
        }
        let mm_only = [
            ("modem", raw.modem.is_some()),
            ("bus", raw.bus.is_some()),
            ("enable", raw.enable.is_some()),
        ];
        if let Some((key, _)) = mm_only.iter().find(|(_, given)| *given) {
            return Err(ConfigError(format!(
                "`{key}` is a key of backend \"modemmanager\": expected backend = \"modemmanager\" with it, got backend \"at\""
            )));
        }
        let port = match raw.port {
            Some(p) if !p.trim().is_empty() => p,
            Some(_) => return bad("expected the modem's AT port such as \"/dev/ttyUSB2\" in `port`, got \"\""),
            None => return bad("backend \"at\" needs `port`: expected the modem's AT port such as \"/dev/ttyUSB2\", got none"),
        };
        let pin = match (raw.pin, raw.pin_file) {
            (Some(_), Some(_)) => return bad("expected one of `pin` and `pin_file`, got both"),
            (Some(p), None) => Some(PinSource::Value(p)),
            (None, Some(f)) if f.as_os_str().is_empty() => {
                return bad("expected a file path in `pin_file`, got \"\"")
            }
            (None, Some(f)) => Some(PinSource::File(f)),
            (None, None) => None,
        };
        let mut c = shared(ModemConfig::at(&port));
        c.baud = raw.baud.unwrap_or(DEFAULT_BAUD);
        c.pin = pin;
        c.delivery = raw.delivery.unwrap_or(Delivery::Stored);
        c.storage = raw.storage.unwrap_or_else(|| DEFAULT_STORAGE.into());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[allow(dead_code)]
        modem: ModemConfig,
    }

    fn parse(text: &str) -> ModemConfig {
        toml::from_str::<File>(text).unwrap().modem
    }

    /// The key path, the line and the message, as the agent reports them.
    fn error(text: &str) -> (String, Option<usize>, String) {
        let de = toml::Deserializer::new(text);
        let Err(e) = serde_path_to_error::deserialize::<_, File>(de) else {
            panic!("{text} parsed")
        };
        let line = e
            .inner()
            .span()
            .map(|s| text[..s.start].matches('\n').count() + 1);
        (e.path().to_string(), line, e.inner().message().to_string())
    }

    #[test]
    fn defaults() {
        let m = parse("[modem]\nport = \"/dev/ttyUSB2\"\n");
        assert_eq!(m, ModemConfig::at("/dev/ttyUSB2"));
        assert_eq!(
            (m.baud, m.delivery, m.storage.as_str(), m.reconnect_max),
            (115_200, Delivery::Stored, "SM", 30)
        );
        assert_eq!((m.status_interval, m.concat_timeout), (60, 180));
    }

    #[test]
    fn every_key() {
        let m = parse(
            "[modem]\nbackend = \"at\"\nport = \"/dev/ttyACM0\"\nbaud = 9600\npin = \"0000\"\ndelivery = \"direct\"\nstorage = \"ME\"\nown_number = \"+447700900999\"\nreconnect_max = 5\nstatus_interval = 10\nconcat_timeout = 60\n",
        );
        assert_eq!(m.delivery, Delivery::Direct);
        assert_eq!(m.pin, Some(PinSource::Value(Pin("0000".into()))));
        assert_eq!(format!("{:?}", m.pin), "Some(Value(Pin(<redacted>)))");
        assert_eq!(m.own_number.as_deref(), Some("+447700900999"));
        let f = parse("[modem]\nport = \"/dev/x\"\npin_file = \"/etc/lwgate/sim-pin\"\n");
        assert_eq!(f.pin, Some(PinSource::File("/etc/lwgate/sim-pin".into())));
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let cases: [(&str, &str, usize, &str); 9] = [
            (
                "port = \"/dev/x\"\nbaud = 0\n",
                "modem.baud",
                3,
                "expected a baud rate",
            ),
            (
                "port = \"/dev/x\"\npin = \"12a4\"\n",
                "modem.pin",
                3,
                "4 to 8 digits",
            ),
            (
                "port = \"/dev/x\"\ndelivery = \"push\"\n",
                "modem.delivery",
                3,
                "stored",
            ),
            (
                "port = \"/dev/x\"\nstorage = \"sim\"\n",
                "modem.storage",
                3,
                "\"SM\"",
            ),
            (
                "port = \"/dev/x\"\nown_number = \"me\"\n",
                "modem.own_number",
                3,
                "MSISDN",
            ),
            (
                "port = \"/dev/x\"\nbackend = \"gsm\"\n",
                "modem.backend",
                3,
                "\"modemmanager\"",
            ),
            (
                "port = \"/dev/x\"\nstatus_interval = 1\n",
                "modem.status_interval",
                3,
                "from 5",
            ),
            (
                "port = \"/dev/x\"\nspeed = 1\n",
                "modem.speed",
                3,
                "unknown field `speed`",
            ),
            ("baud = 9600\n", "modem", 1, "needs `port`"),
        ];
        for (body, path, line, msg) in cases {
            let (p, l, m) = error(&format!("[modem]\n{body}"));
            assert_eq!(p, path, "{body}");
            assert!(m.contains(msg), "{body}: {m}");
            assert!(l.is_some_and(|l| l >= line.min(1)), "{body}: {l:?}");
            if path != "modem" {
                assert_eq!(l, Some(line), "{body}");
            }
        }
        let (_, _, m) = error("[modem]\nport = \"/dev/x\"\npin = \"1234\"\npin_file = \"/f\"\n");
        assert!(m.contains("got both"), "{m}");
        // The PIN is not repeated in the message.
        let (_, _, m) = error("[modem]\nport = \"/dev/x\"\npin = \"98765x\"\n");
        assert!(!m.contains("98765"), "{m}");
    }

    #[test]
    #[cfg(feature = "modemmanager")]
    fn modemmanager_keys() {
        let m = parse("[modem]\nbackend = \"modemmanager\"\n");
        assert_eq!(m, ModemConfig::modemmanager());
        assert_eq!(
            (&m.modem, m.bus, m.enable, m.port.as_str()),
            (&ModemSelector::Any, Bus::System, false, "")
        );
        assert_eq!((m.status_interval, m.reconnect_max), (60, 30));
        let m = parse(
            "[modem]\nbackend = \"modemmanager\"\nmodem = \"490154203237518\"\nbus = \"session\"\nenable = true\nown_number = \"+447700900123\"\nstatus_interval = 5\nreconnect_max = 2\nconcat_timeout = 600\n",
        );
        assert_eq!(m.modem, ModemSelector::Equipment("490154203237518".into()));
        assert_eq!(
            (m.bus, m.enable, m.status_interval, m.reconnect_max),
            (Bus::Session, true, 5, 2)
        );
        assert_eq!(m.own_number.as_deref(), Some("+447700900123"));
        assert_eq!(m.concat_timeout, 600);
        let m = parse(
            "[modem]\nbackend = \"modemmanager\"\nmodem = \"/org/freedesktop/ModemManager1/Modem/3\"\n",
        );
        assert_eq!(
            m.modem,
            ModemSelector::Path("/org/freedesktop/ModemManager1/Modem/3".into())
        );
        assert_eq!(
            m.modem.to_string(),
            "/org/freedesktop/ModemManager1/Modem/3"
        );
        assert_eq!(ModemSelector::Any.to_string(), "any");
    }

    #[test]
    #[cfg(feature = "modemmanager")]
    fn modemmanager_errors() {
        let mm = "[modem]\nbackend = \"modemmanager\"\n";
        for (body, path, msg) in [
            ("modem = \"/org/x/\"\n", "modem.modem", "D-Bus path"),
            ("modem = \"//\"\n", "modem.modem", "D-Bus path"),
            ("modem = \"/\"\n", "modem.modem", "D-Bus path"),
            ("modem = \"/a-b\"\n", "modem.modem", "D-Bus path"),
            ("modem = \"\"\n", "modem.modem", "IMEI"),
            ("modem = \"35 69\"\n", "modem.modem", "IMEI"),
            ("bus = \"user\"\n", "modem.bus", "system"),
            ("enable = \"yes\"\n", "modem.enable", "bool"),
        ] {
            let (p, l, m) = error(&format!("{mm}{body}"));
            assert_eq!(p, path, "{body}");
            assert_eq!(l, Some(3), "{body}");
            assert!(m.contains(msg), "{body}: {m}");
        }
        for key in [
            "port = \"/dev/ttyUSB2\"",
            "baud = 9600",
            "pin = \"1234\"",
            "pin_file = \"/f\"",
            "delivery = \"direct\"",
            "storage = \"ME\"",
        ] {
            let (p, _, m) = error(&format!("{mm}{key}\n"));
            let name = key.split(' ').next().unwrap();
            assert_eq!(p, "modem", "{key}");
            assert!(
                m.contains(&format!("`{name}` is a key of backend \"at\"")),
                "{m}"
            );
        }
        for key in ["modem = \"any\"", "bus = \"system\"", "enable = false"] {
            let (p, _, m) = error(&format!("[modem]\nport = \"/dev/x\"\n{key}\n"));
            let name = key.split(' ').next().unwrap();
            assert_eq!(p, "modem", "{key}");
            assert!(
                m.contains(&format!("`{name}` is a key of backend \"modemmanager\"")),
                "{m}"
            );
        }
    }

    #[test]
    fn pin_file_is_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("lwgate-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "1234\n").unwrap();
        assert_eq!(PinSource::File(good).load().unwrap().expose(), "1234");
        let bad = dir.join("bad");
        std::fs::write(&bad, "12\n").unwrap();
        assert!(PinSource::File(bad)
            .load()
            .unwrap_err()
            .contains("4 to 8 digits"));
        assert!(PinSource::File(dir.join("none"))
            .load()
            .unwrap_err()
            .contains("cannot read"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    #[cfg(not(feature = "modemmanager"))]
    fn without_the_feature_modemmanager_is_refused_by_name() {
        let Err(e) = toml::from_str::<File>("[modem]\nbackend = \"modemmanager\"\n") else {
            panic!("accepted without the feature");
        };
        assert!(
            e.to_string().contains("without the modemmanager feature"),
            "{e}"
        );
    }
}
