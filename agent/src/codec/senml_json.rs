//! SenML JSON (110), RFC 8428 with LwM2M's `vlo`.

use super::senml::{self, Raw, RawValue};
use super::{malformed, CodecError, Record};
use crate::model::Path;
use base64::Engine;
use serde_json::{Map, Number, Value as J};

pub fn encode(
    base: &Path,
    records: &[Record],
    times: Option<&[f64]>,
) -> Result<Vec<u8>, CodecError> {
    let raws = senml::from_records(base, records, times);
    let arr: Vec<J> = raws
        .into_iter()
        .map(raw_to_json)
        .collect::<Result<_, _>>()?;
    serde_json::to_vec(&J::Array(arr)).map_err(|e| CodecError::Unsupported(e.to_string()))
}

fn raw_to_json(r: Raw) -> Result<J, CodecError> {
    let mut m = Map::new();
    if let Some(bn) = r.bn {
        m.insert("bn".into(), J::String(bn));
    }
    if let Some(bt) = r.bt {
        m.insert("bt".into(), num_f(bt)?);
    }
    if let Some(n) = r.n {
        m.insert("n".into(), J::String(n));
    }
    if let Some(t) = r.t {
        m.insert("t".into(), num_f(t)?);
    }
    match r.value {
        Some(RawValue::Int(i)) => m.insert("v".into(), J::Number(i.into())),
        Some(RawValue::Uint(u)) => m.insert("v".into(), J::Number(u.into())),
        Some(RawValue::Float(f)) => m.insert("v".into(), num_f(f)?),
        Some(RawValue::Str(s)) => m.insert("vs".into(), J::String(s)),
        Some(RawValue::Bool(b)) => m.insert("vb".into(), J::Bool(b)),
        Some(RawValue::Data(d)) => m.insert(
            "vd".into(),
            J::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)),
        ),
        Some(RawValue::ObjLnk(s)) => m.insert("vlo".into(), J::String(s)),
        None => None,
    };
    Ok(J::Object(m))
}

fn num_f(f: f64) -> Result<J, CodecError> {
    Number::from_f64(f)
        .map(J::Number)
        .ok_or_else(|| CodecError::Unsupported("NaN or infinity cannot be sent in JSON".into()))
}

/// base64url per RFC 8428, but servers also send the standard alphabet and padding.
pub(crate) fn decode_b64(s: &str) -> Result<Vec<u8>, CodecError> {
    let trimmed = s.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| CodecError::Malformed(format!("{s:?} is not base64")))
}

fn parse(payload: &[u8]) -> Result<Vec<Raw>, CodecError> {
    let j: J = serde_json::from_slice(payload)
        .map_err(|e| CodecError::Malformed(format!("SenML JSON: {e}")))?;
    let J::Array(items) = j else {
        return malformed("SenML JSON must be an array of records");
    };
    items.into_iter().map(json_to_raw).collect()
}

fn json_to_raw(item: J) -> Result<Raw, CodecError> {
    let J::Object(m) = item else {
        return malformed("SenML record must be an object");
    };
    let mut r = Raw::default();
    let mut values = 0;
    for (k, v) in m {
        let s = |v: J| match v {
            J::String(s) => Ok(s),
            _ => malformed(format!("SenML {k}: expected a string")),
        };
        let f = |v: &J| {
            v.as_f64()
                .ok_or_else(|| CodecError::Malformed(format!("SenML {k}: expected a number")))
        };
        match k.as_str() {
            "bn" => r.bn = Some(s(v)?),
            "bt" => r.bt = Some(f(&v)?),
            "n" => r.n = Some(s(v)?),
            "t" => r.t = Some(f(&v)?),
            "v" => {
                values += 1;
                r.value = Some(match &v {
                    J::Number(n) if n.is_i64() => RawValue::Int(n.as_i64().unwrap_or_default()),
                    J::Number(n) if n.is_u64() => RawValue::Uint(n.as_u64().unwrap_or_default()),
                    _ => RawValue::Float(f(&v)?),
                })
            }
            "vs" => {
                values += 1;
                r.value = Some(RawValue::Str(s(v)?))
            }
            "vb" => {
                values += 1;
                r.value = Some(RawValue::Bool(v.as_bool().ok_or_else(|| {
                    CodecError::Malformed("SenML vb: expected a boolean".into())
                })?))
            }
            "vd" => {
                values += 1;
                r.value = Some(RawValue::Data(decode_b64(&s(v)?)?))
            }
            "vlo" => {
                values += 1;
                r.value = Some(RawValue::ObjLnk(s(v)?))
            }
            // Unknown fields without the mandatory-to-understand "_" suffix are ignored (RFC 8428 4.4).
            other if other.ends_with('_') => {
                return malformed(format!("SenML field {other:?} must be understood"))
            }
            _ => {}
        }
    }
    if values > 1 {
        return malformed("SenML record with more than one value field");
    }
    Ok(r)
}

pub fn decode(base: Option<&Path>, payload: &[u8]) -> Result<Vec<Record>, CodecError> {
    senml::to_records(base, parse(payload)?)
}

pub fn decode_names(payload: &[u8]) -> Result<Vec<Path>, CodecError> {
    senml::names(parse(payload)?)
}
