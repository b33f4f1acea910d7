//! Classifying an incoming CoAP request into an LwM2M operation (spec 8.x mapping).

use super::dm::Op;
use super::error::{OpError, OpResult};
use crate::coap::message;
use crate::codec::Format;
use crate::model::{Path, PathError, Registry};
use coap_lite::{MessageClass, Packet, RequestType};

/// Identity of a request across its Block1/Block2 exchanges.
pub fn cache_key(req: &Packet) -> String {
    let method = message::code_byte(req);
    let path = message::uri_path(req).unwrap_or_default().join("/");
    let query = message::uri_query(req).unwrap_or_default().join("&");
    format!(
        "{method}|{path}|{query}|{:?}|{:?}",
        message::accept(req),
        message::content_format(req)
    )
}

pub fn classify(req: &Packet, payload: Vec<u8>, reg: &Registry) -> OpResult<Op> {
    let segs = message::uri_path(req)
        .ok_or_else(|| OpError::BadRequest("URI-Path is not UTF-8".into()))?;
    let path = Path::from_segments(&segs).map_err(|e| match e {
        PathError::BadId(_) | PathError::TooDeep | PathError::Empty | PathError::BadPrefix(_) => {
            OpError::BadRequest(format!("bad path /{}: {e}", segs.join("/")))
        }
    })?;
    let queries = message::uri_query(req)
        .ok_or_else(|| OpError::BadRequest("URI-Query is not UTF-8".into()))?;
    let format = message::content_format(req);
    let accept = message::accept(req);
    let MessageClass::Request(method) = req.header.code else {
        return Err(OpError::MethodNotAllowed);
    };
    Ok(match method {
        RequestType::Get => {
            if path.is_empty() {
                return Err(OpError::MethodNotAllowed);
            }
            if accept == Some(Format::Link.number()) {
                Op::Discover { path }
            } else {
                Op::Read { path, accept }
            }
        }
        RequestType::Put => {
            if path.len() < 2 && !(payload.is_empty() && !queries.is_empty() && !path.is_empty()) {
                return Err(OpError::MethodNotAllowed);
            }
            if payload.is_empty() && !queries.is_empty() {
                Op::WriteAttributes { path, queries }
            } else {
                Op::Write {
                    path,
                    format,
                    payload,
                    replace: true,
                }
            }
        }
        RequestType::Post => match path.len() {
            0 => return Err(OpError::MethodNotAllowed),
            1 => Op::Create {
                path,
                format,
                payload,
            },
            2 => Op::Write {
                path,
                format,
                payload,
                replace: false,
            },
            3 => {
                let def = path
                    .object()
                    .and_then(|o| reg.get(o))
                    .and_then(|d| d.resource(path.resource().unwrap_or_default()));
                match def {
                    Some(r) if r.ops.execute => Op::Execute { path, payload },
                    // 1.1: POST to a multiple resource adds or updates its instances.
                    Some(r) if r.multiple => Op::Write {
                        path,
                        format,
                        payload,
                        replace: false,
                    },
                    // Unknown resources get their 4.04 from Execute.
                    None => Op::Execute { path, payload },
                    Some(_) => return Err(OpError::MethodNotAllowed),
                }
            }
            _ => return Err(OpError::MethodNotAllowed),
        },
        RequestType::Delete => Op::Delete { path },
        RequestType::Fetch if path.is_empty() => Op::ReadComposite {
            format,
            accept,
            payload,
        },
        RequestType::IPatch if path.is_empty() => Op::WriteComposite { format, payload },
        _ => return Err(OpError::MethodNotAllowed),
    })
}
