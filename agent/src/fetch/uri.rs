//! A coap:// or coaps:// Package URI as the GET it names (RFC 7252 §6.4).
//! The syntax checks are the firmware object's own, so a URI it accepted for
//! /5/0/1 is one the downloader takes.

use super::error::FetchError;
use crate::coap::message;
use crate::lwm2m::firmware::{check_package_uri, Protocol, UriError};
use coap_lite::{CoapOption, Packet, RequestType};

/// What one request needs to know about its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub secure: bool,
    /// Name or IP address, without brackets.
    pub host: String,
    pub port: u16,
    /// Uri-Host, for a name only (an IP literal is the destination itself).
    uri_host: Option<Vec<u8>>,
    path: Vec<Vec<u8>>,
    query: Vec<Vec<u8>>,
}

/// Options are at most 255 bytes each (RFC 7252 §5.10).
const MAX_OPTION: usize = 255;

impl Target {
    pub fn parse(uri: &str) -> Result<Self, FetchError> {
        let p =
            check_package_uri(uri, &[Protocol::Coap, Protocol::Coaps]).map_err(|e| match e {
                UriError::Invalid(why) => FetchError::InvalidUri(why.to_string()),
                UriError::Unsupported(scheme) => FetchError::UnsupportedScheme(scheme),
            })?;
        let secure = p.protocol == Protocol::Coaps;
        let (path, query) = match p.path_and_query.split_once('?') {
            Some((path, q)) => (path, Some(q)),
            None => (p.path_and_query.as_str(), None),
        };
        // Step 8: "" and "/" are no Uri-Path at all; otherwise every segment,
        // empty ones included ("/a/" is "a" and "").
        let path = match path.strip_prefix('/') {
            None | Some("") => Vec::new(),
            Some(rest) => rest.split('/').map(decode).collect::<Result<_, _>>()?,
        };
        let query = match query {
            None => Vec::new(),
            Some(q) => q.split('&').map(decode).collect::<Result<_, _>>()?,
        };
        let uri_host = if p.host.parse::<std::net::IpAddr>().is_ok() {
            None
        } else {
            Some(decode(&p.host.to_ascii_lowercase())?)
        };
        Ok(Self {
            secure,
            host: p.host,
            port: p.port.unwrap_or(if secure { 5684 } else { 5683 }),
            uri_host,
            path,
            query,
        })
    }

    /// A confirmable GET for one block; the endpoint adds token and id.
    pub fn get(&self, block: crate::coap::block::BlockOpt, ask_size: bool) -> Packet {
        let mut p = message::request(RequestType::Get, &[], &[]);
        if let Some(h) = &self.uri_host {
            p.add_option(CoapOption::UriHost, h.clone());
        }
        for s in &self.path {
            p.add_option(CoapOption::UriPath, s.clone());
        }
        for q in &self.query {
            p.add_option(CoapOption::UriQuery, q.clone());
        }
        message::set_block(&mut p, CoapOption::Block2, block);
        if ask_size {
            message::set_uint(&mut p, CoapOption::Size2, 0);
        }
        p
    }
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Percent-decodes one segment (the checker has validated the escapes).
fn decode(s: &str) -> Result<Vec<u8>, FetchError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let v = b
                .get(i + 1)
                .and_then(|&h| hex(h))
                .zip(b.get(i + 2).and_then(|&l| hex(l)))
                .ok_or_else(|| FetchError::InvalidUri("bad percent-encoding".into()))?;
            out.push(v.0 << 4 | v.1);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.len() > MAX_OPTION {
        return Err(FetchError::InvalidUri(format!(
            "a segment of {} bytes (CoAP options hold 255)",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coap::block::BlockOpt;

    fn options(p: &Packet, o: CoapOption) -> Vec<Vec<u8>> {
        p.get_option(o)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn uri_to_options() {
        let t = Target::parse("coap://Repo.example:5700/fw/a%20b/?v=1&x=%26").unwrap();
        assert!(!t.secure);
        assert_eq!((t.host.as_str(), t.port), ("Repo.example", 5700));
        let p = t.get(
            BlockOpt {
                num: 3,
                more: false,
                szx: 6,
            },
            true,
        );
        assert_eq!(
            options(&p, CoapOption::UriHost),
            vec![b"repo.example".to_vec()]
        );
        assert_eq!(
            options(&p, CoapOption::UriPath),
            vec![b"fw".to_vec(), b"a b".to_vec(), Vec::new()]
        );
        assert_eq!(
            options(&p, CoapOption::UriQuery),
            vec![b"v=1".to_vec(), b"x=&".to_vec()]
        );
        assert_eq!(
            message::block(&p, CoapOption::Block2),
            Some(Some(BlockOpt {
                num: 3,
                more: false,
                szx: 6
            }))
        );
        assert_eq!(message::get_uint(&p, CoapOption::Size2), Some(0));
        let p = t.get(
            BlockOpt {
                num: 4,
                more: false,
                szx: 6,
            },
            false,
        );
        assert_eq!(p.get_option(CoapOption::Size2), None);
    }

    #[test]
    fn defaults_and_literals() {
        let t = Target::parse("coaps://[::1]/").unwrap();
        assert!(t.secure);
        assert_eq!((t.host.as_str(), t.port), ("::1", 5684));
        let p = t.get(
            BlockOpt {
                num: 0,
                more: false,
                szx: 6,
            },
            false,
        );
        assert_eq!(p.get_option(CoapOption::UriHost), None);
        assert_eq!(p.get_option(CoapOption::UriPath), None);
        assert_eq!(Target::parse("coap://10.0.0.1").unwrap().port, 5683);
        let t = Target::parse("coap://10.0.0.1/a#frag").unwrap();
        assert_eq!(t.path, vec![b"a".to_vec()]);
    }

    #[test]
    fn bad_uris_map_to_7_and_9() {
        for bad in ["not a uri", "coap://", "coap://h:99999/", "coap://u@h/"] {
            let e = Target::parse(bad).unwrap_err();
            assert_eq!(e.update_result(), 7, "{bad}: {e}");
        }
        for other in ["http://h/x", "ftp://h/x", "coap+tcp://h/x"] {
            let e = Target::parse(other).unwrap_err();
            assert!(matches!(e, FetchError::UnsupportedScheme(_)), "{other}");
            assert_eq!(e.update_result(), 9);
        }
        let long = format!("coap://h/{}", "a".repeat(240));
        assert!(Target::parse(&long).is_ok());
        assert!(decode(&"%41".repeat(256)).is_err());
    }
}
