use openssl::error::ErrorStack;

#[derive(Debug, thiserror::Error)]
pub enum DtlsError {
    #[error("DTLS configuration: {0}")]
    Config(String),
    /// Something this build cannot do (raw public keys on OpenSSL < 3.2).
    #[error("{0}")]
    Unsupported(String),
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] ErrorStack),
    /// The session failed or was closed; the string is why.
    #[error("DTLS session not usable: {0}")]
    NotConnected(String),
}
