//! Small helpers over coap-lite's `Packet`: typed option access and builders.

use super::block::BlockOpt;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

/// Options this agent understands; an unknown critical (odd) option in a request
/// gets 4.02 Bad Option (RFC 7252 5.4.1).
const KNOWN: &[u16] = &[
    1, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 20, 23, 27, 28, 35, 39, 60, 258,
];

pub fn unknown_critical_option(p: &Packet) -> Option<u16> {
    p.options()
        .map(|(n, _)| *n)
        .find(|n| n % 2 == 1 && !KNOWN.contains(n))
}

pub fn uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)))
}

pub fn uint_bytes(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

pub fn get_uint(p: &Packet, opt: CoapOption) -> Option<u32> {
    p.get_first_option(opt).and_then(|b| uint(b))
}

pub fn set_uint(p: &mut Packet, opt: CoapOption, v: u32) {
    p.clear_option(opt);
    p.add_option(opt, uint_bytes(v));
}

/// URI-Path segments; None if one is not UTF-8.
pub fn uri_path(p: &Packet) -> Option<Vec<String>> {
    strings(p, CoapOption::UriPath)
}

pub fn uri_query(p: &Packet) -> Option<Vec<String>> {
    strings(p, CoapOption::UriQuery)
}

pub fn location_path(p: &Packet) -> Option<Vec<String>> {
    strings(p, CoapOption::LocationPath)
}

fn strings(p: &Packet, opt: CoapOption) -> Option<Vec<String>> {
    match p.get_option(opt) {
        None => Some(Vec::new()),
        Some(list) => list
            .iter()
            .map(|b| String::from_utf8(b.clone()).ok())
            .collect(),
    }
}

pub fn content_format(p: &Packet) -> Option<u16> {
    get_uint(p, CoapOption::ContentFormat).and_then(|v| u16::try_from(v).ok())
}

pub fn accept(p: &Packet) -> Option<u16> {
    get_uint(p, CoapOption::Accept).and_then(|v| u16::try_from(v).ok())
}

/// None: no option; Some(None): present but malformed.
pub fn block(p: &Packet, opt: CoapOption) -> Option<Option<BlockOpt>> {
    p.get_first_option(opt).map(|b| BlockOpt::decode(b))
}

pub fn set_block(p: &mut Packet, opt: CoapOption, b: BlockOpt) {
    p.clear_option(opt);
    p.add_option(opt, b.encode());
}

pub fn observe(p: &Packet) -> Option<u32> {
    get_uint(p, CoapOption::Observe)
}

pub fn is_request(p: &Packet) -> bool {
    matches!(p.header.code, MessageClass::Request(_))
}

pub fn is_response(p: &Packet) -> bool {
    matches!(p.header.code, MessageClass::Response(_))
        || matches!(p.header.code, MessageClass::Reserved(c) if c >= 0x40)
}

/// Raw code byte: class << 5 | detail.
pub fn code_byte(p: &Packet) -> u8 {
    u8::from(p.header.code)
}

pub fn code(byte: u8) -> MessageClass {
    MessageClass::from(byte)
}

/// "2.05"-style text for logs and status.
pub fn code_text(byte: u8) -> String {
    format!("{}.{:02}", byte >> 5, byte & 0x1F)
}

pub fn request(method: RequestType, path: &[&str], query: &[String]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    for s in path {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p
}

/// A response to `req` with its token (the type and message id are the endpoint's job).
pub fn response(req: &Packet, code: u8) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::from(code);
    p.set_token(req.get_token().to_vec());
    p
}

pub fn set_content_format(p: &mut Packet, cf: u16) {
    set_uint(p, CoapOption::ContentFormat, u32::from(cf));
}

pub fn response_type(r: ResponseType) -> u8 {
    u8::from(MessageClass::Response(r))
}

/// Response codes used by the LwM2M layer, as code bytes.
pub mod codes {
    pub const CREATED: u8 = 0x41;
    pub const DELETED: u8 = 0x42;
    pub const CHANGED: u8 = 0x44;
    pub const CONTENT: u8 = 0x45;
    pub const CONTINUE: u8 = 0x5F;
    pub const BAD_REQUEST: u8 = 0x80;
    pub const UNAUTHORIZED: u8 = 0x81;
    pub const BAD_OPTION: u8 = 0x82;
    pub const NOT_FOUND: u8 = 0x84;
    pub const METHOD_NOT_ALLOWED: u8 = 0x85;
    pub const NOT_ACCEPTABLE: u8 = 0x86;
    pub const REQUEST_ENTITY_INCOMPLETE: u8 = 0x88;
    pub const PRECONDITION_FAILED: u8 = 0x8C;
    pub const REQUEST_ENTITY_TOO_LARGE: u8 = 0x8D;
    pub const UNSUPPORTED_CONTENT_FORMAT: u8 = 0x8F;
    pub const INTERNAL_SERVER_ERROR: u8 = 0xA0;
    pub const SERVICE_UNAVAILABLE: u8 = 0xA3;

    pub fn is_success(code: u8) -> bool {
        code >> 5 == 2
    }
}
