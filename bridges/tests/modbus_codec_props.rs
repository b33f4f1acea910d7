//! Property tests of the Modbus codec: what is written reads back the same, in every
//! type and order, and nothing out of range is ever written.

use lwgate_bridges::modbus::{
    ByteOrder, CodecError, DataType, Encoded, PointCodec, RegisterKind, Value, WordOrder,
};
use proptest::prelude::*;

fn any_order() -> impl Strategy<Value = (ByteOrder, WordOrder)> {
    prop_oneof![
        Just((ByteOrder::Big, WordOrder::Big)),
        Just((ByteOrder::Big, WordOrder::Little)),
        Just((ByteOrder::Little, WordOrder::Big)),
        Just((ByteOrder::Little, WordOrder::Little)),
    ]
}

fn holding(dt: DataType, (b, w): (ByteOrder, WordOrder)) -> PointCodec {
    PointCodec::new(RegisterKind::HoldingRegister, dt)
        .unwrap()
        .with_order(b, w)
}

fn registers(codec: &PointCodec, value: &Value) -> Result<Vec<u16>, CodecError> {
    match codec.encode(value)? {
        Encoded::Registers(r) => Ok(r),
        other => panic!("expected registers, got {other:?}"),
    }
}

/// A value of an integer type and that type, over the type's whole range.
fn any_integer() -> impl Strategy<Value = (DataType, Value)> {
    prop_oneof![
        any::<u16>().prop_map(|v| (DataType::U16, Value::UInt(v.into()))),
        any::<i16>().prop_map(|v| (DataType::I16, Value::Int(v.into()))),
        any::<u32>().prop_map(|v| (DataType::U32, Value::UInt(v.into()))),
        any::<i32>().prop_map(|v| (DataType::I32, Value::Int(v.into()))),
        any::<u64>().prop_map(|v| (DataType::U64, Value::UInt(v))),
        any::<i64>().prop_map(|v| (DataType::I64, Value::Int(v))),
    ]
}

fn integer_range(dt: DataType) -> (i128, i128) {
    match dt {
        DataType::U16 => (0, u16::MAX.into()),
        DataType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::U32 => (0, u32::MAX.into()),
        DataType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::U64 => (0, u64::MAX.into()),
        DataType::I64 => (i64::MIN.into(), i64::MAX.into()),
        other => panic!("not an integer type: {other}"),
    }
}

proptest! {
    #[test]
    fn integers_round_trip_exactly((dt, value) in any_integer(), order in any_order()) {
        let codec = holding(dt, order);
        let regs = registers(&codec, &value).unwrap();
        prop_assert_eq!(regs.len(), usize::from(dt.register_count()));
        prop_assert_eq!(codec.decode_registers(&regs).unwrap(), value);
    }

    #[test]
    fn any_registers_round_trip_as_integers(
        dt in prop_oneof![
            Just(DataType::U16), Just(DataType::I16), Just(DataType::U32),
            Just(DataType::I32), Just(DataType::U64), Just(DataType::I64),
        ],
        words in prop::collection::vec(any::<u16>(), 4),
        order in any_order(),
    ) {
        let codec = holding(dt, order);
        let regs = &words[..usize::from(dt.register_count())];
        let value = codec.decode_registers(regs).unwrap();
        prop_assert_eq!(registers(&codec, &value).unwrap(), regs);
    }

    #[test]
    fn f32_round_trips_bit_for_bit(
        x in any::<f32>().prop_filter("finite", |x| x.is_finite()),
        order in any_order(),
    ) {
        let codec = holding(DataType::F32, order);
        let regs = registers(&codec, &Value::Float(x.into())).unwrap();
        let Value::Float(back) = codec.decode_registers(&regs).unwrap() else {
            panic!("f32 reads are floats");
        };
        prop_assert_eq!(back.to_bits(), f64::from(x).to_bits());
    }

    #[test]
    fn f64_round_trips_bit_for_bit(
        x in any::<f64>().prop_filter("finite", |x| x.is_finite()),
        order in any_order(),
    ) {
        let codec = holding(DataType::F64, order);
        let regs = registers(&codec, &Value::Float(x)).unwrap();
        let Value::Float(back) = codec.decode_registers(&regs).unwrap() else {
            panic!("f64 reads are floats");
        };
        prop_assert_eq!(back.to_bits(), x.to_bits());
    }

    #[test]
    fn strings_round_trip(
        n in 1u16..=8,
        text in "[^\0]{0,16}",
        order in any_order(),
    ) {
        let codec = holding(DataType::String { registers: n }, order);
        let value = Value::Text(text.clone());
        match registers(&codec, &value) {
            Ok(regs) => {
                prop_assert_eq!(regs.len(), usize::from(n));
                prop_assert_eq!(codec.decode_registers(&regs).unwrap(), value);
            }
            Err(CodecError::TextTooLong { len, capacity, .. }) => {
                prop_assert_eq!(len, text.len());
                prop_assert!(len > capacity);
            }
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }

    #[test]
    fn register_bits_change_only_their_bit(
        bit in 0u8..16,
        value in any::<bool>(),
        current in any::<u16>(),
        order in any_order(),
    ) {
        let codec = holding(DataType::Bool { bit: Some(bit) }, order);
        let encoded = codec.encode(&Value::Bool(value)).unwrap();
        let after = encoded.apply_to(current).unwrap();
        // Compare in value order: byte order says where bit n is on the wire.
        let logical = |r: u16| if order.0 == ByteOrder::Little { r.swap_bytes() } else { r };
        let m = 1u16 << bit;
        prop_assert_eq!(logical(after) & !m, logical(current) & !m);
        prop_assert_eq!(codec.decode_registers(&[after]).unwrap(), Value::Bool(value));
    }

    #[test]
    fn scaled_integers_read_back_to_the_same_registers(
        (dt, raw) in prop_oneof![
            any::<u16>().prop_map(|v| (DataType::U16, i64::from(v))),
            any::<i16>().prop_map(|v| (DataType::I16, i64::from(v))),
            any::<u32>().prop_map(|v| (DataType::U32, i64::from(v))),
            any::<i32>().prop_map(|v| (DataType::I32, i64::from(v))),
            // 64-bit raw values beyond 2^40 lose the units digit once scaled in f64.
            (-(1i64 << 40)..(1i64 << 40)).prop_map(|v| (DataType::I64, v)),
            (0..(1i64 << 40)).prop_map(|v| (DataType::U64, v)),
        ],
        scale in prop_oneof![1e-3f64..1e3, -1e3f64..-1e-3],
        offset in -1e4f64..1e4,
        order in any_order(),
    ) {
        let codec = holding(dt, order).with_scale(scale, offset).unwrap();
        let unscaled = holding(dt, order);
        let signed = matches!(dt, DataType::I16 | DataType::I32 | DataType::I64);
        let exact = if signed { Value::Int(raw) } else { Value::UInt(raw as u64) };
        let regs = registers(&unscaled, &exact).unwrap();
        let value = codec.decode_registers(&regs).unwrap();
        let Value::Float(x) = value else { panic!("scaled reads are floats") };
        prop_assert!((x - (raw as f64 * scale + offset)).abs() <= 1e-9 * x.abs().max(1.0));
        prop_assert_eq!(registers(&codec, &value).unwrap(), regs);
    }

    #[test]
    fn scaled_floats_invert(
        x in -1e6f64..1e6,
        scale in prop_oneof![1e-3f64..1e3, -1e3f64..-1e-3],
        offset in -1e4f64..1e4,
        order in any_order(),
    ) {
        let codec = holding(DataType::F64, order).with_scale(scale, offset).unwrap();
        let regs = registers(&codec, &Value::Float(x)).unwrap();
        let Value::Float(back) = codec.decode_registers(&regs).unwrap() else {
            panic!("f64 reads are floats");
        };
        prop_assert!((back - x).abs() <= 1e-9 * x.abs().max(1e4));
    }

    #[test]
    fn out_of_range_integers_are_refused_never_wrapped(
        (dt, _) in any_integer(),
        beyond in 1i128..(1i128 << 70),
        below in any::<bool>(),
        as_float in any::<bool>(),
    ) {
        let (min, max) = integer_range(dt);
        let target = if below { min - beyond } else { max + beyond };
        let value = if as_float {
            Value::Float(target as f64)
        } else if let Ok(i) = i64::try_from(target) {
            Value::Int(i)
        } else if let Ok(u) = u64::try_from(target) {
            Value::UInt(u)
        } else {
            return Ok(()); // not expressible as a Value
        };
        // Near the bounds of 64-bit types a float target may round into range (max + 1
        // may be max - 1023 in f64): judge a float by the integer it really is.
        if let Value::Float(f) = value {
            let i = f as i128;
            if i >= min && i <= max {
                return Ok(());
            }
        }
        let result = holding(dt, (ByteOrder::Big, WordOrder::Big)).encode(&value);
        prop_assert!(
            matches!(result, Err(CodecError::OutOfRange { .. })),
            "{} as {}: {:?}", value, dt, result
        );
    }
}
