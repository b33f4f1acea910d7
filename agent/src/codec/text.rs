//! text/plain (0): one resource or resource instance.

use super::{malformed, CodecError, Record};
use crate::model::{DataType, Path, Value};
use base64::Engine;

pub fn encode(records: &[Record]) -> Result<Vec<u8>, CodecError> {
    let [(_, v)] = records else {
        return Err(CodecError::Unsupported(
            "text/plain carries exactly one resource value".into(),
        ));
    };
    Ok(match v {
        // 1.1: opaque as text/plain is base64.
        Value::Opaque(b) => base64::engine::general_purpose::STANDARD
            .encode(b)
            .into_bytes(),
        Value::Float(f) => format_float(*f).into_bytes(),
        other => other.to_string().into_bytes(),
    })
}

/// Shortest text that reads back to the same f64; integers keep a ".0" off.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

pub fn decode(
    base: &Path,
    payload: &[u8],
    types: &dyn Fn(&Path) -> Option<DataType>,
) -> Result<Vec<Record>, CodecError> {
    if base.len() < 3 {
        return malformed("text/plain is only for a single resource");
    }
    let Ok(s) = std::str::from_utf8(payload) else {
        return malformed("text/plain payload is not UTF-8");
    };
    let ty = types(base).unwrap_or(DataType::String);
    Ok(vec![(base.clone(), parse_typed(s, ty)?)])
}

pub(crate) fn parse_typed(s: &str, ty: DataType) -> Result<Value, CodecError> {
    let t = s.trim();
    let bad = || CodecError::Malformed(format!("{s:?} is not a valid {ty:?}"));
    Ok(match ty {
        DataType::Integer => Value::Integer(t.parse().map_err(|_| bad())?),
        DataType::Time => Value::Time(t.parse().map_err(|_| bad())?),
        DataType::UnsignedInteger => Value::Unsigned(t.parse().map_err(|_| bad())?),
        DataType::Float => {
            let f: f64 = t.parse().map_err(|_| bad())?;
            if !f.is_finite() {
                return Err(bad());
            }
            Value::Float(f)
        }
        DataType::Boolean => match t {
            "1" | "true" => Value::Boolean(true),
            "0" | "false" => Value::Boolean(false),
            _ => return Err(bad()),
        },
        DataType::ObjLnk => {
            let (o, i) = t.split_once(':').ok_or_else(bad)?;
            Value::ObjLnk(o.parse().map_err(|_| bad())?, i.parse().map_err(|_| bad())?)
        }
        DataType::Opaque => Value::Opaque(
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| bad())?,
        ),
        DataType::CoreLnk => Value::CoreLnk(s.to_string()),
        DataType::String | DataType::None => Value::String(s.to_string()),
    })
}
