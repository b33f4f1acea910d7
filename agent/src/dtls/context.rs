//! A built OpenSSL context for one server's configuration. Sessions made from the
//! same context can resume each other, so the driver keeps one per server and a
//! ticket from the last good session.

use super::ciphers::{self, SuiteKind};
use super::config::{DtlsConfig, Security};
use super::{trust, DtlsError};
use openssl::ssl::{SslContext, SslMethod, SslOptions, SslSession, SslVersion};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
pub struct DtlsContext {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub ctx: SslContext,
    /// Tells whether a ticket came from this context (OpenSSL may only resume a
    /// session on the context that made it).
    pub id: u64,
    pub kind: SuiteKind,
    pub handshake_timeout: Duration,
    pub mtu: u16,
    pub sni: Option<String>,
    pub check_name: bool,
    /// RFC 7250: the server's key is pinned, there is no certificate.
    pub rpk: bool,
}

/// A finished session's state (master secret included) to offer for an
/// abbreviated handshake with the same server. Only ever offered to sessions of
/// the context that made it.
#[derive(Clone)]
pub struct SessionTicket {
    pub(super) context_id: u64,
    pub(super) session: SslSession,
}

impl fmt::Debug for SessionTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionTicket(<redacted>)")
    }
}

impl fmt::Debug for DtlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsContext")
            .field("id", &self.inner.id)
            .field("kind", &self.inner.kind)
            .field("sni", &self.inner.sni)
            .finish_non_exhaustive()
    }
}

/// Refuses RFC 7250 on a build whose OpenSSL cannot do it, naming the version.
#[cfg(not(lwgate_rpk))]
fn rpk_unsupported() -> DtlsError {
    let full = openssl::version::version();
    let v = full.strip_prefix("OpenSSL ").unwrap_or(full);
    DtlsError::Unsupported(format!(
        "this build's OpenSSL (version {v}) has no raw public keys (RFC 7250 needs 3.2; build lwgate with --features vendored-openssl)"
    ))
}

/// Whether this build can make raw-public-key sessions (its OpenSSL is 3.2 or
/// later, checked when it was compiled).
pub const RAW_PUBLIC_KEYS: bool = cfg!(lwgate_rpk);

impl DtlsContext {
    pub fn new(cfg: &DtlsConfig) -> Result<Self, DtlsError> {
        cfg.validate()?;
        let mut b = SslContext::builder(SslMethod::dtls_client())?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
        // Our BIO is no datagram socket to ask: the MTU set per session holds.
        b.set_options(SslOptions::NO_QUERY_MTU);
        let (kind, check_name) = match &cfg.security {
            Security::Psk { identity, key } => {
                let (identity, key) = (identity.clone(), key.clone());
                b.set_psk_client_callback(move |_, _hint, id_out, key_out| {
                    // The identity goes out as a C string: room for the NUL.
                    if identity.len() >= id_out.len() || key.len() > key_out.len() {
                        return Ok(0);
                    }
                    id_out[..identity.len()].copy_from_slice(&identity);
                    id_out[identity.len()] = 0;
                    key_out[..key.len()].copy_from_slice(&key);
                    Ok(key.len())
                });
                (SuiteKind::Psk, false)
            }
            Security::Certificate {
                own_cert,
                own_key,
                server,
            } => {
                trust::set_own(&mut b, own_cert, own_key)?;
                trust::set_server_trust(&mut b, server)?;
                (SuiteKind::Certificate, trust::checks_name(server))
            }
            #[cfg(lwgate_rpk)]
            Security::Rpk {
                own_key,
                server_key,
            } => {
                trust::set_raw_public_keys(&mut b, own_key, server_key)?;
                (SuiteKind::Certificate, false)
            }
            #[cfg(not(lwgate_rpk))]
            Security::Rpk { .. } => return Err(rpk_unsupported()),
        };
        let mut list = ciphers::cipher_string(cfg.ciphers.as_deref(), kind)?;
        // OpenSSL 3.2 rates CCM_8's 64-bit tag at security level 0 and drops the
        // suites at any higher level; RFC 7925 makes them LwM2M's mandatory ones.
        if list.contains("CCM8") && openssl::version::number() >= 0x3020_0000 {
            list.push_str(":@SECLEVEL=0");
        }
        b.set_cipher_list(&list)
            .map_err(|e| DtlsError::Config(format!("OpenSSL refuses the suites {list}: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                ctx: b.build(),
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                kind,
                handshake_timeout: cfg.handshake_timeout,
                mtu: cfg.mtu,
                sni: cfg.sni.clone(),
                check_name,
                rpk: matches!(cfg.security, Security::Rpk { .. }),
            }),
        })
    }

    /// Whether certificate trust decides this context (false: PSK).
    pub fn uses_certificates(&self) -> bool {
        self.inner.kind == SuiteKind::Certificate
    }
}
