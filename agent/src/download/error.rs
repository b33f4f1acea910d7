//! Why a download failed, in terms the LwM2M server understands: each variant maps
//! onto an Update Result code of Firmware Update (/5/0/5, OMA LwM2M 1.1 E.6), and
//! says whether the caller may retry the same URI.

use std::path::PathBuf;

/// Update Result values of /5/0/5 that a download can end in.
pub mod update_result {
    pub const INITIAL: u8 = 0;
    pub const NOT_ENOUGH_FLASH: u8 = 2;
    pub const CONNECTION_LOST: u8 = 4;
    pub const INVALID_URI: u8 = 7;
    pub const FAILED: u8 = 8;
    pub const UNSUPPORTED_PROTOCOL: u8 = 9;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    #[error("invalid package URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("unsupported scheme {scheme:?} in package URI {uri:?}: only http and https")]
    UnsupportedScheme { uri: String, scheme: String },
    #[error("redirect from {from} to {to} refused: https is not downgraded to http")]
    InsecureRedirect { from: String, to: String },
    #[error("more than {limit} redirects from {uri}")]
    TooManyRedirects { uri: String, limit: u8 },
    #[error("HTTP {status} from {url}")]
    Http { url: String, status: u16 },
    #[error("the TLS server {url} is not trusted: {reason}")]
    Untrusted { url: String, reason: String },
    #[error("the package has {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("no space for the package in {}: {needed} bytes needed, {available} available", dir.display())]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("connection lost ({url}): {reason}")]
    ConnectionLost { url: String, reason: String },
    #[error("download file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("download configuration: {0}")]
    Config(String),
    #[error("download cancelled after {bytes} bytes")]
    Cancelled { bytes: u64 },
}

impl DownloadError {
    /// The /5/0/5 Update Result for this failure.
    ///
    /// HTTP 4xx (404, 403, 410...) is 7, not 4: the URI names nothing this client
    /// may fetch, and only a new URI from the server helps; 4 would tell the server
    /// that trying the same URI again may work. An untrusted TLS server is 7 for
    /// the same reason. 5xx, 408 and 429 are the server's passing trouble: 4.
    /// A downgrade to http on a redirect is 9, a protocol this client refuses.
    pub fn update_result(&self) -> u8 {
        use update_result::*;
        match self {
            Self::InvalidUri { .. } | Self::TooManyRedirects { .. } | Self::Untrusted { .. } => {
                INVALID_URI
            }
            Self::UnsupportedScheme { .. } | Self::InsecureRedirect { .. } => UNSUPPORTED_PROTOCOL,
            Self::Http { status, .. } if http_status_transient(*status) => CONNECTION_LOST,
            Self::Http { .. } => INVALID_URI,
            Self::TooLarge { .. } | Self::NoSpace { .. } => NOT_ENOUGH_FLASH,
            Self::ConnectionLost { .. } => CONNECTION_LOST,
            Self::File { .. } | Self::Config(_) => FAILED,
            // The server reset the update (an empty Package URI): the state machine
            // goes back to Idle with no error to show.
            Self::Cancelled { .. } => INITIAL,
        }
    }

    /// Whether trying the same URI again (resuming) may succeed: a lost or stalled
    /// connection, or a server error that says "later". The caller decides how
    /// often; after its last try it reports [`update_result`](Self::update_result).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ConnectionLost { .. } => true,
            Self::Http { status, .. } => http_status_transient(*status),
            _ => false,
        }
    }

    pub(super) fn lost(url: &hyper::Uri, reason: impl Into<String>) -> Self {
        Self::ConnectionLost {
            url: super::uri::shown(url),
            reason: reason.into(),
        }
    }
}

fn http_status_transient(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> DownloadError {
        DownloadError::Http {
            url: "http://x/".into(),
            status,
        }
    }

    #[test]
    fn update_results() {
        let lost = DownloadError::ConnectionLost {
            url: String::new(),
            reason: String::new(),
        };
        assert_eq!(lost.update_result(), 4);
        assert!(lost.is_retryable());
        for s in [400, 401, 403, 404, 410] {
            assert_eq!(http(s).update_result(), 7, "{s}");
            assert!(!http(s).is_retryable(), "{s}");
        }
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(http(s).update_result(), 4, "{s}");
            assert!(http(s).is_retryable(), "{s}");
        }
        let scheme = DownloadError::UnsupportedScheme {
            uri: String::new(),
            scheme: "ftp".into(),
        };
        assert_eq!(scheme.update_result(), 9);
        let big = DownloadError::TooLarge { size: 2, limit: 1 };
        assert_eq!(big.update_result(), 2);
        assert_eq!(DownloadError::Cancelled { bytes: 1 }.update_result(), 0);
    }
}
