//! Factory bootstrap: the object instances built from `[[server]]` tables and the
//! device's static identity.

use super::acl;
use super::dm::Trees;
use super::tree::Tree;
use crate::model::Value;
use std::fmt;

/// One server account as the factory configuration gives it. Its DTLS material
/// travels beside it in a [`SecuredAccount`]; a bare `Account` is NoSec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uri: String,
    pub ssid: u16,
    pub lifetime: u32,
    pub binding: String,
    pub notification_storing: bool,
    /// /0/x/9 LwM2M Server SMS Number: where SMS triggers may come from (with
    /// /0/x/6 SMS Security Mode 3, NoSec: SMS is a wake-up only).
    pub sms_number: Option<String>,
}

/// An account with the Security-object material `lwgate.toml` gave for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecuredAccount {
    pub account: Account,
    pub security: AccountSecurity,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            uri: String::new(),
            ssid: 0,
            lifetime: 86_400,
            binding: "U".into(),
            notification_storing: true,
            sms_number: None,
        }
    }
}

/// Secret bytes (a PSK, a private key in DER): Debug shows the length only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0.len())
    }
}

/// What a factory account's LwM2M Security instance holds besides its URI and
/// Short Server ID: /0/x/2–5 and the 1.1 resources 14–16. Every key and
/// certificate is DER, as the spec and servers expect.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountSecurity {
    pub credentials: Credentials,
    /// /0/x/14: an explicit `sni`, else the URI's host when it is a name.
    pub sni: Option<String>,
    /// /0/x/16: IANA cipher-suite numbers in order of preference; empty: not set.
    pub cipher_suites: Vec<u16>,
}

#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// Mode 3; /0/x/3–5 empty.
    #[default]
    NoSec,
    /// Mode 0: /0/x/3 the identity, /0/x/5 the key.
    Psk { identity: Vec<u8>, key: SecretBytes },
    /// Mode 1: /0/x/3 own public key (SubjectPublicKeyInfo DER), /0/x/4 the
    /// server's, /0/x/5 own private key (PKCS#8 DER).
    Rpk {
        public_key: Vec<u8>,
        server_public_key: Vec<u8>,
        private_key: SecretBytes,
    },
    /// Mode 2: /0/x/3 own certificate (the leaf only, DER), /0/x/4 the server's
    /// certificate (DER; empty when only a CA file vouches for it), /0/x/5 own
    /// private key (PKCS#8 DER), /0/x/15 the Certificate Usage (None with a CA
    /// file alone: the resource is not written).
    Certificate {
        certificate: Vec<u8>,
        server_certificate: Vec<u8>,
        private_key: SecretBytes,
        usage: Option<u8>,
    },
}

impl Credentials {
    /// LwM2M's Security Mode (/0/x/2).
    pub fn mode(&self) -> i64 {
        match self {
            Self::Psk { .. } => 0,
            Self::Rpk { .. } => 1,
            Self::Certificate { .. } => 2,
            Self::NoSec => 3,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |b: &Vec<u8>| format!("<{} bytes>", b.len());
        match self {
            Self::NoSec => f.write_str("NoSec"),
            // The identity is no secret: every handshake sends it in clear.
            Self::Psk { identity, key } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .field("key", key)
                .finish(),
            Self::Rpk {
                public_key,
                server_public_key,
                private_key,
            } => f
                .debug_struct("Rpk")
                .field("public_key", &len(public_key))
                .field("server_public_key", &len(server_public_key))
                .field("private_key", private_key)
                .finish(),
            Self::Certificate {
                certificate,
                server_certificate,
                private_key,
                usage,
            } => f
                .debug_struct("Certificate")
                .field("certificate", &len(certificate))
                .field("server_certificate", &len(server_certificate))
                .field("private_key", private_key)
                .field("usage", usage)
                .finish(),
        }
    }
}

/// Writes /0/`inst`/2–5 and 14–16 from `s` (URI, Bootstrap-Server and Short
/// Server ID are the caller's); resources `s` does not set are removed.
pub fn write_security(g: &mut Tree, inst: u16, s: &AccountSecurity) {
    let c = &s.credentials;
    let (identity, server, secret): (&[u8], &[u8], &[u8]) = match c {
        Credentials::NoSec => (&[], &[], &[]),
        Credentials::Psk { identity, key } => (identity, &[], &key.0),
        Credentials::Rpk {
            public_key,
            server_public_key,
            private_key,
        } => (public_key, server_public_key, &private_key.0),
        Credentials::Certificate {
            certificate,
            server_certificate,
            private_key,
            ..
        } => (certificate, server_certificate, &private_key.0),
    };
    g.set(0, inst, 2, Value::Integer(c.mode()));
    g.set(0, inst, 3, Value::Opaque(identity.to_vec()));
    g.set(0, inst, 4, Value::Opaque(server.to_vec()));
    g.set(0, inst, 5, Value::Opaque(secret.to_vec()));
    let res = g.objects.entry(0).or_default().entry(inst).or_default();
    for rid in [14, 15, 16] {
        res.remove(&rid);
    }
    if let Some(sni) = &s.sni {
        g.set(0, inst, 14, Value::String(sni.clone()));
    }
    if let Credentials::Certificate { usage: Some(u), .. } = c {
        g.set(0, inst, 15, Value::Unsigned(u64::from(*u)));
    }
    if !s.cipher_suites.is_empty() {
        let list = (0u16..)
            .zip(&s.cipher_suites)
            .map(|(i, n)| (i, Value::Unsigned(u64::from(*n))))
            .collect();
        g.set_multi(0, inst, 16, list);
    }
}

/// What [`trees`] takes: plain accounts (NoSec) or secured ones, as a slice, an
/// array or a vector.
pub trait AccountList {
    fn entries(&self) -> Vec<(&Account, Option<&AccountSecurity>)>;
}

impl AccountList for [Account] {
    fn entries(&self) -> Vec<(&Account, Option<&AccountSecurity>)> {
        self.iter().map(|a| (a, None)).collect()
    }
}

impl<const N: usize> AccountList for [Account; N] {
    fn entries(&self) -> Vec<(&Account, Option<&AccountSecurity>)> {
        self[..].entries()
    }
}

impl AccountList for Vec<Account> {
    fn entries(&self) -> Vec<(&Account, Option<&AccountSecurity>)> {
        self[..].entries()
    }
}

impl AccountList for [SecuredAccount] {
    fn entries(&self) -> Vec<(&Account, Option<&AccountSecurity>)> {
        self.iter()
            .map(|a| (&a.account, Some(&a.security)))
            .collect()
    }
}

impl AccountList for Vec<SecuredAccount> {
    fn entries(&self) -> Vec<(&Account, Option<&AccountSecurity>)> {
        self[..].entries()
    }
}

/// Static Device object (/3) resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub firmware_version: String,
    pub device_type: String,
    pub hardware_version: String,
    pub software_version: String,
}

/// /0/x/6 SMS Security Mode 3: NoSec (1.0 E.1).
pub const SMS_NOSEC: i64 = 3;

pub fn trees<L: AccountList + ?Sized>(accounts: &L, info: &DeviceInfo) -> Trees {
    let entries = accounts.entries();
    let accounts: Vec<&Account> = entries.iter().map(|e| e.0).collect();
    let nosec = AccountSecurity::default();
    let mut t = Trees::default();
    let g = &mut t.gateway;
    for (i, (a, sec)) in entries.iter().enumerate() {
        let i = i as u16;
        let ssid = i64::from(a.ssid);
        g.set(0, i, 0, Value::String(a.uri.clone()));
        g.set(0, i, 1, Value::Boolean(false));
        write_security(g, i, sec.unwrap_or(&nosec));
        g.set(0, i, 10, Value::Integer(ssid));
        if let Some(n) = &a.sms_number {
            g.set(0, i, 6, Value::Integer(SMS_NOSEC));
            g.set(0, i, 9, Value::String(n.clone()));
        }
        g.set(1, i, 0, Value::Integer(ssid));
        g.set(1, i, 1, Value::Integer(i64::from(a.lifetime)));
        g.set(1, i, 6, Value::Boolean(a.notification_storing));
        g.set(1, i, 7, Value::String(a.binding.clone()));
        if a.binding.contains('S') {
            // 1.1's Trigger: the server may reach this client by SMS.
            g.set(1, i, 21, Value::Boolean(true));
        }
    }
    // Unknown optional values are left out rather than sent as empty strings.
    for (rid, v) in [
        (0, &info.manufacturer),
        (1, &info.model),
        (2, &info.serial),
        (3, &info.firmware_version),
        (17, &info.device_type),
        (18, &info.hardware_version),
        (19, &info.software_version),
    ] {
        if !v.is_empty() {
            g.set(3, 0, rid, Value::String(v.clone()));
        }
    }
    g.set_multi(3, 0, 11, [(0, Value::Integer(0))].into());
    g.set(3, 0, 16, Value::String("U".into()));
    g.objects.entry(4).or_default().entry(0).or_default();
    if accounts.len() > 1 {
        // Each server owns its own /1 instance; every server may read, write and
        // execute the gateway's Device and Connectivity objects (spec 7.3, Appendix F).
        let mut next = 0u16;
        let mut acl_inst =
            |g: &mut super::tree::Tree, obj: u16, inst: u16, owner: i64, default: Option<i64>| {
                g.set(2, next, 0, Value::Integer(i64::from(obj)));
                g.set(2, next, 1, Value::Integer(i64::from(inst)));
                let entries = default
                    .map(|d| (0u16, Value::Integer(d)))
                    .into_iter()
                    .collect();
                g.set_multi(2, next, 2, entries);
                g.set(2, next, 3, Value::Integer(owner));
                next += 1;
            };
        for (i, a) in accounts.iter().enumerate() {
            acl_inst(g, 1, i as u16, i64::from(a.ssid), None);
        }
        let owner = i64::from(accounts[0].ssid);
        let rwe = acl::READ | acl::WRITE | acl::EXECUTE;
        acl_inst(g, 3, 0, owner, Some(rwe));
        acl_inst(g, 4, 0, owner, Some(acl::READ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lwm2m::tree::Res;

    fn account(ssid: u16) -> Account {
        Account {
            uri: format!("coaps://s{ssid}.example"),
            ssid,
            ..Default::default()
        }
    }

    #[test]
    fn plain_accounts_are_nosec() {
        let t = trees(&[account(1)], &DeviceInfo::default());
        let g = &t.gateway;
        assert_eq!(g.get(0, 0, 2), Some(&Value::Integer(3)));
        for rid in [3, 4, 5] {
            assert_eq!(g.get(0, 0, rid), Some(&Value::Opaque(Vec::new())));
        }
        for rid in [14, 15, 16] {
            assert!(g.instance(0, 0).is_some_and(|i| !i.contains_key(&rid)));
        }
        let none: Vec<Account> = Vec::new();
        assert!(trees(&none, &DeviceInfo::default())
            .gateway
            .instance(0, 0)
            .is_none());
    }

    #[test]
    fn secured_accounts_write_their_security_resources() {
        let psk = SecuredAccount {
            account: account(1),
            security: AccountSecurity {
                credentials: Credentials::Psk {
                    identity: b"gw".to_vec(),
                    key: SecretBytes(vec![1, 2, 3]),
                },
                sni: Some("s1.example".into()),
                cipher_suites: vec![0xC0A8, 0x00A8],
            },
        };
        let cert = SecuredAccount {
            account: account(2),
            security: AccountSecurity {
                credentials: Credentials::Certificate {
                    certificate: b"CERT".to_vec(),
                    server_certificate: b"SRV".to_vec(),
                    private_key: SecretBytes(b"KEY".to_vec()),
                    usage: Some(1),
                },
                ..Default::default()
            },
        };
        let rpk = SecuredAccount {
            account: account(3),
            security: AccountSecurity {
                credentials: Credentials::Rpk {
                    public_key: b"PUB".to_vec(),
                    server_public_key: b"SPUB".to_vec(),
                    private_key: SecretBytes(b"PRIV".to_vec()),
                },
                ..Default::default()
            },
        };
        let t = trees(&vec![psk, cert, rpk], &DeviceInfo::default());
        let g = &t.gateway;
        let o = |b: &[u8]| Some(Value::Opaque(b.to_vec()));
        assert_eq!(g.get(0, 0, 2), Some(&Value::Integer(0)));
        assert_eq!(g.get(0, 0, 3).cloned(), o(b"gw"));
        assert_eq!(g.get(0, 0, 4).cloned(), o(b""));
        assert_eq!(g.get(0, 0, 5).cloned(), o(&[1, 2, 3]));
        assert_eq!(g.get(0, 0, 14), Some(&Value::String("s1.example".into())));
        assert_eq!(g.get(0, 0, 15), None);
        match g.instance(0, 0).and_then(|i| i.get(&16)) {
            Some(Res::Multi(m)) => assert_eq!(
                m.values().cloned().collect::<Vec<_>>(),
                [Value::Unsigned(0xC0A8), Value::Unsigned(0x00A8)]
            ),
            r => panic!("{r:?}"),
        }
        assert_eq!(g.get(0, 1, 2), Some(&Value::Integer(2)));
        assert_eq!(g.get(0, 1, 3).cloned(), o(b"CERT"));
        assert_eq!(g.get(0, 1, 4).cloned(), o(b"SRV"));
        assert_eq!(g.get(0, 1, 5).cloned(), o(b"KEY"));
        assert_eq!(g.get(0, 1, 15), Some(&Value::Unsigned(1)));
        assert_eq!(g.get(0, 1, 14), None);
        assert_eq!(g.get(0, 2, 2), Some(&Value::Integer(1)));
        assert_eq!(g.get(0, 2, 3).cloned(), o(b"PUB"));
        assert_eq!(g.get(0, 2, 4).cloned(), o(b"SPUB"));
        assert_eq!(g.get(0, 2, 5).cloned(), o(b"PRIV"));
        assert_eq!(g.get(0, 2, 10), Some(&Value::Integer(3)));
        assert_eq!(g.get(1, 2, 0), Some(&Value::Integer(3)));
    }

    #[test]
    fn rewriting_drops_what_the_new_material_lacks() {
        let mut g = Tree::default();
        let full = AccountSecurity {
            credentials: Credentials::Certificate {
                certificate: b"C".to_vec(),
                server_certificate: Vec::new(),
                private_key: SecretBytes(b"K".to_vec()),
                usage: Some(3),
            },
            sni: Some("h".into()),
            cipher_suites: vec![0xC0AE],
        };
        write_security(&mut g, 0, &full);
        write_security(&mut g, 0, &AccountSecurity::default());
        assert_eq!(g.get(0, 0, 2), Some(&Value::Integer(3)));
        for rid in [14, 15, 16] {
            assert!(
                g.instance(0, 0).is_some_and(|i| !i.contains_key(&rid)),
                "{rid}"
            );
        }
    }

    #[test]
    fn debug_never_shows_keys() {
        let s = format!(
            "{:?}",
            AccountSecurity {
                credentials: Credentials::Psk {
                    identity: b"gw-1".to_vec(),
                    key: SecretBytes(b"TOPSECRET".to_vec()),
                },
                ..Default::default()
            }
        );
        assert!(
            s.contains("gw-1") && s.contains("<9 bytes redacted>"),
            "{s}"
        );
        assert!(!s.contains("TOPSECRET") && !s.contains("84, 79"), "{s}");
        let s = format!(
            "{:?}",
            Credentials::Certificate {
                certificate: b"C".to_vec(),
                server_certificate: Vec::new(),
                private_key: SecretBytes(b"PRIVATE".to_vec()),
                usage: None,
            }
        );
        assert!(!s.contains("PRIVATE") && !s.contains("80, 82"), "{s}");
    }
}
