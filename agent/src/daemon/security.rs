//! From a server account's Security object instance (/0/x) to the DTLS session it
//! needs: the mode (/0/x/2), identity or own certificate (3), the server's key or
//! certificate (4), the secret (5), SNI (14), Certificate Usage (15) and cipher
//! suites (16), wherever the instance came from — the config, a smartcard or a
//! bootstrap server. What LwM2M has no resource for (a CA file, our handshake
//! deadline) comes from the config as `Local`.

use super::peers::PeerSecurity;
use crate::dtls::{CertUsage, DtlsConfig, Security, ServerTrust};
use crate::lwm2m::security_mode;
use crate::lwm2m::tree::{Instance, Res, Tree};
use crate::model::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of ours for one account, beside its Security instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Local {
    /// CAs the server's certificate must chain to (instead of a pinned /0/x/4).
    pub ca_file: Option<PathBuf>,
    pub handshake_timeout: Option<Duration>,
    /// Our certificate's file (PEM): /0/x/3 holds the leaf only, the file may
    /// carry the intermediates the server needs to build our chain.
    pub certificate: Option<PathBuf>,
}

fn single(inst: &Instance, res: u16) -> Option<&Value> {
    match inst.get(&res) {
        Some(Res::Single(v)) => Some(v),
        _ => None,
    }
}

fn bytes(inst: &Instance, res: u16) -> Vec<u8> {
    match single(inst, res) {
        Some(Value::Opaque(b)) => b.clone(),
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

fn integer(inst: &Instance, res: u16) -> Option<i64> {
    match single(inst, res) {
        Some(Value::Integer(i)) => Some(*i),
        Some(Value::Unsigned(u)) => i64::try_from(*u).ok(),
        _ => None,
    }
}

/// Whether the first certificate of a PEM file is the DER certificate `leaf`.
fn same_leaf(pem: &[u8], leaf: &[u8]) -> bool {
    openssl::x509::X509::from_pem(pem)
        .and_then(|c| c.to_der())
        .is_ok_and(|der| der == leaf)
}

/// The URI's host when it is a name: what SNI carries when /0/x/14 is empty.
fn host_name(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.starts_with('[') {
        return None; // an IPv6 literal
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let literal = host.is_empty() || host.parse::<std::net::IpAddr>().is_ok();
    (!literal).then(|| host.to_string())
}

/// `None` for NoSec; the session's configuration otherwise, or why instance
/// `sec` cannot make one (said in the journal and `lwgate status`, never with a
/// secret).
pub fn dtls_config(inst: &Instance, sec: u16, local: &Local) -> Result<Option<DtlsConfig>, String> {
    security_mode::check(inst, sec, local.ca_file.is_some())?;
    let uri = match single(inst, 0) {
        Some(Value::String(u)) => u.clone(),
        _ => String::new(),
    };
    let (identity, server, secret) = (bytes(inst, 3), bytes(inst, 4), bytes(inst, 5));
    let security = match security_mode::of(inst) {
        3 => return Ok(None),
        0 => Security::Psk {
            identity,
            key: secret,
        },
        2 => {
            let trust = match &local.ca_file {
                Some(ca) => ServerTrust::CaFile(ca.clone()),
                None => {
                    let usage = integer(inst, 15).unwrap_or(3);
                    let usage = u8::try_from(usage).map_err(|_| {
                        format!("/0/{sec}: Certificate Usage (/0/{sec}/15) {usage} is not 0-3")
                    })?;
                    ServerTrust::Pinned {
                        cert: server,
                        usage: CertUsage::from_lwm2m(usage).map_err(|e| e.to_string())?,
                    }
                }
            };
            // The file's chain when it still holds the leaf /0/x/3 has (a server
            // or a card may have provisioned another since).
            let own_cert = local
                .certificate
                .as_ref()
                .and_then(|f| std::fs::read(f).ok())
                .filter(|pem| same_leaf(pem, &identity))
                .unwrap_or(identity);
            Security::Certificate {
                own_cert,
                own_key: secret,
                server: trust,
            }
        }
        1 => Security::Rpk {
            own_key: secret,
            server_key: server,
        },
        // `check` lets no other mode through.
        other => {
            return Err(format!(
                "/0/{sec}: Security Mode {other} ({}) is not supported",
                security_mode::name(other)
            ))
        }
    };
    let mut cfg = DtlsConfig::new(security);
    cfg.sni = match single(inst, 14) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => host_name(&uri),
    };
    if let Some(Res::Multi(m)) = inst.get(&16) {
        let suites: Vec<u16> = m
            .values()
            .filter_map(|v| match v {
                Value::Integer(i) => u16::try_from(*i).ok(),
                Value::Unsigned(u) => u16::try_from(*u).ok(),
                _ => None,
            })
            .collect();
        if !suites.is_empty() {
            cfg.ciphers = Some(suites);
        }
    }
    if let Some(t) = local.handshake_timeout {
        cfg.handshake_timeout = t;
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(Some(cfg))
}

/// The Security instance of server `ssid`, or of the bootstrap server (`None`).
fn instance_of(tree: &Tree, ssid: Option<u16>) -> Option<(u16, &Instance)> {
    tree.objects
        .get(&0)?
        .iter()
        .map(|(id, i)| (*id, i))
        .find(|(_, i)| {
            let bootstrap = matches!(single(i, 1), Some(Value::Boolean(true)));
            match ssid {
                None => bootstrap,
                Some(id) => !bootstrap && integer(i, 10) == Some(i64::from(id)),
            }
        })
}

/// How the peer of `ssid` (None: the bootstrap server) is to be secured.
pub fn peer_security(tree: &Tree, ssid: Option<u16>, local: &Local) -> PeerSecurity {
    let Some((sec, inst)) = instance_of(tree, ssid) else {
        return PeerSecurity::None;
    };
    match dtls_config(inst, sec, local) {
        Ok(None) => PeerSecurity::None,
        Ok(Some(cfg)) => {
            PeerSecurity::Dtls(Box::new(cfg), security_mode::name(security_mode::of(inst)))
        }
        Err(why) => PeerSecurity::Unusable(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn inst(uri: &str, mode: i64, id: &[u8], server: &[u8], key: &[u8]) -> Instance {
        let mut i = Instance::new();
        i.insert(0, Res::Single(Value::String(uri.into())));
        i.insert(2, Res::Single(Value::Integer(mode)));
        i.insert(3, Res::Single(Value::Opaque(id.to_vec())));
        i.insert(4, Res::Single(Value::Opaque(server.to_vec())));
        i.insert(5, Res::Single(Value::Opaque(key.to_vec())));
        i
    }

    fn dtls_config_of(i: &Instance, l: &Local) -> Result<Option<DtlsConfig>, String> {
        dtls_config(i, 1, l)
    }

    #[test]
    fn nosec_and_psk_instances() {
        let l = Local::default();
        assert!(dtls_config_of(&inst("coap://h", 3, b"", b"", b""), &l)
            .unwrap()
            .is_none());
        let c = dtls_config_of(
            &inst("coaps://srv.example:5684", 0, b"gw", b"", b"\x01\x02"),
            &l,
        )
        .unwrap()
        .unwrap();
        assert!(
            matches!(&c.security, Security::Psk { identity, key } if identity == b"gw" && key == &[1, 2])
        );
        assert_eq!(c.sni.as_deref(), Some("srv.example"));
        let c = dtls_config_of(&inst("coaps://127.0.0.1", 0, b"gw", b"", b"k"), &l)
            .unwrap()
            .unwrap();
        assert_eq!(c.sni, None, "no SNI for an address");
    }

    #[test]
    fn mode_and_scheme_must_agree_and_secrets_stay_out_of_errors() {
        let l = Local::default();
        let e = dtls_config_of(&inst("coaps://h", 3, b"", b"", b""), &l).unwrap_err();
        assert!(e.contains("NoSec"), "{e}");
        let e = dtls_config_of(&inst("coap://h", 0, b"id", b"", b"secret"), &l).unwrap_err();
        assert!(e.contains("coaps://") && !e.contains("secret"), "{e}");
        let e = dtls_config_of(&inst("coaps://h", 0, b"", b"", b"secret"), &l).unwrap_err();
        assert!(e.contains("identity") && !e.contains("secret"), "{e}");
        let e = dtls_config_of(&inst("coaps://h", 2, b"cert", b"", b"key"), &l).unwrap_err();
        assert!(e.contains("ca_file"), "{e}");
    }

    #[test]
    fn certificates_pinned_or_by_ca_sni_and_suites() {
        let mut i = inst("coaps://h.example", 2, b"own", b"srv", b"key");
        i.insert(14, Res::Single(Value::String("lwm2m.example".into())));
        i.insert(15, Res::Single(Value::Integer(1)));
        i.insert(
            16,
            Res::Multi(BTreeMap::from([
                (0, Value::Integer(0xC0A8)),
                (1, Value::Integer(0xC0AE)),
            ])),
        );
        let c = dtls_config_of(&i, &Local::default()).unwrap().unwrap();
        assert!(matches!(
            &c.security,
            Security::Certificate {
                server: ServerTrust::Pinned {
                    usage: CertUsage::ServiceCertificate,
                    ..
                },
                ..
            }
        ));
        assert_eq!(c.sni.as_deref(), Some("lwm2m.example"));
        assert_eq!(c.ciphers, Some(vec![0xC0A8, 0xC0AE]));
        let local = Local {
            ca_file: Some("/etc/lwgate/ca.pem".into()),
            handshake_timeout: Some(Duration::from_secs(5)),
            certificate: None,
        };
        let c = dtls_config_of(&i, &local).unwrap().unwrap();
        assert!(matches!(
            &c.security,
            Security::Certificate {
                server: ServerTrust::CaFile(_),
                ..
            }
        ));
        assert_eq!(c.handshake_timeout, Duration::from_secs(5));
        i.insert(15, Res::Single(Value::Integer(9)));
        assert!(dtls_config_of(&i, &Local::default()).is_err());
    }
}
