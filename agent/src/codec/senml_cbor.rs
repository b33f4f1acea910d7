//! SenML CBOR (112), RFC 8428 section 6: integer labels, byte-string data.

use super::senml::{self, Raw, RawValue};
use super::{malformed, CodecError, Record};
use crate::model::Path;
use ciborium::value::{Integer, Value as C};

const BN: i64 = -2;
const BT: i64 = -3;
const N: i64 = 0;
const V: i64 = 2;
const VS: i64 = 3;
const VB: i64 = 4;
const T: i64 = 6;
const VD: i64 = 8;

pub fn encode(
    base: &Path,
    records: &[Record],
    times: Option<&[f64]>,
) -> Result<Vec<u8>, CodecError> {
    let raws = senml::from_records(base, records, times);
    let arr: Vec<C> = raws.into_iter().map(raw_to_cbor).collect();
    let mut out = Vec::new();
    ciborium::into_writer(&C::Array(arr), &mut out)
        .map_err(|e| CodecError::Unsupported(e.to_string()))?;
    Ok(out)
}

fn key(k: i64) -> C {
    C::Integer(k.into())
}

fn num(f: f64) -> C {
    // Whole numbers go as integers: smaller, and what other stacks send.
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        C::Integer((f as i64).into())
    } else {
        C::Float(f)
    }
}

fn raw_to_cbor(r: Raw) -> C {
    let mut m: Vec<(C, C)> = Vec::new();
    if let Some(bn) = r.bn {
        m.push((key(BN), C::Text(bn)));
    }
    if let Some(bt) = r.bt {
        m.push((key(BT), num(bt)));
    }
    if let Some(n) = r.n {
        m.push((key(N), C::Text(n)));
    }
    if let Some(t) = r.t {
        m.push((key(T), num(t)));
    }
    match r.value {
        Some(RawValue::Int(i)) => m.push((key(V), C::Integer(i.into()))),
        Some(RawValue::Uint(u)) => m.push((key(V), C::Integer(u.into()))),
        Some(RawValue::Float(f)) => m.push((key(V), C::Float(f))),
        Some(RawValue::Str(s)) => m.push((key(VS), C::Text(s))),
        Some(RawValue::Bool(b)) => m.push((key(VB), C::Bool(b))),
        Some(RawValue::Data(d)) => m.push((key(VD), C::Bytes(d))),
        Some(RawValue::ObjLnk(s)) => m.push((C::Text("vlo".into()), C::Text(s))),
        None => {}
    }
    C::Map(m)
}

fn parse(payload: &[u8]) -> Result<Vec<Raw>, CodecError> {
    let v: C = ciborium::from_reader(payload)
        .map_err(|e| CodecError::Malformed(format!("SenML CBOR: {e}")))?;
    let C::Array(items) = v else {
        return malformed("SenML CBOR must be an array of records");
    };
    items.into_iter().map(cbor_to_raw).collect()
}

fn as_f64(v: &C) -> Option<f64> {
    match v {
        C::Integer(i) => Some(i128::from(*i) as f64),
        C::Float(f) => Some(*f),
        _ => None,
    }
}

fn cbor_to_raw(item: C) -> Result<Raw, CodecError> {
    let C::Map(m) = item else {
        return malformed("SenML record must be a map");
    };
    let mut r = Raw::default();
    let mut values = 0;
    for (k, v) in m {
        let label: Option<i64> = match &k {
            C::Integer(i) => i64::try_from(*i).ok(),
            _ => None,
        };
        let text = |v: C, what: &str| match v {
            C::Text(s) => Ok(s),
            _ => malformed(format!("SenML {what}: expected text")),
        };
        let number = |v: &C, what: &str| {
            as_f64(v)
                .ok_or_else(|| CodecError::Malformed(format!("SenML {what}: expected a number")))
        };
        match (label, &k) {
            (Some(BN), _) => r.bn = Some(text(v, "bn")?),
            (Some(BT), _) => r.bt = Some(number(&v, "bt")?),
            (Some(N), _) => r.n = Some(text(v, "n")?),
            (Some(T), _) => r.t = Some(number(&v, "t")?),
            (Some(V), _) => {
                values += 1;
                r.value = Some(match v {
                    C::Integer(i) => int_value(i)?,
                    C::Float(f) => RawValue::Float(f),
                    _ => return malformed("SenML v: expected a number"),
                })
            }
            (Some(VS), _) => {
                values += 1;
                r.value = Some(RawValue::Str(text(v, "vs")?))
            }
            (Some(VB), _) => {
                values += 1;
                match v {
                    C::Bool(b) => r.value = Some(RawValue::Bool(b)),
                    _ => return malformed("SenML vb: expected a boolean"),
                }
            }
            (Some(VD), _) => {
                values += 1;
                match v {
                    C::Bytes(b) => r.value = Some(RawValue::Data(b)),
                    _ => return malformed("SenML vd: expected a byte string"),
                }
            }
            (None, C::Text(s)) if s == "vlo" => {
                values += 1;
                r.value = Some(RawValue::ObjLnk(text(v, "vlo")?))
            }
            (Some(l), _) if l < 0 && l != BN && l != BT => {
                // Negative labels other than base fields we do not know are ignorable,
                // except RFC 8428's base value/sum/unit/version, which would change meaning.
                if matches!(l, -1 | -4 | -5 | -6) {
                    return malformed(format!("SenML base field {l} is not supported"));
                }
            }
            _ => {}
        }
    }
    if values > 1 {
        return malformed("SenML record with more than one value field");
    }
    Ok(r)
}

fn int_value(i: Integer) -> Result<RawValue, CodecError> {
    if let Ok(x) = i64::try_from(i) {
        Ok(RawValue::Int(x))
    } else if let Ok(x) = u64::try_from(i) {
        Ok(RawValue::Uint(x))
    } else {
        malformed("SenML v: integer out of range")
    }
}

pub fn decode(base: Option<&Path>, payload: &[u8]) -> Result<Vec<Record>, CodecError> {
    senml::to_records(base, parse(payload)?)
}

pub fn decode_names(payload: &[u8]) -> Result<Vec<Path>, CodecError> {
    senml::names(parse(payload)?)
}
