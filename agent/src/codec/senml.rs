//! The SenML record model shared by the JSON (110) and CBOR (112) codecs, and
//! LwM2M's rules for it: names are paths (bn + n), times are bt + t.

use super::{malformed, CodecError, Record};
use crate::model::{Path, Value};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Raw {
    pub bn: Option<String>,
    pub bt: Option<f64>,
    pub n: Option<String>,
    pub t: Option<f64>,
    pub value: Option<RawValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Bool(bool),
    Data(Vec<u8>),
    ObjLnk(String),
}

/// A resolved record: full path, value (None for name-only records), absolute time.
pub type Resolved = (Path, Option<Value>, Option<f64>);

/// Resolves base names and base times.
pub fn resolve(raws: Vec<Raw>) -> Result<Vec<Resolved>, CodecError> {
    let mut bn = String::new();
    let mut bt = 0.0;
    let mut out = Vec::with_capacity(raws.len());
    for r in raws {
        if let Some(b) = r.bn {
            bn = b;
        }
        if let Some(t) = r.bt {
            bt = t;
        }
        let name = format!("{bn}{}", r.n.as_deref().unwrap_or(""));
        if name.is_empty() {
            return malformed("SenML record without a name");
        }
        let path = Path::parse(&name)
            .map_err(|e| CodecError::Malformed(format!("SenML name {name:?}: {e}")))?;
        let value = match r.value {
            None => None,
            Some(RawValue::Int(i)) => Some(Value::Integer(i)),
            Some(RawValue::Uint(u)) => Some(Value::Unsigned(u)),
            Some(RawValue::Float(f)) => Some(Value::Float(f)),
            Some(RawValue::Str(s)) => Some(Value::String(s)),
            Some(RawValue::Bool(b)) => Some(Value::Boolean(b)),
            Some(RawValue::Data(d)) => Some(Value::Opaque(d)),
            Some(RawValue::ObjLnk(s)) => {
                let parsed = s
                    .split_once(':')
                    .and_then(|(o, i)| Some(Value::ObjLnk(o.parse().ok()?, i.parse().ok()?)));
                match parsed {
                    Some(v) => Some(v),
                    None => return malformed(format!("vlo {s:?} is not \"object:instance\"")),
                }
            }
        };
        let t = r.t.map(|t| bt + t).or(r.bt.map(|_| bt));
        out.push((path, value, t));
    }
    Ok(out)
}

/// Records written to `base` (None: anywhere, as in Write-Composite): every one
/// must have a value and lie under `base`.
pub fn to_records(base: Option<&Path>, raws: Vec<Raw>) -> Result<Vec<Record>, CodecError> {
    resolve(raws)?
        .into_iter()
        .map(|(p, v, _)| {
            if base.is_some_and(|b| !b.contains(&p)) {
                return malformed(format!("{p} is outside the target"));
            }
            if p.len() < 3 {
                return malformed(format!("{p} is not a resource"));
            }
            match v {
                Some(v) => Ok((p, v)),
                None => malformed(format!("{p}: record without a value")),
            }
        })
        .collect()
}

pub fn names(raws: Vec<Raw>) -> Result<Vec<Path>, CodecError> {
    Ok(resolve(raws)?.into_iter().map(|(p, _, _)| p).collect())
}

/// Builds records with a base name (the request path) and optional base time.
pub fn from_records(base: &Path, records: &[Record], times: Option<&[f64]>) -> Vec<Raw> {
    let base_str = if base.is_empty() && base.prefix.is_none() {
        String::new()
    } else {
        base.to_string()
    };
    let bt = times.and_then(|t| t.first().copied());
    records
        .iter()
        .enumerate()
        .map(|(i, (p, v))| {
            let full = p.to_string();
            let (bn, n) = if i == 0 {
                if base_str.is_empty() {
                    (None, Some(full))
                } else if full == base_str {
                    (Some(base_str.clone()), None)
                } else {
                    let rest = full.strip_prefix(&base_str).unwrap_or(&full);
                    (
                        Some(format!("{base_str}/")),
                        Some(rest.trim_start_matches('/').to_string()),
                    )
                }
            } else if base_str.is_empty() {
                (None, Some(full))
            } else if full == base_str {
                (None, None)
            } else {
                let rest = full.strip_prefix(&base_str).unwrap_or(&full);
                (None, Some(rest.trim_start_matches('/').to_string()))
            };
            // The first record's bn must make later names resolve: when it was the
            // bare base (single resource) there is only one record anyway.
            let t = match (times, bt) {
                (Some(ts), Some(b)) => ts.get(i).map(|t| t - b).filter(|d| *d != 0.0),
                _ => None,
            };
            Raw {
                bn,
                bt: if i == 0 { bt } else { None },
                n,
                t,
                value: Some(match v {
                    Value::Integer(x) | Value::Time(x) => RawValue::Int(*x),
                    Value::Unsigned(x) => RawValue::Uint(*x),
                    Value::Float(x) => RawValue::Float(*x),
                    Value::Boolean(b) => RawValue::Bool(*b),
                    Value::String(s) | Value::CoreLnk(s) => RawValue::Str(s.clone()),
                    Value::Opaque(d) => RawValue::Data(d.clone()),
                    Value::ObjLnk(o, i) => RawValue::ObjLnk(format!("{o}:{i}")),
                }),
            }
        })
        .collect()
}
