//! OMA LwM2M JSON (11543), spec 6.4.4: {"bn": "/3/0/", "e": [{"n": "0", "sv": "…"}]}.

use super::{malformed, CodecError, Record};
use crate::model::{DataType, Path, Value};
use base64::Engine;
use serde_json::{json, Map, Value as J};

pub fn encode(base: &Path, records: &[Record]) -> Result<Vec<u8>, CodecError> {
    let bn = if base.is_empty() && base.prefix.is_none() {
        "/".to_string()
    } else {
        format!("{base}/")
    };
    let mut entries = Vec::with_capacity(records.len());
    for (p, v) in records {
        let full = p.to_string();
        let n = full
            .strip_prefix(bn.trim_end_matches('/'))
            .unwrap_or(&full)
            .trim_start_matches('/')
            .to_string();
        let mut e = Map::new();
        if !n.is_empty() {
            e.insert("n".into(), J::String(n));
        }
        let (k, val) = match v {
            Value::Integer(i) | Value::Time(i) => ("v", json!(i)),
            Value::Unsigned(u) => ("v", json!(u)),
            Value::Float(f) => (
                "v",
                serde_json::Number::from_f64(*f)
                    .map(J::Number)
                    .ok_or_else(|| {
                        CodecError::Unsupported("NaN or infinity cannot be sent in JSON".into())
                    })?,
            ),
            Value::Boolean(b) => ("bv", json!(b)),
            Value::String(s) | Value::CoreLnk(s) => ("sv", json!(s)),
            Value::Opaque(d) => (
                "sv",
                json!(base64::engine::general_purpose::STANDARD.encode(d)),
            ),
            Value::ObjLnk(o, i) => ("ov", json!(format!("{o}:{i}"))),
        };
        e.insert(k.into(), val);
        entries.push(J::Object(e));
    }
    let doc = json!({ "bn": bn, "e": entries });
    serde_json::to_vec(&doc).map_err(|e| CodecError::Unsupported(e.to_string()))
}

pub fn decode(
    base: &Path,
    payload: &[u8],
    types: &dyn Fn(&Path) -> Option<DataType>,
) -> Result<Vec<Record>, CodecError> {
    let j: J = serde_json::from_slice(payload)
        .map_err(|e| CodecError::Malformed(format!("LwM2M JSON: {e}")))?;
    let J::Object(mut doc) = j else {
        return malformed("LwM2M JSON must be an object");
    };
    let bn = match doc.remove("bn") {
        Some(J::String(s)) => s,
        None => base.to_string(),
        Some(_) => return malformed("LwM2M JSON bn: expected a string"),
    };
    let Some(J::Array(entries)) = doc.remove("e") else {
        return malformed("LwM2M JSON needs an \"e\" array");
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let J::Object(e) = e else {
            return malformed("LwM2M JSON entry must be an object");
        };
        let n = match e.get("n") {
            Some(J::String(s)) => s.as_str(),
            None => "",
            Some(_) => return malformed("LwM2M JSON n: expected a string"),
        };
        let name = if n.is_empty() {
            bn.trim_end_matches('/').to_string()
        } else if bn.ends_with('/') {
            format!("{bn}{n}")
        } else {
            format!("{bn}/{n}")
        };
        let path = Path::parse(&name)
            .map_err(|e| CodecError::Malformed(format!("LwM2M JSON name {name:?}: {e}")))?;
        if !base.contains(&path) || path.len() < 3 {
            return malformed(format!("{path} is not a resource under the target {base}"));
        }
        let value =
            if let Some(v) = e.get("v") {
                match v {
                    J::Number(n) if n.is_i64() => Value::Integer(n.as_i64().unwrap_or_default()),
                    J::Number(n) if n.is_u64() => Value::Unsigned(n.as_u64().unwrap_or_default()),
                    J::Number(n) => Value::Float(n.as_f64().unwrap_or_default()),
                    _ => return malformed("LwM2M JSON v: expected a number"),
                }
            } else if let Some(v) = e.get("bv") {
                Value::Boolean(v.as_bool().ok_or_else(|| {
                    CodecError::Malformed("LwM2M JSON bv: expected a boolean".into())
                })?)
            } else if let Some(v) = e.get("sv") {
                let s = v.as_str().ok_or_else(|| {
                    CodecError::Malformed("LwM2M JSON sv: expected a string".into())
                })?;
                // Opaque travels as base64 in "sv" (spec 6.4.4).
                if types(&path) == Some(DataType::Opaque) {
                    Value::Opaque(super::senml_json::decode_b64(s)?)
                } else {
                    Value::String(s.to_string())
                }
            } else if let Some(v) = e.get("ov") {
                let s = v.as_str().unwrap_or("");
                match s
                    .split_once(':')
                    .and_then(|(o, i)| Some((o.parse().ok()?, i.parse().ok()?)))
                {
                    Some((o, i)) => Value::ObjLnk(o, i),
                    None => {
                        return malformed(format!("LwM2M JSON ov {s:?} is not \"object:instance\""))
                    }
                }
            } else {
                return malformed(format!("{path}: entry without a value"));
            };
        out.push((path, value));
    }
    Ok(out)
}
