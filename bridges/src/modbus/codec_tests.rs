use super::*;

use ByteOrder as B;
use DataType as T;
use RegisterKind as K;
use WordOrder as W;

const ORDERS: [(&str, ByteOrder, WordOrder); 4] = [
    ("ABCD", B::Big, W::Big),
    ("CDAB", B::Big, W::Little),
    ("BADC", B::Little, W::Big),
    ("DCBA", B::Little, W::Little),
];

fn holding(dt: DataType) -> PointCodec {
    PointCodec::new(K::HoldingRegister, dt).unwrap()
}

fn regs(codec: &PointCodec, value: Value) -> Vec<u16> {
    match codec.encode(&value).unwrap() {
        Encoded::Registers(r) => r,
        other => panic!("expected registers, got {other:?}"),
    }
}

/// Encodes `value` in each of the four orders, checks the registers, and decodes
/// them back.
fn check_orders(dt: DataType, value: Value, expected: [&[u16]; 4]) {
    for ((name, b, w), want) in ORDERS.iter().zip(expected) {
        let codec = holding(dt).with_order(*b, *w);
        assert_eq!(regs(&codec, value.clone()), want, "{dt} {name}");
        assert_eq!(codec.decode_registers(want).unwrap(), value, "{dt} {name}");
    }
}

#[test]
fn f32_in_all_orders() {
    check_orders(
        T::F32,
        Value::Float(f64::from(123.456f32)),
        [
            &[0x42F6, 0xE979],
            &[0xE979, 0x42F6],
            &[0xF642, 0x79E9],
            &[0x79E9, 0xF642],
        ],
    );
}

#[test]
fn u32_and_i32_in_all_orders() {
    check_orders(
        T::U32,
        Value::UInt(0x1234_5678),
        [
            &[0x1234, 0x5678],
            &[0x5678, 0x1234],
            &[0x3412, 0x7856],
            &[0x7856, 0x3412],
        ],
    );
    check_orders(
        T::I32,
        Value::Int(-123_456_789),
        [
            &[0xF8A4, 0x32EB],
            &[0x32EB, 0xF8A4],
            &[0xA4F8, 0xEB32],
            &[0xEB32, 0xA4F8],
        ],
    );
}

#[test]
fn sixty_four_bit_in_all_orders() {
    check_orders(
        T::U64,
        Value::UInt(0x0102_0304_0506_0708),
        [
            &[0x0102, 0x0304, 0x0506, 0x0708],
            &[0x0708, 0x0506, 0x0304, 0x0102],
            &[0x0201, 0x0403, 0x0605, 0x0807],
            &[0x0807, 0x0605, 0x0403, 0x0201],
        ],
    );
    check_orders(
        T::F64,
        Value::Float(-2.5),
        [
            &[0xC004, 0, 0, 0],
            &[0, 0, 0, 0xC004],
            &[0x04C0, 0, 0, 0],
            &[0, 0, 0, 0x04C0],
        ],
    );
    check_orders(T::I64, Value::Int(-1), [&[0xFFFF; 4]; 4]);
    check_orders(
        T::I64,
        Value::Int(i64::MIN),
        [
            &[0x8000, 0, 0, 0],
            &[0, 0, 0, 0x8000],
            &[0x0080, 0, 0, 0],
            &[0, 0, 0, 0x0080],
        ],
    );
}

#[test]
fn sixteen_bit_ignores_word_order() {
    check_orders(
        T::I16,
        Value::Int(-2),
        [&[0xFFFE], &[0xFFFE], &[0xFEFF], &[0xFEFF]],
    );
    check_orders(
        T::U16,
        Value::UInt(0x1234),
        [&[0x1234], &[0x1234], &[0x3412], &[0x3412]],
    );
}

#[test]
fn integers_keep_their_exact_value_at_the_extremes() {
    let codec = holding(T::U64);
    let max = regs(&codec, Value::UInt(u64::MAX));
    assert_eq!(codec.decode_registers(&max).unwrap(), Value::UInt(u64::MAX));
    // u64::MAX - 1 is not representable in f64: it must not go through one.
    let near = regs(&codec, Value::UInt(u64::MAX - 1));
    assert_eq!(near, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]);
    assert_eq!(regs(&holding(T::U16), Value::Int(65535)), [0xFFFF]);
    assert_eq!(regs(&holding(T::I16), Value::UInt(32767)), [0x7FFF]);
}

#[test]
fn scale_and_offset_apply_on_read_and_invert_on_write() {
    // A temperature in tenths of a degree with a -40 offset, as many sensors send.
    let codec = holding(T::I16).with_scale(0.1, -40.0).unwrap();
    let Value::Float(t) = codec.decode_registers(&[635]).unwrap() else {
        panic!("scaled reads are floats");
    };
    assert!((t - 23.5).abs() < 1e-9, "{t}");
    assert_eq!(regs(&codec, Value::Float(23.5)), [635]);
    assert_eq!(regs(&codec, Value::Int(-40)), [0]);
    // ThingsBoard's divider 100 is a scale of 0.01.
    let codec = holding(T::U32).with_scale(1.0 / 100.0, 0.0).unwrap();
    assert_eq!(regs(&codec, Value::Float(1234.56)), [0x0001, 0xE240]);
}

#[test]
fn writes_round_to_the_nearest_integer() {
    let codec = holding(T::I16).with_scale(0.5, 0.0).unwrap();
    assert_eq!(regs(&codec, Value::Float(1.3)), [3]); // raw 2.6
    assert_eq!(regs(&codec, Value::Float(1.2)), [2]); // raw 2.4
    assert_eq!(regs(&codec, Value::Float(-1.25)), [0xFFFD]); // raw -2.5, away from zero
    assert_eq!(regs(&holding(T::U16), Value::Float(41.5)), [42]);
}

#[test]
fn out_of_range_writes_say_what_and_why() {
    let err = holding(T::U16).encode(&Value::Int(70000)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot write integer 70000: as u16 it would be 70000, outside 0..=65535"
    );
    let err = holding(T::U16).encode(&Value::Int(-1)).unwrap_err();
    assert!(matches!(err, CodecError::OutOfRange { .. }), "{err}");
    assert!(holding(T::I16).encode(&Value::Int(-32769)).is_err());
    assert!(holding(T::I64).encode(&Value::UInt(u64::MAX)).is_err());
    assert!(holding(T::U32)
        .encode(&Value::Float(4_294_967_295.6))
        .is_err());
    assert!(holding(T::U64).encode(&Value::Float(1.9e19)).is_err());
    let scaled = holding(T::U16).with_scale(0.1, 0.0).unwrap();
    let err = scaled.encode(&Value::Float(6553.6)).unwrap_err();
    assert!(
        err.to_string().contains("as u16 it would be 65536"),
        "{err}"
    );
    let err = holding(T::F32).encode(&Value::Float(1e39)).unwrap_err();
    assert!(err.to_string().contains("as f32 it would be 1"), "{err}");
}

#[test]
fn non_finite_numbers_are_refused_both_ways() {
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for dt in [T::U16, T::F32, T::F64] {
            let err = holding(dt).encode(&Value::Float(x)).unwrap_err();
            assert!(
                matches!(err, CodecError::NotFiniteValue(_)),
                "{dt} {x}: {err}"
            );
        }
    }
    let err = holding(T::F32).decode_registers(&[0x7FC0, 0]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("f32 read from the device gives NaN, not a finite number"),
        "{err}"
    );
    assert!(holding(T::F64)
        .decode_registers(&[0x7FF0, 0, 0, 0])
        .is_err());
}

#[test]
fn strings_are_padded_on_write_and_trimmed_on_read() {
    let dt = T::String { registers: 3 };
    assert_eq!(
        regs(&holding(dt), Value::Text("ABC".into())),
        [0x4142, 0x4300, 0]
    );
    let swapped = holding(dt).with_order(B::Little, W::Little);
    assert_eq!(
        regs(&swapped, Value::Text("ABC".into())),
        [0x4241, 0x0043, 0]
    );
    assert_eq!(
        swapped.decode_registers(&[0x4241, 0x0043, 0]).unwrap(),
        Value::Text("ABC".into())
    );
    // Bytes after the first NUL are left over from earlier contents.
    assert_eq!(
        holding(dt)
            .decode_registers(&[0x4142, 0x005A, 0x5A5A])
            .unwrap(),
        Value::Text("AB".into())
    );
    let full = holding(dt)
        .decode_registers(&[0x6869, 0x6A6B, 0x6C6D])
        .unwrap();
    assert_eq!(full, Value::Text("hijklm".into()));
    // UTF-8: "é" is two bytes.
    assert_eq!(regs(&holding(dt), Value::Text("é".into())), [0xC3A9, 0, 0]);
}

#[test]
fn strings_refuse_what_does_not_fit() {
    let dt = T::String { registers: 2 };
    let err = holding(dt)
        .encode(&Value::Text("ABCDE".into()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot write text of 5 bytes to a string of 2 registers: it has room for 4"
    );
    assert!(matches!(
        holding(dt).encode(&Value::Text("A\0B".into())),
        Err(CodecError::TextHasNul(_))
    ));
    let err = holding(dt).decode_registers(&[0x41FF, 0]).unwrap_err();
    assert!(
        matches!(err, CodecError::NotUtf8 { valid_up_to: 1, .. }),
        "{err}"
    );
}

#[test]
fn bools_on_coils_and_bits_of_registers() {
    let coil = PointCodec::new(K::Coil, T::Bool { bit: None }).unwrap();
    assert_eq!(coil.decode_bit(true).unwrap(), Value::Bool(true));
    assert_eq!(
        coil.encode(&Value::Bool(false)).unwrap(),
        Encoded::Bit(false)
    );

    let bit = |n| holding(T::Bool { bit: Some(n) });
    assert_eq!(
        bit(0).decode_registers(&[0x8001]).unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        bit(1).decode_registers(&[0x8001]).unwrap(),
        Value::Bool(false)
    );
    assert_eq!(
        bit(15).decode_registers(&[0x8001]).unwrap(),
        Value::Bool(true)
    );
    // Byte order first, then the bit: bit 0 of "BA" 0x0100 is the value's bit 0.
    let swapped = bit(0).with_order(B::Little, W::Big);
    assert_eq!(
        swapped.decode_registers(&[0x0100]).unwrap(),
        Value::Bool(true)
    );

    let set = bit(3).encode(&Value::Bool(true)).unwrap();
    assert_eq!(
        set,
        Encoded::RegisterBit {
            mask: 0x0008,
            value: true
        }
    );
    assert_eq!(set.masks(), Some((0xFFF7, 0x0008)));
    assert_eq!(set.apply_to(0x1200), Some(0x1208));
    let clear = bit(3).encode(&Value::Bool(false)).unwrap();
    assert_eq!(clear.apply_to(0xFFFF), Some(0xFFF7));
    assert_eq!(Encoded::Bit(true).masks(), None);

    // The mask is where the bit is on the wire, so a read-modify-write of the raw
    // register (or function code 22) leaves the other bits alone.
    let swapped = bit(0).with_order(B::Little, W::Big);
    let set = swapped.encode(&Value::Bool(true)).unwrap();
    assert_eq!(set.masks(), Some((0xFEFF, 0x0100)));
    assert_eq!(set.apply_to(0x000D), Some(0x010D));

    let whole = holding(T::Bool { bit: None });
    assert_eq!(
        whole.decode_registers(&[0x0200]).unwrap(),
        Value::Bool(true)
    );
    assert_eq!(regs(&whole, Value::Bool(true)), [1]);
}

#[test]
fn impossible_mappings_are_refused_when_built() {
    let err = PointCodec::new(K::Coil, T::F32).unwrap_err();
    assert_eq!(
        err.to_string(),
        "coils hold one bit, so they can only be mapped as bool, not as f32"
    );
    assert!(PointCodec::new(K::DiscreteInput, T::Bool { bit: Some(1) }).is_err());
    assert_eq!(
        PointCodec::new(K::InputRegister, T::Bool { bit: Some(16) }).unwrap_err(),
        CodecError::BitOutOfRange(16)
    );
    assert!(PointCodec::new(K::InputRegister, T::String { registers: 0 }).is_err());
    assert!(PointCodec::new(K::InputRegister, T::String { registers: 126 }).is_err());
    assert!(PointCodec::new(K::InputRegister, T::String { registers: 125 }).is_ok());
    for scale in [0.0, f64::NAN, f64::INFINITY] {
        assert!(holding(T::U16).with_scale(scale, 0.0).is_err(), "{scale}");
    }
    assert!(holding(T::U16).with_scale(1.0, f64::NAN).is_err());
    let err = holding(T::Bool { bit: None })
        .with_scale(2.0, 0.0)
        .unwrap_err();
    assert_eq!(err, CodecError::ScaleNotApplicable(T::Bool { bit: None }));
    assert!(holding(T::String { registers: 1 })
        .with_scale(1.0, 0.0)
        .is_ok());
}

#[test]
fn reads_and_writes_of_the_wrong_shape_are_refused() {
    let input = PointCodec::new(K::InputRegister, T::U16).unwrap();
    assert_eq!(
        input.encode(&Value::UInt(1)).unwrap_err().to_string(),
        "input registers are read-only: Modbus has no function to write them"
    );
    assert!(matches!(
        holding(T::U32).decode_registers(&[1]),
        Err(CodecError::WrongLength {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(holding(T::U16).decode_bit(true).is_err());
    let coil = PointCodec::new(K::Coil, T::Bool { bit: None }).unwrap();
    assert!(coil.decode_registers(&[1]).is_err());
    let err = holding(T::U16)
        .encode(&Value::Text("1".into()))
        .unwrap_err();
    assert_eq!(err.to_string(), "cannot write text \"1\" to a u16 point");
    assert!(holding(T::Bool { bit: None })
        .encode(&Value::Int(1))
        .is_err());
}

#[test]
fn order_patterns() {
    for (name, b, w) in ORDERS {
        assert_eq!(parse_order(name).unwrap(), (b, w));
        assert_eq!(parse_order(&name.to_lowercase()).unwrap(), (b, w));
    }
    assert_eq!(parse_order("GHEFCDAB").unwrap(), (B::Big, W::Little));
    assert_eq!(parse_order("BA").unwrap(), (B::Little, W::Big));
    assert!(parse_order("ACBD").is_err());
}
