//! Own certificate and key, and how the server's certificate is judged: a CA
//! file, or LwM2M's Server Public Key under its Certificate Usage.

use super::config::{CertUsage, ServerTrust};
use super::DtlsError;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslContextBuilder, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509StoreContextRef, X509VerifyResult, X509};

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).take(256).any(|w| w == b"-----BEGIN ")
}

/// One certificate, PEM or DER.
pub fn parse_cert(bytes: &[u8], what: &str) -> Result<X509, DtlsError> {
    let r = if is_pem(bytes) {
        X509::from_pem(bytes)
    } else {
        X509::from_der(bytes)
    };
    r.map_err(|e| DtlsError::Config(format!("{what} is not a PEM or DER certificate: {e}")))
}

/// The certificate and any chain after it (PEM), or one DER certificate.
fn parse_chain(bytes: &[u8]) -> Result<Vec<X509>, DtlsError> {
    if !is_pem(bytes) {
        return Ok(vec![parse_cert(bytes, "the own certificate")?]);
    }
    let v = X509::stack_from_pem(bytes).map_err(|e| {
        DtlsError::Config(format!("the own certificate is not a PEM certificate: {e}"))
    })?;
    if v.is_empty() {
        return Err(DtlsError::Config(
            "the own certificate file has no certificate".into(),
        ));
    }
    Ok(v)
}

/// PKCS#8, SEC1 or PKCS#1, PEM or DER.
pub fn parse_key(bytes: &[u8]) -> Result<PKey<Private>, DtlsError> {
    let r = if is_pem(bytes) {
        PKey::private_key_from_pem(bytes)
    } else {
        PKey::private_key_from_der(bytes)
    };
    // The OpenSSL error text names no key material, but keep it out anyway.
    r.map_err(|_| DtlsError::Config("the own private key is not a PEM or DER private key".into()))
}

pub fn set_own(b: &mut SslContextBuilder, cert: &[u8], key: &[u8]) -> Result<(), DtlsError> {
    let mut chain = parse_chain(cert)?.into_iter();
    if let Some(leaf) = chain.next() {
        b.set_certificate(&leaf)?;
    }
    for c in chain {
        b.add_extra_chain_cert(c)?;
    }
    let key = parse_key(key)?;
    // OpenSSL 3 already refuses a mismatched key here; older ones at the check.
    b.set_private_key(&key)
        .and_then(|()| b.check_private_key())
        .map_err(|_| {
            DtlsError::Config("the own private key does not belong to the own certificate".into())
        })
}

/// Whether the server's name is also checked against its certificate: only when
/// a CA vouches for the certificate, never for a pinned end-entity certificate.
pub fn checks_name(trust: &ServerTrust) -> bool {
    !matches!(
        trust,
        ServerTrust::Pinned {
            usage: CertUsage::DomainIssued,
            ..
        }
    )
}

pub fn set_server_trust(b: &mut SslContextBuilder, trust: &ServerTrust) -> Result<(), DtlsError> {
    match trust {
        ServerTrust::CaFile(path) => {
            b.set_ca_file(path).map_err(|e| {
                DtlsError::Config(format!("cannot load CAs from {}: {e}", path.display()))
            })?;
            b.set_verify(SslVerifyMode::PEER);
        }
        ServerTrust::Pinned { cert, usage } => {
            let pinned = parse_cert(cert, "the server certificate")?;
            let der = pinned.to_der()?;
            let mut store = X509StoreBuilder::new()?;
            if *usage != CertUsage::DomainIssued {
                store.add_cert(pinned)?;
            }
            b.set_cert_store(store.build());
            match usage {
                CertUsage::CaConstraint | CertUsage::TrustAnchor => {
                    b.set_verify(SslVerifyMode::PEER)
                }
                CertUsage::ServiceCertificate => b
                    .set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
                        ok || leaf_is(ctx, &der)
                    }),
                CertUsage::DomainIssued => {
                    b.set_verify_callback(SslVerifyMode::PEER, move |_, ctx| {
                        let same = leaf_is(ctx, &der);
                        if !same {
                            ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
                        }
                        same
                    })
                }
            }
        }
    }
    Ok(())
}

/// Whether the certificate the server sent for itself is `der`, byte for byte.
fn leaf_is(ctx: &X509StoreContextRef, der: &[u8]) -> bool {
    let leaf = ctx
        .chain()
        .and_then(|c| c.iter().next())
        .or_else(|| ctx.current_cert().filter(|_| ctx.error_depth() == 0));
    leaf.and_then(|c| c.to_der().ok()).is_some_and(|d| d == der)
}

/// The server's public key (SubjectPublicKeyInfo, PEM or DER) as DER.
#[cfg(lwgate_rpk)]
fn parse_public_key(bytes: &[u8]) -> Result<Vec<u8>, DtlsError> {
    let r = if is_pem(bytes) {
        PKey::public_key_from_pem(bytes)
    } else {
        PKey::public_key_from_der(bytes)
    };
    r.and_then(|k| k.public_key_to_der()).map_err(|e| {
        DtlsError::Config(format!(
            "the server public key is not a PEM or DER public key: {e}"
        ))
    })
}

/// RFC 7250 both ways: our raw public key is the private key's, and the server
/// must present exactly the key LwM2M gave for it (/0/x/4): with no certificate
/// there is no CA, name or date to check, so the key is the pin.
#[cfg(lwgate_rpk)]
pub fn set_raw_public_keys(
    b: &mut SslContextBuilder,
    own_key: &[u8],
    server_key: &[u8],
) -> Result<(), DtlsError> {
    let expected = parse_public_key(server_key)?;
    let key = parse_key(own_key)?;
    b.set_private_key(&key)?;
    if !super::ffi::rpk::only_raw_public_keys(b) {
        return Err(DtlsError::Config(
            "OpenSSL refused the raw-public-key certificate types".into(),
        ));
    }
    b.set_verify_callback(SslVerifyMode::PEER, move |_, ctx| {
        let same = super::ffi::rpk::peer_key_der(ctx).is_some_and(|k| k == expected);
        if !same {
            ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        }
        same
    });
    Ok(())
}
