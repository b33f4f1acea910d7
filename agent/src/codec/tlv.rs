//! OMA LwM2M TLV (11542), spec 6.4.3.

use super::{malformed, CodecError, Record};
use crate::model::{DataType, Path, Value};

const OBJECT_INSTANCE: u8 = 0b00;
const RESOURCE_INSTANCE: u8 = 0b01;
const MULTIPLE_RESOURCE: u8 = 0b10;
const RESOURCE: u8 = 0b11;

/// Largest length the 24-bit length field can express.
const MAX_LEN: usize = 0xFF_FFFF;

fn header(out: &mut Vec<u8>, kind: u8, id: u16, len: usize) -> Result<(), CodecError> {
    if len > MAX_LEN {
        return Err(CodecError::Unsupported(
            "TLV value longer than 16 MiB".into(),
        ));
    }
    let mut t = kind << 6;
    if id > 0xFF {
        t |= 0b0010_0000;
    }
    let len_bytes: &[u8] = &(len as u32).to_be_bytes();
    let len_field: &[u8] = if len < 8 {
        t |= len as u8;
        &[]
    } else if len <= 0xFF {
        t |= 0b01 << 3;
        &len_bytes[3..]
    } else if len <= 0xFFFF {
        t |= 0b10 << 3;
        &len_bytes[2..]
    } else {
        t |= 0b11 << 3;
        &len_bytes[1..]
    };
    out.push(t);
    if id > 0xFF {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    out.extend_from_slice(len_field);
    Ok(())
}

fn put(out: &mut Vec<u8>, kind: u8, id: u16, body: &[u8]) -> Result<(), CodecError> {
    header(out, kind, id, body.len())?;
    out.extend_from_slice(body);
    Ok(())
}

fn int_bytes(i: i64) -> Vec<u8> {
    if let Ok(v) = i8::try_from(i) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i16::try_from(i) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i32::try_from(i) {
        v.to_be_bytes().to_vec()
    } else {
        i.to_be_bytes().to_vec()
    }
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Integer(i) | Value::Time(i) => int_bytes(*i),
        Value::Unsigned(u) => {
            if *u <= 0xFF {
                vec![*u as u8]
            } else if *u <= 0xFFFF {
                (*u as u16).to_be_bytes().to_vec()
            } else if *u <= 0xFFFF_FFFF {
                (*u as u32).to_be_bytes().to_vec()
            } else {
                u.to_be_bytes().to_vec()
            }
        }
        Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f || f.is_nan() {
                narrow.to_be_bytes().to_vec()
            } else {
                f.to_be_bytes().to_vec()
            }
        }
        Value::Boolean(b) => vec![u8::from(*b)],
        Value::String(s) | Value::CoreLnk(s) => s.as_bytes().to_vec(),
        Value::Opaque(b) => b.clone(),
        Value::ObjLnk(o, i) => {
            let mut b = o.to_be_bytes().to_vec();
            b.extend_from_slice(&i.to_be_bytes());
            b
        }
    }
}

/// Encodes the resources of one instance (paths of 3 or 4 ids, all in that instance).
fn encode_resources(out: &mut Vec<u8>, records: &[&Record]) -> Result<(), CodecError> {
    let mut i = 0;
    while i < records.len() {
        let (p, v) = records[i];
        let rid = p.resource().unwrap_or(0);
        if p.len() == 3 {
            put(out, RESOURCE, rid, &value_bytes(v))?;
            i += 1;
            continue;
        }
        let mut body = Vec::new();
        while i < records.len() && records[i].0.len() == 4 && records[i].0.resource() == Some(rid) {
            let (rp, rv) = records[i];
            put(
                &mut body,
                RESOURCE_INSTANCE,
                rp.resource_instance().unwrap_or(0),
                &value_bytes(rv),
            )?;
            i += 1;
        }
        put(out, MULTIPLE_RESOURCE, rid, &body)?;
    }
    Ok(())
}

pub fn encode(base: &Path, records: &[Record]) -> Result<Vec<u8>, CodecError> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    match base.len() {
        0 => {
            return Err(CodecError::Unsupported(
                "TLV cannot carry several objects".into(),
            ))
        }
        1 => {
            let mut i = 0;
            while i < sorted.len() {
                let inst = sorted[i].0.instance().unwrap_or(0);
                let start = i;
                while i < sorted.len() && sorted[i].0.instance() == Some(inst) {
                    i += 1;
                }
                let mut body = Vec::new();
                encode_resources(&mut body, &sorted[start..i])?;
                put(&mut out, OBJECT_INSTANCE, inst, &body)?;
            }
        }
        2 | 3 => encode_resources(&mut out, &sorted)?,
        _ => match sorted.as_slice() {
            [(p, v)] => put(
                &mut out,
                RESOURCE_INSTANCE,
                p.resource_instance().unwrap_or(0),
                &value_bytes(v),
            )?,
            _ => {
                return Err(CodecError::Unsupported(
                    "one resource instance expected".into(),
                ))
            }
        },
    }
    Ok(out)
}

#[derive(Debug)]
struct Tlv<'a> {
    kind: u8,
    id: u16,
    body: &'a [u8],
}

fn parse_all(mut buf: &[u8]) -> Result<Vec<Tlv<'_>>, CodecError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let t = buf[0];
        let mut pos = 1;
        let id_len = if t & 0b0010_0000 != 0 { 2 } else { 1 };
        let Some(id_bytes) = buf.get(pos..pos + id_len) else {
            return malformed("TLV truncated in its identifier");
        };
        let id = if id_len == 2 {
            u16::from_be_bytes([id_bytes[0], id_bytes[1]])
        } else {
            u16::from(id_bytes[0])
        };
        pos += id_len;
        let len_len = usize::from((t >> 3) & 0b11);
        let len = if len_len == 0 {
            usize::from(t & 0b111)
        } else {
            let Some(lb) = buf.get(pos..pos + len_len) else {
                return malformed("TLV truncated in its length");
            };
            pos += len_len;
            lb.iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let Some(body) = buf.get(pos..pos + len) else {
            return malformed(format!("TLV length {len} runs past the payload"));
        };
        if id == 0xFFFF {
            return malformed("TLV identifier 65535 is reserved");
        }
        out.push(Tlv {
            kind: t >> 6,
            id,
            body,
        });
        buf = &buf[pos + len..];
    }
    Ok(out)
}

pub(crate) fn decode_value(bytes: &[u8], ty: DataType, path: &Path) -> Result<Value, CodecError> {
    let bad = |what: &str| CodecError::Malformed(format!("{path}: {what}"));
    let int = |b: &[u8]| -> Result<i64, CodecError> {
        Ok(match b.len() {
            1 => i64::from(b[0] as i8),
            2 => i64::from(i16::from_be_bytes([b[0], b[1]])),
            4 => i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            8 => i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            n => {
                return Err(bad(&format!(
                    "integer of {n} bytes (1, 2, 4 or 8 expected)"
                )))
            }
        })
    };
    Ok(match ty {
        DataType::Integer => Value::Integer(int(bytes)?),
        DataType::Time => Value::Time(int(bytes)?),
        DataType::UnsignedInteger => {
            if !matches!(bytes.len(), 1 | 2 | 4 | 8) {
                return Err(bad("unsigned integer of 1, 2, 4 or 8 bytes expected"));
            }
            Value::Unsigned(bytes.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
        }
        DataType::Float => match bytes.len() {
            4 => Value::Float(f64::from(f32::from_be_bytes([
                bytes[0], bytes[1], bytes[2], bytes[3],
            ]))),
            8 => Value::Float(f64::from_be_bytes([
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            ])),
            n => return Err(bad(&format!("float of {n} bytes (4 or 8 expected)"))),
        },
        DataType::Boolean => match bytes {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => return Err(bad("boolean must be one byte 0 or 1")),
        },
        DataType::String | DataType::CoreLnk => {
            let s = std::str::from_utf8(bytes)
                .map_err(|_| bad("string is not UTF-8"))?
                .to_string();
            if ty == DataType::CoreLnk {
                Value::CoreLnk(s)
            } else {
                Value::String(s)
            }
        }
        DataType::ObjLnk => match bytes {
            [a, b, c, d] => {
                Value::ObjLnk(u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))
            }
            _ => return Err(bad("object link must be 4 bytes")),
        },
        DataType::Opaque | DataType::None => Value::Opaque(bytes.to_vec()),
    })
}

fn decode_resource(
    t: &Tlv<'_>,
    inst_path: &Path,
    types: &dyn Fn(&Path) -> Option<DataType>,
    out: &mut Vec<Record>,
) -> Result<(), CodecError> {
    let rpath = inst_path.child(t.id);
    match t.kind {
        RESOURCE => {
            let ty = types(&rpath).unwrap_or(DataType::Opaque);
            out.push((rpath.clone(), decode_value(t.body, ty, &rpath)?));
        }
        MULTIPLE_RESOURCE => {
            for ri in parse_all(t.body)? {
                if ri.kind != RESOURCE_INSTANCE {
                    return malformed(format!(
                        "{rpath}: a multiple resource holds only resource instances"
                    ));
                }
                let ripath = rpath.child(ri.id);
                let ty = types(&ripath).unwrap_or(DataType::Opaque);
                out.push((ripath.clone(), decode_value(ri.body, ty, &ripath)?));
            }
        }
        _ => {
            return malformed(format!(
                "{inst_path}: expected resources, got an instance TLV"
            ))
        }
    }
    Ok(())
}

/// True when the payload's first TLV is an Object Instance (Create with an instance id).
pub fn starts_with_instance(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b >> 6 == OBJECT_INSTANCE)
}

pub fn decode(
    base: &Path,
    payload: &[u8],
    types: &dyn Fn(&Path) -> Option<DataType>,
) -> Result<Vec<Record>, CodecError> {
    let tlvs = parse_all(payload)?;
    let mut out = Vec::new();
    match base.len() {
        0 => return malformed("TLV cannot be written to the root"),
        1 => {
            for t in &tlvs {
                if t.kind != OBJECT_INSTANCE {
                    return malformed(format!("{base}: expected object instances"));
                }
                let ipath = base.child(t.id);
                for r in parse_all(t.body)? {
                    decode_resource(&r, &ipath, types, &mut out)?;
                }
            }
        }
        2 => {
            // Some servers wrap an instance write in its Object Instance TLV.
            if let [t] = tlvs.as_slice() {
                if t.kind == OBJECT_INSTANCE {
                    if Some(t.id) != base.instance() {
                        return malformed(format!("{base}: payload is for instance {}", t.id));
                    }
                    for r in parse_all(t.body)? {
                        decode_resource(&r, base, types, &mut out)?;
                    }
                    return Ok(out);
                }
            }
            for t in &tlvs {
                decode_resource(t, base, types, &mut out)?;
            }
        }
        3 => {
            for t in &tlvs {
                if Some(t.id) != base.resource() {
                    return malformed(format!("{base}: payload is for resource {}", t.id));
                }
                decode_resource(t, &base.parent(), types, &mut out)?;
            }
        }
        _ => {
            for t in &tlvs {
                if t.kind != RESOURCE_INSTANCE || Some(t.id) != base.resource_instance() {
                    return malformed(format!(
                        "{base}: expected resource instance {:?}",
                        base.resource_instance()
                    ));
                }
                let ty = types(base).unwrap_or(DataType::Opaque);
                out.push((base.clone(), decode_value(t.body, ty, base)?));
            }
        }
    }
    Ok(out)
}
