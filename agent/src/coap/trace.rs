//! One-line descriptions of CoAP datagrams for the protocol trace: what a field
//! engineer needs to diagnose an interop problem from the journal (type, code,
//! MID, token, path, query, content-format, size, Observe and Block options), and
//! payloads separately, never showing what the Security object holds.

use super::block::BlockOpt;
use super::message;
use coap_lite::{CoapOption, MessageType, Packet};
use std::fmt::Write;

/// Longest payload shown by `payload`; more is cut with a count of what was left.
const PAYLOAD_SHOWN: usize = 512;

/// `CON POST mid=0x1a2b token=3f2a /rd?ep=gw&lt=300 cf=40 size=212`, or why the
/// bytes are not CoAP.
pub fn describe(bytes: &[u8]) -> String {
    let p = match Packet::from_bytes(bytes) {
        Ok(p) => p,
        Err(e) => return format!("not a CoAP message ({} bytes): {e:?}", bytes.len()),
    };
    let mut s = String::new();
    let ty = match p.header.get_type() {
        MessageType::Confirmable => "CON",
        MessageType::NonConfirmable => "NON",
        MessageType::Acknowledgement => "ACK",
        MessageType::Reset => "RST",
    };
    let code = message::code_byte(&p);
    let code = match p.header.code {
        _ if code == 0 => "empty".to_string(),
        coap_lite::MessageClass::Request(m) => format!("{m:?}").to_uppercase(),
        _ => message::code_text(code),
    };
    let _ = write!(s, "{ty} {code} mid={:#06x}", p.header.message_id);
    if !p.get_token().is_empty() {
        let _ = write!(s, " token={}", hex::encode(p.get_token()));
    }
    let path = segments(&p, CoapOption::UriPath);
    let query = segments(&p, CoapOption::UriQuery);
    if !path.is_empty() || message::is_request(&p) {
        let _ = write!(s, " /{}", path.join("/"));
    }
    if !query.is_empty() {
        let _ = write!(s, "?{}", query.join("&"));
    }
    let loc = segments(&p, CoapOption::LocationPath);
    if !loc.is_empty() {
        let _ = write!(s, " location=/{}", loc.join("/"));
    }
    if let Some(cf) = message::content_format(&p) {
        let _ = write!(s, " cf={cf}");
    }
    if let Some(a) = message::accept(&p) {
        let _ = write!(s, " accept={a}");
    }
    if let Some(o) = message::observe(&p) {
        let _ = write!(s, " observe={o}");
    }
    for (name, opt) in [
        ("block1", CoapOption::Block1),
        ("block2", CoapOption::Block2),
    ] {
        match message::block(&p, opt) {
            Some(Some(b)) => {
                let _ = write!(s, " {name}={}", block_text(b));
            }
            Some(None) => {
                let _ = write!(s, " {name}=malformed");
            }
            None => {}
        }
    }
    if let Some(n) = message::get_uint(&p, CoapOption::Size1) {
        let _ = write!(s, " size1={n}");
    }
    if let Some(n) = message::get_uint(&p, CoapOption::Size2) {
        let _ = write!(s, " size2={n}");
    }
    let _ = write!(s, " size={}", p.payload.len());
    s
}

/// The payload for the trace level: text as text, anything else as hex, cut at
/// `PAYLOAD_SHOWN` bytes. None when there is no payload. Requests on the Security
/// object (/0, and the root a Bootstrap-Write could reach it through) carry keys:
/// their payload is never shown.
pub fn payload(bytes: &[u8]) -> Option<String> {
    let p = Packet::from_bytes(bytes).ok()?;
    if p.payload.is_empty() {
        return None;
    }
    let path = segments(&p, CoapOption::UriPath);
    let cf = message::content_format(&p);
    if message::is_request(&p) && path.first().is_none_or(|s| s == "0") {
        return Some(format!(
            "({} bytes not shown: they may hold Security object keys)",
            p.payload.len()
        ));
    }
    let shown = &p.payload[..p.payload.len().min(PAYLOAD_SHOWN)];
    let textual = matches!(cf, Some(0 | 40 | 50 | 110 | 11542 | 11543));
    let mut out = match std::str::from_utf8(shown) {
        Ok(t) if textual => t.escape_debug().to_string(),
        _ => hex::encode(shown),
    };
    if p.payload.len() > shown.len() {
        let _ = write!(out, " … ({} more bytes)", p.payload.len() - shown.len());
    }
    Some(out)
}

fn segments(p: &Packet, opt: CoapOption) -> Vec<String> {
    p.get_option(opt)
        .map(|l| {
            l.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 7959's `num/more/size` notation.
fn block_text(b: BlockOpt) -> String {
    format!("{}/{}/{}", b.num, u8::from(b.more), b.size())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::RequestType;

    fn register() -> Packet {
        let mut p = message::request(
            RequestType::Post,
            &["rd"],
            &["ep=gw1".into(), "lt=300".into()],
        );
        p.header.message_id = 0x1a2b;
        p.set_token(vec![0x3f, 0x2a]);
        message::set_content_format(&mut p, 40);
        p.payload = b"</1/0>,</3/0>".to_vec();
        p
    }

    #[test]
    fn a_register_reads_as_one_line() {
        let bytes = register().to_bytes().unwrap_or_default();
        assert_eq!(
            describe(&bytes),
            "CON POST mid=0x1a2b token=3f2a /rd?ep=gw1&lt=300 cf=40 size=13"
        );
        assert_eq!(payload(&bytes).as_deref(), Some("</1/0>,</3/0>"));
    }

    #[test]
    fn a_notification_shows_observe_and_block() {
        let mut p = Packet::new();
        p.header.set_type(MessageType::NonConfirmable);
        p.header.code = coap_lite::MessageClass::from(message::codes::CONTENT);
        p.header.message_id = 7;
        p.set_token(vec![1]);
        message::set_uint(&mut p, CoapOption::Observe, 12);
        message::set_block(
            &mut p,
            CoapOption::Block2,
            BlockOpt {
                num: 2,
                more: true,
                szx: 6,
            },
        );
        message::set_content_format(&mut p, 112);
        p.payload = vec![0x81, 0xa2];
        let bytes = p.to_bytes().unwrap_or_default();
        assert_eq!(
            describe(&bytes),
            "NON 2.05 mid=0x0007 token=01 cf=112 observe=12 block2=2/1/1024 size=2"
        );
        assert_eq!(payload(&bytes).as_deref(), Some("81a2"));
    }

    #[test]
    fn an_empty_ack_and_garbage() {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        p.header.code = coap_lite::MessageClass::Empty;
        p.header.message_id = 9;
        let bytes = p.to_bytes().unwrap_or_default();
        assert_eq!(describe(&bytes), "ACK empty mid=0x0009 size=0");
        assert!(describe(&[0xff, 0x00]).starts_with("not a CoAP message (2 bytes)"));
        assert_eq!(payload(&bytes), None);
    }

    #[test]
    fn security_object_payloads_are_never_shown() {
        for path in [&["0", "1"][..], &["0"][..], &[][..]] {
            let mut p = message::request(RequestType::Put, path, &[]);
            message::set_content_format(&mut p, 11542);
            p.payload = b"secret-psk-key".to_vec();
            let bytes = p.to_bytes().unwrap_or_default();
            let shown = payload(&bytes).unwrap_or_default();
            assert!(!shown.contains("secret"), "{path:?}: {shown}");
            assert!(!shown.contains(&hex::encode("secret")), "{path:?}: {shown}");
            assert!(shown.contains("14 bytes not shown"), "{shown}");
        }
        // Other objects' payloads are shown.
        let mut p = message::request(RequestType::Put, &["1", "0"], &[]);
        p.payload = b"x".to_vec();
        assert_eq!(
            payload(&p.to_bytes().unwrap_or_default()).as_deref(),
            Some("78")
        );
    }

    #[test]
    fn long_payloads_are_cut() {
        let mut p = register();
        p.payload = vec![b'a'; 1000];
        let shown = payload(&p.to_bytes().unwrap()).unwrap();
        assert!(shown.starts_with(&"a".repeat(512)), "{shown}");
        assert!(shown.ends_with("a … (488 more bytes)"), "{shown}");
    }
}
