//! Typed resource values and the resource data types of the object model.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Integer,
    UnsignedInteger,
    Float,
    Boolean,
    String,
    Opaque,
    Time,
    ObjLnk,
    CoreLnk,
    /// Executable resources carry no value.
    None,
}

impl DataType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "integer" => Self::Integer,
            "unsigned integer" | "unsignedinteger" => Self::UnsignedInteger,
            "float" => Self::Float,
            "boolean" => Self::Boolean,
            "string" => Self::String,
            "opaque" => Self::Opaque,
            "time" => Self::Time,
            "objlnk" => Self::ObjLnk,
            "corelnk" => Self::CoreLnk,
            "" | "none" => Self::None,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Unsigned(u64),
    Float(f64),
    Boolean(bool),
    String(String),
    Opaque(Vec<u8>),
    /// Seconds since the Unix epoch.
    Time(i64),
    ObjLnk(u16, u16),
    CoreLnk(String),
}

impl Value {
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Integer(_) => DataType::Integer,
            Value::Unsigned(_) => DataType::UnsignedInteger,
            Value::Float(_) => DataType::Float,
            Value::Boolean(_) => DataType::Boolean,
            Value::String(_) => DataType::String,
            Value::Opaque(_) => DataType::Opaque,
            Value::Time(_) => DataType::Time,
            Value::ObjLnk(..) => DataType::ObjLnk,
            Value::CoreLnk(_) => DataType::CoreLnk,
        }
    }

    /// Numeric view used by gt/lt/st attributes.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Integer(i) | Value::Time(i) => Some(i as f64),
            Value::Unsigned(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Integer(i) | Value::Time(i) => Some(i),
            Value::Unsigned(u) => i64::try_from(u).ok(),
            Value::Boolean(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    /// Converts a value decoded from a format that does not carry the exact type
    /// (text, JSON numbers, SenML) into the type the resource definition asks for.
    pub fn coerce(self, want: DataType) -> Result<Value, String> {
        use Value as V;
        let got = self.data_type();
        if got == want {
            return Ok(self);
        }
        let bad = |v: &Value| format!("expected {want:?}, got {:?}", v.data_type());
        Ok(match (want, self) {
            (DataType::Integer, V::Unsigned(u)) => {
                V::Integer(i64::try_from(u).map_err(|_| "integer out of range".to_string())?)
            }
            (DataType::Integer, V::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                V::Integer(f as i64)
            }
            (DataType::Integer, V::Time(t)) => V::Integer(t),
            (DataType::UnsignedInteger, V::Integer(i)) => V::Unsigned(
                u64::try_from(i).map_err(|_| "expected a non-negative integer".to_string())?,
            ),
            (DataType::UnsignedInteger, V::Float(f))
                if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) =>
            {
                V::Unsigned(f as u64)
            }
            (DataType::Float, V::Integer(i)) => V::Float(i as f64),
            (DataType::Float, V::Unsigned(u)) => V::Float(u as f64),
            (DataType::Time, V::Integer(i)) => V::Time(i),
            (DataType::Time, V::Unsigned(u)) => {
                V::Time(i64::try_from(u).map_err(|_| "time out of range".to_string())?)
            }
            (DataType::Time, V::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                V::Time(f as i64)
            }
            (DataType::CoreLnk, V::String(s)) => V::CoreLnk(s),
            (DataType::String, V::CoreLnk(s)) => V::String(s),
            (_, v) => return Err(bad(&v)),
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(i) | Value::Time(i) => write!(f, "{i}"),
            Value::Unsigned(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Boolean(b) => f.write_str(if *b { "1" } else { "0" }),
            Value::String(s) | Value::CoreLnk(s) => f.write_str(s),
            Value::Opaque(b) => write!(f, "{} bytes", b.len()),
            Value::ObjLnk(o, i) => write!(f, "{o}:{i}"),
        }
    }
}
