//! The `devices.d/*.toml` schema: one file per downstream device.

use serde::Deserialize;

use crate::modbus::config::{ModbusConfig, Transport};
use crate::mqtt::MqttConfig;
use crate::serial::SerialConfig;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "RawDeviceFile")]
pub struct DeviceFile {
    pub device: DeviceSpec,
    /// Checked as it is parsed (`modbus::config`), so check-config sees its errors.
    pub modbus: Option<ModbusConfig>,
    pub serial: Option<SerialConfig>,
    pub mqtt: Option<MqttConfig>,
    /// `[firmware]`: how a package reaches the device. With it the device has a
    /// /5 Firmware Update of its own (the agent downloads and checks the
    /// package; this command takes it to the device).
    pub firmware: Option<FirmwareSpec>,
}

/// An end device's `[firmware]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FirmwareSpec {
    /// The command that takes the package to the device and waits for the
    /// outcome: its exit status is the update's (0: Update Result 1, else 8).
    /// `{file}`, `{id}` and `{prefix}` are replaced in every argument.
    #[serde(deserialize_with = "non_empty_argv")]
    pub install: Vec<String>,
    /// Larger packages fail with Update Result 2 (a push: 4.13).
    #[serde(default)]
    pub max_size: Option<u64>,
    /// A minisign public key: every package must carry a good signature
    /// (Package URI + `.minisig`).
    #[serde(default)]
    pub public_key: Option<std::path::PathBuf>,
    /// Extra CAs for https:// package servers.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Fetch and require `<Package URI>.sha256`.
    #[serde(default)]
    pub sha256_manifest: bool,
}

fn non_empty_argv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if v.first().is_none_or(|p| p.is_empty()) {
        return Err(serde::de::Error::custom(
            "expected a command and its arguments, e.g. [\"/usr/local/bin/flash-meter\", \"{file}\"]",
        ));
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeviceFile {
    device: DeviceSpec,
    #[serde(default)]
    modbus: Option<ModbusConfig>,
    #[serde(default)]
    serial: Option<SerialConfig>,
    #[serde(default)]
    mqtt: Option<MqttConfig>,
    #[serde(default)]
    firmware: Option<FirmwareSpec>,
}

/// The protocol and the table that configures it, which only the whole file sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FileError(String);

impl TryFrom<RawDeviceFile> for DeviceFile {
    type Error = FileError;

    fn try_from(raw: RawDeviceFile) -> Result<Self, FileError> {
        let protocol = raw.device.protocol;
        let wanted = match protocol {
            Protocol::ModbusTcp | Protocol::ModbusRtu => "modbus",
            Protocol::Serial => "serial",
            Protocol::Mqtt => "mqtt",
        };
        let given: Vec<&str> = [
            ("modbus", raw.modbus.is_some()),
            ("serial", raw.serial.is_some()),
            ("mqtt", raw.mqtt.is_some()),
        ]
        .iter()
        .filter(|(_, g)| *g)
        .map(|(t, _)| *t)
        .collect();
        let name = protocol.as_str();
        if let Some(other) = given.iter().find(|t| **t != wanted) {
            return Err(FileError(format!(
                "device.protocol is \"{name}\": expected a [{wanted}] table, got [{other}]"
            )));
        }
        // A file without its protocol table is accepted here (the agent's tests and
        // the packaged README have such files); the bridge refuses it when it starts
        // the device, with `Bridges::start`'s error.
        match (&raw.modbus, protocol) {
            (Some(m), Protocol::ModbusTcp) if !matches!(m.transport, Transport::Tcp { .. }) => {
                return Err(FileError(
                    "device.protocol is \"modbus-tcp\": expected `host` (and `port`) in [modbus], got `tty`".into(),
                ))
            }
            (Some(m), Protocol::ModbusRtu) if !matches!(m.transport, Transport::Rtu(_)) => {
                return Err(FileError(
                    "device.protocol is \"modbus-rtu\": expected `tty` (and `baud`, `parity`, `data_bits`, `stop_bits`) in [modbus], got `host`".into(),
                ))
            }
            _ => {}
        }
        if raw.firmware.is_some() && raw.device.target == Target::Gateway {
            return Err(FileError(
                "[firmware] is for an end device: a device with target = \"gateway\" has the gateway's /5, which [firmware] of lwgate.toml configures".into(),
            ));
        }
        if raw.firmware.is_some() && raw.mqtt.as_ref().is_some_and(|m| m.discovers()) {
            return Err(FileError(
                "[firmware] names one device: a discovering [mqtt] file finds many".into(),
            ));
        }
        Ok(DeviceFile {
            device: raw.device,
            modbus: raw.modbus,
            serial: raw.serial,
            mqtt: raw.mqtt,
            firmware: raw.firmware,
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Stable identity, reported as /25/x/0 Device ID.
    pub id: String,
    /// First URI-Path segment addressing the device (/25/x/1); defaults to `id`.
    #[serde(default)]
    pub prefix: Option<String>,
    pub protocol: Protocol,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Identity of the end device for its /3/0 (Manufacturer, Model Number, Serial
    /// Number, Firmware Version); not read from the device.
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub firmware_version: Option<String>,
    /// Where its resources appear: as an end device behind /25 (the default), or
    /// in the gateway's own tree (a GPS receiver on a serial port as the gateway's
    /// /6 Location).
    #[serde(default)]
    pub target: Target,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    #[default]
    EndDevice,
    Gateway,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    ModbusTcp,
    ModbusRtu,
    Serial,
    Mqtt,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::ModbusTcp => "modbus-tcp",
            Protocol::ModbusRtu => "modbus-rtu",
            Protocol::Serial => "serial",
            Protocol::Mqtt => "mqtt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("expected an id of 1 to 64 letters, digits, '.', '_' or '-', got \"{0}\"")]
    BadId(String),
    /// Only without `prefix`: the id is then the path prefix too.
    #[error("expected an id that is not purely numeric (without a `prefix` key the id is also the path prefix, where a number would read as an LwM2M object id), got \"{0}\"")]
    NumericId(String),
    #[error("expected a prefix of letters, digits, '.', '_' or '-' that is not purely numeric, got \"{0}\"")]
    BadPrefix(String),
}

fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl DeviceSpec {
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or(&self.id)
    }

    /// Prefixes become the first URI-Path segment, so they must not be mistaken for
    /// an object id (purely numeric) nor need percent-encoding.
    pub fn validate(&self) -> Result<(), (&'static str, SpecError)> {
        if !is_segment(&self.id) {
            return Err(("id", SpecError::BadId(self.id.clone())));
        }
        let p = self.prefix();
        if !is_segment(p) || p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(match self.prefix {
                Some(_) => ("prefix", SpecError::BadPrefix(p.to_string())),
                None => ("id", SpecError::NumericId(p.to_string())),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, prefix: Option<&str>) -> DeviceSpec {
        DeviceSpec {
            id: id.into(),
            prefix: prefix.map(Into::into),
            protocol: Protocol::Mqtt,
            enabled: true,
            manufacturer: None,
            model: None,
            serial: None,
            firmware_version: None,
            target: Target::EndDevice,
        }
    }

    #[test]
    fn prefix_defaults_to_id() {
        assert_eq!(spec("boiler-1", None).prefix(), "boiler-1");
        assert_eq!(spec("boiler-1", Some("b1")).prefix(), "b1");
    }

    #[test]
    fn numeric_or_odd_prefixes_are_rejected() {
        assert!(spec("123", None).validate().is_err());
        assert_eq!(spec("x", Some("42")).validate().unwrap_err().0, "prefix");
        assert!(spec("a b", None).validate().is_err());
        assert!(spec("", None).validate().is_err());
        assert!(spec("dev/1", None).validate().is_err());
        assert!(spec("dev1", None).validate().is_ok());
    }

    #[test]
    fn a_numeric_id_is_named_as_an_id() {
        let (key, e) = spec("12", None).validate().unwrap_err();
        assert_eq!((key, &e), ("id", &SpecError::NumericId("12".into())));
        assert!(e
            .to_string()
            .starts_with("expected an id that is not purely numeric"));
        assert!(spec("12", Some("meter")).validate().is_ok());
        let (key, e) = spec("a b", None).validate().unwrap_err();
        assert_eq!(key, "id");
        assert_eq!(
            e.to_string(),
            "expected an id of 1 to 64 letters, digits, '.', '_' or '-', got \"a b\""
        );
    }

    #[test]
    fn parses_a_device_file() {
        let f: DeviceFile = toml::from_str(
            "[device]\nid = \"pump\"\nprotocol = \"modbus-tcp\"\n[modbus]\nhost = \"127.0.0.1\"\nunit = 1\n[[modbus.point]]\npath = \"3303/0/5700\"\nregister = \"holding-register\"\naddress = 0\ntype = \"i16\"\n",
        )
        .unwrap();
        assert_eq!(f.device.protocol, Protocol::ModbusTcp);
        assert!(f.modbus.is_some());
    }

    const METER: &str = r#"
[device]
id = "meter-7"
protocol = "modbus-tcp"
"#;

    #[test]
    fn a_firmware_table_gives_the_install_command() {
        let f: DeviceFile = toml::from_str(&format!(
            "{METER}[firmware]\ninstall = [\"/usr/local/bin/flash\", \"--unit\", \"{{id}}\", \"{{file}}\"]\nmax_size = 4096\n"
        ))
        .unwrap();
        let fw = f.firmware.unwrap();
        assert_eq!(fw.install[0], "/usr/local/bin/flash");
        assert_eq!(fw.max_size, Some(4096));
        assert!(!fw.sha256_manifest);
        let plain: DeviceFile = toml::from_str(METER).unwrap();
        assert!(plain.firmware.is_none());
    }

    #[test]
    fn a_firmware_table_without_a_command_or_on_the_gateway_is_refused() {
        for (extra, want) in [
            ("[firmware]\ninstall = []\n", "expected a command"),
            ("[firmware]\n", "missing field `install`"),
            (
                "[firmware]\ninstall = [\"x\"]\nrunner = \"direct\"\n",
                "unknown field `runner`",
            ),
        ] {
            let e = toml::from_str::<DeviceFile>(&format!("{METER}{extra}")).unwrap_err();
            assert!(e.to_string().contains(want), "{extra}: {e}");
        }
        let gw = METER.replace("protocol", "target = \"gateway\"\nprotocol");
        let e = toml::from_str::<DeviceFile>(&format!("{gw}[firmware]\ninstall = [\"x\"]\n"))
            .unwrap_err();
        assert!(e.to_string().contains("end device"), "{e}");
    }
}
