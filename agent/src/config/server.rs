//! `[[server]]` tables: the factory-bootstrap LwM2M server accounts.

use super::types::{self, Seconds};
use crate::lwm2m::factory;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

fn default_lifetime() -> Seconds {
    Seconds(86_400)
}
fn default_binding() -> String {
    "U".to_string()
}
fn yes() -> bool {
    true
}

with_security_keys! {
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `coap://host[:port]`, or `coaps://host[:port]` with a `security` mode.
    pub uri: String,
    /// Short Server ID, 1..=65534 (0 and 65535 are reserved by the spec).
    #[serde(deserialize_with = "types::ssid")]
    pub ssid: u16,
    #[serde(default = "default_lifetime")]
    pub lifetime: Seconds,
    /// LwM2M 1.0 binding mode: U, UQ, S, SQ, US, UQS.
    #[serde(default = "default_binding")]
    pub binding: String,
    /// Server object resource 6: keep notifications on disk while the server is unreachable.
    #[serde(default = "yes")]
    pub notification_storing: bool,
    /// CoAP ACK_TIMEOUT in seconds (RFC 7252 4.8); default 2.
    #[serde(default)]
    pub ack_timeout: Option<Seconds>,
    /// CoAP MAX_RETRANSMIT; default 4.
    #[serde(default, deserialize_with = "types::max_retransmit")]
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
    /// The server's SMS number (/0/x/9), international (`+447700900123`): SMS
    /// triggers are taken from it (binding US or UQS, and an `[sms]` table).
    #[serde(default)]
    pub sms_number: Option<String>,
}
}

/// A table that did not come through `load` keeps its mode and has no keys,
/// which the DTLS layer refuses rather than falling back to NoSec.
pub(crate) fn keyless(mode: SecurityMode) -> factory::AccountSecurity {
    let credentials = match mode {
        SecurityMode::Nosec => factory::Credentials::NoSec,
        SecurityMode::Psk => factory::Credentials::Psk {
            identity: Vec::new(),
            key: Default::default(),
        },
        SecurityMode::Rpk => factory::Credentials::Rpk {
            public_key: Vec::new(),
            server_public_key: Vec::new(),
            private_key: Default::default(),
        },
        SecurityMode::Certificate => factory::Credentials::Certificate {
            certificate: Vec::new(),
            server_certificate: Vec::new(),
            private_key: Default::default(),
            usage: None,
        },
    };
    factory::AccountSecurity {
        credentials,
        ..Default::default()
    }
}

/// The `[[server]]` array. Its own deserializer only so that a `[server]` table
/// (the commonest slip) is told what it should be rather than "expected a sequence".
pub(super) fn servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServerConfig>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<ServerConfig>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "one [[server]] table per server (an array of tables: the header has double brackets)",
            )
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut servers = Vec::new();
            while let Some(s) = seq.next_element()? {
                servers.push(s);
            }
            Ok(servers)
        }
    }
    d.deserialize_seq(V)
}

/// `security`: LwM2M's Security Mode (/0/x/2).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// Pre-shared key, mode 0.
    Psk,
    /// RFC 7250 raw public keys, mode 1.
    Rpk,
    /// X.509 certificates, mode 2.
    Certificate,
    /// No DTLS, mode 3.
    #[default]
    Nosec,
}

impl SecurityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMode::Psk => "psk",
            SecurityMode::Rpk => "rpk",
            SecurityMode::Certificate => "certificate",
            SecurityMode::Nosec => "nosec",
        }
    }

    /// The value of LwM2M's Security Mode resource (/0/x/2).
    pub fn lwm2m(self) -> i64 {
        match self {
            SecurityMode::Psk => 0,
            SecurityMode::Rpk => 1,
            SecurityMode::Certificate => 2,
            SecurityMode::Nosec => 3,
        }
    }
}

/// The binding modes of LwM2M 1.0 (Table 21).
pub const BINDINGS: [&str; 6] = ["U", "UQ", "S", "SQ", "US", "UQS"];

/// Scheme, host and port of a `coap://` or `coaps://` URI, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub scheme: String,
    /// A host name, an IPv4 address, or an IPv6 address without its brackets (with
    /// `%zone` for a link-local one), as the resolver takes it.
    pub host: String,
    pub port: u16,
}

/// Parses `coap://host[:port][/]` (default port 5683) or `coaps://…` (DTLS,
/// default port 5684); IPv6 literals go in brackets.
///
/// Stricter than "whatever the resolver might take": a URI that passes here but
/// cannot be resolved or connected fails only at run time, every 10 s, in a
/// journal nobody reads during commissioning. So the authority follows RFC 3986
/// and everything lwgate would silently drop (userinfo, query, fragment) is refused.
pub fn parse_uri(uri: &str) -> Result<ServerAddr, String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("expected a URI like \"coap://host:5683\", got \"{uri}\""))?;
    let default_port = match scheme {
        "coap" => 5683,
        "coaps" => 5684,
        _ => {
            return Err(format!(
                "expected scheme coap:// or coaps://, got \"{scheme}://\" in \"{uri}\""
            ))
        }
    };
    if rest.contains('#') {
        return Err(format!(
            "expected no fragment (#…) in a server URI, got \"{uri}\""
        ));
    }
    if rest.contains('?') {
        return Err(format!(
            "expected no query (?…) in a server URI, got \"{uri}\""
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if path.bytes().any(|b| b != b'/') {
        return Err(format!(
            "expected only host and port in the server URI, got \"{uri}\""
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "expected no user name (user@) in a server URI, got \"{uri}\" (credentials are not sent in the URI)"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (literal, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unterminated IPv6 literal in \"{uri}\""))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected text after ']' in \"{uri}\"")),
        };
        (ipv6_host(literal, uri)?, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(unbracketed_ipv6(authority, uri));
        }
        if host.is_empty() {
            return Err(format!("expected a host in \"{uri}\""));
        }
        check_host(host, uri)?;
        (host.to_string(), port)
    };
    let port = match port {
        None => default_port,
        Some(p) => parse_port(p, uri)?,
    };
    Ok(ServerAddr {
        scheme: scheme.to_string(),
        host,
        port,
    })
}

/// `coap://::1` reads as host ":" and port 1 to a naive parser; RFC 3986 puts
/// IPv6 literals in brackets precisely so the port separator stays unambiguous.
/// The example guesses what was meant: an address and a port where the text
/// splits into those (the reading older versions used), else the whole address.
fn unbracketed_ipv6(authority: &str, uri: &str) -> String {
    use std::net::Ipv6Addr;
    let with_port = authority.rsplit_once(':').and_then(|(a, p)| {
        let addr = a.parse::<Ipv6Addr>().ok()?;
        let port = parse_port(p, uri).ok()?;
        Some(format!("coap://[{addr}]:{port}"))
    });
    let example = match (with_port, authority.parse::<Ipv6Addr>()) {
        (Some(e), _) => e,
        (None, Ok(addr)) => format!("coap://[{addr}]:5683"),
        (None, Err(_)) => "coap://[2001:db8::1]:5683".to_string(),
    };
    format!("expected an IPv6 address in brackets, e.g. \"{example}\", got \"{uri}\"")
}

/// The text between `[` and `]`: an IPv6 address, with an optional RFC 6874 zone
/// (`%25eth0`, or the bare `%eth0` that resolvers also take) for link-local servers.
fn ipv6_host(literal: &str, uri: &str) -> Result<String, String> {
    let (addr, zone) = match literal.split_once('%') {
        Some((a, z)) => (a, Some(z.strip_prefix("25").unwrap_or(z))),
        None => (literal, None),
    };
    let bad =
        || format!("expected an IPv6 address between [ and ], got \"[{literal}]\" in \"{uri}\"");
    let addr: std::net::Ipv6Addr = addr.parse().map_err(|_| bad())?;
    match zone {
        None => Ok(addr.to_string()),
        Some(z)
            if !z.is_empty()
                && z.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
                }) =>
        {
            Ok(format!("{addr}%{z}"))
        }
        Some(_) => Err(bad()),
    }
}

/// A host outside brackets: an IPv4 address or a host name (RFC 1123 labels;
/// `_` too, as container and compose service names use it and resolvers take it).
fn check_host(host: &str, uri: &str) -> Result<(), String> {
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match host.parse::<std::net::Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "expected an IPv4 address like 192.0.2.1, got \"{host}\" in \"{uri}\""
            )),
        };
    }
    let problem = host_name_problem(host);
    match problem {
        None => Ok(()),
        Some(why) => Err(format!(
            "expected a host name of letters, digits, '-', '_' and '.', an IPv4 address or an IPv6 address in brackets, got \"{host}\" in \"{uri}\" ({why})"
        )),
    }
}

pub(super) fn host_name_problem(host: &str) -> Option<String> {
    if let Some(c) = host
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(match c {
            ' ' => "a space is not allowed".to_string(),
            c if c.is_whitespace() || c.is_control() => {
                format!("{} is not allowed", c.escape_default())
            }
            c => format!("'{c}' is not allowed"),
        });
    }
    // A trailing dot is the fully qualified form and resolves the same.
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Some("longer than 253 characters".to_string());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("an empty label between dots".to_string());
        }
        if label.len() > 63 {
            return Some(format!("label \"{label}\" is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label \"{label}\" starts or ends with '-'"));
        }
    }
    None
}

fn parse_port(p: &str, uri: &str) -> Result<u16, String> {
    let bad = || format!("expected a port from 1 to 65535, got \"{p}\" in \"{uri}\"");
    // `u16::from_str` also takes "+80"; a URI port is digits only.
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad()),
    }
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
    fn accepts_what_resolvers_take() {
        for (uri, host, port) in [
            ("coap://[::1]:5683", "::1", 5683),
            ("coap://[2001:DB8::1]/", "2001:db8::1", 5683),
            ("coap://[fe80::1%25eth0]:5683", "fe80::1%eth0", 5683),
            ("coap://[fe80::1%eth0]", "fe80::1%eth0", 5683),
            (
                "coap://Leshan-1.example.COM.:65535",
                "Leshan-1.example.COM.",
                65535,
            ),
            ("coap://lwm2m_server:5683", "lwm2m_server", 5683),
            ("coap://localhost", "localhost", 5683),
            ("coap://h:05683//", "h", 5683),
            ("coap://192.0.2.1:1", "192.0.2.1", 1),
        ] {
            let a = parse_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!((a.host.as_str(), a.port), (host, port), "{uri}");
        }
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "127.0.0.1:5683",
            "http://x",
            "COAP://x",
            "coap://",
            "coap://h:0",
            "coap://h:70000",
            "coap://h:x",
            "coap://h:",
            "coap://h:+80",
            "coap://h/rd",
            "coap://[::1",
            "coap://[::1]x",
            "coap://::1",
            "coap://host name",
            "coap://h ",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    fn err(uri: &str) -> String {
        parse_uri(uri).unwrap_err()
    }

    #[test]
    fn unbracketed_ipv6_says_to_use_brackets() {
        assert_eq!(
            err("coap://::1"),
            "expected an IPv6 address in brackets, e.g. \"coap://[::1]:5683\", got \"coap://::1\""
        );
        assert!(
            err("coap://2001:db8::1:5683")
                .contains("in brackets, e.g. \"coap://[2001:db8::1]:5683\""),
            "the last group reads as the port, as older versions took it"
        );
        assert!(
            err("coap://::1:0").contains("e.g. \"coap://[::1:0]:5683\""),
            "0 is no port"
        );
        assert!(err("coap://fe80::1:70000").contains("e.g. \"coap://[2001:db8::1]:5683\""));
        assert!(
            err("coap://fe80::zz:1").contains("in brackets, e.g. \"coap://[2001:db8::1]:5683\"")
        );
    }

    #[test]
    fn bad_host_names_say_why() {
        let e = err("coap://host name");
        assert!(
            e.starts_with("expected a host name of letters, digits, '-', '_' and '.', an IPv4 address or an IPv6 address in brackets, got \"host name\""),
            "{e}"
        );
        assert!(e.ends_with("(a space is not allowed)"), "{e}");
        assert!(err("coap://h\t").ends_with("(\\t is not allowed)"));
        assert!(err("coap://h%41").ends_with("('%' is not allowed)"));
        assert!(err("coap://bücher.example").ends_with("('ü' is not allowed)"));
        assert!(err("coap://a..b").ends_with("(an empty label between dots)"));
        assert!(err("coap://.a").ends_with("(an empty label between dots)"));
        assert!(err("coap://-a.b").ends_with("(label \"-a\" starts or ends with '-')"));
        assert!(err(&format!("coap://{}.b", "x".repeat(64))).contains("longer than 63"));
        assert!(err(&format!("coap://{}", ["abcdefghi"; 26].join("."))).contains("longer than 253"));
        assert!(err("coap://h]").ends_with("(']' is not allowed)"));
    }

    #[test]
    fn bad_ip_addresses_say_what_an_address_looks_like() {
        assert_eq!(
            err("coap://999.1.1.1:5683"),
            "expected an IPv4 address like 192.0.2.1, got \"999.1.1.1\" in \"coap://999.1.1.1:5683\""
        );
        assert!(err("coap://1.2.3").starts_with("expected an IPv4 address"));
        assert_eq!(
            err("coap://[::g]"),
            "expected an IPv6 address between [ and ], got \"[::g]\" in \"coap://[::g]\""
        );
        assert!(err("coap://[v1.x]").starts_with("expected an IPv6 address between"));
        assert!(err("coap://[fe80::1%]").starts_with("expected an IPv6 address between"));
        assert!(err("coap://[fe80::1%25a b]").starts_with("expected an IPv6 address between"));
    }

    #[test]
    fn ports_outside_1_to_65535_are_named() {
        for (uri, p) in [
            ("coap://h:0", "0"),
            ("coap://h:65536", "65536"),
            ("coap://h:99999999999999999999", "99999999999999999999"),
            ("coap://[::1]:0", "0"),
            ("coap://h:", ""),
            ("coap://h:-1", "-1"),
        ] {
            assert_eq!(
                err(uri),
                format!("expected a port from 1 to 65535, got \"{p}\" in \"{uri}\"")
            );
        }
    }

    #[test]
    fn missing_host_userinfo_query_and_fragment_are_refused() {
        assert_eq!(err("coap://"), "expected a host in \"coap://\"");
        assert_eq!(err("coap://:5683"), "expected a host in \"coap://:5683\"");
        assert_eq!(err("coap:///"), "expected a host in \"coap:///\"");
        assert_eq!(
            err("coap://user@h"),
            "expected no user name (user@) in a server URI, got \"coap://user@h\" (credentials are not sent in the URI)"
        );
        assert_eq!(
            err("coap://h/?ep=x"),
            "expected no query (?…) in a server URI, got \"coap://h/?ep=x\""
        );
        assert_eq!(
            err("coap://h#top"),
            "expected no fragment (#…) in a server URI, got \"coap://h#top\""
        );
    }

    #[test]
    fn coaps_defaults_to_port_5684() {
        let a = parse_uri("coaps://h").unwrap();
        assert_eq!(
            (a.scheme.as_str(), a.host.as_str(), a.port),
            ("coaps", "h", 5684)
        );
        let a = parse_uri("coaps://[::1]:15684/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 15684));
        assert_eq!(
            err("http://h"),
            "expected scheme coap:// or coaps://, got \"http://\" in \"http://h\""
        );
    }
}
