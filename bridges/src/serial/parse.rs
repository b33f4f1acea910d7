//! Frames to resource values, without I/O: the checksum, which points a frame
//! feeds, their captures or fields, typed, scaled, and NMEA's formats.

use super::config::{Checksum, Format, PointConfig, SerialConfig, Source, ValueType};
use crate::device::{ResourceId, Value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("bad checksum")]
    Checksum,
    #[error("not text")]
    NotText,
}

/// NMEA 0183: `$GPGGA,...*47`, the XOR of everything between `$` and `*`.
pub fn nmea_ok(frame: &str) -> bool {
    let Some(body) = frame.strip_prefix('$').or_else(|| frame.strip_prefix('!')) else {
        return false;
    };
    let Some((data, sum)) = body.rsplit_once('*') else {
        return false;
    };
    let Ok(want) = u8::from_str_radix(sum.trim(), 16) else {
        return false;
    };
    sum.trim().len() == 2 && data.bytes().fold(0u8, |a, b| a ^ b) == want
}

/// The values a frame gives, and how many of the points it matched could not be read.
pub fn values(
    c: &SerialConfig,
    frame: &[u8],
) -> Result<(Vec<(ResourceId, Value)>, usize), FrameError> {
    let text = std::str::from_utf8(frame).map_err(|_| FrameError::NotText)?;
    let text = text.trim_end_matches(['\r', '\n']);
    if c.checksum == Checksum::Nmea && !nmea_ok(text) {
        return Err(FrameError::Checksum);
    }
    // The checksum is not part of any field.
    let body = match c.checksum {
        Checksum::Nmea => text.rsplit_once('*').map_or(text, |(d, _)| d),
        Checksum::None => text,
    };
    let mut out = Vec::new();
    let mut misses = 0;
    for p in &c.points {
        let Some(src) = &p.source else { continue };
        if let Some(m) = &p.matches {
            if !m.0.is_match(body) {
                continue;
            }
        }
        let raw: Option<(String, Option<String>)> = match src {
            Source::Capture { capture, with, .. } => p.regex.as_ref().and_then(|r| {
                let caps = r.0.captures(body)?;
                let get = |name: &str| {
                    match name.parse::<usize>() {
                        Ok(n) => caps.get(n),
                        Err(_) => caps.name(name),
                    }
                    .map(|m| m.as_str().to_string())
                };
                Some((get(capture)?, with.as_deref().and_then(get)))
            }),
            Source::Field { split, field, with } => {
                let fields: Vec<&str> = body.split(split.as_str()).collect();
                fields.get(*field).map(|v| {
                    (
                        v.to_string(),
                        with.and_then(|w| fields.get(w)).map(|s| s.to_string()),
                    )
                })
            }
        };
        match raw.and_then(|(v, w)| convert(&v, w.as_deref(), p)) {
            Some(v) => out.push((p.path, v)),
            None => misses += 1,
        }
    }
    Ok((out, misses))
}

fn convert(v: &str, with: Option<&str>, p: &PointConfig) -> Option<Value> {
    let v = v.trim();
    let number = match p.format {
        Format::Number => {
            if p.kind == ValueType::Text {
                return Some(Value::Text(v.to_string()));
            }
            if p.kind == ValueType::Bool {
                return Some(Value::Bool(match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "on" | "yes" | "a" => true,
                    "0" | "false" | "off" | "no" | "v" => false,
                    _ => return None,
                }));
            }
            v.parse::<f64>().ok()?
        }
        Format::NmeaCoordinate => nmea_coordinate(v, with?)?,
        Format::NmeaDatetime => nmea_datetime(v, with?)?,
    };
    let x = number * p.scale + p.offset;
    if !x.is_finite() {
        return None;
    }
    Some(match p.kind {
        ValueType::Float => Value::Float(x),
        ValueType::Int if x.abs() < 9.2e18 => Value::Int(x.round() as i64),
        ValueType::Bool => Value::Bool(x != 0.0),
        ValueType::Text => Value::Text(x.to_string()),
        ValueType::Int => return None,
    })
}

/// `4807.038` + `N` → 48.1173; `01131.000` + `W` → -11.5166.
pub fn nmea_coordinate(v: &str, hemisphere: &str) -> Option<f64> {
    let x: f64 = v.parse().ok()?;
    if !(0.0..=18_060.0).contains(&x) {
        return None;
    }
    let deg = (x / 100.0).floor();
    let min = x - deg * 100.0;
    if min >= 60.0 {
        return None;
    }
    let d = deg + min / 60.0;
    match hemisphere.trim() {
        "N" | "E" => Some(d),
        "S" | "W" => Some(-d),
        _ => None,
    }
}

/// `123519.00` + `230394` → Unix seconds of 1994-03-23 12:35:19 UTC.
pub fn nmea_datetime(time: &str, date: &str) -> Option<f64> {
    let (t, d) = (time.trim(), date.trim());
    if t.len() < 6 || d.len() != 6 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |s: &str, r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (h, mi, s) = (n(t, 0..2)?, n(t, 2..4)?, n(t, 4..6)?);
    let frac: f64 = match t.get(6..) {
        Some(f) if !f.is_empty() => format!("0{f}").parse().ok()?,
        _ => 0.0,
    };
    let (dd, mm, yy) = (n(d, 0..2)?, n(d, 2..4)?, n(d, 4..6)?);
    if h > 23 || mi > 59 || s > 60 || !(1..=12).contains(&mm) || !(1..=31).contains(&dd) {
        return None;
    }
    // Two-digit years: 80-99 are the 1900s (GPS began in 1980), the rest the 2000s.
    let y = if yy >= 80 { 1900 + yy } else { 2000 + yy };
    let y2 = if mm <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((mm + 9) % 12) + 2) / 5 + dd - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + s) as f64 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GPS: &str = r#"
tty = "/dev/null"
baud = 4800
checksum = "nmea"
time_point = "6/0/5"
[[point]]
path = "6/0/0"
match = "^\\$G.GGA"
field = 2
with = 3
type = "float"
format = "nmea-coordinate"
[[point]]
path = "6/0/1"
match = "^\\$G.GGA"
field = 4
with = 5
type = "float"
format = "nmea-coordinate"
[[point]]
path = "6/0/2"
match = "^\\$G.GGA"
field = 9
type = "float"
[[point]]
path = "6/0/6"
match = "^\\$G.RMC"
field = 7
type = "float"
scale = 0.514444
[[point]]
path = "6/0/5"
match = "^\\$G.RMC"
field = 1
with = 9
type = "int"
format = "nmea-datetime"
"#;

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    #[test]
    fn nmea_sentences_fill_location() {
        let c: SerialConfig = toml::from_str(GPS).unwrap();
        let gga = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47";
        assert!(nmea_ok(std::str::from_utf8(gga).unwrap()));
        let (v, misses) = values(&c, gga).unwrap();
        assert_eq!(misses, 0);
        let Value::Float(lat) = v[0].1 else { panic!() };
        assert!((lat - 48.1173).abs() < 1e-4, "{lat}");
        let Value::Float(lon) = v[1].1 else { panic!() };
        assert!((lon - 11.516_666).abs() < 1e-4, "{lon}");
        assert_eq!(v[2], (id("6/0/2"), Value::Float(545.4)));
        let rmc = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A";
        let (v, _) = values(&c, rmc).unwrap();
        let Value::Float(speed) = v[0].1 else {
            panic!()
        };
        assert!((speed - 11.523_545).abs() < 1e-3, "{speed}");
        assert_eq!(v[1], (id("6/0/5"), Value::Int(764_426_119)));
        // A damaged sentence is refused whole.
        let bad = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48";
        assert_eq!(values(&c, bad), Err(FrameError::Checksum));
    }

    #[test]
    fn regex_captures_with_names() {
        let c: SerialConfig = toml::from_str(
            "tty = \"/dev/null\"\npoll = \"MEAS?\\r\\n\"\n[[point]]\npath = \"3303/0/5700\"\nregex = 'T=(?P<t>-?[0-9.]+)'\ncapture = \"t\"\ntype = \"float\"\n[[point]]\npath = \"3304/0/5700\"\nregex = 'H=([0-9.]+)'\ntype = \"float\"\nscale = 0.5\n",
        )
        .unwrap();
        let (v, m) = values(&c, b"T=-3.5;H=40").unwrap();
        assert_eq!(
            v,
            vec![
                (id("3303/0/5700"), Value::Float(-3.5)),
                (id("3304/0/5700"), Value::Float(20.0))
            ]
        );
        assert_eq!(m, 0);
        let (v, m) = values(&c, b"T=abc").unwrap();
        assert!(v.is_empty() && m == 2);
        let e = toml::from_str::<SerialConfig>("tty = \"x\"\n[[point]]\npath = \"1/0/1\"\nregex = 'T=(.*)'\ncapture = \"nope\"\ntype = \"float\"\n").unwrap_err().to_string();
        assert!(e.contains("no capture \"nope\""), "{e}");
    }

    #[test]
    fn coordinates_and_dates() {
        assert_eq!(nmea_coordinate("4807.038", "X"), None);
        assert!((nmea_coordinate("3345.000", "S").unwrap() + 33.75).abs() < 1e-9);
        assert_eq!(nmea_coordinate("4875.0", "N"), None);
        assert_eq!(nmea_datetime("000000", "010180"), Some(315_532_800.0));
        assert_eq!(nmea_datetime("100000.50", "031226"), Some(1_796_292_000.5));
        assert_eq!(nmea_datetime("250000", "031226"), None);
        assert!(!nmea_ok("GPGGA,1*00") && !nmea_ok("$GPGGA,1") && !nmea_ok("$A*zz"));
    }

    proptest::proptest! {
        #[test]
        fn any_frame_is_judged_without_a_panic(frame: Vec<u8>) {
            let c: SerialConfig = toml::from_str(GPS).unwrap();
            let _ = values(&c, &frame);
        }
    }
}
