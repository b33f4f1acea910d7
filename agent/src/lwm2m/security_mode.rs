//! The rules of a Security instance's mode (/0/x/2) that hold wherever the
//! instance came from: the mode fits the URI's scheme, and a secured mode has
//! the material it needs. Bootstrap-Finish refuses an instance that breaks them;
//! the driver says the same of one it cannot make a DTLS session for.

use super::tree::{Instance, Res};
use crate::model::Value;

/// The Security Mode of /0/x/2 by name, for messages and `lwgate status`.
pub fn name(mode: i64) -> &'static str {
    match mode {
        0 => "psk",
        1 => "rpk",
        2 => "certificate",
        3 => "nosec",
        4 => "certificate with EST",
        _ => "unknown",
    }
}

/// /0/x/2; NoSec when absent.
pub fn of(inst: &Instance) -> i64 {
    match inst.get(&2) {
        Some(Res::Single(Value::Integer(i))) => *i,
        _ => 3,
    }
}

fn filled(inst: &Instance, res: u16) -> bool {
    match inst.get(&res) {
        Some(Res::Single(Value::Opaque(b))) => !b.is_empty(),
        Some(Res::Single(Value::String(s))) => !s.is_empty(),
        _ => false,
    }
}

/// Whether instance `sec` can be used: its mode fits its URI and it carries
/// what the mode needs. `ca_file`: the config gives a CA to check the server's
/// certificate with, so /0/x/4 may be empty. The keys themselves are checked
/// when a DTLS session is made.
pub fn check(inst: &Instance, sec: u16, ca_file: bool) -> Result<(), String> {
    let uri = match inst.get(&0) {
        Some(Res::Single(Value::String(u))) => u.as_str(),
        _ => "",
    };
    let need = |rs: &[(u16, &str)], mode: &str| -> Result<(), String> {
        match rs.iter().find(|(r, _)| !filled(inst, *r)) {
            Some((r, what)) => Err(format!(
                "/0/{sec}: {mode} mode without {what} (/0/{sec}/{r})"
            )),
            None => Ok(()),
        }
    };
    match (of(inst), uri.starts_with("coaps://")) {
        (3, false) => Ok(()),
        (3, true) => Err(format!(
            "/0/{sec}: {uri} needs DTLS but the Security Mode is NoSec"
        )),
        (0..=2, false) => Err(format!(
            "/0/{sec}: a secured Security Mode needs a coaps:// URI, not {uri}"
        )),
        (0, true) => need(&[(3, "a PSK identity"), (5, "a key")], "PSK"),
        (2, true) if ca_file => need(
            &[(3, "our certificate"), (5, "our private key")],
            "certificate",
        ),
        (2, true) => need(
            &[
                (3, "our certificate"),
                (4, "the server's certificate (or a ca_file in the config)"),
                (5, "our private key"),
            ],
            "certificate",
        ),
        (1, true) if crate::dtls::RAW_PUBLIC_KEYS => need(
            &[(4, "the server's public key"), (5, "our private key")],
            "raw-public-key",
        ),
        (1, true) => Err(format!(
            "/0/{sec}: raw public keys (mode 1) need OpenSSL 3.2; this build has {}",
            openssl::version::version()
        )),
        (m, _) => Err(format!(
            "/0/{sec}: Security Mode {m} ({}) is not supported",
            name(m)
        )),
    }
}
