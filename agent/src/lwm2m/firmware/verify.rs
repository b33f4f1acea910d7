//! Checks of a downloaded package before it may be installed: its SHA-256
//! against an expected digest, and a minisign (Ed25519) signature against a
//! public key from the config. Streaming: the driver feeds the file in chunks
//! as it reads it, so an image never has to fit in memory.
//!
//! ```no_run
//! # use lwgate::lwm2m::firmware::verify::*;
//! # fn chunks() -> Vec<Vec<u8>> { vec![] }
//! let policy = Policy {
//!     sha256: Some(parse_sha256("0542235c83e32274635ce957a37f15c884a9c25a269aad4838f4b06cd70ce8bd")?),
//!     signature: Some((
//!         TrustedKey::decode("RWSNeGOxqE3M1ICVAWpx/GCruEhwCwWhUia7RLYPucmc+ZFVtu2hINS2")?,
//!         DetachedSignature::decode("untrusted comment: …\n…")?,
//!     )),
//! };
//! let mut v = ImageVerifier::new(&policy)?;
//! for c in chunks() {
//!     v.update(&c);
//! }
//! let verified = v.finish()?; // Err says what did not match
//! # Ok::<(), VerifyError>(())
//! ```

// OpenSSL's SHA-256 (assembly, SHA-NI where the CPU has it): 16 MiB in a few ms,
// where the sha2 crate at our size-first opt-level took 59 ms.
use openssl::sha::Sha256;

/// What did not match, or what could not be read. Never carries key bytes:
/// the message may end up in a log or in `lwgate status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the expected SHA-256 is not 64 hex digits")]
    BadExpectedDigest,
    #[error("SHA-256 mismatch: expected {expected}, the image has {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("the configured minisign public key does not decode")]
    BadPublicKey,
    #[error("the minisign signature does not decode: {0}")]
    BadSignatureFile(&'static str),
    #[error("the image is signed with another key than the configured one")]
    WrongKey,
    #[error("legacy (not pre-hashed) minisign signature: sign with a current minisign (pre-hashed is the default)")]
    LegacySignature,
    #[error(
        "the minisign signature does not match the image (or its trusted comment was altered)"
    )]
    SignatureMismatch,
}

/// Parses an expected digest given as hex (either case, surrounding spaces
/// ignored, as pasted from `sha256sum`).
pub fn parse_sha256(hex_digest: &str) -> Result<[u8; 32], VerifyError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest.trim(), &mut out)
        .map_err(|_| VerifyError::BadExpectedDigest)?;
    Ok(out)
}

/// A minisign public key from the config.
#[derive(Clone, Debug)]
pub struct TrustedKey(minisign_verify::PublicKey);

impl TrustedKey {
    /// Either the bare base64 line (`RW…`) or the whole `.pub` file with its
    /// `untrusted comment:` line: config authors paste both.
    pub fn decode(text: &str) -> Result<Self, VerifyError> {
        let text = text.trim();
        let key = if text.starts_with("untrusted comment:") {
            minisign_verify::PublicKey::decode(text)
        } else {
            minisign_verify::PublicKey::from_base64(text)
        };
        key.map(TrustedKey).map_err(|_| VerifyError::BadPublicKey)
    }
}

/// The contents of a `.minisig` file.
#[derive(Clone)]
pub struct DetachedSignature(minisign_verify::Signature);

impl DetachedSignature {
    pub fn decode(text: &str) -> Result<Self, VerifyError> {
        minisign_verify::Signature::decode(text.trim())
            .map(DetachedSignature)
            .map_err(|e| VerifyError::BadSignatureFile(sig_decode_reason(&e)))
    }

    /// The signed ("trusted") comment, e.g. `file:fw.bin version:1.2.3`: the
    /// driver may take the package version from it, since it is covered by
    /// the signature.
    pub fn trusted_comment(&self) -> &str {
        self.0.trusted_comment()
    }
}

fn sig_decode_reason(e: &minisign_verify::Error) -> &'static str {
    match e {
        minisign_verify::Error::UnsupportedAlgorithm
        | minisign_verify::Error::UnexpectedAlgorithm => "unsupported signature algorithm",
        _ => "not a minisign signature file",
    }
}

/// What a package must pass. Both parts optional: a deployment that has
/// neither a digest nor a key accepts any image (the driver decides whether
/// its config allows that).
#[derive(Clone, Default)]
pub struct Policy {
    pub sha256: Option<[u8; 32]>,
    pub signature: Option<(TrustedKey, DetachedSignature)>,
}

/// Nothing to pass: the digest is computed for the log only.
static DIGEST_ONLY: Policy = Policy {
    sha256: None,
    signature: None,
};

/// What was checked, for the log and for the machine's package info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the image (always computed: it goes in the log).
    pub sha256: String,
    /// The signature's trusted comment, if a signature was checked.
    pub trusted_comment: Option<String>,
}

/// One pass over an image. Borrows the policy because minisign's streaming
/// check borrows its key and signature.
pub struct ImageVerifier<'a> {
    sha: Sha256,
    bytes: u64,
    policy: &'a Policy,
    stream: Option<minisign_verify::StreamVerifier<'a>>,
}

impl<'a> ImageVerifier<'a> {
    /// Fails before any data is read when the signature is by another key or
    /// is a legacy one, so the driver does not read a large image for nothing.
    pub fn new(policy: &'a Policy) -> Result<Self, VerifyError> {
        let stream = match &policy.signature {
            None => None,
            Some((key, sig)) => Some(key.0.verify_stream(&sig.0).map_err(|e| match e {
                minisign_verify::Error::UnexpectedKeyId => VerifyError::WrongKey,
                minisign_verify::Error::UnsupportedLegacyMode => VerifyError::LegacySignature,
                _ => VerifyError::SignatureMismatch,
            })?),
        };
        Ok(ImageVerifier {
            sha: Sha256::new(),
            bytes: 0,
            policy,
            stream,
        })
    }

    /// A pass that only computes the SHA-256 (a push, which has no signature
    /// or digest to check against, or a stand-in while the policy is refused).
    pub fn digest_only() -> ImageVerifier<'static> {
        ImageVerifier {
            sha: Sha256::new(),
            bytes: 0,
            policy: &DIGEST_ONLY,
            stream: None,
        }
    }

    /// Bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.sha.update(chunk);
        if let Some(s) = &mut self.stream {
            s.update(chunk);
        }
        self.bytes += chunk.len() as u64;
    }

    /// The digest is compared first: a mismatch there names both digests,
    /// which says more than "bad signature" about a truncated download.
    pub fn finish(self) -> Result<Verified, VerifyError> {
        let digest: [u8; 32] = self.sha.finish();
        let actual = hex::encode(digest);
        if let Some(expected) = self.policy.sha256 {
            if expected != digest {
                return Err(VerifyError::DigestMismatch {
                    expected: hex::encode(expected),
                    actual,
                });
            }
        }
        let trusted_comment = match (self.stream, &self.policy.signature) {
            (Some(mut s), Some((_, sig))) => {
                s.finalize().map_err(|_| VerifyError::SignatureMismatch)?;
                Some(sig.trusted_comment().to_string())
            }
            _ => None,
        };
        Ok(Verified {
            bytes: self.bytes,
            sha256: actual,
            trusted_comment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &[u8] = include_bytes!("../../../tests/fixtures/minisign/image.bin");
    const BIG: &[u8] = include_bytes!("../../../tests/fixtures/minisign/big.bin");
    const PUB: &str = include_str!("../../../tests/fixtures/minisign/test.pub");
    const OTHER_PUB: &str = include_str!("../../../tests/fixtures/minisign/other.pub");
    const SIG: &str = include_str!("../../../tests/fixtures/minisign/image.bin.minisig");
    const BIG_SIG: &str = include_str!("../../../tests/fixtures/minisign/big.bin.minisig");
    const LEGACY_SIG: &str =
        include_str!("../../../tests/fixtures/minisign/image.bin.legacy.minisig");
    const OTHER_SIG: &str =
        include_str!("../../../tests/fixtures/minisign/image.bin.other.minisig");
    const SUMS: &str = include_str!("../../../tests/fixtures/minisign/SHA256SUMS");

    fn sum_of(name: &str) -> [u8; 32] {
        let line = SUMS.lines().find(|l| l.ends_with(name)).unwrap();
        parse_sha256(line.split_whitespace().next().unwrap()).unwrap()
    }

    fn run(policy: &Policy, data: &[u8], chunk: usize) -> Result<Verified, VerifyError> {
        let mut v = ImageVerifier::new(policy)?;
        for c in data.chunks(chunk) {
            v.update(c);
        }
        v.finish()
    }

    fn signed(key: &str, sig: &str) -> Option<(TrustedKey, DetachedSignature)> {
        Some((
            TrustedKey::decode(key).unwrap(),
            DetachedSignature::decode(sig).unwrap(),
        ))
    }

    #[test]
    fn sha256_of_the_fixture_matches_sha256sum() {
        let p = Policy {
            sha256: Some(sum_of("image.bin")),
            signature: None,
        };
        let v = run(&p, IMAGE, 5).unwrap();
        assert_eq!(v.bytes, IMAGE.len() as u64);
        assert_eq!(v.sha256, hex::encode(sum_of("image.bin")));
        assert_eq!(v.trusted_comment, None);
    }

    #[test]
    fn sha256_mismatch_names_both_digests() {
        let p = Policy {
            sha256: Some(sum_of("big.bin")),
            signature: None,
        };
        let e = run(&p, IMAGE, 4096).unwrap_err();
        assert_eq!(
            e,
            VerifyError::DigestMismatch {
                expected: hex::encode(sum_of("big.bin")),
                actual: hex::encode(sum_of("image.bin")),
            }
        );
        assert!(e.to_string().contains("8df43897"), "{e}");
    }

    #[test]
    fn expected_digest_must_be_64_hex_digits() {
        assert_eq!(parse_sha256("abc"), Err(VerifyError::BadExpectedDigest));
        assert_eq!(
            parse_sha256(&"g".repeat(64)),
            Err(VerifyError::BadExpectedDigest)
        );
        let upper = hex::encode(sum_of("image.bin")).to_uppercase();
        assert_eq!(
            parse_sha256(&format!(" {upper}\n")),
            Ok(sum_of("image.bin"))
        );
    }

    #[test]
    fn good_signature_verifies_in_any_chunking() {
        let p = Policy {
            sha256: Some(sum_of("image.bin")),
            signature: signed(PUB, SIG),
        };
        for chunk in [1, 7, 33, 4096] {
            let v = run(&p, IMAGE, chunk).unwrap();
            assert_eq!(
                v.trusted_comment.as_deref(),
                Some("file:image.bin version:1.2.3")
            );
        }
        let p = Policy {
            sha256: None,
            signature: signed(PUB, BIG_SIG),
        };
        for chunk in [1000, 1024, 65536] {
            assert!(run(&p, BIG, chunk).is_ok());
        }
    }

    #[test]
    fn key_from_bare_base64_or_whole_file() {
        let bare = PUB.lines().nth(1).unwrap();
        for key in [PUB, bare] {
            let p = Policy {
                sha256: None,
                signature: signed(key, SIG),
            };
            assert!(run(&p, IMAGE, 64).is_ok());
        }
    }

    #[test]
    fn altered_image_fails_the_signature() {
        let mut bad = IMAGE.to_vec();
        bad[3] ^= 1;
        let p = Policy {
            sha256: None,
            signature: signed(PUB, SIG),
        };
        assert_eq!(run(&p, &bad, 8), Err(VerifyError::SignatureMismatch));
        // A truncated image too.
        assert_eq!(
            run(&p, &IMAGE[..10], 8),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn altered_trusted_comment_fails() {
        let forged = SIG.replace("version:1.2.3", "version:9.9.9");
        let p = Policy {
            sha256: None,
            signature: signed(PUB, &forged),
        };
        assert_eq!(run(&p, IMAGE, 8), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn signature_by_another_key_is_refused_before_reading() {
        let p = Policy {
            sha256: None,
            signature: signed(PUB, OTHER_SIG),
        };
        assert_eq!(ImageVerifier::new(&p).err(), Some(VerifyError::WrongKey));
        // The other key verifies its own signature: the vector is good.
        let p = Policy {
            sha256: None,
            signature: signed(OTHER_PUB, OTHER_SIG),
        };
        assert!(run(&p, IMAGE, 8).is_ok());
    }

    #[test]
    fn legacy_signature_is_refused_with_the_reason() {
        let p = Policy {
            sha256: None,
            signature: signed(PUB, LEGACY_SIG),
        };
        let e = ImageVerifier::new(&p).err().unwrap();
        assert_eq!(e, VerifyError::LegacySignature);
    }

    #[test]
    fn digest_is_checked_before_the_signature() {
        let p = Policy {
            sha256: Some(sum_of("big.bin")),
            signature: signed(PUB, SIG),
        };
        assert!(matches!(
            run(&p, IMAGE, 8),
            Err(VerifyError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn undecodable_inputs_say_which() {
        assert_eq!(
            TrustedKey::decode("not a key").err(),
            Some(VerifyError::BadPublicKey)
        );
        assert_eq!(
            TrustedKey::decode("").err(),
            Some(VerifyError::BadPublicKey)
        );
        assert!(matches!(
            DetachedSignature::decode("garbage"),
            Err(VerifyError::BadSignatureFile(_))
        ));
        let e = TrustedKey::decode("RWSNeGOxqE3M1ICVAWpx/GCruEhwCwWhUia7RLYPucmc+ZFVtu2hIN")
            .err()
            .unwrap();
        // The message never repeats what it was given.
        assert!(!e.to_string().contains("RWSN"), "{e}");
    }

    #[test]
    fn digest_only_is_the_empty_policy() {
        let mut v = ImageVerifier::digest_only();
        v.update(IMAGE);
        assert_eq!(v.bytes(), IMAGE.len() as u64);
        assert_eq!(
            v.finish().unwrap(),
            run(&Policy::default(), IMAGE, 99).unwrap()
        );
    }

    #[test]
    fn empty_policy_accepts_and_reports_the_digest() {
        let v = run(&Policy::default(), b"", 8).unwrap();
        assert_eq!(v.bytes, 0);
        assert_eq!(
            v.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
