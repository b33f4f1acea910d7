//! `[[server]]` tables: the factory-bootstrap LwM2M server accounts.

use super::types::Seconds;
use serde::Deserialize;

fn default_lifetime() -> Seconds {
    Seconds(86_400)
}
fn default_binding() -> String {
    "U".to_string()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `coap://host[:port]` (`coaps://` once DTLS lands).
    pub uri: String,
    /// Short Server ID, 1..=65534 (0 and 65535 are reserved by the spec).
    pub ssid: u16,
    #[serde(default = "default_lifetime")]
    pub lifetime: Seconds,
    /// LwM2M 1.0 binding mode: U, UQ, S, SQ, US, UQS.
    #[serde(default = "default_binding")]
    pub binding: String,
    #[serde(default)]
    pub security: SecurityMode,
    /// Server object resource 6: keep notifications on disk while the server is unreachable.
    #[serde(default = "yes")]
    pub notification_storing: bool,
    /// CoAP ACK_TIMEOUT in seconds (RFC 7252 4.8); default 2.
    #[serde(default)]
    pub ack_timeout: Option<Seconds>,
    /// CoAP MAX_RETRANSMIT; default 4.
    #[serde(default)]
    pub max_retransmit: Option<u32>,
    /// Send notifications confirmable. Default: when notification_storing is on, so
    /// an unreachable server is noticed and nothing is lost. Some servers do not
    /// acknowledge confirmable notifications; set false for them.
    #[serde(default)]
    pub confirmable_notifications: Option<bool>,
    /// Queue mode (binding UQ/SQ/UQS): seconds without traffic before the agent stops
    /// listening until it has something to send. Default: MAX_TRANSMIT_WAIT (93 s).
    #[serde(default)]
    pub queue_timeout: Option<Seconds>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    #[default]
    Nosec,
}

impl SecurityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMode::Nosec => "nosec",
        }
    }
}

/// The binding modes of LwM2M 1.0 (Table 21).
pub const BINDINGS: [&str; 6] = ["U", "UQ", "S", "SQ", "US", "UQS"];

/// Host and port of a `coap://` URI, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Parses `coap://host[:port][/]`; IPv6 literals go in brackets.
pub fn parse_uri(uri: &str) -> Result<ServerAddr, String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("expected a URI like \"coap://host:5683\", got \"{uri}\""))?;
    let default_port = match scheme {
        "coap" => 5683,
        "coaps" => {
            return Err(format!(
                "expected a coap:// URI, got \"{uri}\" (coaps:// needs DTLS, which this version does not support yet)"
            ))
        }
        _ => {
            return Err(format!(
                "expected scheme coap://, got \"{scheme}://\" in \"{uri}\""
            ))
        }
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('?') {
        return Err(format!(
            "expected only host and port in the server URI, got \"{uri}\""
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unterminated IPv6 literal in \"{uri}\""))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected text after ']' in \"{uri}\"")),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("expected a host in \"{uri}\""));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "expected a port 1..65535, got \"{p}\" in \"{uri}\""
                ))
            }
        },
    };
    Ok(ServerAddr {
        scheme: scheme.to_string(),
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_uris() {
        let a = parse_uri("coap://127.0.0.1:5683").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 5683));
        let a = parse_uri("coap://leshan.example/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("leshan.example", 5683));
        let a = parse_uri("coap://[::1]:9999").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 9999));
        let a = parse_uri("coap://[::1]").unwrap();
        assert_eq!(a.port, 5683);
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "127.0.0.1:5683",
            "http://x",
            "coap://",
            "coap://h:0",
            "coap://h:70000",
            "coap://h:x",
            "coap://h/rd",
            "coaps://h",
            "coap://[::1",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }
}
