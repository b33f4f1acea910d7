//! What of Modbus is ours to parse: a device's register map as configured
//! (register kind, type, byte/word order pattern, scale and offset, address)
//! turned into point codecs, the read plan that coalesces them into requests,
//! each response split back over its points and decoded into values, and
//! values encoded for a write. The frames themselves (MBAP, RTU and its CRC,
//! the PDU's function codes and exception replies) are tokio-modbus's.
//!
//! With scale 1 and offset 0 a value read and written back is the same
//! registers' value again.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use lwgate_bridges::modbus::codec::{
    parse_order, DataType, Encoded, PointCodec, RegisterKind, Value,
};
use lwgate_bridges::modbus::{plan_reads, PlanOptions, Point};

const KINDS: [RegisterKind; 4] = [
    RegisterKind::Coil,
    RegisterKind::DiscreteInput,
    RegisterKind::InputRegister,
    RegisterKind::HoldingRegister,
];
const ORDERS: [&str; 12] = [
    "ABCD", "CDAB", "BADC", "DCBA", "ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA", "AB", "ba",
    "DCAB", "",
];

fn data_type(u: &mut Unstructured) -> Result<DataType> {
    Ok(match u.int_in_range(0..=10)? {
        0 => DataType::Bool { bit: None },
        1 => DataType::Bool {
            bit: Some(u.int_in_range(0..=16)?),
        },
        2 => DataType::U16,
        3 => DataType::I16,
        4 => DataType::U32,
        5 => DataType::I32,
        6 => DataType::U64,
        7 => DataType::I64,
        8 => DataType::F32,
        9 => DataType::F64,
        _ => DataType::String {
            registers: u.int_in_range(0..=130)?,
        },
    })
}

fn codec(u: &mut Unstructured) -> Result<Option<PointCodec>> {
    let kind = *u.choose(&KINDS)?;
    let Ok(c) = PointCodec::new(kind, data_type(u)?) else {
        return Ok(None);
    };
    let c = match parse_order(u.choose(&ORDERS)?) {
        Ok((b, w)) => c.with_order(b, w),
        Err(_) => c,
    };
    let (scale, offset) = match u.int_in_range(0..=3)? {
        0 => (u.arbitrary()?, u.arbitrary()?),
        1 => (0.1, -40.0),
        _ => (1.0, 0.0),
    };
    Ok(c.with_scale(scale, offset).ok())
}

fn value(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=4)? {
        0 => Value::Bool(u.arbitrary()?),
        1 => Value::Int(u.arbitrary()?),
        2 => Value::UInt(u.arbitrary()?),
        3 => Value::Float(u.arbitrary()?),
        _ => Value::Text(u.arbitrary::<&str>()?.chars().take(300).collect()),
    })
}

fn is_identity(c: &PointCodec) -> bool {
    c.scale() == (1.0, 0.0)
}

fn run(u: &mut Unstructured) -> Result<()> {
    let n = u.int_in_range(1..=8)?;
    let mut codecs = Vec::with_capacity(n);
    let mut points = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(c) = codec(u)? {
            let address = if u.ratio(1, 8)? {
                u.arbitrary()?
            } else {
                u.int_in_range(0..=64)?
            };
            points.push(Point::for_codec(i, address, &c));
            codecs.push((i, c));
        }
    }
    let options = PlanOptions {
        max_gap: u.int_in_range(0..=16)?,
        max_registers: if u.ratio(1, 8)? { u.arbitrary()? } else { 125 },
        max_bits: if u.ratio(1, 8)? { u.arbitrary()? } else { 2000 },
    };
    let Ok(plan) = plan_reads(&points, &options) else {
        return Ok(());
    };
    for request in &plan {
        assert!(request.count <= options.limit(request.kind));
        // The device's answer, sometimes short of what was asked.
        let len = if u.ratio(1, 16)? {
            u.int_in_range(0..=usize::from(request.count))?
        } else {
            usize::from(request.count)
        };
        let mut registers = Vec::with_capacity(len);
        for _ in 0..len {
            registers.push(u.arbitrary::<u16>().unwrap_or(0));
        }
        let Ok(split) = request.split(&registers) else {
            assert!(len < usize::from(request.count));
            continue;
        };
        for (id, regs) in split {
            let Some((_, c)) = codecs.iter().find(|(i, _)| i == id) else {
                panic!("the plan serves a point it was not given");
            };
            let read = if c.kind().is_bit() {
                c.decode_bit(regs.first().is_some_and(|r| *r != 0))
            } else {
                c.decode_registers(regs)
            };
            let Ok(v) = read else { continue };
            match c.encode(&v) {
                Ok(Encoded::Registers(back)) if is_identity(c) => {
                    assert_eq!(
                        c.decode_registers(&back).ok(),
                        Some(v),
                        "read, written, read again"
                    );
                }
                Ok(Encoded::RegisterBit { mask, value }) => {
                    let after = Encoded::RegisterBit { mask, value }.apply_to(regs[0]);
                    let again = after.map(|r| c.decode_registers(&[r]));
                    assert_eq!(again, Some(Ok(Value::Bool(value))));
                }
                _ => {}
            }
        }
    }
    // Writes of whatever a server sends.
    for (_, c) in &codecs {
        let _ = c.encode(&value(u)?);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
