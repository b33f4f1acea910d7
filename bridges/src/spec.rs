//! The `devices.d/*.toml` schema: one file per downstream device.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceFile {
    pub device: DeviceSpec,
    /// Protocol settings; each bridge validates its own table when it starts the device.
    #[serde(default)]
    pub modbus: Option<toml::Table>,
    #[serde(default)]
    pub serial: Option<toml::Table>,
    #[serde(default)]
    pub mqtt: Option<toml::Table>,
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
            "[device]\nid = \"pump\"\nprotocol = \"modbus-tcp\"\n[modbus]\nhost = \"127.0.0.1\"\n",
        )
        .unwrap();
        assert_eq!(f.device.protocol, Protocol::ModbusTcp);
        assert!(f.modbus.is_some());
    }
}
