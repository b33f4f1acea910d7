//! The `[serial]` table of a `devices.d` file, checked as it is parsed: the line
//! settings, how frames are cut from the byte stream, what is sent to poll, and
//! one `[[serial.point]]` per resource (which frames feed it, which field or
//! capture is its value, in what format).

use serde::Deserialize;

use crate::device::{Access, Exposed, ResourceId};
use crate::modbus::config::Parity;

/// A validated `[serial]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSerial")]
pub struct SerialConfig {
    pub tty: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    pub flow: Flow,
    pub framing: Framing,
    /// A frame longer than this is dropped (and the framer resynchronises).
    pub max_frame: usize,
    /// A partial frame older than this is dropped.
    pub frame_timeout_ms: u64,
    pub checksum: Checksum,
    /// Sent every `poll_ms`; the next frame is its reply.
    pub poll: Option<Vec<u8>>,
    pub poll_ms: u64,
    pub reply_timeout_ms: u64,
    /// A write or execute succeeded when its reply matches this.
    pub reply_ok: Option<Pattern>,
    /// Down after this long without a good frame; 0: never (polled devices are
    /// down when a poll gets no reply).
    pub silence_s: u64,
    pub min_interval_ms: u64,
    pub reconnect_max_ms: u64,
    /// The point whose value (Unix seconds) is the time of the frame's values.
    pub time_point: Option<ResourceId>,
    pub points: Vec<PointConfig>,
}

/// A compiled regular expression, equal to another with the same source (so a
/// reload sees an unchanged file as unchanged).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex_lite::Regex);

impl PartialEq for Pattern {
    fn eq(&self, o: &Self) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    None,
    Software,
    Hardware,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Frames end with these bytes (not part of the frame).
    Delimiter(Vec<u8>),
    Fixed(usize),
    /// Frames start with `start` and end with `end` (neither part of the frame).
    Between(Vec<u8>, Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    None,
    /// `$…*hh`: XOR of the bytes between `$` and `*`.
    Nmea,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    Bool,
    Int,
    Float,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Number,
    /// NMEA `ddmm.mmmm` with an N/S (or E/W) field: decimal degrees, S/W negative.
    NmeaCoordinate,
    /// NMEA `hhmmss.ss` with a `ddmmyy` field: Unix seconds.
    NmeaDatetime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A regular expression's capture (a name or a number).
    Capture {
        regex: String,
        capture: String,
        /// A second capture: the hemisphere of a coordinate, the date of a datetime.
        with: Option<String>,
    },
    /// The n-th field (0-based) after splitting on `split`.
    Field {
        split: String,
        field: usize,
        with: Option<usize>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PointConfig {
    pub path: ResourceId,
    /// The frames this point reads (`match`); none: every frame.
    pub matches: Option<Pattern>,
    pub source: Option<Source>,
    /// Compiled `source` regex.
    pub regex: Option<Pattern>,
    pub kind: ValueType,
    pub format: Format,
    pub scale: f64,
    pub offset: f64,
    /// A write sends this (`{value}`, `{path}`).
    pub write: Option<Vec<u8>>,
    /// An execute sends this (`{args}`, `{path}`).
    pub execute: Option<Vec<u8>>,
}

impl SerialConfig {
    pub fn exposed(&self) -> Vec<Exposed> {
        self.points
            .iter()
            .map(|p| Exposed {
                id: p.path,
                access: Access {
                    read: p.source.is_some(),
                    write: p.write.is_some(),
                    execute: p.execute.is_some(),
                },
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSerial {
    tty: String,
    #[serde(default = "d_baud")]
    baud: u32,
    #[serde(default = "d_parity")]
    parity: Parity,
    #[serde(default = "d_data_bits")]
    data_bits: u8,
    #[serde(default = "d_stop_bits")]
    stop_bits: u8,
    #[serde(default = "d_flow")]
    flow: Flow,
    delimiter: Option<String>,
    length: Option<usize>,
    start: Option<String>,
    end: Option<String>,
    #[serde(default = "d_max_frame")]
    max_frame: usize,
    #[serde(default = "d_frame_timeout")]
    frame_timeout_ms: u64,
    #[serde(default = "d_checksum")]
    checksum: Checksum,
    poll: Option<String>,
    #[serde(default = "d_poll_ms")]
    poll_ms: u64,
    #[serde(default = "d_reply_timeout")]
    reply_timeout_ms: u64,
    reply_ok: Option<String>,
    #[serde(default)]
    silence_s: u64,
    #[serde(default = "d_min_interval")]
    min_interval_ms: u64,
    #[serde(default = "d_reconnect")]
    reconnect_max_ms: u64,
    time_point: Option<String>,
    #[serde(rename = "point", default)]
    points: Vec<RawPoint>,
}

fn d_baud() -> u32 {
    9600
}
fn d_parity() -> Parity {
    Parity::None
}
fn d_data_bits() -> u8 {
    8
}
fn d_stop_bits() -> u8 {
    1
}
fn d_flow() -> Flow {
    Flow::None
}
fn d_max_frame() -> usize {
    256
}
fn d_frame_timeout() -> u64 {
    1000
}
fn d_checksum() -> Checksum {
    Checksum::None
}
fn d_poll_ms() -> u64 {
    1000
}
fn d_reply_timeout() -> u64 {
    500
}
fn d_min_interval() -> u64 {
    100
}
fn d_reconnect() -> u64 {
    30_000
}
fn one() -> f64 {
    1.0
}
fn d_format() -> Format {
    Format::Number
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    path: String,
    #[serde(rename = "match")]
    matches: Option<String>,
    regex: Option<String>,
    capture: Option<String>,
    split: Option<String>,
    field: Option<usize>,
    /// The hemisphere (coordinate) or date (datetime) capture or field.
    with: Option<toml::Value>,
    #[serde(rename = "type")]
    kind: ValueType,
    #[serde(default = "d_format")]
    format: Format,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    offset: f64,
    write: Option<String>,
    execute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SerialConfigError(String);

fn err(s: impl Into<String>) -> SerialConfigError {
    SerialConfigError(s.into())
}

fn regex(key: &str, r: &str) -> Result<Pattern, SerialConfigError> {
    regex_lite::Regex::new(r).map(Pattern).map_err(|e| {
        err(format!(
            "{key}: expected a regular expression, got {r:?}: {e}"
        ))
    })
}

impl TryFrom<RawSerial> for SerialConfig {
    type Error = SerialConfigError;

    fn try_from(r: RawSerial) -> Result<Self, SerialConfigError> {
        if r.tty.is_empty() {
            return Err(err(
                "serial.tty: expected a device path such as \"/dev/ttyUSB0\"",
            ));
        }
        if !(50..=4_000_000).contains(&r.baud) {
            return Err(err(format!(
                "serial.baud: expected 50 to 4000000, got {}",
                r.baud
            )));
        }
        if !(5..=8).contains(&r.data_bits) {
            return Err(err(format!(
                "serial.data_bits: expected 5 to 8, got {}",
                r.data_bits
            )));
        }
        if !(1..=2).contains(&r.stop_bits) {
            return Err(err(format!(
                "serial.stop_bits: expected 1 or 2, got {}",
                r.stop_bits
            )));
        }
        let framing = match (r.delimiter, r.length, r.start, r.end) {
            (d, None, None, None) => {
                let d = d.unwrap_or_else(|| "\r\n".into());
                if d.is_empty() {
                    return Err(err("serial.delimiter: expected at least one byte"));
                }
                Framing::Delimiter(d.into_bytes())
            }
            (None, Some(n), None, None) if n > 0 => Framing::Fixed(n),
            (None, None, Some(s), Some(e)) if !s.is_empty() && !e.is_empty() => {
                Framing::Between(s.into_bytes(), e.into_bytes())
            }
            _ => {
                return Err(err(
                    "serial: expected one framing: `delimiter` (default \"\\r\\n\"), `length`, or `start` with `end`",
                ))
            }
        };
        if !(2..=65_536).contains(&r.max_frame) {
            return Err(err(format!(
                "serial.max_frame: expected 2 to 65536, got {}",
                r.max_frame
            )));
        }
        if r.poll_ms < 10 {
            return Err(err(format!(
                "serial.poll_ms: expected 10 or more, got {}",
                r.poll_ms
            )));
        }
        let reply_ok = r
            .reply_ok
            .as_deref()
            .map(|x| regex("serial.reply_ok", x))
            .transpose()?;
        let time_point = match &r.time_point {
            Some(t) => Some(ResourceId::parse(t).ok_or_else(|| {
                err(format!(
                    "serial.time_point: expected object/instance/resource, got {t:?}"
                ))
            })?),
            None => None,
        };
        if r.points.is_empty() {
            return Err(err("serial.point: expected at least one [[serial.point]]"));
        }
        let mut points = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, p) in r.points.into_iter().enumerate() {
            let key = |k: &str| format!("serial.point[{i}].{k}");
            let path = ResourceId::parse(&p.path).ok_or_else(|| {
                err(format!(
                    "{}: expected object/instance/resource such as \"3303/0/5700\", got {:?}",
                    key("path"),
                    p.path
                ))
            })?;
            if !seen.insert(path) {
                return Err(err(format!("{}: {} is mapped twice", key("path"), p.path)));
            }
            let matches = p
                .matches
                .as_deref()
                .map(|m| regex(&key("match"), m))
                .transpose()?;
            let with_str = match &p.with {
                Some(toml::Value::String(s)) => Some(s.clone()),
                Some(toml::Value::Integer(n)) => Some(n.to_string()),
                Some(_) => {
                    return Err(err(format!(
                        "{}: expected a capture name or field number",
                        key("with")
                    )))
                }
                None => None,
            };
            let (source, compiled) = match (&p.regex, p.field) {
                (Some(_), Some(_)) => {
                    return Err(err(format!(
                        "{}: expected `regex` or `field`, not both",
                        key("regex")
                    )))
                }
                (Some(rx), None) => {
                    let c = regex(&key("regex"), rx)?;
                    let capture = p.capture.clone().unwrap_or_else(|| "1".into());
                    for name in std::iter::once(&capture).chain(with_str.as_ref()) {
                        let known = match name.parse::<usize>() {
                            Ok(n) => n < c.0.captures_len(),
                            Err(_) => c.0.capture_names().flatten().any(|x| x == name),
                        };
                        if !known {
                            return Err(err(format!(
                                "{}: the regex {rx:?} has no capture {name:?}",
                                key("capture")
                            )));
                        }
                    }
                    (
                        Some(Source::Capture {
                            regex: rx.clone(),
                            capture,
                            with: with_str.clone(),
                        }),
                        Some(c),
                    )
                }
                (None, Some(field)) => {
                    let with = match &with_str {
                        Some(w) => Some(w.parse::<usize>().map_err(|_| {
                            err(format!(
                                "{}: expected a field number with `field`",
                                key("with")
                            ))
                        })?),
                        None => None,
                    };
                    let split = p.split.clone().unwrap_or_else(|| ",".into());
                    if split.is_empty() {
                        return Err(err(format!("{}: expected a separator", key("split"))));
                    }
                    (Some(Source::Field { split, field, with }), None)
                }
                (None, None) => (None, None),
            };
            if source.is_none() && p.write.is_none() && p.execute.is_none() {
                return Err(err(format!(
                    "{}: expected `regex` or `field` (a value read), or `write`/`execute` (a command)",
                    key("path")
                )));
            }
            if p.format != Format::Number && with_str.is_none() {
                return Err(err(format!(
                    "{}: format {:?} needs `with` (the hemisphere or the date)",
                    key("format"),
                    p.format
                )));
            }
            if !p.scale.is_finite() || p.scale == 0.0 || !p.offset.is_finite() {
                return Err(err(format!(
                    "{}: expected a finite, non-zero scale",
                    key("scale")
                )));
            }
            points.push(PointConfig {
                path,
                matches,
                source,
                regex: compiled,
                kind: p.kind,
                format: p.format,
                scale: p.scale,
                offset: p.offset,
                write: p.write.map(String::into_bytes),
                execute: p.execute.map(String::into_bytes),
            });
        }
        if let Some(t) = time_point {
            if !points.iter().any(|p| p.path == t) {
                return Err(err(format!(
                    "serial.time_point: {t} is not one of the points"
                )));
            }
        }
        Ok(SerialConfig {
            tty: r.tty,
            baud: r.baud,
            parity: r.parity,
            data_bits: r.data_bits,
            stop_bits: r.stop_bits,
            flow: r.flow,
            framing,
            max_frame: r.max_frame,
            frame_timeout_ms: r.frame_timeout_ms,
            checksum: r.checksum,
            poll: r.poll.map(String::into_bytes),
            poll_ms: r.poll_ms,
            reply_timeout_ms: r.reply_timeout_ms,
            reply_ok,
            silence_s: r.silence_s,
            min_interval_ms: r.min_interval_ms,
            reconnect_max_ms: r.reconnect_max_ms,
            time_point,
            points,
        })
    }
}
