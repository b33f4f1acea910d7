//! D-Bus property values read without trusting their types: a property that is
//! missing or not what ModemManager documents reads as `None`, never as a panic.

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

/// An interface's properties, as `GetAll` and `GetManagedObjects` give them.
pub type Props = HashMap<String, OwnedValue>;

/// The value inside any number of variant wrappings.
pub fn plain<'a, 'v>(v: &'a Value<'v>) -> &'a Value<'v> {
    match v {
        Value::Value(inner) => plain(inner),
        v => v,
    }
}

pub fn get<'a>(p: &'a Props, key: &str) -> Option<&'a Value<'static>> {
    p.get(key).map(|v| plain(v))
}

pub fn as_u32(v: &Value<'_>) -> Option<u32> {
    match plain(v) {
        Value::U32(n) => Some(*n),
        Value::U16(n) => Some(u32::from(*n)),
        Value::U8(n) => Some(u32::from(*n)),
        Value::I32(n) => u32::try_from(*n).ok(),
        Value::I64(n) => u32::try_from(*n).ok(),
        Value::U64(n) => u32::try_from(*n).ok(),
        _ => None,
    }
}

pub fn as_i32(v: &Value<'_>) -> Option<i32> {
    match plain(v) {
        Value::I32(n) => Some(*n),
        Value::U32(n) => i32::try_from(*n).ok(),
        Value::I16(n) => Some(i32::from(*n)),
        Value::I64(n) => i32::try_from(*n).ok(),
        _ => None,
    }
}

pub fn as_f64(v: &Value<'_>) -> Option<f64> {
    match plain(v) {
        Value::F64(x) if x.is_finite() => Some(*x),
        _ => None,
    }
}

pub fn as_str<'a>(v: &'a Value<'_>) -> Option<&'a str> {
    match plain(v) {
        Value::Str(s) => Some(s.as_str()),
        Value::ObjectPath(p) => Some(p.as_str()),
        _ => None,
    }
}

/// `ay`.
pub fn as_bytes(v: &Value<'_>) -> Option<Vec<u8>> {
    match plain(v) {
        Value::Array(a) => a
            .inner()
            .iter()
            .map(|e| match e {
                Value::U8(b) => Some(*b),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// `as`; elements of another type are left out.
pub fn as_strings(v: &Value<'_>) -> Vec<String> {
    match plain(v) {
        Value::Array(a) => a
            .inner()
            .iter()
            .filter_map(as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A structure's fields (`(ub)` and the like).
pub fn fields<'a, 'v>(v: &'a Value<'v>) -> Option<&'a [Value<'v>]> {
    match plain(v) {
        Value::Structure(s) => Some(s.fields()),
        _ => None,
    }
}

/// An `a{sv}` value, by key.
pub fn dict_get<'a, 'v>(v: &'a Value<'v>, key: &str) -> Option<&'a Value<'v>> {
    match plain(v) {
        Value::Dict(d) => d
            .iter()
            .find(|(k, _)| as_str(k) == Some(key))
            .map(|(_, v)| plain(v)),
        _ => None,
    }
}

pub fn prop_u32(p: &Props, key: &str) -> Option<u32> {
    get(p, key).and_then(as_u32)
}

pub fn prop_i32(p: &Props, key: &str) -> Option<i32> {
    get(p, key).and_then(as_i32)
}

/// A string property; an empty one is no value (ModemManager's "unknown").
pub fn prop_str(p: &Props, key: &str) -> Option<String> {
    get(p, key)
        .and_then(as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
pub(crate) mod test_values {
    //! Building values as they come off the bus, for the tests of the pure parts.
    use super::*;
    use zbus::zvariant::{Array, Dict, Signature, StructureBuilder};

    pub fn owned(v: Value<'static>) -> OwnedValue {
        OwnedValue::try_from(v).unwrap()
    }

    pub fn props(entries: Vec<(&str, Value<'static>)>) -> Props {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), owned(v)))
            .collect()
    }

    pub fn bytes(b: &[u8]) -> Value<'static> {
        Value::Array(Array::from(b.to_vec()))
    }

    pub fn strings(s: &[&str]) -> Value<'static> {
        Value::Array(Array::from(
            s.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ))
    }

    pub fn pair(n: u32, b: bool) -> Value<'static> {
        Value::Structure(
            StructureBuilder::new()
                .add_field(n)
                .add_field(b)
                .build()
                .unwrap(),
        )
    }

    /// `a{sv}`.
    pub fn asv(entries: Vec<(&str, Value<'static>)>) -> Value<'static> {
        let mut d = Dict::new(&Signature::Str, &Signature::Variant);
        for (k, v) in entries {
            d.append(Value::from(k.to_string()), Value::Value(Box::new(v)))
                .unwrap();
        }
        Value::Dict(d)
    }
}

#[cfg(test)]
mod tests {
    use super::test_values::*;
    use super::*;

    #[test]
    fn typed_reads() {
        let p = props(vec![
            ("u", Value::U32(7)),
            ("i", Value::I32(-1)),
            ("s", Value::from("  Fake Telecom ")),
            ("empty", Value::from("")),
            ("ay", bytes(&[1, 2, 3])),
            ("as", strings(&["+447700900123", "x"])),
            ("wrapped", Value::Value(Box::new(Value::U32(9)))),
            ("pair", pair(80, true)),
            ("d", asv(vec![("rssi", Value::F64(-71.0))])),
        ]);
        assert_eq!(prop_u32(&p, "u"), Some(7));
        assert_eq!(prop_u32(&p, "i"), None);
        assert_eq!(prop_i32(&p, "i"), Some(-1));
        assert_eq!(prop_i32(&p, "u"), Some(7));
        assert_eq!(prop_u32(&p, "wrapped"), Some(9));
        assert_eq!(prop_str(&p, "s").as_deref(), Some("Fake Telecom"));
        assert_eq!(prop_str(&p, "empty"), None);
        assert_eq!(prop_str(&p, "u"), None);
        assert_eq!(prop_str(&p, "missing"), None);
        assert_eq!(get(&p, "ay").and_then(as_bytes), Some(vec![1, 2, 3]));
        assert_eq!(get(&p, "as").and_then(as_bytes), None);
        assert_eq!(get(&p, "as").map(as_strings).unwrap().len(), 2);
        assert_eq!(get(&p, "u").map(as_strings), Some(vec![]));
        let f = get(&p, "pair").and_then(fields).unwrap();
        assert_eq!((as_u32(&f[0]), &f[1]), (Some(80), &Value::Bool(true)));
        let rssi = get(&p, "d").and_then(|d| dict_get(d, "rssi"));
        assert_eq!(rssi.and_then(as_f64), Some(-71.0));
        assert_eq!(get(&p, "d").and_then(|d| dict_get(d, "rsrp")), None);
        assert_eq!(as_f64(&Value::F64(f64::NAN)), None);
    }
}
