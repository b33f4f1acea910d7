//! Register values to typed values and back.
//!
//! A [`PointCodec`] is built once per mapped point and checked then, so that a
//! mapping that can never work (a `f32` on a coil, bit 16 of a register, a scale of
//! zero) is refused when the configuration is loaded rather than at the first poll.

use std::fmt;

use thiserror::Error;

/// Items one read request may ask for, by the Modbus application protocol spec
/// (function codes 1/2: 2000 bits, 3/4: 125 registers).
pub const MAX_READ_BITS: u16 = 2000;
/// See [`MAX_READ_BITS`].
pub const MAX_READ_REGISTERS: u16 = 125;

/// The four Modbus data tables.
///
/// The order (coils first, holding registers last) is the order read plans list
/// their requests in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegisterKind {
    /// 1 bit, read/write (function codes 1, 5, 15).
    Coil,
    /// 1 bit, read-only (function code 2).
    DiscreteInput,
    /// 16 bits, read-only (function code 4).
    InputRegister,
    /// 16 bits, read/write (function codes 3, 6, 16, 22).
    HoldingRegister,
}

impl RegisterKind {
    /// Whether an item of this kind is one bit rather than a 16-bit register.
    pub fn is_bit(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::DiscreteInput)
    }

    /// Whether the Modbus protocol has a write function for this kind.
    pub fn is_writable(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::HoldingRegister)
    }

    /// Most items (bits or registers) one read request of this kind may ask for.
    pub fn max_read(self) -> u16 {
        if self.is_bit() {
            MAX_READ_BITS
        } else {
            MAX_READ_REGISTERS
        }
    }

    /// Lower-case name, as in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterKind::Coil => "coil",
            RegisterKind::DiscreteInput => "discrete input",
            RegisterKind::InputRegister => "input register",
            RegisterKind::HoldingRegister => "holding register",
        }
    }
}

impl fmt::Display for RegisterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of value a point holds, which fixes how many registers it spans.
///
/// ThingsBoard IoT Gateway's `type` names map as: `bits`/`bit` with `bit: n` →
/// `Bool { bit: Some(n) }`, `16int` → `I16`, `16uint` → `U16`, `32int` → `I32`,
/// `32uint` → `U32`, `32float` → `F32`, `64int` → `I64`, `64uint` → `U64`,
/// `64float` → `F64`, `string` with `objectsCount: n` → `String { registers: n }`
/// (ThingsBoard counts registers there, as here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// A coil or discrete input; on a register, either bit `bit` (0 = least
    /// significant bit of the register value after byte order is applied) or, with
    /// no bit, the whole register (non-zero reads true, true writes 1).
    Bool {
        bit: Option<u8>,
    },
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// UTF-8 text (ASCII is a subset) in `registers` registers, two bytes each,
    /// first character in the high byte of the first register, NUL-padded.
    String {
        registers: u16,
    },
}

impl DataType {
    /// Registers (or bits, for a coil or discrete input) one value occupies.
    pub fn register_count(self) -> u16 {
        match self {
            DataType::Bool { .. } | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::String { registers } => registers,
        }
    }

    /// Inclusive range of the raw register value, for integer types only.
    fn integer_range(self) -> Option<(i128, i128)> {
        match self {
            DataType::U16 => Some((0, u16::MAX.into())),
            DataType::I16 => Some((i16::MIN.into(), i16::MAX.into())),
            DataType::U32 => Some((0, u32::MAX.into())),
            DataType::I32 => Some((i32::MIN.into(), i32::MAX.into())),
            DataType::U64 => Some((0, u64::MAX.into())),
            DataType::I64 => Some((i64::MIN.into(), i64::MAX.into())),
            _ => None,
        }
    }

    fn is_signed(self) -> bool {
        matches!(self, DataType::I16 | DataType::I32 | DataType::I64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bool { bit: None } => f.write_str("bool"),
            DataType::Bool { bit: Some(n) } => write!(f, "bool (bit {n})"),
            DataType::U16 => f.write_str("u16"),
            DataType::I16 => f.write_str("i16"),
            DataType::U32 => f.write_str("u32"),
            DataType::I32 => f.write_str("i32"),
            DataType::U64 => f.write_str("u64"),
            DataType::I64 => f.write_str("i64"),
            DataType::F32 => f.write_str("f32"),
            DataType::F64 => f.write_str("f64"),
            DataType::String { registers } => write!(f, "string of {registers} registers"),
        }
    }
}

/// Order of the two bytes inside each 16-bit register.
///
/// `Big` ("AB", the Modbus standard) sends the most significant byte first.
/// ThingsBoard's `byteOrder: "BIG"`/`"LITTLE"` map to `Big`/`Little` (ThingsBoard
/// defaults to `LITTLE` in some templates; check the device's manual, most use big).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    #[default]
    Big,
    Little,
}

/// Order of the registers of a value that spans more than one.
///
/// `Big`: most significant register first (at the lowest address); `Little`: least
/// significant first. ThingsBoard's `wordOrder: "BIG"`/`"LITTLE"` map to
/// `Big`/`Little`. Word order does not apply to strings: characters always run from
/// the lowest address up, so a device-wide `Little` meant for its floats leaves its
/// strings readable. (pymodbus and so ThingsBoard reverse a string's registers
/// under `LITTLE`; set `Big` on such a string to read it as they do, reversed.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    #[default]
    Big,
    Little,
}

/// Byte and word order from a pattern naming the bytes of the value as sent, most
/// significant byte of the value being `A`: `ABCD` (big/big), `CDAB` (big bytes,
/// little words), `BADC` (little bytes, big words), `DCBA` (little/little), their
/// 64-bit forms `ABCDEFGH`, `GHEFCDAB`, `BADCFEHG`, `HGFEDCBA`, and `AB`/`BA` for
/// one register. Case does not matter.
pub fn parse_order(pattern: &str) -> Result<(ByteOrder, WordOrder), CodecError> {
    use ByteOrder as B;
    use WordOrder as W;
    let orders = match pattern.to_ascii_uppercase().as_str() {
        "AB" | "ABCD" | "ABCDEFGH" => (B::Big, W::Big),
        "BA" => (B::Little, W::Big),
        "CDAB" | "GHEFCDAB" => (B::Big, W::Little),
        "BADC" | "BADCFEHG" => (B::Little, W::Big),
        "DCBA" | "HGFEDCBA" => (B::Little, W::Little),
        _ => return Err(CodecError::UnknownOrder(pattern.to_string())),
    };
    Ok(orders)
}

/// A value as the rest of the gateway sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "boolean {b}"),
            Value::Int(i) => write!(f, "integer {i}"),
            Value::UInt(u) => write!(f, "integer {u}"),
            Value::Float(x) => write!(f, "number {x}"),
            Value::Text(s) => write!(f, "text {s:?}"),
        }
    }
}

/// What to send to write a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// One coil (function code 5).
    Bit(bool),
    /// Whole registers from the point's address on (function code 6 or 16).
    Registers(Vec<u16>),
    /// One bit of a holding register: the other 15 bits must be kept, so this is a
    /// Mask Write Register (function code 22) or a read-modify-write. `mask` is the
    /// bit in the register as sent, byte order applied (bit 0 of a "BA" register is
    /// `0x0100`).
    RegisterBit { mask: u16, value: bool },
}

impl Encoded {
    /// `(and_mask, or_mask)` for Mask Write Register, for [`Encoded::RegisterBit`].
    pub fn masks(&self) -> Option<(u16, u16)> {
        match *self {
            Encoded::RegisterBit { mask, value } => Some((!mask, if value { mask } else { 0 })),
            _ => None,
        }
    }

    /// The register value after writing, given its current value, for
    /// [`Encoded::RegisterBit`] (the read-modify-write for devices without
    /// function code 22).
    pub fn apply_to(&self, current: u16) -> Option<u16> {
        let (and, or) = self.masks()?;
        // The formula of function code 22 itself, so both ways give the same result.
        Some((current & and) | (or & !and))
    }
}

/// Why a mapping, a read or a write was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CodecError {
    #[error("{kind}s hold one bit, so they can only be mapped as bool, not as {data_type}")]
    NotABit {
        kind: RegisterKind,
        data_type: DataType,
    },
    #[error("{kind}s are single bits and have no bit {bit} to pick: map them as plain bool")]
    BitOfABit { kind: RegisterKind, bit: u8 },
    #[error("bit {0} does not exist in a 16-bit register (bits are numbered 0 to 15)")]
    BitOutOfRange(u8),
    #[error(
        "a string of {0} registers cannot be read in one request: expected 1 to {MAX_READ_REGISTERS}"
    )]
    StringLength(u16),
    #[error("scale {0} cannot be undone on write: expected a finite number other than 0")]
    BadScale(f64),
    #[error("offset {0} is not a finite number")]
    BadOffset(f64),
    #[error("scale and offset apply to numbers only, not to {0}")]
    ScaleNotApplicable(DataType),
    #[error("unknown byte/word order {0:?}: expected ABCD, CDAB, BADC, DCBA (or their 64-bit forms ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA, or AB/BA)")]
    UnknownOrder(String),
    #[error("{data_type} needs {expected} registers, got {got}")]
    WrongLength {
        data_type: DataType,
        expected: u16,
        got: usize,
    },
    #[error("{kind}s are read as {}, not as {}", if .kind.is_bit() { "bits" } else { "registers" }, if .kind.is_bit() { "registers" } else { "bits" })]
    WrongShape { kind: RegisterKind },
    #[error("{data_type} read from the device gives {raw}, not a finite number (devices often send NaN for \"no reading\")")]
    NotFinite { data_type: DataType, raw: f64 },
    #[error("{data_type} read from the device is not valid UTF-8 (from byte {valid_up_to} on)")]
    NotUtf8 {
        data_type: DataType,
        valid_up_to: usize,
    },
    #[error("{0}s are read-only: Modbus has no function to write them")]
    ReadOnly(RegisterKind),
    #[error("cannot write {value} to a {data_type} point")]
    TypeMismatch { value: Value, data_type: DataType },
    #[error("cannot write {0}: only finite numbers can be written")]
    NotFiniteValue(Value),
    #[error("cannot write {value}: as {data_type} it would be {raw}, outside {min}..={max}")]
    OutOfRange {
        value: Value,
        data_type: DataType,
        raw: f64,
        min: f64,
        max: f64,
    },
    #[error("cannot write text of {len} bytes to a {data_type}: it has room for {capacity}")]
    TextTooLong {
        data_type: DataType,
        len: usize,
        capacity: usize,
    },
    #[error(
        "cannot write text with a NUL character to a {0}: NUL marks the end of the text there"
    )]
    TextHasNul(DataType),
}

/// How one point's registers turn into a [`Value`] and back.
///
/// Reading computes `value = raw * scale + offset`; writing computes
/// `raw = (value - offset) / scale`, rounded to the nearest integer (half away from
/// zero) for integer types. ThingsBoard's `multiplier: m` is `scale = m`, its
/// `divider: d` is `scale = 1 / d`; ThingsBoard has no offset.
///
/// With the default scale 1 and offset 0 integers keep their exact value
/// ([`Value::Int`] for signed, [`Value::UInt`] for unsigned types); any other
/// scale or offset makes every numeric read a [`Value::Float`].
#[derive(Debug, Clone, PartialEq)]
pub struct PointCodec {
    kind: RegisterKind,
    data_type: DataType,
    byte_order: ByteOrder,
    word_order: WordOrder,
    scale: f64,
    offset: f64,
}

impl PointCodec {
    /// A codec with big byte and word order, scale 1 and offset 0.
    pub fn new(kind: RegisterKind, data_type: DataType) -> Result<Self, CodecError> {
        match (kind.is_bit(), data_type) {
            (true, DataType::Bool { bit: Some(bit) }) => {
                return Err(CodecError::BitOfABit { kind, bit })
            }
            (true, DataType::Bool { bit: None }) => {}
            (true, _) => return Err(CodecError::NotABit { kind, data_type }),
            (false, DataType::Bool { bit: Some(bit) }) if bit > 15 => {
                return Err(CodecError::BitOutOfRange(bit))
            }
            (false, DataType::String { registers })
                if registers == 0 || registers > MAX_READ_REGISTERS =>
            {
                return Err(CodecError::StringLength(registers))
            }
            _ => {}
        }
        Ok(PointCodec {
            kind,
            data_type,
            byte_order: ByteOrder::Big,
            word_order: WordOrder::Big,
            scale: 1.0,
            offset: 0.0,
        })
    }

    /// The same codec with other byte and word orders (ignored for bits).
    pub fn with_order(mut self, byte_order: ByteOrder, word_order: WordOrder) -> Self {
        self.byte_order = byte_order;
        self.word_order = word_order;
        self
    }

    /// The same codec with a scale and offset; numbers only.
    pub fn with_scale(mut self, scale: f64, offset: f64) -> Result<Self, CodecError> {
        // Zero would make every write a division by zero; it is never meant.
        if !scale.is_finite() || scale == 0.0 {
            return Err(CodecError::BadScale(scale));
        }
        if !offset.is_finite() {
            return Err(CodecError::BadOffset(offset));
        }
        let identity = scale == 1.0 && offset == 0.0;
        if !identity
            && matches!(
                self.data_type,
                DataType::Bool { .. } | DataType::String { .. }
            )
        {
            return Err(CodecError::ScaleNotApplicable(self.data_type));
        }
        self.scale = scale;
        self.offset = offset;
        Ok(self)
    }

    pub fn kind(&self) -> RegisterKind {
        self.kind
    }

    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }

    pub fn word_order(&self) -> WordOrder {
        self.word_order
    }

    /// `(scale, offset)`.
    pub fn scale(&self) -> (f64, f64) {
        (self.scale, self.offset)
    }

    /// Registers (bits for a coil or discrete input) the point occupies.
    pub fn register_count(&self) -> u16 {
        self.data_type.register_count()
    }

    fn is_identity(&self) -> bool {
        self.scale == 1.0 && self.offset == 0.0
    }

    /// The value of a coil or discrete input.
    pub fn decode_bit(&self, bit: bool) -> Result<Value, CodecError> {
        if !self.kind.is_bit() {
            return Err(CodecError::WrongShape { kind: self.kind });
        }
        Ok(Value::Bool(bit))
    }

    /// The value held in `registers`, exactly the point's registers in address order.
    pub fn decode_registers(&self, registers: &[u16]) -> Result<Value, CodecError> {
        if self.kind.is_bit() {
            return Err(CodecError::WrongShape { kind: self.kind });
        }
        let expected = self.register_count();
        if registers.len() != usize::from(expected) {
            return Err(CodecError::WrongLength {
                data_type: self.data_type,
                expected,
                got: registers.len(),
            });
        }
        let bytes = self.value_bytes(registers);
        let dt = self.data_type;
        match dt {
            DataType::Bool { bit } => {
                let word = u16::from_be_bytes([bytes[0], bytes[1]]);
                Ok(Value::Bool(match bit {
                    Some(n) => (word >> n) & 1 == 1,
                    None => word != 0,
                }))
            }
            DataType::String { .. } => {
                // C-string semantics: devices that reuse a buffer leave old bytes
                // after the terminator.
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                match std::str::from_utf8(&bytes[..end]) {
                    Ok(s) => Ok(Value::Text(s.to_string())),
                    Err(e) => Err(CodecError::NotUtf8 {
                        data_type: dt,
                        valid_up_to: e.valid_up_to(),
                    }),
                }
            }
            DataType::F32 | DataType::F64 => {
                let raw = if dt == DataType::F32 {
                    f64::from(f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                } else {
                    f64::from_bits(be_u64(&bytes))
                };
                if !raw.is_finite() {
                    return Err(CodecError::NotFinite { data_type: dt, raw });
                }
                self.scaled(raw, Value::Float(raw))
            }
            _ => {
                let unsigned = be_u64(&bytes);
                if dt.is_signed() {
                    let shift = 64 - 8 * bytes.len() as u32;
                    // Shifting up then arithmetically down sign-extends the raw width.
                    let signed = ((unsigned << shift) as i64) >> shift;
                    self.scaled(signed as f64, Value::Int(signed))
                } else {
                    self.scaled(unsigned as f64, Value::UInt(unsigned))
                }
            }
        }
    }

    fn scaled(&self, raw: f64, exact: Value) -> Result<Value, CodecError> {
        if self.is_identity() {
            return Ok(exact);
        }
        let value = raw * self.scale + self.offset;
        if !value.is_finite() {
            return Err(CodecError::NotFinite {
                data_type: self.data_type,
                raw: value,
            });
        }
        Ok(Value::Float(value))
    }

    /// What to send to the device to make the point hold `value`.
    pub fn encode(&self, value: &Value) -> Result<Encoded, CodecError> {
        if !self.kind.is_writable() {
            return Err(CodecError::ReadOnly(self.kind));
        }
        let dt = self.data_type;
        let mismatch = || CodecError::TypeMismatch {
            value: value.clone(),
            data_type: dt,
        };
        let bytes: Vec<u8> = match dt {
            DataType::Bool { bit } => {
                let Value::Bool(b) = *value else {
                    return Err(mismatch());
                };
                match (self.kind.is_bit(), bit) {
                    (true, _) => return Ok(Encoded::Bit(b)),
                    (false, Some(bit)) => {
                        let mask = u16::from_be_bytes(self.register_bytes(1 << bit));
                        return Ok(Encoded::RegisterBit { mask, value: b });
                    }
                    (false, None) => u16::from(b).to_be_bytes().to_vec(),
                }
            }
            DataType::String { registers } => {
                let Value::Text(text) = value else {
                    return Err(mismatch());
                };
                let capacity = 2 * usize::from(registers);
                if text.contains('\0') {
                    return Err(CodecError::TextHasNul(dt));
                }
                if text.len() > capacity {
                    return Err(CodecError::TextTooLong {
                        data_type: dt,
                        len: text.len(),
                        capacity,
                    });
                }
                let mut bytes = text.as_bytes().to_vec();
                bytes.resize(capacity, 0);
                bytes
            }
            DataType::F32 => {
                let raw = self.raw_number(value)?;
                let narrow = raw as f32;
                // A finite f64 beyond f32's range becomes infinity when narrowed.
                if !narrow.is_finite() {
                    return Err(self.out_of_range(
                        value,
                        raw,
                        -f64::from(f32::MAX),
                        f64::from(f32::MAX),
                    ));
                }
                narrow.to_be_bytes().to_vec()
            }
            DataType::F64 => self.raw_number(value)?.to_be_bytes().to_vec(),
            _ => {
                let raw = self.raw_integer(value)?;
                let width = usize::from(self.register_count()) * 2;
                // Two's complement of the raw value, cut to the type's width.
                let all = (raw as i64 as u64).to_be_bytes();
                all[8 - width..].to_vec()
            }
        };
        Ok(Encoded::Registers(self.registers_of(&bytes)))
    }

    /// `(value - offset) / scale` as a finite f64.
    fn raw_number(&self, value: &Value) -> Result<f64, CodecError> {
        let v = match *value {
            Value::Int(i) => i as f64,
            Value::UInt(u) => u as f64,
            Value::Float(x) if x.is_finite() => x,
            Value::Float(_) => return Err(CodecError::NotFiniteValue(value.clone())),
            _ => {
                return Err(CodecError::TypeMismatch {
                    value: value.clone(),
                    data_type: self.data_type,
                })
            }
        };
        let raw = (v - self.offset) / self.scale;
        if !raw.is_finite() {
            return Err(self.out_of_range(value, raw, f64::MIN, f64::MAX));
        }
        Ok(raw)
    }

    /// The raw integer for `value`, range-checked; integers pass exactly when there is
    /// no scale, because u64/i64 do not survive a trip through f64.
    fn raw_integer(&self, value: &Value) -> Result<i128, CodecError> {
        let Some((min, max)) = self.data_type.integer_range() else {
            return Err(CodecError::TypeMismatch {
                value: value.clone(),
                data_type: self.data_type,
            });
        };
        let raw: i128 = match *value {
            Value::Int(i) if self.is_identity() => i.into(),
            Value::UInt(u) if self.is_identity() => u.into(),
            _ => {
                let raw = self.raw_number(value)?.round();
                // The float bounds are only a guard for the cast: the exact check on
                // the integer below decides.
                if raw < min as f64 || raw > max as f64 {
                    return Err(self.out_of_range(value, raw, min as f64, max as f64));
                }
                raw as i128
            }
        };
        if raw < min || raw > max {
            return Err(self.out_of_range(value, raw as f64, min as f64, max as f64));
        }
        Ok(raw)
    }

    fn out_of_range(&self, value: &Value, raw: f64, min: f64, max: f64) -> CodecError {
        CodecError::OutOfRange {
            value: value.clone(),
            data_type: self.data_type,
            raw,
            min,
            max,
        }
    }

    /// The bytes of the value, most significant first, from its registers as read.
    fn value_bytes(&self, registers: &[u16]) -> Vec<u8> {
        let mut ordered = registers.to_vec();
        if self.reverses_words() {
            ordered.reverse();
        }
        ordered
            .iter()
            .flat_map(|&r| self.register_bytes(r))
            .collect()
    }

    /// The registers to send, in address order, for the value's bytes (most
    /// significant first, or in text order for strings).
    fn registers_of(&self, bytes: &[u8]) -> Vec<u16> {
        let mut registers: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| {
                u16::from_be_bytes(self.register_bytes(u16::from_be_bytes([pair[0], pair[1]])))
            })
            .collect();
        if self.reverses_words() {
            registers.reverse();
        }
        registers
    }

    /// A register's two bytes in value order; the swap is its own inverse, so this
    /// serves both directions.
    fn register_bytes(&self, register: u16) -> [u8; 2] {
        match self.byte_order {
            ByteOrder::Big => register.to_be_bytes(),
            ByteOrder::Little => register.to_le_bytes(),
        }
    }

    fn reverses_words(&self) -> bool {
        self.word_order == WordOrder::Little && !matches!(self.data_type, DataType::String { .. })
    }
}

/// Big-endian integer of up to 8 bytes.
fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
