//! Why a download failed, and the LwM2M Update Result (1.0 E.6, /5/0/5) each
//! reason is reported as.

use crate::coap::message::code_text;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid package URI: {0}")]
    InvalidUri(String),
    #[error("package URI scheme {0:?} is not supported (coap:// and coaps:// are)")]
    UnsupportedScheme(String),
    /// coaps:// without a `DtlsConfig`: the repository is no LwM2M server, so
    /// there is no Security instance to borrow credentials from.
    #[error("coaps:// needs DTLS credentials for the repository, and none were configured")]
    NoCredentials,
    /// The credentials given cannot make a DTLS context (bad key, bad PEM).
    #[error("the DTLS credentials for the repository are unusable: {0}")]
    BadCredentials(String),
    #[error("not enough space: {needed} bytes needed, {available} available")]
    NoSpace { needed: u64, available: u64 },
    #[error("the package ({size} bytes or more) exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// Timeouts after every retry, a DTLS failure, an unreachable host.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The server answered an error code (not 5.03, which is retried).
    #[error("the server answered {}", code_text(*code))]
    Server { code: u8 },
    /// The server broke RFC 7959: a malformed Block2 option, a block at
    /// another offset than asked, a short block that says more follow.
    #[error("broken block-wise transfer: {0}")]
    Protocol(String),
    /// A new ETag on every pass: the resource keeps changing.
    #[error("the resource changed during the download {0} times; giving up")]
    Unstable(u32),
    /// Writing the package file failed for another reason than space.
    #[error("package file: {0}")]
    Io(String),
}

impl FetchError {
    /// The Update Result (E.6) for this failure.
    ///
    /// - 4.xx → 7 (Invalid URI): the request this URI makes cannot succeed as it
    ///   is (4.04 no such resource, 4.01/4.03 not for us, 4.00/4.02/4.05/4.06 not
    ///   a resource to GET), and asking again would fail the same way; 7 tells the
    ///   LwM2M server that the URI is at fault and a new one is needed.
    /// - 5.xx → 4 (Connection lost): the repository failed, which may pass, so
    ///   the server may well write the same URI again.
    /// - Protocol → 4, not 5: 5 (Integrity check failure) is the verdict of the
    ///   package check on a complete file, and nothing broken is ever handed to
    ///   it; a server that breaks the transfer failed the download, like a lost
    ///   connection, and a retry (perhaps from another repository) may succeed.
    /// - Io → 2: E.6 has no code for a storage failure; 2 (Not enough flash
    ///   memory) is the one that names storage, and the text goes to the log.
    pub fn update_result(&self) -> u8 {
        match self {
            FetchError::InvalidUri(_) => 7,
            FetchError::UnsupportedScheme(_)
            | FetchError::NoCredentials
            | FetchError::BadCredentials(_) => 9,
            FetchError::NoSpace { .. } | FetchError::TooLarge { .. } | FetchError::Io(_) => 2,
            FetchError::ConnectionLost(_) | FetchError::Protocol(_) | FetchError::Unstable(_) => 4,
            FetchError::Server { code } if code >> 5 == 4 => 7,
            FetchError::Server { .. } => 4,
        }
    }

    /// A file error, with the space errors (ENOSPC, EDQUOT) told apart; the
    /// write that failed needed at least one byte more than was `available`.
    pub fn io(e: &std::io::Error, available: Option<u64>) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => FetchError::NoSpace {
                needed: available.unwrap_or(0).saturating_add(1),
                available: available.unwrap_or(0),
            },
            _ => FetchError::Io(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_results_follow_e6() {
        let cases = [
            (FetchError::InvalidUri("x".into()), 7),
            (FetchError::UnsupportedScheme("ftp".into()), 9),
            (FetchError::NoCredentials, 9),
            (FetchError::BadCredentials("pem".into()), 9),
            (
                FetchError::NoSpace {
                    needed: 2,
                    available: 1,
                },
                2,
            ),
            (FetchError::TooLarge { size: 2, limit: 1 }, 2),
            (FetchError::Io("EIO".into()), 2),
            (FetchError::ConnectionLost("timeout".into()), 4),
            (FetchError::Protocol("offset".into()), 4),
            (FetchError::Unstable(3), 4),
            (FetchError::Server { code: 0x84 }, 7),
            (FetchError::Server { code: 0x83 }, 7),
            (FetchError::Server { code: 0x81 }, 7),
            (FetchError::Server { code: 0x80 }, 7),
            (FetchError::Server { code: 0xA0 }, 4),
            (FetchError::Server { code: 0xA4 }, 4),
        ];
        for (e, code) in cases {
            assert_eq!(e.update_result(), code, "{e}");
        }
        assert_eq!(
            FetchError::Server { code: 0x84 }.to_string(),
            "the server answered 4.04"
        );
    }

    #[test]
    fn enospc_is_no_space() {
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(matches!(
            FetchError::io(&e, Some(10)),
            FetchError::NoSpace { available: 10, .. }
        ));
        let e = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(matches!(FetchError::io(&e, None), FetchError::Io(_)));
    }
}
