//! Payload codecs as pure functions over `(Path, Value)` records.
//!
//! Every format is decoded into, and encoded from, a flat list of resource (or
//! resource-instance) records under the request path. Hierarchy (TLV) is rebuilt
//! from the paths. Decoders take a type lookup because TLV and text carry no types.

pub mod link;
mod lwm2m_json;
mod opaque;
mod senml;
mod senml_cbor;
mod senml_json;
mod text;
mod tlv;

use crate::model::{DataType, Path, Value};

pub use link::LinkFormat;
pub use tlv::starts_with_instance as tlv_starts_with_instance;

/// A resource or resource-instance value with its full path.
pub type Record = (Path, Value);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Text,
    Link,
    Opaque,
    SenmlJson,
    SenmlCbor,
    Tlv,
    LwJson,
}

impl Format {
    pub fn from_number(n: u16) -> Option<Self> {
        Some(match n {
            0 => Self::Text,
            40 => Self::Link,
            42 => Self::Opaque,
            110 => Self::SenmlJson,
            112 => Self::SenmlCbor,
            11542 => Self::Tlv,
            11543 => Self::LwJson,
            // The pre-registration numbers 1.0-era servers still send.
            1542 => Self::Tlv,
            1543 => Self::LwJson,
            _ => return None,
        })
    }

    pub fn number(self) -> u16 {
        match self {
            Self::Text => 0,
            Self::Link => 40,
            Self::Opaque => 42,
            Self::SenmlJson => 110,
            Self::SenmlCbor => 112,
            Self::Tlv => 11542,
            Self::LwJson => 11543,
        }
    }

    /// Formats that can carry more than one resource.
    pub fn is_multi(self) -> bool {
        matches!(
            self,
            Self::SenmlJson | Self::SenmlCbor | Self::Tlv | Self::LwJson
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The payload does not parse or does not fit the target: 4.00.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The format cannot represent this content: 4.06 on read, 4.15 on write.
    #[error("format cannot carry this content: {0}")]
    Unsupported(String),
}

pub(crate) fn malformed<T>(msg: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError::Malformed(msg.into()))
}

/// Encodes records read at `base` in `format`.
pub fn encode(format: Format, base: &Path, records: &[Record]) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::Text => text::encode(records),
        Format::Opaque => opaque::encode(records),
        Format::Tlv => tlv::encode(base, records),
        Format::SenmlJson => senml_json::encode(base, records, None),
        Format::SenmlCbor => senml_cbor::encode(base, records, None),
        Format::LwJson => lwm2m_json::encode(base, records),
        Format::Link => Err(CodecError::Unsupported(
            "link-format carries no values".into(),
        )),
    }
}

/// Like `encode`, but SenML formats carry the sampling time as base time (`bt`), so a
/// server can place the values in time. Other formats have no place for it.
pub fn encode_at(
    format: Format,
    base: &Path,
    records: &[Record],
    time: f64,
) -> Result<Vec<u8>, CodecError> {
    let times = vec![time; records.len()];
    match format {
        Format::SenmlJson => senml_json::encode(base, records, Some(&times)),
        Format::SenmlCbor => senml_cbor::encode(base, records, Some(&times)),
        _ => encode(format, base, records),
    }
}

/// Decodes a payload written to `base`. `types` gives the data type of a resource path
/// (resource-instance paths are looked up by their resource).
pub fn decode(
    format: Format,
    base: &Path,
    payload: &[u8],
    types: &dyn Fn(&Path) -> Option<DataType>,
) -> Result<Vec<Record>, CodecError> {
    let records = match format {
        Format::Text => text::decode(base, payload, types)?,
        Format::Opaque => opaque::decode(base, payload)?,
        Format::Tlv => tlv::decode(base, payload, types)?,
        Format::SenmlJson => senml_json::decode(Some(base), payload)?,
        Format::SenmlCbor => senml_cbor::decode(Some(base), payload)?,
        Format::LwJson => lwm2m_json::decode(base, payload, types)?,
        Format::Link => {
            return Err(CodecError::Unsupported(
                "link-format carries no values".into(),
            ))
        }
    };
    coerce_all(records, types)
}

/// SenML and JSON numbers lose the exact type: convert to what the definition says.
fn coerce_all(
    records: Vec<Record>,
    types: &dyn Fn(&Path) -> Option<DataType>,
) -> Result<Vec<Record>, CodecError> {
    records
        .into_iter()
        .map(|(p, v)| match types(&p) {
            Some(t) if t != DataType::None => v
                .coerce(t)
                .map(|v| (p.clone(), v))
                .map_err(|e| CodecError::Malformed(format!("{p}: {e}"))),
            _ => Ok((p, v)),
        })
        .collect()
}

/// Write-Composite and Send bodies: SenML records with absolute paths (prefixes allowed).
pub fn decode_composite(
    format: Format,
    payload: &[u8],
    types: &dyn Fn(&Path) -> Option<DataType>,
) -> Result<Vec<Record>, CodecError> {
    let records = match format {
        Format::SenmlJson => senml_json::decode(None, payload)?,
        Format::SenmlCbor => senml_cbor::decode(None, payload)?,
        _ => {
            return Err(CodecError::Unsupported(format!(
                "composite operations take SenML, not content-format {}",
                format.number()
            )))
        }
    };
    coerce_all(records, types)
}

/// Paths only, as in a Read-Composite or Observe-Composite request body.
pub fn decode_paths(format: Format, payload: &[u8]) -> Result<Vec<Path>, CodecError> {
    match format {
        Format::SenmlJson => senml_json::decode_names(payload),
        Format::SenmlCbor => senml_cbor::decode_names(payload),
        _ => Err(CodecError::Unsupported(format!(
            "composite operations take SenML, not content-format {}",
            format.number()
        ))),
    }
}

/// Encodes records with absolute names (composite reads, Send, stored notifications),
/// with an optional base time so each record's `t` is relative to it.
pub fn encode_absolute(
    format: Format,
    records: &[Record],
    times: Option<&[f64]>,
) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::SenmlJson => senml_json::encode(&Path::root(), records, times),
        Format::SenmlCbor => senml_cbor::encode(&Path::root(), records, times),
        _ => Err(CodecError::Unsupported(format!(
            "content-format {} cannot carry absolute paths",
            format.number()
        ))),
    }
}

#[cfg(test)]
mod tests;
