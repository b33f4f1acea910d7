//! Firmware packages pulled from a coap:// or coaps:// Package URI (LwM2M 1.0
//! E.6) into a file, block by block (RFC 7959 Block2): memory stays a few
//! blocks whatever the package's size.
//!
//! - [`block2`]: the download without I/O (which block next, what a response
//!   means: write, start over, finish, fail).
//! - [`coap`](self::coap): the tokio driver: socket, DTLS, file, progress.
//! - A [`Resume`] (serde) is what the caller stores to continue after a
//!   restart; [`Progress`] carries the current one.
//!
//! Each request goes through [`crate::coap::Endpoint`] (CON, RFC 7252
//! retransmission and deduplication) with an explicit Block2 option, which the
//! endpoint then delivers as it came instead of reassembling the body.

pub mod block2;
pub mod coap;
mod error;
mod link;
mod uri;

pub use self::coap::{fetch, fetch_checked};
pub use error::FetchError;

use crate::coap::TxParams;
use crate::dtls::DtlsConfig;
use crate::lwm2m::firmware::verify::{Verified, VerifyError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a download stood, for the caller to persist and pass back with the
/// partial file. `bytes` may run ahead of the file (a crash before the data
/// reached the disk): the file's length then decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub uri: String,
    /// The resource's ETag when the bytes were fetched; None if the server
    /// sent none (then a change cannot be seen, and the rest is trusted).
    pub etag: Option<Vec<u8>>,
    pub bytes: u64,
    /// The block size in use (the server may have lowered ours).
    pub block_size: usize,
}

/// Published while a download runs (at most every `progress_every`) and at its
/// end.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Bytes of the package in the file.
    pub bytes: u64,
    /// The server's estimate of the size (Size2), when it gave one.
    pub total: Option<u64>,
    /// Bytes received per second since this call started.
    pub bytes_per_sec: f64,
    pub resume: Resume,
}

#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Preferred block size, 16..=1024 (rounded down to a power of two); the
    /// server may answer with a smaller one, which is then kept.
    pub block_size: usize,
    /// RFC 7252 transmission parameters of each request.
    pub tx: TxParams,
    /// Attempts at a block after its first request timed out (each after
    /// MAX_RETRANSMIT retransmissions), with `retry_backoff` doubling between
    /// them, before `ConnectionLost`.
    pub block_retries: u32,
    pub retry_backoff: Duration,
    /// Passes from block 0 after the resource changed (a new ETag).
    pub max_restarts: u32,
    /// The largest package accepted.
    pub max_bytes: Option<u64>,
    /// Bytes that must stay free on the package file's file system.
    pub keep_free: u64,
    /// Credentials for coaps:// (the repository's, not an LwM2M server's).
    pub dtls: Option<DtlsConfig>,
    pub progress_every: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            block_size: 1024,
            tx: TxParams::default(),
            block_retries: 3,
            retry_backoff: Duration::from_secs(2),
            max_restarts: 3,
            max_bytes: None,
            keep_free: 0,
            dtls: None,
            progress_every: Duration::from_secs(1),
        }
    }
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: u64,
    pub etag: Option<Vec<u8>>,
    pub elapsed: Duration,
    /// GET requests answered (one per block, retries not counted).
    pub blocks: u64,
    /// Attempts that failed (timed out, DTLS failed, 5.03) and were made again.
    pub retries: u64,
    /// Passes started over because the resource changed.
    pub restarts: u32,
    /// The block size at the end.
    pub block_size: usize,
    /// The package against the policy it was fetched with, checked as it
    /// came (a resumed part read back once).
    pub check: Result<Verified, VerifyError>,
}
