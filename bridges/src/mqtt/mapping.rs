//! MQTT messages to resource values, without I/O: which device a message is
//! from, its values (JSON Pointer fields or the whole payload, converted and
//! scaled), and its time.

use serde_json::Value as Json;

use super::config::{MqttConfig, Naming, PayloadKind, PointConfig, ValueType};
use super::topic;
use crate::device::{ResourceId, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The device's name: None for a declared device (the file's id).
    pub name: Option<String>,
    /// Unix seconds: the payload's own time where mapped, else the arrival.
    pub time: f64,
    pub values: Vec<(ResourceId, Value)>,
    /// Fields that were missing or did not convert (counted, not fatal).
    pub misses: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    #[error("the topic is not one of this device's")]
    NotOurs,
    #[error("payload of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload is not UTF-8 text")]
    NotText,
    #[error("no device name at {0} in the payload")]
    NoName(String),
}

/// A point topic template as a filter, and which of its wildcards is `{name}`.
fn template_filter(t: &str) -> (String, Option<usize>) {
    let mut idx = None;
    let mut n = 0;
    let levels: Vec<String> = t
        .split('/')
        .map(|l| {
            if l == "{name}" {
                idx = Some(n);
                n += 1;
                "+".to_string()
            } else {
                if l == "+" || l == "#" {
                    n += 1;
                }
                l.to_string()
            }
        })
        .collect();
    (levels.join("/"), idx)
}

/// Every filter to subscribe to for this file.
pub fn subscriptions(c: &MqttConfig) -> Vec<String> {
    let mut v = vec![c.topic.clone()];
    for p in &c.points {
        if let Some(t) = &p.topic {
            v.push(template_filter(t).0);
        }
    }
    if let Some(t) = &c.status_topic {
        v.push(template_filter(t).0);
    }
    v.sort();
    v.dedup();
    v
}

/// The device name a status (LWT) message on `t` is about, and whether it says online.
pub fn status(c: &MqttConfig, t: &str, payload: &[u8]) -> Option<(Option<String>, bool)> {
    let tmpl = c.status_topic.as_ref()?;
    let (filter, idx) = template_filter(tmpl);
    let caps = topic::matches(&filter, t)?;
    let name = idx.and_then(|i| caps.get(i)).map(|s| s.to_string());
    let text = std::str::from_utf8(payload).ok()?.trim();
    if text == c.online {
        Some((name, true))
    } else if text == c.offline {
        Some((name, false))
    } else {
        None
    }
}

pub fn map(c: &MqttConfig, t: &str, payload: &[u8], arrival: f64) -> Result<Mapped, MapError> {
    if payload.len() > c.max_payload {
        return Err(MapError::TooLong(payload.len()));
    }
    // Which points this topic feeds, and the name the topic gives.
    let mut name: Option<String> = None;
    let mut points: Vec<&PointConfig> = Vec::new();
    if let Some(caps) = topic::matches(&c.topic, t) {
        if let Naming::Level(l) = c.naming {
            name = caps.get(l - 1).map(|s| s.to_string());
        }
        points.extend(c.points.iter().filter(|p| p.topic.is_none()));
    }
    for p in c.points.iter().filter(|p| p.topic.is_some()) {
        let (filter, idx) = template_filter(p.topic.as_deref().unwrap_or_default());
        if let Some(caps) = topic::matches(&filter, t) {
            if let Some(n) = idx.and_then(|i| caps.get(i)) {
                name = Some(n.to_string());
            }
            points.push(p);
        }
    }
    if points.is_empty() {
        return Err(MapError::NotOurs);
    }
    let json = match c.payload {
        PayloadKind::Json => Some(
            serde_json::from_slice::<Json>(payload)
                .map_err(|e| MapError::NotJson(e.to_string()))?,
        ),
        PayloadKind::Plain => None,
    };
    if let (Naming::Json(p), Some(j)) = (&c.naming, &json) {
        name = match j.pointer(p) {
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Number(n)) => Some(n.to_string()),
            _ => return Err(MapError::NoName(p.clone())),
        };
    }
    let mut values = Vec::new();
    let mut misses = 0;
    for p in points {
        let raw = match (&json, &p.json) {
            (Some(j), Some(ptr)) => j.pointer(ptr).cloned(),
            (Some(j), None) => Some(j.clone()),
            (None, _) => match std::str::from_utf8(payload) {
                Ok(s) => Some(Json::String(s.trim().to_string())),
                Err(_) => return Err(MapError::NotText),
            },
        };
        match raw.as_ref().and_then(|r| convert(r, p)) {
            Some(v) => values.push((p.path, v)),
            None => misses += 1,
        }
    }
    let time = match (&json, &c.time_json) {
        (Some(j), Some(ptr)) => j.pointer(ptr).and_then(time_of).unwrap_or(arrival),
        _ => arrival,
    };
    Ok(Mapped {
        name,
        time,
        values,
        misses,
    })
}

fn number(j: &Json) -> Option<f64> {
    match j {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse::<f64>().ok(),
        Json::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

/// A JSON value as the point's type, scale and offset applied to numbers.
pub fn convert(j: &Json, p: &PointConfig) -> Option<Value> {
    Some(match p.kind {
        ValueType::Bool => Value::Bool(match j {
            Json::Bool(b) => *b,
            Json::Number(n) => n.as_f64()? != 0.0,
            Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "1" | "yes" | "open" => true,
                "false" | "off" | "0" | "no" | "closed" => false,
                _ => return None,
            },
            _ => return None,
        }),
        ValueType::Int => {
            let x = number(j)? * p.scale + p.offset;
            let r = x.round();
            if r.abs() >= 9.2e18 {
                return None;
            }
            Value::Int(r as i64)
        }
        ValueType::Float => Value::Float(number(j)? * p.scale + p.offset),
        ValueType::Text => Value::Text(match j {
            Json::String(s) => s.clone(),
            Json::Null => return None,
            other => other.to_string(),
        }),
    })
}

/// A written value as the text `{value}` stands for, the scale undone.
pub fn written(v: &Value, p: &PointConfig) -> Result<String, String> {
    let unscale = |x: f64| (x - p.offset) / p.scale;
    Ok(match (p.kind, v) {
        (ValueType::Bool, Value::Bool(b)) => b.to_string(),
        (ValueType::Bool, Value::Int(i)) => (*i != 0).to_string(),
        (ValueType::Int, Value::Int(i)) => format!("{}", unscale(*i as f64).round() as i64),
        (ValueType::Int, Value::Float(f)) => format!("{}", unscale(*f).round() as i64),
        (ValueType::Float, Value::Float(f)) => format!("{}", unscale(*f)),
        (ValueType::Float, Value::Int(i)) => format!("{}", unscale(*i as f64)),
        (ValueType::Text, Value::Text(s)) => s.clone(),
        (ValueType::Text, Value::Int(i)) => i.to_string(),
        (k, v) => return Err(format!("a {v:?} does not fit a {k:?} point")),
    })
}

/// Seconds or milliseconds since 1970 (numbers above 10^11 are milliseconds), or RFC 3339.
pub fn time_of(j: &Json) -> Option<f64> {
    match j {
        Json::Number(n) => {
            let x = n.as_f64()?;
            let s = if x > 1e11 { x / 1000.0 } else { x };
            (s.is_finite() && s > 0.0).then_some(s)
        }
        Json::String(s) => rfc3339(s),
        _ => None,
    }
}

/// `2026-12-03T10:00:00Z`, `2026-12-03T10:00:00.250+01:00`.
pub fn rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..n]).parse().ok()?;
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) as f64 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(t: &str) -> MqttConfig {
        toml::from_str(t).unwrap()
    }

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    #[test]
    fn json_fields_become_values_with_the_payloads_time() {
        let c = cfg("topic = \"s/+/data\"\nname = \"{1}\"\ntime_json = \"/ts\"\n[[point]]\npath = \"3303/0/5700\"\njson = \"/t\"\ntype = \"float\"\nscale = 0.1\n[[point]]\npath = \"3304/0/5700\"\njson = \"/h/v\"\ntype = \"int\"\n[[point]]\npath = \"3342/0/5500\"\njson = \"/on\"\ntype = \"bool\"\n");
        let m = map(
            &c,
            "s/th-7/data",
            br#"{"t": 215, "h": {"v": "40.6"}, "on": "ON", "ts": 1764756000123}"#,
            5.0,
        )
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("th-7"));
        assert!((m.time - 1_764_756_000.123).abs() < 1e-6);
        assert_eq!(m.values[0], (id("3303/0/5700"), Value::Float(21.5)));
        assert_eq!(m.values[1], (id("3304/0/5700"), Value::Int(41)));
        assert_eq!(m.values[2], (id("3342/0/5500"), Value::Bool(true)));
        let m = map(&c, "s/th-7/data", br#"{"t": 1}"#, 5.0).unwrap();
        assert_eq!((m.values.len(), m.misses, m.time), (1, 2, 5.0));
        assert_eq!(map(&c, "other", b"{}", 0.0), Err(MapError::NotOurs));
        assert!(matches!(
            map(&c, "s/x/data", b"{oops", 0.0),
            Err(MapError::NotJson(_))
        ));
    }

    #[test]
    fn plain_payloads_and_names_from_json() {
        let c = cfg("topic = \"meter/power\"\npayload = \"plain\"\n[[point]]\npath = \"3328/0/5700\"\ntype = \"float\"\n[[point]]\npath = \"3342/0/5500\"\ntopic = \"meter/relay\"\ntype = \"bool\"\n");
        let m = map(&c, "meter/power", b" 12.5\n", 1.0).unwrap();
        assert_eq!(m.values, vec![(id("3328/0/5700"), Value::Float(12.5))]);
        let m = map(&c, "meter/relay", b"off", 1.0).unwrap();
        assert_eq!(m.values, vec![(id("3342/0/5500"), Value::Bool(false))]);
        let c = cfg("topic = \"all/#\"\nname_json = \"/dev\"\n[[point]]\npath = \"3303/0/5700\"\njson = \"/t\"\ntype = \"float\"\n");
        assert_eq!(
            map(&c, "all/x", br#"{"dev": "b2", "t": 1}"#, 0.0)
                .unwrap()
                .name
                .as_deref(),
            Some("b2")
        );
        assert!(matches!(
            map(&c, "all/x", br#"{"t": 1}"#, 0.0),
            Err(MapError::NoName(_))
        ));
    }

    #[test]
    fn status_messages() {
        let c = cfg("topic = \"s/+/data\"\nname = \"{1}\"\nstatus_topic = \"s/{name}/status\"\n[[point]]\npath = \"3303/0/5700\"\njson = \"/t\"\ntype = \"float\"\n");
        assert_eq!(
            status(&c, "s/a1/status", b"offline"),
            Some((Some("a1".into()), false))
        );
        assert_eq!(
            status(&c, "s/a1/status", b"online\n"),
            Some((Some("a1".into()), true))
        );
        assert_eq!(status(&c, "s/a1/status", b"meh"), None);
        assert_eq!(subscriptions(&c), ["s/+/data", "s/+/status"]);
    }

    #[test]
    fn writes_undo_the_scale() {
        let c = cfg("topic = \"x\"\n[[point]]\npath = \"3311/0/5851\"\njson = \"/d\"\ntype = \"int\"\nscale = 0.5\nwrite_topic = \"x/set\"\n");
        let p = &c.points[0];
        assert_eq!(written(&Value::Int(50), p).unwrap(), "100");
        assert!(written(&Value::Text("x".into()), p).is_err());
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339("2026-12-03T10:00:00Z"), Some(1_796_292_000.0));
        assert_eq!(
            rfc3339("2026-12-03T11:00:00.5+01:00"),
            Some(1_796_292_000.5)
        );
        for bad in [
            "",
            "2026-12-03",
            "2026-13-03T10:00:00Z",
            "2026-12-03T10:00:00",
            "2026-12-03T10:00:00.Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_payload_maps_or_errs(payload: Vec<u8>, t in "[a-z/+]{0,12}") {
            let c = cfg("topic = \"s/+/data\"\nname = \"{1}\"\ntime_json = \"/ts\"\n[[point]]\npath = \"3303/0/5700\"\njson = \"/t\"\ntype = \"int\"\nscale = 1e300\n");
            let _ = map(&c, &t, &payload, 0.0);
            let _ = map(&c, "s/a/data", &payload, 0.0);
        }
    }
}
