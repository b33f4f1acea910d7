//! Package downloads over HTTP and HTTPS for Firmware Update (/5) and Software
//! Management (/9): the Package URI's resource streamed into a file of the
//! download directory, resumable after a lost link or a restart of the agent
//! (Range + If-Range), within a size limit and the directory's free space.
//!
//! The caller owns the retry policy and the persistence: it keeps the [`Resume`]
//! that [`Downloader::fetch`] updates in place (also mid-download, through
//! [`Progress::resume`]) and calls `fetch` again while
//! [`DownloadError::is_retryable`] says so. A failed, cancelled or dropped fetch
//! leaves the partial file; deleting it is up to the caller.
//!
//! TLS is the system's OpenSSL, as for DTLS: the system's trust store, plus an
//! optional CA file for a private repository. HTTP/1.1 only (hyper's client): one
//! GET per package, nothing that HTTP/2 would speed up.

mod connect;
mod error;
mod http;
mod progress;
mod resume;
mod sink;
mod space;
mod uri;

pub use error::{update_result, DownloadError};
pub use progress::Progress;
pub use resume::Resume;
pub use sink::{Finished, Sink};

use crate::lwm2m::firmware::verify::{Policy, Verified, VerifyError};

use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Settings of the downloader, from the agent's configuration.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// Where packages are written.
    pub dir: PathBuf,
    /// The largest package accepted, if limited.
    pub max_size: Option<u64>,
    /// Bytes of the directory's file system left free for the rest of the agent.
    pub reserve: u64,
    /// PEM CA certificates trusted on top of the system's, for private servers.
    pub ca_file: Option<PathBuf>,
    /// Limit for the TCP connection and the TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for a silence of the server, before its headers or within the body.
    pub idle_timeout: Duration,
    /// Redirects followed per request.
    pub max_redirects: u8,
    /// Least time between two progress snapshots (and debug lines).
    pub progress_interval: Duration,
}

impl DownloadConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DownloadConfig {
            dir: dir.into(),
            max_size: None,
            // Room for the store's journal and the logs while an image fills the disk.
            reserve: 4 << 20,
            ca_file: None,
            // Generous for cellular links, whose first packets can take seconds.
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_redirects: 5,
            progress_interval: Duration::from_secs(5),
        }
    }
}

/// A completed download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub path: PathBuf,
    /// The package's size, all on disk.
    pub bytes: u64,
    /// Bytes fetched by this call (less than `bytes` after a resume).
    pub fetched: u64,
    /// Average bytes per second of this call.
    pub rate: u64,
    /// The package against the policy it was fetched with, checked as it
    /// came (a resumed part read back once): nothing is left to read.
    pub check: Result<Verified, VerifyError>,
}

/// Checks a Package URI before anything is fetched (as a write of /5/0/1 should):
/// [`DownloadError::InvalidUri`] or [`DownloadError::UnsupportedScheme`].
pub fn check_uri(uri: &str) -> Result<(), DownloadError> {
    uri::parse(uri).map(drop)
}

/// Downloads packages; one per agent, shared by the objects that need it.
pub struct Downloader {
    tls: openssl::ssl::SslConnector,
    cfg: DownloadConfig,
}

impl Downloader {
    /// Fails ([`DownloadError::Config`]) on an unreadable or empty CA file.
    pub fn new(cfg: DownloadConfig) -> Result<Self, DownloadError> {
        let tls = connect::tls(&cfg)?;
        Ok(Downloader { tls, cfg })
    }

    pub fn config(&self) -> &DownloadConfig {
        &self.cfg
    }

    /// The file `name` (a plain file name) in the download directory.
    pub fn path_for(&self, name: &str) -> Result<PathBuf, DownloadError> {
        let mut c = Path::new(name).components();
        match (c.next(), c.next()) {
            (Some(Component::Normal(_)), None) => Ok(self.cfg.dir.join(name)),
            _ => Err(DownloadError::Config(format!(
                "download file name {name:?} is not a plain file name"
            ))),
        }
    }

    /// Downloads `state.url` into the file `name` of the download directory,
    /// continuing from `state` when its bytes are still valid. `state` is kept up
    /// to date as bytes are written, also when this future is dropped.
    pub async fn fetch(
        &self,
        name: &str,
        state: &mut Resume,
        progress: Option<&watch::Sender<Progress>>,
        cancel: Option<&CancellationToken>,
    ) -> Result<Done, DownloadError> {
        self.fetch_checked(name, state, progress, cancel, Policy::default())
            .await
    }

    /// [`Downloader::fetch`], with the bytes checked against `policy` as they
    /// are written: [`Done::check`] is the verdict.
    pub async fn fetch_checked(
        &self,
        name: &str,
        state: &mut Resume,
        progress: Option<&watch::Sender<Progress>>,
        cancel: Option<&CancellationToken>,
        policy: Policy,
    ) -> Result<Done, DownloadError> {
        let url = uri::parse(&state.url)?;
        let path = self.path_for(name)?;
        tokio::fs::create_dir_all(&self.cfg.dir)
            .await
            .map_err(|source| DownloadError::File {
                path: self.cfg.dir.clone(),
                source,
            })?;
        let shown = uri::shown(&url);
        tracing::info!(url = %shown, file = %path.display(), from = state.bytes, "download started");
        let run = http::transfer(self, &url, &path, state, progress, policy);
        let result = match cancel {
            Some(c) => tokio::select! {
                biased;
                () = c.cancelled() => None,
                r = run => Some(r),
            },
            None => Some(run.await),
        };
        let result = result.unwrap_or(Err(DownloadError::Cancelled { bytes: state.bytes }));
        match &result {
            Ok(d) => tracing::info!(
                url = %shown, bytes = d.bytes, fetched = d.fetched, rate = d.rate,
                "download complete"
            ),
            Err(e) => tracing::warn!(
                url = %shown, bytes = state.bytes, retryable = e.is_retryable(),
                update_result = e.update_result(), "download failed: {e}"
            ),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_in_the_directory() {
        let d = Downloader::new(DownloadConfig::new("/var/lib/lwgate/download")).unwrap();
        assert_eq!(
            d.path_for("fw.part").unwrap(),
            Path::new("/var/lib/lwgate/download/fw.part")
        );
        for bad in ["", "..", "../fw", "/etc/passwd", "a/b", "."] {
            assert!(d.path_for(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = DownloadConfig::new(dir.path());
        c.ca_file = Some(dir.path().join("missing.pem"));
        assert!(matches!(
            Downloader::new(c.clone()),
            Err(DownloadError::Config(_))
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        c.ca_file = Some(empty);
        let e = Downloader::new(c).err().unwrap();
        assert!(matches!(e, DownloadError::Config(_)), "{e}");
    }
}
