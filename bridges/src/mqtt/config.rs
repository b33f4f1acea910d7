//! The `[mqtt]` table of a `devices.d` file, checked as it is parsed.
//!
//! One file is either one device (its `topic` names it: no wildcard, or no `name`)
//! or a discovering file: a `topic` filter with wildcards and a `name` that says
//! which level of the topic (`"{1}"`, the first wildcard) or which JSON field
//! (`name_json = "/device"`) names the device. Every device it finds has the
//! file's points.

use serde::Deserialize;

use super::topic;
use crate::device::{Access, Exposed, ResourceId};

/// A validated `[mqtt]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawMqtt")]
pub struct MqttConfig {
    pub broker: Broker,
    /// Topic filter the device publishes on (a discovering file: with wildcards).
    pub topic: String,
    pub naming: Naming,
    pub max_devices: usize,
    pub payload: PayloadKind,
    /// JSON Pointer to the message's own time (s or ms since 1970, or RFC 3339).
    pub time_json: Option<String>,
    /// `{name}` in it: the device's availability topic, with the two payloads.
    pub status_topic: Option<String>,
    pub online: String,
    pub offline: String,
    /// Down after this long without a message; 0: never.
    pub silence_s: u64,
    /// At most one Values event per device per this interval (values coalesced).
    pub min_interval_ms: u64,
    /// Largest payload taken; longer ones are counted and dropped.
    pub max_payload: usize,
    /// Acknowledgements of writes and executes: topic (`{name}`), wait, failure mark.
    pub response_topic: Option<String>,
    pub response_timeout_ms: u64,
    pub response_error: Option<String>,
    pub points: Vec<PointConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// Stable per gateway and broker: the persistent session is found by it.
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS (mqtts): the CA (PEM) that signs the broker's certificate, or None for
    /// the system's trust store; None without TLS.
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tls {
    SystemTrust,
    Ca(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Naming {
    /// One device: the file's own id.
    Declared,
    /// The n-th wildcard level (1-based) of the topic names the device.
    Level(usize),
    /// A JSON Pointer into the payload names it.
    Json(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    Json,
    /// The whole payload is one value (the file's single point without `json`).
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    Bool,
    Int,
    Float,
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PointConfig {
    pub path: ResourceId,
    /// JSON Pointer of the value (JSON payloads); none: the whole payload.
    pub json: Option<String>,
    /// Topic (relative names are under none: the device's topic).
    pub topic: Option<String>,
    pub kind: ValueType,
    pub scale: f64,
    pub offset: f64,
    /// A write publishes `write_payload` (`{value}`, `{name}`, `{path}`) on `write_topic`.
    pub write_topic: Option<String>,
    pub write_payload: String,
    /// An execute publishes `execute_payload` (`{args}`, `{name}`, `{path}`) on `execute_topic`.
    pub execute_topic: Option<String>,
    pub execute_payload: String,
}

impl MqttConfig {
    /// A file that discovers devices by topic rather than declaring one.
    pub fn discovers(&self) -> bool {
        self.naming != Naming::Declared
    }

    pub fn exposed(&self) -> Vec<Exposed> {
        self.points
            .iter()
            .map(|p| Exposed {
                id: p.path,
                access: Access {
                    read: p.execute_topic.is_none() || p.write_topic.is_some(),
                    write: p.write_topic.is_some(),
                    execute: p.execute_topic.is_some(),
                },
            })
            .collect()
    }
}

fn default_port() -> u16 {
    1883
}
fn default_max_devices() -> usize {
    100
}
fn default_online() -> String {
    "online".into()
}
fn default_offline() -> String {
    "offline".into()
}
fn default_min_interval() -> u64 {
    100
}
fn default_max_payload() -> usize {
    16 * 1024
}
fn default_response_timeout() -> u64 {
    5000
}
fn default_payload() -> PayloadKind {
    PayloadKind::Json
}
fn one() -> f64 {
    1.0
}
fn value_placeholder() -> String {
    "{value}".into()
}
fn args_placeholder() -> String {
    "{args}".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    #[serde(default = "localhost")]
    host: String,
    port: Option<u16>,
    #[serde(default)]
    tls: bool,
    ca_file: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    topic: String,
    name: Option<String>,
    name_json: Option<String>,
    #[serde(default = "default_max_devices")]
    max_devices: usize,
    #[serde(default = "default_payload")]
    payload: PayloadKind,
    time_json: Option<String>,
    status_topic: Option<String>,
    #[serde(default = "default_online")]
    online: String,
    #[serde(default = "default_offline")]
    offline: String,
    #[serde(default)]
    silence_s: u64,
    #[serde(default = "default_min_interval")]
    min_interval_ms: u64,
    #[serde(default = "default_max_payload")]
    max_payload: usize,
    response_topic: Option<String>,
    #[serde(default = "default_response_timeout")]
    response_timeout_ms: u64,
    response_error: Option<String>,
    #[serde(rename = "point", default)]
    points: Vec<RawPoint>,
}

fn localhost() -> String {
    "127.0.0.1".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    path: String,
    json: Option<String>,
    topic: Option<String>,
    #[serde(rename = "type")]
    kind: ValueType,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    offset: f64,
    write_topic: Option<String>,
    #[serde(default = "value_placeholder")]
    write_payload: String,
    execute_topic: Option<String>,
    #[serde(default = "args_placeholder")]
    execute_payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MqttConfigError(String);

fn err(s: impl Into<String>) -> MqttConfigError {
    MqttConfigError(s.into())
}

fn check_pointer(key: &str, p: &str) -> Result<(), MqttConfigError> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(err(format!(
            "{key}: expected a JSON Pointer such as \"/temperature\" or \"/sensor/value\", got {p:?}"
        )))
    }
}

impl TryFrom<RawMqtt> for MqttConfig {
    type Error = MqttConfigError;

    fn try_from(r: RawMqtt) -> Result<Self, MqttConfigError> {
        if let Err(e) = topic::check_filter(&r.topic) {
            return Err(err(format!("mqtt.topic: {e}")));
        }
        let wildcards = topic::wildcards(&r.topic);
        let naming = match (&r.name, &r.name_json) {
            (Some(_), Some(_)) => {
                return Err(err("mqtt.name: expected `name` or `name_json`, not both"))
            }
            (Some(n), None) => {
                let level = n
                    .strip_prefix('{')
                    .and_then(|n| n.strip_suffix('}'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&l| l >= 1 && l <= wildcards);
                match level {
                    Some(l) => Naming::Level(l),
                    None => {
                        return Err(err(format!(
                            "mqtt.name: expected \"{{1}}\" to \"{{{wildcards}}}\" (the wildcard level of mqtt.topic that names the device), got {n:?}"
                        )))
                    }
                }
            }
            (None, Some(p)) => {
                check_pointer("mqtt.name_json", p)?;
                if r.payload != PayloadKind::Json {
                    return Err(err("mqtt.name_json: needs payload = \"json\""));
                }
                Naming::Json(p.clone())
            }
            (None, None) => Naming::Declared,
        };
        if r.max_devices == 0 || r.max_devices > 10_000 {
            return Err(err(format!(
                "mqtt.max_devices: expected 1 to 10000, got {}",
                r.max_devices
            )));
        }
        if let Some(p) = &r.time_json {
            check_pointer("mqtt.time_json", p)?;
        }
        if let Some(t) = &r.status_topic {
            topic::check_filter(&t.replace("{name}", "x"))
                .map_err(|e| err(format!("mqtt.status_topic: {e}")))?;
        }
        if let Some(t) = &r.response_topic {
            topic::check_filter(&t.replace("{name}", "x"))
                .map_err(|e| err(format!("mqtt.response_topic: {e}")))?;
        }
        if r.points.is_empty() {
            return Err(err(
                "mqtt.point: expected at least one [[mqtt.point]] (path, type, json)",
            ));
        }
        let password = match (r.password, r.password_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "mqtt.password: expected `password` or `password_file`, not both",
                ))
            }
            (Some(p), None) => Some(p),
            (None, Some(f)) => match std::fs::read_to_string(&f) {
                Ok(p) => Some(p.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => return Err(err(format!("mqtt.password_file: cannot read {f}: {e}"))),
            },
            (None, None) => None,
        };
        let tls = match (r.tls, &r.ca_file) {
            (false, Some(_)) => return Err(err("mqtt.ca_file: needs tls = true")),
            (false, None) => None,
            (true, None) => Some(Tls::SystemTrust),
            (true, Some(f)) => match std::fs::read(f) {
                Ok(pem) if pem.starts_with(b"-----BEGIN") => Some(Tls::Ca(pem)),
                Ok(_) => {
                    return Err(err(format!(
                        "mqtt.ca_file: expected a PEM certificate in {f}"
                    )))
                }
                Err(e) => return Err(err(format!("mqtt.ca_file: cannot read {f}: {e}"))),
            },
        };
        let mut points = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, p) in r.points.into_iter().enumerate() {
            let key = |k: &str| format!("mqtt.point[{i}].{k}");
            let Some(path) = ResourceId::parse(&p.path) else {
                return Err(err(format!(
                    "{}: expected object/instance/resource such as \"3303/0/5700\", got {:?}",
                    key("path"),
                    p.path
                )));
            };
            if !seen.insert(path) {
                return Err(err(format!("{}: {} is mapped twice", key("path"), p.path)));
            }
            if let Some(j) = &p.json {
                check_pointer(&key("json"), j)?;
                if r.payload == PayloadKind::Plain {
                    return Err(err(format!(
                        "{}: a plain payload has no JSON fields",
                        key("json")
                    )));
                }
            }
            if let Some(t) = &p.topic {
                topic::check_filter(&t.replace("{name}", "x"))
                    .map_err(|e| err(format!("{}: {e}", key("topic"))))?;
            }
            for (k, t) in [
                ("write_topic", &p.write_topic),
                ("execute_topic", &p.execute_topic),
            ] {
                if let Some(t) = t {
                    if t.contains(['+', '#']) || t.is_empty() {
                        return Err(err(format!(
                            "{}: expected a topic to publish on (no wildcards; {{name}} allowed), got {t:?}",
                            key(k)
                        )));
                    }
                }
            }
            if !p.scale.is_finite() || p.scale == 0.0 || !p.offset.is_finite() {
                return Err(err(format!(
                    "{}: expected a finite, non-zero scale and a finite offset",
                    key("scale")
                )));
            }
            points.push(PointConfig {
                path,
                json: p.json,
                topic: p.topic,
                kind: p.kind,
                scale: p.scale,
                offset: p.offset,
                write_topic: p.write_topic,
                write_payload: p.write_payload,
                execute_topic: p.execute_topic,
                execute_payload: p.execute_payload,
            });
        }
        if r.payload == PayloadKind::Plain
            && points.iter().filter(|p| p.topic.is_none()).count() > 1
        {
            return Err(err(
                "mqtt.point: a plain payload is one value: expected one point per topic (give the others a `topic`)",
            ));
        }
        Ok(MqttConfig {
            broker: Broker {
                host: r.host,
                port: r
                    .port
                    .unwrap_or(if tls.is_some() { 8883 } else { default_port() }),
                tls,
                client_id: r.client_id,
                username: r.username,
                password,
            },
            topic: r.topic,
            naming,
            max_devices: r.max_devices,
            payload: r.payload,
            time_json: r.time_json,
            status_topic: r.status_topic,
            online: r.online,
            offline: r.offline,
            silence_s: r.silence_s,
            min_interval_ms: r.min_interval_ms,
            max_payload: r.max_payload,
            response_topic: r.response_topic,
            response_timeout_ms: r.response_timeout_ms,
            response_error: r.response_error,
            points,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<MqttConfig, String> {
        toml::from_str::<MqttConfig>(t).map_err(|e| e.to_string())
    }

    const POINT: &str = "[[point]]\npath = \"3303/0/5700\"\njson = \"/t\"\ntype = \"float\"\n";

    #[test]
    fn a_declared_device() {
        let c = parse(&format!("topic = \"sensors/th1\"\n{POINT}")).unwrap();
        assert!(!c.discovers());
        assert_eq!(c.broker.port, 1883);
        assert_eq!(c.points[0].path.to_string(), "/3303/0/5700");
    }

    #[test]
    fn a_discovering_file() {
        let c = parse(&format!(
            "topic = \"sensors/+/data\"\nname = \"{{1}}\"\n{POINT}"
        ))
        .unwrap();
        assert_eq!(c.naming, Naming::Level(1));
        assert!(c.discovers());
        let e = parse(&format!(
            "topic = \"sensors/+/data\"\nname = \"{{2}}\"\n{POINT}"
        ))
        .unwrap_err();
        assert!(e.contains("mqtt.name: expected \"{1}\" to \"{1}\""), "{e}");
        let c = parse(&format!(
            "topic = \"sensors/#\"\nname_json = \"/id\"\n{POINT}"
        ))
        .unwrap();
        assert_eq!(c.naming, Naming::Json("/id".into()));
    }

    #[test]
    fn errors_name_the_key() {
        let e =
            parse("topic = \"a/b\"\n[[point]]\npath = \"3303/0\"\ntype = \"float\"\n").unwrap_err();
        assert!(e.contains("mqtt.point[0].path"), "{e}");
        let e = parse("topic = \"a/#/b\"\n[[point]]\npath = \"3303/0/1\"\ntype = \"float\"\n")
            .unwrap_err();
        assert!(e.contains("mqtt.topic"), "{e}");
        let e = parse(
            "topic = \"a\"\n[[point]]\npath = \"3303/0/1\"\njson = \"t\"\ntype = \"float\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("mqtt.point[0].json: expected a JSON Pointer"),
            "{e}"
        );
        let e = parse("topic = \"a\"\n[[point]]\npath = \"3303/0/1\"\ntype = \"float\"\nwrite_topic = \"a/+\"\n").unwrap_err();
        assert!(e.contains("mqtt.point[0].write_topic"), "{e}");
        let e = parse("topic = \"a\"\n").unwrap_err();
        assert!(e.contains("at least one"), "{e}");
        let e = parse("topic = \"a\"\nbogus = 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}
