//! lwgate's Modbus codec against vectors made by pymodbus (see
//! gen_modbus_vectors.py for how and with which version): every vector must decode
//! to pymodbus's value and encode to pymodbus's registers, exactly.

use lwgate_bridges::modbus::{
    ByteOrder, DataType, Encoded, PointCodec, RegisterKind, Value, WordOrder,
};
use serde_json::Value as Json;

const VECTORS: &str = include_str!("fixtures/modbus_vectors.json");

fn field<'a>(v: &'a Json, name: &str) -> &'a Json {
    v.get(name)
        .unwrap_or_else(|| panic!("vector without {name}: {v}"))
}

fn codec_of(v: &Json) -> PointCodec {
    let dt = match field(v, "type").as_str().unwrap() {
        "u16" => DataType::U16,
        "i16" => DataType::I16,
        "u32" => DataType::U32,
        "i32" => DataType::I32,
        "u64" => DataType::U64,
        "i64" => DataType::I64,
        "f32" => DataType::F32,
        "f64" => DataType::F64,
        "string" => DataType::String {
            registers: field(v, "length").as_u64().unwrap().try_into().unwrap(),
        },
        "bool" => DataType::Bool {
            bit: Some(field(v, "bit").as_u64().unwrap().try_into().unwrap()),
        },
        other => panic!("unknown type {other}"),
    };
    let byte = match field(v, "byte_order").as_str().unwrap() {
        "big" => ByteOrder::Big,
        _ => ByteOrder::Little,
    };
    let word = match field(v, "word_order").as_str().unwrap() {
        "big" => WordOrder::Big,
        _ => WordOrder::Little,
    };
    PointCodec::new(RegisterKind::HoldingRegister, dt)
        .unwrap()
        .with_order(byte, word)
}

fn value_of(v: &Json, dt: DataType) -> Value {
    let j = field(v, "value");
    match dt {
        DataType::I16 | DataType::I32 | DataType::I64 => Value::Int(j.as_i64().unwrap()),
        DataType::U16 | DataType::U32 | DataType::U64 => Value::UInt(j.as_u64().unwrap()),
        DataType::F32 | DataType::F64 => Value::Float(j.as_f64().unwrap()),
        DataType::String { .. } => Value::Text(j.as_str().unwrap().to_string()),
        DataType::Bool { .. } => Value::Bool(j.as_bool().unwrap()),
    }
}

/// Equality that tells -0.0 from 0.0, since pymodbus does.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

#[test]
fn codec_matches_pymodbus() {
    let doc: Json = serde_json::from_str(VECTORS).unwrap();
    let vectors = field(&doc, "vectors").as_array().unwrap();
    // The generator writes several hundred; an empty or cut file must not pass.
    assert!(vectors.len() >= 700, "only {} vectors", vectors.len());
    let mut failures = Vec::new();
    for v in vectors {
        let codec = codec_of(v);
        let value = value_of(v, codec.data_type());
        let registers: Vec<u16> = field(v, "registers")
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_u64().unwrap().try_into().unwrap())
            .collect();

        match codec.decode_registers(&registers) {
            Ok(got) if same(&got, &value) => {}
            other => failures.push(format!("decode {v}: got {other:?}")),
        }
        let expected = match codec.data_type() {
            DataType::Bool { .. } => {
                let mask = field(v, "mask").as_u64().unwrap().try_into().unwrap();
                Encoded::RegisterBit {
                    mask,
                    value: value == Value::Bool(true),
                }
            }
            _ => Encoded::Registers(registers.clone()),
        };
        match codec.encode(&value) {
            Ok(got) if got == expected => {}
            other => failures.push(format!("encode {v}: got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ from pymodbus:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}
