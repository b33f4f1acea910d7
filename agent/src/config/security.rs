//! The DTLS keys of `[[server]]` and `[bootstrap.server]`, and how they become
//! the LwM2M Security object's resources (/0/x/2–5, 14–16).
//!
//! Both tables take the same keys. `#[serde(deny_unknown_fields)]` does not work
//! with `#[serde(flatten)]`, so [`with_security_keys!`] writes them into each
//! struct explicitly, and [`SecurityKeys`] is the borrowed view the checks take.
//!
//! Secrets (the PSK, private keys) never reach an error message, a Debug impl
//! or a log line: [`SecretHex`] and `SecretBytes` print their length only.

use super::error::ConfigError;
use super::server::{host_name_problem, parse_uri, SecurityMode};
use super::types::Seconds;
use crate::dtls::ciphers::{self, SuiteKind};
use crate::lwm2m::factory::{AccountSecurity, Credentials, SecretBytes};
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::X509;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// `handshake_timeout` when absent: the DTLS module's own default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Seconds = Seconds(15);

pub(super) fn default_handshake_timeout() -> Seconds {
    DEFAULT_HANDSHAKE_TIMEOUT
}

/// Appends the security keys to a config table struct, with a `security_keys`
/// view and a `rebase_paths` that makes their relative paths absolute.
macro_rules! with_security_keys {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$fattr:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$attr])*
        pub struct $name {
            $( $(#[$fattr])* pub $field: $ty, )*
            /// LwM2M Security Mode (/0/x/2): psk, rpk, certificate or nosec.
            #[serde(default)]
            pub security: $crate::config::SecurityMode,
            /// PSK identity (/0/x/3), UTF-8.
            #[serde(default)]
            pub psk_identity: Option<String>,
            /// The PSK (/0/x/5) as hex digits, inline.
            #[serde(default)]
            pub psk_key: Option<$crate::config::SecretHex>,
            /// A file holding the PSK as hex digits (whitespace around them ignored).
            #[serde(default)]
            pub psk_key_file: Option<std::path::PathBuf>,
            /// Own certificate, PEM (the leaf first, a chain may follow) or DER (/0/x/3: the leaf).
            #[serde(default)]
            pub certificate: Option<std::path::PathBuf>,
            /// Own private key, PEM or DER (/0/x/5), certificate and RPK modes.
            #[serde(default)]
            pub private_key: Option<std::path::PathBuf>,
            /// The server's certificate, PEM or DER (/0/x/4).
            #[serde(default)]
            pub server_certificate: Option<std::path::PathBuf>,
            /// PEM CAs the server's chain must lead to (lwgate's own, no LwM2M
            /// resource). After `load`, an absolute path.
            #[serde(default)]
            pub ca_file: Option<std::path::PathBuf>,
            /// LwM2M Certificate Usage (/0/x/15), 0–3, for `server_certificate`.
            #[serde(default, deserialize_with = "crate::config::types::certificate_usage")]
            pub certificate_usage: Option<u8>,
            /// Own public key for RPK, PEM or DER (/0/x/3); derived from `private_key` when absent.
            #[serde(default)]
            pub public_key: Option<std::path::PathBuf>,
            /// The server's public key for RPK, PEM or DER (/0/x/4).
            #[serde(default)]
            pub server_public_key: Option<std::path::PathBuf>,
            /// Server Name Indication (/0/x/14); default: the URI's host when it is a name.
            #[serde(default)]
            pub sni: Option<String>,
            /// Cipher suites to offer, by IANA number or name (/0/x/16).
            #[serde(default)]
            pub cipher_suites: Option<Vec<$crate::config::CipherSuite>>,
            /// Seconds a whole DTLS handshake may take (no LwM2M resource); default 15.
            #[serde(default = "crate::config::security::default_handshake_timeout")]
            pub handshake_timeout: $crate::config::Seconds,
            /// The Security-object material these keys give, DER throughout: filled
            /// by `config::load` once every file is read and checked.
            #[serde(skip)]
            pub credentials: Option<$crate::lwm2m::factory::AccountSecurity>,
        }

        impl $name {
            /// The Security-object material (/0/x/2–5, 14–16) `config::load`
            /// read and checked; a table that did not come through `load` keeps
            /// its mode without keys, which the DTLS layer refuses (never NoSec).
            pub fn account_security(&self) -> $crate::lwm2m::factory::AccountSecurity {
                self.credentials
                    .clone()
                    .unwrap_or_else(|| $crate::config::server::keyless(self.security))
            }

            pub fn security_keys(&self) -> $crate::config::security::SecurityKeys<'_> {
                $crate::config::security::SecurityKeys {
                    security: self.security,
                    psk_identity: self.psk_identity.as_deref(),
                    psk_key: self.psk_key.as_ref(),
                    psk_key_file: self.psk_key_file.as_deref(),
                    certificate: self.certificate.as_deref(),
                    private_key: self.private_key.as_deref(),
                    server_certificate: self.server_certificate.as_deref(),
                    ca_file: self.ca_file.as_deref(),
                    certificate_usage: self.certificate_usage,
                    public_key: self.public_key.as_deref(),
                    server_public_key: self.server_public_key.as_deref(),
                    sni: self.sni.as_deref(),
                    cipher_suites: self.cipher_suites.as_deref(),
                }
            }

            /// Relative paths are taken from the config file's directory.
            pub(crate) fn rebase_paths(&mut self, base: &std::path::Path) {
                for p in [
                    &mut self.psk_key_file,
                    &mut self.certificate,
                    &mut self.private_key,
                    &mut self.server_certificate,
                    &mut self.ca_file,
                    &mut self.public_key,
                    &mut self.server_public_key,
                ]
                .into_iter()
                .flatten()
                {
                    if p.is_relative() {
                        *p = base.join(&*p);
                    }
                }
            }
        }
    };
}

/// The security keys of one table, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SecurityKeys<'a> {
    pub security: SecurityMode,
    pub psk_identity: Option<&'a str>,
    pub psk_key: Option<&'a SecretHex>,
    pub psk_key_file: Option<&'a Path>,
    pub certificate: Option<&'a Path>,
    pub private_key: Option<&'a Path>,
    pub server_certificate: Option<&'a Path>,
    pub ca_file: Option<&'a Path>,
    pub certificate_usage: Option<u8>,
    pub public_key: Option<&'a Path>,
    pub server_public_key: Option<&'a Path>,
    pub sni: Option<&'a str>,
    pub cipher_suites: Option<&'a [CipherSuite]>,
}

/// `psk_key`: hex digits that must not be printed. Its parse errors never
/// repeat the value either.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHex(String);

impl SecretHex {
    pub fn new(hex: impl Into<String>) -> Self {
        Self(hex.into())
    }
}

impl fmt::Debug for SecretHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} hex digits redacted>", self.0.len())
    }
}

const PSK_EXPECTED: &str = "the key as hex digits in quotes, e.g. \"000102…\"";

impl<'de> Deserialize<'de> for SecretHex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        // Every refusal is a fixed text: the default ones quote the value.
        fn refuse<E: de::Error>(got: &str) -> E {
            E::custom(format!("expected {PSK_EXPECTED}, got {got}"))
        }
        impl<'v> Visitor<'v> for V {
            type Value = SecretHex;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(PSK_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretHex, E> {
                Ok(SecretHex(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretHex, E> {
                Err(refuse("a number (write it in quotes)"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretHex, E> {
                Err(refuse("a number (write it in quotes)"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretHex, E> {
                Err(refuse("a number (write it in quotes)"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretHex, E> {
                Err(refuse("true or false"))
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, _: A) -> Result<SecretHex, A::Error> {
                Err(refuse("an array"))
            }
            fn visit_map<A: de::MapAccess<'v>>(self, _: A) -> Result<SecretHex, A::Error> {
                Err(refuse("a table"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes hex digits; the error says where, never what.
fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    if let Some(i) = hex.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "expected hex digits (0-9, a-f), got a character that is none at position {}",
            i + 1
        ));
    }
    if hex.is_empty() {
        return Err("expected hex digits (0-9, a-f), got none".into());
    }
    if hex.len() % 2 == 1 {
        return Err(format!(
            "expected an even number of hex digits (two per byte), got {}",
            hex.len()
        ));
    }
    hex::decode(hex).map_err(|_| "expected hex digits (0-9, a-f)".to_string())
}

/// One entry of `cipher_suites`: its IANA number, whichever way it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSuite(pub u16);

/// IANA names (RFC 5487, 6655, 7251, 7905, 5289, 5489) of the suites
/// `dtls::ciphers` maps to OpenSSL.
const IANA_NAMES: &[(u16, &str)] = &[
    (0xC0A8, "TLS_PSK_WITH_AES_128_CCM_8"),
    (0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"),
    (0x00A8, "TLS_PSK_WITH_AES_128_GCM_SHA256"),
    (0x00AE, "TLS_PSK_WITH_AES_128_CBC_SHA256"),
    (0xC037, "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256"),
    (0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xC0A4, "TLS_PSK_WITH_AES_128_CCM"),
    (0xC0A5, "TLS_PSK_WITH_AES_256_CCM"),
    (0xC0A9, "TLS_PSK_WITH_AES_256_CCM_8"),
    (0x00A9, "TLS_PSK_WITH_AES_256_GCM_SHA384"),
    (0xCCAB, "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256"),
    (0xCCAC, "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256"),
    (0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
    (0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    (0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8"),
    (0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
];

/// The IANA name of a suite number, when lwgate knows the suite.
pub fn iana_name(n: u16) -> Option<&'static str> {
    IANA_NAMES.iter().find(|s| s.0 == n).map(|s| s.1)
}

const SUITE_EXPECTED: &str = "a cipher suite: its IANA number (49320 or \"0xC0A8\"), IANA name (\"TLS_PSK_WITH_AES_128_CCM_8\") or OpenSSL name (\"PSK-AES128-CCM8\")";

impl CipherSuite {
    fn from_name(name: &str) -> Option<u16> {
        let hex = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X"));
        if let Some(h) = hex {
            return u16::from_str_radix(h, 16).ok();
        }
        IANA_NAMES
            .iter()
            .find(|s| s.1.eq_ignore_ascii_case(name))
            .map(|s| s.0)
            .or_else(|| ciphers::iana_number(name))
    }
}

impl<'de> Deserialize<'de> for CipherSuite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = CipherSuite;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(SUITE_EXPECTED)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CipherSuite, E> {
                u16::try_from(v)
                    .map(CipherSuite)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CipherSuite, E> {
                u16::try_from(v)
                    .map(CipherSuite)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CipherSuite, E> {
                CipherSuite::from_name(v)
                    .map(CipherSuite)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// What `resolve` found: the material, or the errors.
pub(super) struct Resolved {
    pub security: Option<AccountSecurity>,
    pub errors: Vec<ConfigError>,
}

/// Where a key's errors go: `file`, the table's key path (`server[0]`).
struct Ctx<'a> {
    file: &'a Path,
    table: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, key: &str, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(
            self.file,
            format!("{}.{key}", self.table),
            msg,
        ));
    }

    fn missing(&mut self, key: &str, mode: SecurityMode, what: &str) {
        self.err(
            key,
            format!(
                "missing required key `{key}` for security = \"{}\" ({what})",
                mode.as_str()
            ),
        );
    }
}

/// Why `security = "rpk"` cannot work in this build, naming the OpenSSL.
pub fn rpk_unsupported() -> String {
    format!(
        "security = \"rpk\" needs RFC 7250 raw public keys, which this build's OpenSSL ({}) cannot do: they need OpenSSL 3.2 or later (a build with --features vendored-openssl has it); use security = \"certificate\" or \"psk\"",
        openssl::version::version()
    )
}

/// Checks the security keys of the table `table` (`server[0]`,
/// `bootstrap.server`) of `file` against its `uri`, reads every file they name
/// (paths already absolute) and gives the Security-object material.
pub(super) fn resolve(file: &Path, table: &str, uri: &str, k: &SecurityKeys) -> Resolved {
    let mut c = Ctx {
        file,
        table,
        errors: Vec::new(),
    };
    let mode = k.security;
    let addr = parse_uri(uri).ok();
    match (addr.as_ref().map(|a| a.scheme.as_str()), mode) {
        (Some("coaps"), SecurityMode::Nosec) => c.err(
            "security",
            "coaps:// needs security = psk, rpk or certificate (a DTLS server takes no unsecured client); for a server without DTLS use coap://",
        ),
        (Some("coap"), m) if m != SecurityMode::Nosec => c.err(
            "uri",
            format!(
                "security = \"{}\" needs a coaps:// URI (DTLS, default port 5684), got {uri:?}: coap:// is plain UDP; use coaps://, or security = \"nosec\" for a server without DTLS",
                m.as_str()
            ),
        ),
        _ => {}
    }
    use SecurityMode::{Certificate as Cert, Nosec, Psk, Rpk};
    let given: [(&str, bool, &[SecurityMode]); 12] = [
        ("psk_identity", k.psk_identity.is_some(), &[Psk]),
        ("psk_key", k.psk_key.is_some(), &[Psk]),
        ("psk_key_file", k.psk_key_file.is_some(), &[Psk]),
        ("certificate", k.certificate.is_some(), &[Cert]),
        (
            "server_certificate",
            k.server_certificate.is_some(),
            &[Cert],
        ),
        ("ca_file", k.ca_file.is_some(), &[Cert]),
        ("certificate_usage", k.certificate_usage.is_some(), &[Cert]),
        ("private_key", k.private_key.is_some(), &[Cert, Rpk]),
        ("public_key", k.public_key.is_some(), &[Rpk]),
        ("server_public_key", k.server_public_key.is_some(), &[Rpk]),
        ("sni", k.sni.is_some(), &[Psk, Rpk, Cert]),
        (
            "cipher_suites",
            k.cipher_suites.is_some(),
            &[Psk, Rpk, Cert],
        ),
    ];
    for (key, present, modes) in given {
        if present && !modes.contains(&mode) {
            let names: Vec<String> = modes
                .iter()
                .map(|m| format!("\"{}\"", m.as_str()))
                .collect();
            let applies = if modes.len() == 3 {
                "applies to DTLS (security = \"psk\", \"rpk\" or \"certificate\") only".to_string()
            } else {
                format!("applies to security = {} only", names.join(" or "))
            };
            c.err(
                key,
                format!("{applies}, and security is \"{}\"", mode.as_str()),
            );
        }
    }

    let credentials = match mode {
        Nosec => Some(Credentials::NoSec),
        Psk => psk(&mut c, k),
        Cert => certificate(&mut c, k),
        Rpk => rpk(&mut c, k),
    };

    let mut sni = None;
    let mut suites = Vec::new();
    if mode != Nosec {
        match k.sni {
            Some(name) => match sni_problem(name) {
                None => sni = Some(name.to_string()),
                Some(why) => c.err("sni", why),
            },
            // SNI carries names only (RFC 6066 §3).
            None => {
                sni = addr
                    .as_ref()
                    .filter(|a| {
                        a.host.parse::<std::net::IpAddr>().is_err() && !a.host.contains(':')
                    })
                    .map(|a| a.host.trim_end_matches('.').to_string())
            }
        }
        if let Some(list) = k.cipher_suites {
            suites = list.iter().map(|s| s.0).collect();
            let kind = if mode == Psk {
                SuiteKind::Psk
            } else {
                SuiteKind::Certificate
            };
            if let Err(e) = ciphers::cipher_string(Some(&suites), kind) {
                let msg = e.to_string();
                let msg = msg.strip_prefix("DTLS configuration: ").unwrap_or(&msg);
                c.err("cipher_suites", suite_words(msg));
            }
        }
    }
    if mode == Rpk && !crate::dtls::RAW_PUBLIC_KEYS {
        c.err("security", rpk_unsupported());
    }
    let security = match credentials {
        Some(credentials) if c.errors.is_empty() => Some(AccountSecurity {
            credentials,
            sni,
            cipher_suites: suites,
        }),
        _ => None,
    };
    Resolved {
        security,
        errors: c.errors,
    }
}

/// `dtls::ciphers` names suites in hex; the IANA name helps a reader more.
fn suite_words(msg: &str) -> String {
    let mut out = msg.to_string();
    for (n, name) in IANA_NAMES {
        let hex = format!("0x{n:04X}");
        if out.contains(&hex) && !out.contains(name) {
            out = out.replacen(&hex, &format!("{hex} {name}"), 1);
        }
    }
    if out.contains("is not one lwgate maps") {
        out.push_str(" (lwgate knows: ");
        let names: Vec<&str> = IANA_NAMES.iter().map(|s| s.1).collect();
        out.push_str(&names.join(", "));
        out.push(')');
    }
    out
}

fn sni_problem(name: &str) -> Option<String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Some(format!(
            "expected a host name, got the IP address {name:?} (SNI carries host names only, RFC 6066)"
        ));
    }
    if name.is_empty() {
        return Some("expected a host name, got \"\"".into());
    }
    host_name_problem(name).map(|why| format!("expected a host name, got {name:?} ({why})"))
}

/// OpenSSL's limits (PSK_MAX_IDENTITY_LEN, PSK_MAX_PSK_LEN).
const MAX_IDENTITY: usize = 256;
const MAX_PSK: usize = 512;

fn psk(c: &mut Ctx, k: &SecurityKeys) -> Option<Credentials> {
    let identity = match k.psk_identity {
        None => {
            c.missing(
                "psk_identity",
                SecurityMode::Psk,
                "the PSK identity the server knows this client by, LwM2M /0/x/3",
            );
            None
        }
        Some(id) if id.is_empty() || id.len() > MAX_IDENTITY || id.contains('\0') => {
            c.err(
                "psk_identity",
                format!(
                    "expected 1 to {MAX_IDENTITY} bytes without NUL, got {} bytes",
                    id.len()
                ),
            );
            None
        }
        Some(id) => Some(id.as_bytes().to_vec()),
    };
    let key = match (k.psk_key, k.psk_key_file) {
        (Some(_), Some(_)) => {
            c.err(
                "psk_key_file",
                "expected either psk_key or psk_key_file, not both",
            );
            None
        }
        (None, None) => {
            c.missing(
                "psk_key",
                SecurityMode::Psk,
                "the pre-shared key in hex, LwM2M /0/x/5; or psk_key_file, a file holding it",
            );
            None
        }
        (Some(hex), None) => match decode_hex(&hex.0) {
            Ok(b) => Some(b),
            Err(e) => {
                c.err("psk_key", e);
                None
            }
        },
        (None, Some(path)) => match read_key_file(path) {
            Err(e) => {
                c.err("psk_key_file", e);
                None
            }
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                match decode_hex(text.trim()) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        c.err("psk_key_file", format!("{}: {e}", path.display()));
                        None
                    }
                }
            }
        },
    };
    let key = key.and_then(|key| {
        if key.len() > MAX_PSK {
            let which = if k.psk_key.is_some() {
                "psk_key"
            } else {
                "psk_key_file"
            };
            c.err(
                which,
                format!(
                    "expected a key of 1 to {MAX_PSK} bytes, got {} bytes",
                    key.len()
                ),
            );
            return None;
        }
        Some(key)
    });
    Some(Credentials::Psk {
        identity: identity?,
        key: SecretBytes(key?),
    })
}

/// Key files must not be readable by others: 0600, 0400, 0640 or 0440 (the
/// group, e.g. lwgate, may read but not write). Then the bytes.
fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o037 != 0 {
        let why = if mode & 0o007 != 0 {
            "open to other users"
        } else {
            "writable by its group"
        };
        return Err(format!(
            "{shown} has mode {mode:04o}, {why}: a key file must be mode 0600 (or 0640 with group lwgate); run chmod 600 {shown}"
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The first certificate of a PEM file (a chain may follow) or a DER one.
fn parse_cert(path: &Path) -> Result<X509, String> {
    let bytes = read_file(path)?;
    let bad = || format!("{} is not a PEM or DER certificate", path.display());
    if is_pem(&bytes) {
        let chain = X509::stack_from_pem(&bytes).map_err(|_| bad())?;
        chain.into_iter().next().ok_or_else(bad)
    } else {
        X509::from_der(&bytes).map_err(|_| bad())
    }
}

fn parse_private_key(path: &Path) -> Result<PKey<Private>, String> {
    let bytes = read_key_file(path)?;
    // No OpenSSL text here: it names no key material, but keep it that way.
    let r = if is_pem(&bytes) {
        PKey::private_key_from_pem(&bytes)
    } else {
        PKey::private_key_from_der(&bytes)
    };
    r.map_err(|_| {
        format!(
            "{} is not a PEM or DER private key (PKCS#8, SEC1 or PKCS#1, without a passphrase)",
            path.display()
        )
    })
}

fn pkcs8(key: &PKey<Private>, path: &Path) -> Result<Vec<u8>, String> {
    key.private_key_to_pkcs8()
        .map_err(|_| format!("{}: cannot convert the key to PKCS#8 DER", path.display()))
}

fn parse_public_key(path: &Path) -> Result<PKey<Public>, String> {
    let bytes = read_file(path)?;
    let r = if is_pem(&bytes) {
        PKey::public_key_from_pem(&bytes)
    } else {
        PKey::public_key_from_der(&bytes)
    };
    r.map_err(|_| {
        format!(
            "{} is not a PEM or DER public key (SubjectPublicKeyInfo)",
            path.display()
        )
    })
}

/// Runs `f` on a key's path, reporting its error at the key; None if absent.
fn with<T>(
    c: &mut Ctx,
    key: &str,
    path: Option<&Path>,
    f: impl FnOnce(&Path) -> Result<T, String>,
) -> Option<T> {
    match f(path?) {
        Ok(v) => Some(v),
        Err(e) => {
            c.err(key, e);
            None
        }
    }
}

fn certificate(c: &mut Ctx, k: &SecurityKeys) -> Option<Credentials> {
    let m = SecurityMode::Certificate;
    if k.certificate.is_none() {
        c.missing(
            "certificate",
            m,
            "this client's certificate, PEM or DER, LwM2M /0/x/3",
        );
    }
    if k.private_key.is_none() {
        c.missing(
            "private_key",
            m,
            "the certificate's private key, PEM or DER, LwM2M /0/x/5",
        );
    }
    match (k.server_certificate, k.ca_file) {
        (None, None) => c.missing(
            "server_certificate",
            m,
            "the server's certificate, LwM2M /0/x/4; or ca_file, the CAs its chain must lead to",
        ),
        (Some(_), Some(_)) => c.err(
            "ca_file",
            "expected either server_certificate or ca_file, not both: the server is trusted by its own certificate (with certificate_usage) or by CAs",
        ),
        _ => {}
    }
    if let Some(u) = k.certificate_usage {
        if k.server_certificate.is_none() && k.ca_file.is_some() {
            c.err(
                "certificate_usage",
                "applies to server_certificate (LwM2M /0/x/4, /0/x/15); with ca_file the server's chain must lead to one of its CAs",
            );
        } else if u > 3 {
            c.err(
                "certificate_usage",
                format!("expected a Certificate Usage from 0 to 3, got {u}"),
            );
        }
    }
    let leaf = with(c, "certificate", k.certificate, parse_cert);
    let key = with(c, "private_key", k.private_key, parse_private_key);
    if let (Some(leaf), Some(key), Some(cp), Some(kp)) = (&leaf, &key, k.certificate, k.private_key)
    {
        let same = leaf.public_key().is_ok_and(|p| p.public_eq(key));
        if !same {
            c.err(
                "private_key",
                format!(
                    "{} is not the private key of the certificate {}",
                    kp.display(),
                    cp.display()
                ),
            );
            return None;
        }
    }
    let server = with(c, "server_certificate", k.server_certificate, parse_cert);
    if let Some(ca) = k.ca_file {
        let ok = read_file(ca).and_then(|b| match X509::stack_from_pem(&b) {
            Ok(v) if !v.is_empty() => Ok(()),
            _ => Err(format!("{} holds no PEM certificate", ca.display())),
        });
        if let Err(e) = ok {
            c.err("ca_file", e);
        }
    }
    let der = |x: &X509, key: &str, c: &mut Ctx| match x.to_der() {
        Ok(d) => Some(d),
        Err(_) => {
            c.err(key, "cannot convert the certificate to DER");
            None
        }
    };
    let certificate = der(leaf.as_ref()?, "certificate", c)?;
    let private_key = pkcs8(key.as_ref()?, k.private_key?)
        .map_err(|e| c.err("private_key", e))
        .ok()?;
    let (server_certificate, usage) = match &server {
        Some(s) => (
            der(s, "server_certificate", c)?,
            Some(k.certificate_usage.unwrap_or(3)),
        ),
        None if k.server_certificate.is_some() => return None,
        None => (Vec::new(), None),
    };
    Some(Credentials::Certificate {
        certificate,
        server_certificate,
        private_key: SecretBytes(private_key),
        usage,
    })
}

fn rpk(c: &mut Ctx, k: &SecurityKeys) -> Option<Credentials> {
    let m = SecurityMode::Rpk;
    if k.private_key.is_none() {
        c.missing(
            "private_key",
            m,
            "this client's private key, PEM or DER, LwM2M /0/x/5",
        );
    }
    if k.server_public_key.is_none() {
        c.missing(
            "server_public_key",
            m,
            "the server's public key, PEM or DER, LwM2M /0/x/4",
        );
    }
    let key = with(c, "private_key", k.private_key, parse_private_key);
    let public = with(c, "public_key", k.public_key, parse_public_key);
    let server = with(
        c,
        "server_public_key",
        k.server_public_key,
        parse_public_key,
    );
    let key = key?;
    let public_der = match (&public, k.public_key) {
        (Some(p), Some(pp)) => {
            if !p.public_eq(&key) {
                c.err(
                    "public_key",
                    format!(
                        "{} is not the public key of the private key {}",
                        pp.display(),
                        k.private_key?.display()
                    ),
                );
                return None;
            }
            p.public_key_to_der().ok()?
        }
        (None, Some(_)) => return None,
        _ => key.public_key_to_der().ok()?,
    };
    Some(Credentials::Rpk {
        public_key: public_der,
        server_public_key: server?.public_key_to_der().ok()?,
        private_key: SecretBytes(pkcs8(&key, k.private_key?).ok()?),
    })
}

/// Where `file`'s relative key paths are taken from.
pub(super) fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A warning when `file` holds an inline `psk_key` and other users may read it.
pub(super) fn inline_key_warning(file: &Path, table: &str, k: &SecurityKeys) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    k.psk_key?;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    (mode & 0o007 != 0).then(|| {
        format!(
            "{}: {table}.psk_key: the file is mode {mode:04o}, so other users can read this key; chmod 640 {} (group lwgate), or move the key to a psk_key_file of mode 0600",
            file.display(),
            file.display()
        )
    })
}
