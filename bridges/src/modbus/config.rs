//! The `[modbus]` table of a `devices.d` file, checked as it is parsed.
//!
//! Everything that can be known wrong from the file alone is refused here, so that
//! `lwgate check-config` reports it with the file, line and key (through the agent's
//! serde_path_to_error deserializer) instead of the bridge failing at the first
//! poll. Single values are checked by their own deserializers (the error then names
//! the key itself, `modbus.point[2].bit`); combinations by the table that holds them
//! (`modbus.point[2]`, `modbus`), with the key named in the message.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::codec::{
    parse_order, ByteOrder, DataType, Encoded, PointCodec, RegisterKind, Value, WordOrder,
};
use crate::device::ResourceId;

/// A validated `[modbus]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawModbus")]
pub struct ModbusConfig {
    pub transport: Transport,
    /// Unit id (slave address).
    pub unit: u8,
    pub poll_ms: u64,
    pub timeout_ms: u64,
    /// Extra tries after a request timed out.
    pub retries: u32,
    /// Silence kept between two requests on the bus.
    pub delay_ms: u64,
    pub reconnect_max_ms: u64,
    pub max_gap: u16,
    /// In file order.
    pub points: Vec<PointConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp { host: String, port: u16 },
    Rtu(SerialLine),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SerialLine {
    pub tty: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
}

impl fmt::Display for SerialLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        write!(
            f,
            "{} at {} baud {}{}{}",
            self.tty, self.baud, self.data_bits, parity, self.stop_bits
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// One `[[modbus.point]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PointConfig {
    pub path: ResourceId,
    pub address: u16,
    /// Byte/word order already resolved against the device's default.
    pub codec: PointCodec,
    pub writable: bool,
    /// What an Execute writes, already encoded; such a point is not polled.
    pub execute: Option<Encoded>,
}

impl PointConfig {
    /// Executable points are commands (a pulse coil, a command register): reading
    /// them back means nothing, so they are left out of polls.
    pub fn is_polled(&self) -> bool {
        self.execute.is_none()
    }
}

const DEFAULT_POLL_MS: u64 = 1000;
const MIN_POLL_MS: u64 = 10;
const DEFAULT_TIMEOUT_MS: u64 = 1000;
const DEFAULT_RETRIES: u32 = 1;
/// RS-485 devices need a moment to turn their line driver around after answering;
/// 20 ms covers the slow ones at 9600 baud. TCP needs none.
const DEFAULT_RTU_DELAY_MS: u64 = 20;
const DEFAULT_RECONNECT_MAX_MS: u64 = 30_000;
const DEFAULT_MAX_GAP: u16 = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModbus {
    host: Option<String>,
    #[serde(default, deserialize_with = "port")]
    port: Option<u16>,
    tty: Option<String>,
    #[serde(default, deserialize_with = "baud")]
    baud: Option<u32>,
    parity: Option<Parity>,
    #[serde(default, deserialize_with = "data_bits")]
    data_bits: Option<u8>,
    #[serde(default, deserialize_with = "stop_bits")]
    stop_bits: Option<u8>,
    unit: u8,
    #[serde(default = "default_poll_ms", deserialize_with = "poll_ms")]
    poll_ms: u64,
    #[serde(default = "default_timeout_ms", deserialize_with = "positive_ms")]
    timeout_ms: u64,
    #[serde(default = "default_retries")]
    retries: u32,
    delay_ms: Option<u64>,
    #[serde(default = "default_reconnect_max_ms", deserialize_with = "positive_ms")]
    reconnect_max_ms: u64,
    #[serde(default = "default_max_gap")]
    max_gap: u16,
    #[serde(default, deserialize_with = "order")]
    order: Option<(ByteOrder, WordOrder)>,
    #[serde(default)]
    point: Vec<RawPointChecked>,
}

fn default_poll_ms() -> u64 {
    DEFAULT_POLL_MS
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}
fn default_reconnect_max_ms() -> u64 {
    DEFAULT_RECONNECT_MAX_MS
}
fn default_max_gap() -> u16 {
    DEFAULT_MAX_GAP
}

/// A number in `range`, said as the key expects it.
fn ranged<'de, D, T>(d: D, range: std::ops::RangeInclusive<T>, what: &str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + fmt::Display + Copy,
{
    let v = T::deserialize(d)?;
    if !range.contains(&v) {
        return Err(de::Error::custom(format!("expected {what}, got {v}")));
    }
    Ok(v)
}

fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    ranged(d, 1..=u16::MAX, "a TCP port from 1 to 65535").map(Some)
}
fn baud<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    ranged(d, 50..=4_000_000, "a baud rate such as 9600 or 19200").map(Some)
}
fn data_bits<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    ranged(d, 7..=8, "7 or 8").map(Some)
}
fn stop_bits<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    ranged(d, 1..=2, "1 or 2").map(Some)
}
fn poll_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(
        d,
        MIN_POLL_MS..=u64::from(u32::MAX),
        "a poll period of at least 10 milliseconds",
    )
}
fn positive_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(
        d,
        1..=u64::from(u32::MAX),
        "a number of milliseconds, 1 or more",
    )
}
fn bit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    ranged(d, 0..=15, "a bit number from 0 to 15").map(Some)
}
fn string_registers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    ranged(
        d,
        1..=super::codec::MAX_READ_REGISTERS,
        "a number of registers from 1 to 125 (one read request)",
    )
    .map(Some)
}

fn order<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(ByteOrder, WordOrder)>, D::Error> {
    let s = String::deserialize(d)?;
    parse_order(&s).map(Some).map_err(|_| {
        de::Error::custom(format!(
            "expected one of \"ABCD\", \"CDAB\", \"BADC\" or \"DCBA\", got \"{s}\""
        ))
    })
}

fn resource<'de, D: Deserializer<'de>>(d: D) -> Result<ResourceId, D::Error> {
    let s = String::deserialize(d)?;
    ResourceId::parse(&s).ok_or_else(|| {
        de::Error::custom(format!(
            "expected a resource path such as \"3303/0/5700\" (object/instance/resource, each 0 to 65534), got \"{s}\""
        ))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RegisterName {
    Coil,
    DiscreteInput,
    InputRegister,
    HoldingRegister,
}

impl From<RegisterName> for RegisterKind {
    fn from(r: RegisterName) -> Self {
        match r {
            RegisterName::Coil => RegisterKind::Coil,
            RegisterName::DiscreteInput => RegisterKind::DiscreteInput,
            RegisterName::InputRegister => RegisterKind::InputRegister,
            RegisterName::HoldingRegister => RegisterKind::HoldingRegister,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TypeName {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    String,
}

/// A value written by Execute, as TOML has it.
#[derive(Debug, Clone, PartialEq)]
struct ConfigValue(Value);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, a number or a string in quotes")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ConfigValue, E> {
                Ok(ConfigValue(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(Value::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(Value::UInt(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(Value::Float(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue(Value::Text(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    #[serde(deserialize_with = "resource")]
    path: ResourceId,
    register: RegisterName,
    address: u16,
    #[serde(rename = "type")]
    data_type: TypeName,
    #[serde(default, deserialize_with = "bit")]
    bit: Option<u8>,
    #[serde(default, deserialize_with = "string_registers")]
    registers: Option<u16>,
    #[serde(default, deserialize_with = "order")]
    order: Option<(ByteOrder, WordOrder)>,
    scale: Option<f64>,
    offset: Option<f64>,
    #[serde(default)]
    writable: bool,
    execute_value: Option<ConfigValue>,
}

/// A point whose own keys agree with each other; the device's default order is
/// applied by the table.
#[derive(Deserialize)]
#[serde(try_from = "RawPoint")]
struct RawPointChecked {
    point: PointConfig,
    own_order: bool,
    execute_value: Option<Value>,
}

/// Messages name the keys as written in the file, since the path only reaches the
/// point.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Point(String),
    #[error("{0}")]
    Table(String),
}

impl TryFrom<RawPoint> for RawPointChecked {
    type Error = ConfigError;

    fn try_from(raw: RawPoint) -> Result<Self, ConfigError> {
        let bad = |m: String| Err(ConfigError::Point(m));
        let kind = RegisterKind::from(raw.register);
        let name = type_name(raw.data_type);
        let data_type = match raw.data_type {
            TypeName::Bool => DataType::Bool { bit: raw.bit },
            TypeName::U16 => DataType::U16,
            TypeName::I16 => DataType::I16,
            TypeName::U32 => DataType::U32,
            TypeName::I32 => DataType::I32,
            TypeName::U64 => DataType::U64,
            TypeName::I64 => DataType::I64,
            TypeName::F32 => DataType::F32,
            TypeName::F64 => DataType::F64,
            TypeName::String => match raw.registers {
                Some(registers) => DataType::String { registers },
                None => {
                    return bad(
                        "type \"string\" needs `registers` (how many registers the text spans): expected registers = 1 to 125, got none".into(),
                    )
                }
            },
        };
        if raw.bit.is_some() && raw.data_type != TypeName::Bool {
            return bad(format!(
                "`bit` picks one bit of a register for type \"bool\": expected no `bit` with type \"{name}\", got bit = {}",
                raw.bit.unwrap_or_default()
            ));
        }
        if raw.bit.is_some() && kind.is_bit() {
            return bad(format!(
                "a {kind} is a single bit: expected no `bit`, got bit = {}",
                raw.bit.unwrap_or_default()
            ));
        }
        if raw.registers.is_some() && raw.data_type != TypeName::String {
            return bad(format!(
                "`registers` is the length of a \"string\": expected no `registers` with type \"{name}\", got registers = {}",
                raw.registers.unwrap_or_default()
            ));
        }
        if kind.is_bit() && raw.data_type != TypeName::Bool {
            return bad(format!(
                "a {kind} holds one bit: expected type \"bool\", got type \"{name}\""
            ));
        }
        let mut codec =
            PointCodec::new(kind, data_type).map_err(|e| ConfigError::Point(e.to_string()))?;
        if let Some((b, w)) = raw.order {
            codec = codec.with_order(b, w);
        }
        if raw.scale.is_some() || raw.offset.is_some() {
            let (scale, offset) = (raw.scale.unwrap_or(1.0), raw.offset.unwrap_or(0.0));
            if matches!(raw.data_type, TypeName::Bool | TypeName::String) {
                return bad(format!(
                    "`scale` and `offset` apply to numbers: expected neither with type \"{name}\", got {}",
                    if raw.scale.is_some() { format!("scale = {scale}") } else { format!("offset = {offset}") }
                ));
            }
            codec = codec.with_scale(scale, offset).map_err(|e| {
                ConfigError::Point(format!("expected a finite `scale` other than 0 and a finite `offset`, got scale = {scale}, offset = {offset} ({e})"))
            })?;
        }
        let end = u32::from(raw.address) + u32::from(codec.register_count());
        if end > 1 << 16 {
            return bad(format!(
                "a {name} at address {} spans {} {kind}s and runs past the last address 65535: expected an address of at most {}, got {}",
                raw.address,
                codec.register_count(),
                (1u32 << 16) - u32::from(codec.register_count()),
                raw.address
            ));
        }
        let wants_write = raw.writable || raw.execute_value.is_some();
        if wants_write && !kind.is_writable() {
            let key = if raw.writable {
                "writable = true"
            } else {
                "execute_value"
            };
            return bad(format!(
                "Modbus cannot write {kind}s: expected `{key}` only on a coil or holding-register, got register \"{}\"",
                register_name(raw.register)
            ));
        }
        let execute = match &raw.execute_value {
            None => None,
            Some(_) if raw.writable => {
                return bad("an executable point (`execute_value`) is not also writable: expected one of `writable = true` and `execute_value`, got both".into())
            }
            Some(ConfigValue(v)) => Some(codec.encode(v).map_err(|e| {
                ConfigError::Point(format!("expected an `execute_value` that fits the point, got {v}: {e}"))
            })?),
        };
        Ok(RawPointChecked {
            own_order: raw.order.is_some(),
            execute_value: raw.execute_value.map(|v| v.0),
            point: PointConfig {
                path: raw.path,
                address: raw.address,
                codec,
                writable: raw.writable,
                execute,
            },
        })
    }
}

fn type_name(t: TypeName) -> &'static str {
    match t {
        TypeName::Bool => "bool",
        TypeName::U16 => "u16",
        TypeName::I16 => "i16",
        TypeName::U32 => "u32",
        TypeName::I32 => "i32",
        TypeName::U64 => "u64",
        TypeName::I64 => "i64",
        TypeName::F32 => "f32",
        TypeName::F64 => "f64",
        TypeName::String => "string",
    }
}

fn register_name(r: RegisterName) -> &'static str {
    match r {
        RegisterName::Coil => "coil",
        RegisterName::DiscreteInput => "discrete-input",
        RegisterName::InputRegister => "input-register",
        RegisterName::HoldingRegister => "holding-register",
    }
}

impl TryFrom<RawModbus> for ModbusConfig {
    type Error = ConfigError;

    fn try_from(raw: RawModbus) -> Result<Self, ConfigError> {
        let bad = |m: String| Err(ConfigError::Table(m));
        let serial_keys: Vec<&str> = [
            ("baud", raw.baud.is_some()),
            ("parity", raw.parity.is_some()),
            ("data_bits", raw.data_bits.is_some()),
            ("stop_bits", raw.stop_bits.is_some()),
        ]
        .iter()
        .filter(|(_, given)| *given)
        .map(|(k, _)| *k)
        .collect();
        let transport = match (raw.host, raw.tty) {
            (Some(_), Some(_)) => {
                return bad(
                    "expected either `host` (Modbus TCP) or `tty` (Modbus RTU), got both".into(),
                )
            }
            (None, None) => {
                return bad(
                    "expected `host` (Modbus TCP) or `tty` (Modbus RTU), got neither".into(),
                )
            }
            (Some(host), None) => {
                if let Some(k) = serial_keys.first() {
                    return bad(format!(
                        "`{k}` is a serial line setting: expected no `{k}` with `host` (Modbus TCP), got {k}"
                    ));
                }
                if host.trim().is_empty() {
                    return bad("expected a host name or address in `host`, got \"\"".into());
                }
                Transport::Tcp {
                    host,
                    port: raw.port.unwrap_or(502),
                }
            }
            (None, Some(tty)) => {
                if raw.port.is_some() {
                    return bad("`port` is the TCP port: expected no `port` with `tty` (Modbus RTU), got port".into());
                }
                if tty.trim().is_empty() {
                    return bad(
                        "expected a serial device path such as \"/dev/ttyUSB0\" in `tty`, got \"\""
                            .into(),
                    );
                }
                Transport::Rtu(SerialLine {
                    tty,
                    baud: raw.baud.unwrap_or(9600),
                    parity: raw.parity.unwrap_or(Parity::None),
                    data_bits: raw.data_bits.unwrap_or(8),
                    stop_bits: raw.stop_bits.unwrap_or(1),
                })
            }
        };
        // Unit 0 is broadcast on a serial line (nobody answers) and 248-255 are
        // reserved; behind TCP the unit id is often ignored or routes to a gateway.
        if matches!(transport, Transport::Rtu(_)) && !(1..=247).contains(&raw.unit) {
            return bad(format!(
                "`unit` on a serial line: expected a unit id from 1 to 247, got {}",
                raw.unit
            ));
        }
        if raw.point.is_empty() {
            return bad("expected at least one [[modbus.point]] table, got none".into());
        }
        let mut seen: HashMap<ResourceId, usize> = HashMap::new();
        for (i, p) in raw.point.iter().enumerate() {
            if let Some(first) = seen.insert(p.point.path, i) {
                return bad(format!(
                    "point[{i}].path: expected a path no other point maps, got {} again (point[{first}] has it)",
                    p.point.path
                ));
            }
        }
        let delay_ms = raw.delay_ms.unwrap_or(match transport {
            Transport::Tcp { .. } => 0,
            Transport::Rtu(_) => DEFAULT_RTU_DELAY_MS,
        });
        let mut points = Vec::with_capacity(raw.point.len());
        for (i, p) in raw.point.into_iter().enumerate() {
            let mut point = p.point;
            if let (false, Some((b, w))) = (p.own_order, raw.order) {
                point.codec = point.codec.with_order(b, w);
                // The registers of a command depend on the order.
                if let Some(v) = &p.execute_value {
                    point.execute = Some(point.codec.encode(v).map_err(|e| {
                        ConfigError::Table(format!(
                            "point[{i}].execute_value: expected a value that fits the point, got {v}: {e}"
                        ))
                    })?);
                }
            }
            points.push(point);
        }
        Ok(ModbusConfig {
            transport,
            unit: raw.unit,
            poll_ms: raw.poll_ms,
            timeout_ms: raw.timeout_ms,
            retries: raw.retries,
            delay_ms,
            reconnect_max_ms: raw.reconnect_max_ms,
            max_gap: raw.max_gap,
            points,
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
