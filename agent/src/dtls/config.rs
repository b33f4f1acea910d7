//! What a DTLS session needs to know, as LwM2M's Security object gives it, checked
//! before OpenSSL sees it. Secrets never reach a Debug impl or a log line.

use super::DtlsError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Our deadline for a whole handshake: OpenSSL's own doubling retransmission would
/// take 60 s and more to give up on a wrong key.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// IPv6's minimum link MTU less the IPv6 and UDP headers: there is no datagram BIO
/// for OpenSSL to ask, and this size passes any path.
pub const DEFAULT_MTU: u16 = 1280 - 40 - 8;
/// Below this OpenSSL refuses `SSL_set_mtu` (its own minimum is 228).
const MIN_MTU: u16 = 256;
/// OpenSSL's limits (PSK_MAX_IDENTITY_LEN, PSK_MAX_PSK_LEN in 3.0).
const MAX_IDENTITY: usize = 256;
const MAX_PSK: usize = 512;

#[derive(Clone)]
pub struct DtlsConfig {
    pub security: Security,
    /// IANA cipher-suite numbers (LwM2M /0/x/16) in order of preference; `None`
    /// offers RFC 7925's suites and those Californium servers use.
    pub ciphers: Option<Vec<u16>>,
    pub handshake_timeout: Duration,
    /// Largest datagram OpenSSL may write (UDP payload, records included).
    pub mtu: u16,
    /// The server's name (LwM2M /0/x/14): sent as SNI in every mode, and checked
    /// against the server's certificate when a CA vouches for it. An IP literal is
    /// not sent (SNI carries names only) but is still checked.
    pub sni: Option<String>,
}

#[derive(Clone)]
pub enum Security {
    /// Pre-shared key: identity (/0/x/3) and key bytes (/0/x/5).
    Psk { identity: Vec<u8>, key: Vec<u8> },
    /// X.509: own certificate (PEM may carry the chain after it) and private key,
    /// PEM or DER, and how the server's certificate is trusted.
    Certificate {
        own_cert: Vec<u8>,
        own_key: Vec<u8>,
        server: ServerTrust,
    },
    /// RFC 7250 raw public keys: own private key and the server's public key
    /// (PEM or DER). Needs OpenSSL 3.2.
    Rpk {
        own_key: Vec<u8>,
        server_key: Vec<u8>,
    },
}

#[derive(Clone)]
pub enum ServerTrust {
    /// A PEM file of CAs the server's chain must lead to.
    CaFile(PathBuf),
    /// LwM2M's Server Public Key (/0/x/4, PEM or DER) with its Certificate Usage
    /// (/0/x/15).
    Pinned { cert: Vec<u8>, usage: CertUsage },
}

/// LwM2M's Certificate Usage (/0/x/15), after RFC 6698's four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsage {
    /// 0: the given certificate is a CA of the server's chain. With no system
    /// trust store in play this is checked as 2.
    CaConstraint,
    /// 1: the server's certificate is the given one, or chains to it.
    ServiceCertificate,
    /// 2: the given certificate is the trust anchor the chain must lead to.
    TrustAnchor,
    /// 3 (LwM2M's default): the server's certificate is exactly the given one; no
    /// CA, validity-date or name check.
    DomainIssued,
}

impl CertUsage {
    pub fn from_lwm2m(v: u8) -> Result<Self, DtlsError> {
        Ok(match v {
            0 => Self::CaConstraint,
            1 => Self::ServiceCertificate,
            2 => Self::TrustAnchor,
            3 => Self::DomainIssued,
            _ => {
                return Err(DtlsError::Config(format!(
                    "certificate usage {v} is not one of 0–3"
                )))
            }
        })
    }
}

impl DtlsConfig {
    pub fn new(security: Security) -> Self {
        Self {
            security,
            ciphers: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            mtu: DEFAULT_MTU,
            sni: None,
        }
    }

    pub fn psk(identity: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        Self::new(Security::Psk {
            identity: identity.into(),
            key: key.into(),
        })
    }

    /// The checks that need no OpenSSL; keys and certificates are parsed when the
    /// context is built.
    pub fn validate(&self) -> Result<(), DtlsError> {
        let bad = |m: String| Err(DtlsError::Config(m));
        if self.handshake_timeout.is_zero() {
            return bad("the handshake timeout is zero".into());
        }
        if self.mtu < MIN_MTU {
            return bad(format!("MTU {} is below {MIN_MTU}", self.mtu));
        }
        if let Some(name) = &self.sni {
            if name.is_empty() || name.len() > 253 || name.contains(['\0', ' ', '/']) {
                return bad(format!("{name:?} is not a host name"));
            }
        }
        match &self.security {
            Security::Psk { identity, key } => {
                if identity.is_empty() || identity.len() > MAX_IDENTITY {
                    return bad(format!(
                        "the PSK identity must be 1–{MAX_IDENTITY} bytes, not {}",
                        identity.len()
                    ));
                }
                // OpenSSL takes the identity as a C string.
                if identity.contains(&0) {
                    return bad("the PSK identity contains a NUL byte".into());
                }
                if key.is_empty() || key.len() > MAX_PSK {
                    return bad(format!(
                        "the PSK must be 1–{MAX_PSK} bytes, not {}",
                        key.len()
                    ));
                }
            }
            Security::Certificate {
                own_cert,
                own_key,
                server,
            } => {
                if own_cert.is_empty() || own_key.is_empty() {
                    return bad("certificate mode needs an own certificate and key".into());
                }
                if let ServerTrust::Pinned { cert, .. } = server {
                    if cert.is_empty() {
                        return bad("the server certificate is empty".into());
                    }
                }
            }
            Security::Rpk {
                own_key,
                server_key,
            } => {
                if own_key.is_empty() || server_key.is_empty() {
                    return bad("raw-public-key mode needs an own key and the server's".into());
                }
            }
        }
        Ok(())
    }
}

struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}

struct Len(usize);

impl fmt::Debug for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The identity is no secret: it is sent in clear in every handshake.
            Self::Psk { identity, key } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .field("key", &Redacted(key.len()))
                .finish(),
            Self::Certificate {
                own_cert,
                own_key,
                server,
            } => f
                .debug_struct("Certificate")
                .field("own_cert", &Len(own_cert.len()))
                .field("own_key", &Redacted(own_key.len()))
                .field("server", server)
                .finish(),
            Self::Rpk {
                own_key,
                server_key,
            } => f
                .debug_struct("Rpk")
                .field("own_key", &Redacted(own_key.len()))
                .field("server_key", &Len(server_key.len()))
                .finish(),
        }
    }
}

impl fmt::Debug for ServerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CaFile(p) => f.debug_tuple("CaFile").field(p).finish(),
            Self::Pinned { cert, usage } => f
                .debug_struct("Pinned")
                .field("cert", &Len(cert.len()))
                .field("usage", usage)
                .finish(),
        }
    }
}

impl fmt::Debug for DtlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsConfig")
            .field("security", &self.security)
            .field("ciphers", &self.ciphers)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("mtu", &self.mtu)
            .field("sni", &self.sni)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_keys() {
        let c = DtlsConfig::psk("dev-1", b"\x01\x02secret-bytes".to_vec());
        let s = format!("{c:?}");
        assert!(
            s.contains("dev-1") && s.contains("<14 bytes redacted>"),
            "{s}"
        );
        assert!(!s.contains("secret") && !s.contains("[1, 2"), "{s}");
        let c = DtlsConfig::new(Security::Certificate {
            own_cert: b"CERT".to_vec(),
            own_key: b"PRIVATE-KEY-MATERIAL".to_vec(),
            server: ServerTrust::Pinned {
                cert: b"SRV".to_vec(),
                usage: CertUsage::DomainIssued,
            },
        });
        let s = format!("{c:?}");
        assert!(
            !s.contains("PRIVATE") && s.contains("<20 bytes redacted>"),
            "{s}"
        );
        let s = format!(
            "{:?}",
            Security::Rpk {
                own_key: b"RPK-SECRET".to_vec(),
                server_key: b"PUB".to_vec()
            }
        );
        assert!(!s.contains("RPK-SECRET"), "{s}");
    }

    #[test]
    fn validation() {
        assert!(DtlsConfig::psk("id", vec![1; 16]).validate().is_ok());
        assert!(DtlsConfig::psk("", vec![1; 16]).validate().is_err());
        assert!(DtlsConfig::psk("a\0b", vec![1; 16]).validate().is_err());
        assert!(DtlsConfig::psk("id", vec![]).validate().is_err());
        assert!(DtlsConfig::psk("id", vec![1; 513]).validate().is_err());
        let mut c = DtlsConfig::psk("id", vec![1; 16]);
        c.mtu = 100;
        assert!(c.validate().unwrap_err().to_string().contains("MTU"));
        c.mtu = DEFAULT_MTU;
        c.handshake_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
        let cert = |sni: Option<&str>| {
            let mut c = DtlsConfig::new(Security::Certificate {
                own_cert: b"c".to_vec(),
                own_key: b"k".to_vec(),
                server: ServerTrust::CaFile("/ca.pem".into()),
            });
            c.sni = sni.map(String::from);
            c
        };
        assert!(cert(Some("lwm2m.example")).validate().is_ok());
        assert!(cert(Some("")).validate().is_err());
        assert!(cert(Some("a b")).validate().is_err());
    }

    #[test]
    fn usages() {
        assert_eq!(CertUsage::from_lwm2m(3).unwrap(), CertUsage::DomainIssued);
        assert_eq!(
            CertUsage::from_lwm2m(1).unwrap(),
            CertUsage::ServiceCertificate
        );
        assert!(CertUsage::from_lwm2m(4).is_err());
    }
}
