//! application/octet-stream (42): exactly one opaque resource.

use super::{malformed, CodecError, Record};
use crate::model::{Path, Value};

pub fn encode(records: &[Record]) -> Result<Vec<u8>, CodecError> {
    match records {
        [(_, Value::Opaque(b))] => Ok(b.clone()),
        [(_, _)] => Err(CodecError::Unsupported(
            "only opaque resources can be read as application/octet-stream".into(),
        )),
        _ => Err(CodecError::Unsupported(
            "application/octet-stream carries exactly one resource".into(),
        )),
    }
}

pub fn decode(base: &Path, payload: &[u8]) -> Result<Vec<Record>, CodecError> {
    if base.len() < 3 {
        return malformed("application/octet-stream is only for a single resource");
    }
    Ok(vec![(base.clone(), Value::Opaque(payload.to_vec()))])
}
