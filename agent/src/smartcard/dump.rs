//! `lwgate smartcard dump`: what the card holds, for a field engineer whose
//! provisioning failed. Secrets (keys, PSKs) are masked.

use super::bootfile;
use super::walk::CardData;
use crate::codec::Record;
use crate::model::{Registry, Value};
use std::fmt::Write as _;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The Security object's secret key and SMS keys are never printed; its public
/// parts (a PSK identity, certificates, public keys) go in the clear in every
/// handshake and are what a field engineer compares with the server's records.
fn masked(r: &Record) -> bool {
    r.0.object() == Some(0) && matches!(r.0.resource(), Some(5 | 7 | 8))
}

/// /0/x/3 in PSK mode is the identity, printable text.
fn identity_text(r: &Record, b: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(b).ok()?;
    (r.0.object() == Some(0)
        && r.0.resource() == Some(3)
        && !text.is_empty()
        && text.chars().all(|c| !c.is_control()))
    .then(|| format!("{text:?} ({} bytes)", b.len()))
}

pub fn render(reader: &str, d: &CardData, reg: &Registry) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "reader:      {reader}");
    let _ = writeln!(
        o,
        "ICCID:       {}",
        if d.iccid.is_empty() {
            "(unreadable)"
        } else {
            &d.iccid
        }
    );
    let _ = writeln!(
        o,
        "application: {} AID {} path {}",
        d.application.label,
        hex(&d.application.aid),
        hex(&d.application.path)
    );
    let _ = writeln!(
        o,
        "bootstrap:   {:?} ({}), file {}, {}{} bytes",
        d.object.label,
        d.object.form,
        hex(&d.object.path),
        if d.object.private {
            "PIN-protected, "
        } else {
            ""
        },
        d.file.len()
    );
    match bootfile::parse(&d.file) {
        Err(e) => {
            let _ = writeln!(o, "  {e}");
        }
        Ok(objects) => {
            for obj in &objects {
                let name = reg
                    .get(obj.id)
                    .map(|d| d.name.as_str())
                    .unwrap_or("unknown object");
                let _ = writeln!(
                    o,
                    "object /{} {name} v{} ({} bytes)",
                    obj.id,
                    obj.version,
                    obj.tlv.len()
                );
                match bootfile::records(std::slice::from_ref(obj), reg) {
                    Err(e) => {
                        let _ = writeln!(o, "  {e}");
                    }
                    Ok(recs) => {
                        for r in &recs {
                            let rname = reg
                                .get(obj.id)
                                .and_then(|d| d.resource(r.0.resource().unwrap_or_default()))
                                .map(|d| d.name.as_str())
                                .unwrap_or("");
                            let value = match &r.1 {
                                Value::Opaque(b) if masked(r) && !b.is_empty() => {
                                    format!("<{} bytes, masked>", b.len())
                                }
                                Value::Opaque(b) => identity_text(r, b).unwrap_or_else(|| {
                                    format!("<{} bytes> {}", b.len(), hex(&b[..b.len().min(16)]))
                                }),
                                Value::String(s) if s.chars().count() > 60 => {
                                    format!(
                                        "{}… ({} chars)",
                                        s.chars().take(60).collect::<String>(),
                                        s.chars().count()
                                    )
                                }
                                Value::Boolean(b) => b.to_string(),
                                v => v.to_string(),
                            };
                            let _ = writeln!(o, "  {:<12} {rname:<28} {value}", r.0.to_string());
                        }
                    }
                }
            }
        }
    }
    o
}
