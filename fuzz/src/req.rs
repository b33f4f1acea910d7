//! CoAP requests from fuzz input: a method, a path over real object, instance and
//! resource ids (sometimes behind an end device's prefix), the options an LwM2M
//! server sends (Observe, Block1/Block2, Content-Format, Accept, Write-Attributes
//! in Uri-Query) and a payload encoded in the declared format by the agent's own
//! encoder, now and then damaged so that the decoders' checks are reached too.

use arbitrary::{Result, Unstructured};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use lwgate::coap::block::BlockOpt;
use lwgate::coap::message;
use lwgate::codec::{self, Format, Record};
use lwgate::model::{DataType, Path, Registry, Value};

/// Objects a path names: the built-in ones, the IPSO ones of the end device and
/// of the gateway's own tree, and one nobody defines.
pub const OBJECTS: [u16; 13] = [0, 1, 2, 3, 4, 5, 6, 9, 25, 3303, 3311, 3342, 4242];
/// The end device's prefix, and one no device has.
pub const PREFIXES: [&str; 2] = ["m1", "nodev"];
const FORMATS: [Format; 7] = [
    Format::Text,
    Format::Opaque,
    Format::Tlv,
    Format::SenmlJson,
    Format::SenmlCbor,
    Format::LwJson,
    Format::Link,
];
const TYPES: [DataType; 9] = [
    DataType::Integer,
    DataType::UnsignedInteger,
    DataType::Float,
    DataType::Boolean,
    DataType::String,
    DataType::Opaque,
    DataType::Time,
    DataType::ObjLnk,
    DataType::CoreLnk,
];
/// Strings the objects give meaning to: URIs (/0/x/0, /5/0/1, /9/x/3), bindings,
/// numbers, versions, time zones, links.
const STRINGS: [&str; 16] = [
    "",
    "coap://127.0.0.1:5683",
    "coaps://[::1]:5684",
    "coap://h",
    "http://127.0.0.1:8080/fw.bin",
    "https://h/p.bin#sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "coap://h/fw?sha256=00",
    "U",
    "UQ",
    "UQS",
    "+447700900123",
    "1.0",
    "Europe/Berlin",
    "+02:00",
    "</3/0>,</1/0>",
    "pkg",
];
/// Notification attributes (Write-Attributes, 5.1.2 / 7.3).
const ATTRS: [&str; 10] = [
    "pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "con", "hqmax", "edge",
];

/// A path of any depth, mostly over ids the registry defines.
pub fn path(u: &mut Unstructured, reg: &Registry, prefixed: bool) -> Result<Path> {
    let prefix = if prefixed && u.ratio(1, 4)? {
        Some(*u.choose(&PREFIXES)?)
    } else {
        None
    };
    let depth = u.int_in_range(0..=4)?;
    let obj = if u.ratio(1, 32)? {
        u.arbitrary()?
    } else {
        *u.choose(&OBJECTS)?
    };
    let inst = instance_id(u)?;
    let res = resource_id(u, reg, obj)?;
    let ri = u.int_in_range(0..=2)?;
    let ids = [obj, inst, res, ri];
    Ok(Path::with_prefix(prefix, &ids[..depth]))
}

fn instance_id(u: &mut Unstructured) -> Result<u16> {
    if u.ratio(1, 32)? {
        u.arbitrary()
    } else {
        u.int_in_range(0..=2)
    }
}

fn resource_id(u: &mut Unstructured, reg: &Registry, obj: u16) -> Result<u16> {
    match reg.get(obj) {
        Some(def) if !def.resources.is_empty() && !u.ratio(1, 16)? => {
            let i = u.choose_index(def.resources.len())?;
            Ok(def.resources.keys().nth(i).copied().unwrap_or(0))
        }
        _ => u.int_in_range(0..=30),
    }
}

fn int(u: &mut Unstructured) -> Result<i64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.int_in_range(-1..=1)?,
        1 => u.int_in_range(0..=600)?,
        2 => u.arbitrary::<i32>()?.into(),
        _ => u.arbitrary()?,
    })
}

fn text(u: &mut Unstructured) -> Result<String> {
    if u.ratio(3, 4)? {
        Ok(u.choose(&STRINGS)?.to_string())
    } else {
        let s: &str = u.arbitrary()?;
        Ok(s.chars().take(80).collect())
    }
}

/// A value of the type, mostly of the sizes and contents devices use.
pub fn value(u: &mut Unstructured, ty: DataType) -> Result<Value> {
    Ok(match ty {
        DataType::Integer => Value::Integer(int(u)?),
        DataType::UnsignedInteger => Value::Unsigned(int(u)?.unsigned_abs()),
        DataType::Float => Value::Float(if u.ratio(1, 4)? {
            u.arbitrary()?
        } else {
            int(u)? as f64 / 4.0
        }),
        DataType::Boolean => Value::Boolean(u.arbitrary()?),
        DataType::String => Value::String(text(u)?),
        DataType::Opaque => {
            let n = u.int_in_range(0..=64)?;
            Value::Opaque(u.bytes(n)?.to_vec())
        }
        DataType::Time => Value::Time(int(u)?),
        DataType::ObjLnk => Value::ObjLnk(u.int_in_range(0..=4)?, instance_id(u)?),
        DataType::CoreLnk => Value::CoreLnk(text(u)?),
        DataType::None => Value::String(String::new()),
    })
}

/// The record of one resource (or resource instance) of `obj`/`inst`, typed as
/// the registry says (any type when it does not know the resource).
fn record(
    u: &mut Unstructured,
    reg: &Registry,
    prefix: Option<&str>,
    obj: u16,
    inst: u16,
    res: Option<u16>,
    ri: Option<u16>,
) -> Result<Record> {
    let res = match res {
        Some(r) => r,
        None => resource_id(u, reg, obj)?,
    };
    let def = reg.get(obj).and_then(|d| d.resource(res));
    let ty = match def {
        Some(d) if !u.ratio(1, 16)? => d.data_type,
        _ => *u.choose(&TYPES)?,
    };
    let mut ids = vec![obj, inst, res];
    match ri {
        Some(ri) => ids.push(ri),
        None if def.is_some_and(|d| d.multiple) || u.ratio(1, 16)? => {
            ids.push(u.int_in_range(0..=3)?)
        }
        None => {}
    }
    Ok((Path::with_prefix(prefix, &ids), value(u, ty)?))
}

/// Records under `base` (absolute ones, for a composite write, at the root).
pub fn records(u: &mut Unstructured, reg: &Registry, base: &Path) -> Result<Vec<Record>> {
    let prefix = base.prefix.as_deref();
    let n = match base.len() {
        4 => 1,
        3 => u.int_in_range(1..=3)?,
        _ => u.int_in_range(0..=6)?,
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = match base.object() {
            None => {
                let p = path(u, reg, true)?;
                let obj = p.object().unwrap_or(3);
                let inst = p.instance().unwrap_or(0);
                record(u, reg, p.prefix.as_deref(), obj, inst, p.resource(), None)?
            }
            Some(obj) => {
                let inst = match base.instance() {
                    Some(i) => i,
                    None => instance_id(u)?,
                };
                record(
                    u,
                    reg,
                    prefix,
                    obj,
                    inst,
                    base.resource(),
                    base.resource_instance(),
                )?
            }
        };
        out.push(r);
    }
    // Encoders expect each path once, in order (TLV nests by it).
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// Changes a byte, cuts the end or inserts bytes, once in a while.
pub fn damage(u: &mut Unstructured, b: &mut Vec<u8>) -> Result<()> {
    if !u.ratio(1, 8)? {
        return Ok(());
    }
    match u.int_in_range(0..=2)? {
        0 if !b.is_empty() => {
            let i = u.choose_index(b.len())?;
            b[i] = u.arbitrary()?;
        }
        1 if !b.is_empty() => {
            let n = u.choose_index(b.len())?;
            b.truncate(n);
        }
        _ => {
            let i = u.int_in_range(0..=b.len())?;
            let n = u.int_in_range(1..=8)?;
            let extra = u.bytes(n)?.to_vec();
            b.splice(i..i, extra);
        }
    }
    Ok(())
}

/// A body for a write at `base` in some format, and the Content-Format said.
pub fn body(u: &mut Unstructured, reg: &Registry, base: &Path) -> Result<(Option<u16>, Vec<u8>)> {
    let f = if base.is_empty() {
        *u.choose(&[Format::SenmlJson, Format::SenmlCbor])?
    } else {
        *u.choose(&FORMATS)?
    };
    let recs = records(u, reg, base)?;
    let encoded = if base.is_empty() {
        codec::encode_absolute(f, &recs, None)
    } else {
        codec::encode(f, base, &recs)
    };
    let mut bytes = match encoded {
        Ok(b) => b,
        Err(_) => {
            let n = u.int_in_range(0..=32)?;
            u.bytes(n)?.to_vec()
        }
    };
    damage(u, &mut bytes)?;
    let cf = match u.int_in_range(0..=15)? {
        0 => None,
        1 => Some(u.arbitrary()?),
        2 => Some(1542), // the pre-registration TLV number of 1.0-era servers
        _ => Some(f.number()),
    };
    Ok((cf, bytes))
}

/// The paths of a Read- or Observe-Composite, as SenML JSON or CBOR names.
fn composite_paths(u: &mut Unstructured, reg: &Registry) -> Result<(u16, Vec<u8>)> {
    let n = u.int_in_range(0..=4)?;
    let mut paths = Vec::with_capacity(n);
    for _ in 0..n {
        paths.push(path(u, reg, true)?);
    }
    if u.arbitrary()? {
        let names: Vec<String> = paths.iter().map(|p| format!("{{\"n\":\"{p}\"}}")).collect();
        let mut b = format!("[{}]", names.join(",")).into_bytes();
        damage(u, &mut b)?;
        Ok((Format::SenmlJson.number(), b))
    } else {
        let recs: Vec<Record> = paths
            .into_iter()
            .map(|p| (p, Value::Boolean(true)))
            .collect();
        let mut b = codec::encode_absolute(Format::SenmlCbor, &recs, None).unwrap_or_default();
        damage(u, &mut b)?;
        Ok((Format::SenmlCbor.number(), b))
    }
}

fn attr_query(u: &mut Unstructured) -> Result<String> {
    let name = if u.ratio(7, 8)? {
        u.choose(&ATTRS)?.to_string()
    } else {
        text(u)?
    };
    Ok(match u.int_in_range(0..=5)? {
        0 => name,
        1 => format!("{name}={}", int(u)?),
        2 => format!("{name}={}", u.int_in_range(0..=120)?),
        3 => format!("{name}={}.{}", int(u)?, u.int_in_range(0..=99)?),
        4 => format!("{name}={}", u.int_in_range(0..=1)?),
        _ => format!("{name}={}", text(u)?),
    })
}

/// Execute arguments (5.4.5): `0='text',1`, sometimes not quite.
fn exec_args(u: &mut Unstructured) -> Result<Vec<u8>> {
    let n = u.int_in_range(0..=3)?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let d = u.int_in_range(0..=9)?;
        args.push(if u.arbitrary()? {
            format!("{d}='{}'", text(u)?)
        } else {
            d.to_string()
        });
    }
    let mut b = args.join(",").into_bytes();
    damage(u, &mut b)?;
    Ok(b)
}

fn block(u: &mut Unstructured) -> Result<BlockOpt> {
    Ok(BlockOpt {
        num: if u.ratio(1, 16)? {
            u.arbitrary()?
        } else {
            u.int_in_range(0..=4)?
        },
        more: u.arbitrary()?,
        szx: u.int_in_range(0..=7)?,
    })
}

fn set_path(p: &mut Packet, path: &Path) {
    for s in path.prefix.iter() {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    for id in path.ids() {
        p.add_option(CoapOption::UriPath, id.to_string().into_bytes());
    }
}

/// One request a server might send: Read, Discover, Write (replace or partial
/// update), Write-Attributes, Execute, Create, Delete, Observe and its
/// cancellation, Read-, Observe- and Write-Composite, or a method nobody uses.
pub fn request(u: &mut Unstructured, reg: &Registry) -> Result<Packet> {
    let mut p = Packet::new();
    let kind = u.int_in_range(0..=13)?;
    let path = path(u, reg, true)?;
    let method = match kind {
        0 | 1 | 8 | 9 => RequestType::Get,
        2 | 4 => RequestType::Put,
        3 | 5 | 6 => RequestType::Post,
        7 => RequestType::Delete,
        10 | 11 => RequestType::Fetch,
        12 => RequestType::IPatch,
        _ => *u.choose(&[RequestType::Patch, RequestType::UnKnown, RequestType::Fetch])?,
    };
    p.header.code = MessageClass::Request(method);
    p.header.set_type(if u.ratio(7, 8)? {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    let tkl = u.int_in_range(0..=8)?;
    p.set_token(u.bytes(tkl)?.to_vec());
    match kind {
        10..=12 => {} // composite operations are on the root
        6 => set_path(
            &mut p,
            &Path::with_prefix(path.prefix.as_deref(), &path.ids()[..path.len().min(1)]),
        ),
        _ => set_path(&mut p, &path),
    }
    if kind == 8 || kind == 11 {
        message::set_uint(&mut p, CoapOption::Observe, 0);
    } else if kind == 9 {
        message::set_uint(&mut p, CoapOption::Observe, 1);
    }
    match kind {
        1 => message::set_uint(&mut p, CoapOption::Accept, u32::from(Format::Link.number())),
        0 | 8 | 9 | 10 | 11 if u.arbitrary()? => {
            let f = *u.choose(&FORMATS)?;
            message::set_uint(&mut p, CoapOption::Accept, u32::from(f.number()));
        }
        _ => {}
    }
    match kind {
        2 | 3 | 12 => {
            let base = if kind == 12 {
                Path::root()
            } else {
                path.clone()
            };
            let (cf, body) = body(u, reg, &base)?;
            if let Some(cf) = cf {
                message::set_content_format(&mut p, cf);
            }
            p.payload = body;
        }
        4 => {
            for _ in 0..u.int_in_range(0..=4)? {
                p.add_option(CoapOption::UriQuery, attr_query(u)?.into_bytes());
            }
        }
        5 => {
            p.payload = exec_args(u)?;
            if u.ratio(1, 4)? {
                message::set_content_format(&mut p, Format::Text.number());
            }
        }
        6 => {
            // Create: the new instance's resources, with or without its id.
            let obj = path.object().unwrap_or(3);
            let inst = if path.len() >= 2 {
                path.instance().unwrap_or(0)
            } else {
                instance_id(u)?
            };
            let base = Path::with_prefix(path.prefix.as_deref(), &[obj]);
            let recs = records(
                u,
                reg,
                &Path::with_prefix(path.prefix.as_deref(), &[obj, inst]),
            )?;
            let f = *u.choose(&[
                Format::Tlv,
                Format::SenmlJson,
                Format::SenmlCbor,
                Format::LwJson,
            ])?;
            let mut b = codec::encode(f, &base, &recs).unwrap_or_default();
            damage(u, &mut b)?;
            message::set_content_format(&mut p, f.number());
            p.payload = b;
        }
        10 | 11 => {
            let (cf, b) = composite_paths(u, reg)?;
            message::set_content_format(&mut p, cf);
            p.payload = b;
        }
        _ => {}
    }
    if u.ratio(1, 8)? {
        message::set_block(&mut p, CoapOption::Block2, block(u)?);
    }
    if u.ratio(1, 32)? {
        // An option the client does not know; odd numbers are critical.
        let n = u.int_in_range(0..=300)?;
        let v = u.int_in_range(0..=4)?;
        p.add_option(CoapOption::Unknown(n), u.bytes(v)?.to_vec());
    }
    Ok(p)
}

/// The request as a server sends it: whole, or its body in Block1 blocks
/// (sometimes one left out, repeated or told as the last).
pub fn blocks(u: &mut Unstructured, p: Packet) -> Result<Vec<Packet>> {
    if p.payload.len() <= 16 || !u.ratio(1, 3)? {
        return Ok(vec![p]);
    }
    let szx = u.int_in_range(0..=2)?;
    let size = 16usize << szx;
    let chunks: Vec<Vec<u8>> = p.payload.chunks(size).map(<[u8]>::to_vec).collect();
    let last = chunks.len() - 1;
    let mut out = Vec::with_capacity(chunks.len());
    for (i, c) in chunks.into_iter().enumerate() {
        let mut b = p.clone();
        b.payload = c;
        let mut opt = BlockOpt {
            num: i as u32,
            more: i < last,
            szx,
        };
        match u.int_in_range(0..=31)? {
            0 => continue,
            1 => opt.more = !opt.more,
            2 => opt.num += 1,
            _ => {}
        }
        message::set_block(&mut b, CoapOption::Block1, opt);
        if i == 0 && u.ratio(1, 4)? {
            message::set_uint(&mut b, CoapOption::Size1, p.payload.len() as u32);
        }
        out.push(b);
    }
    Ok(out)
}
