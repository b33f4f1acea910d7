//! One connection for one request: TCP to each address of the host in turn, TLS
//! on the system's OpenSSL for https (the trust store, plus the configured CA
//! file), and hyper's HTTP/1.1 client on top.

use super::uri::{host, is_https, port, shown};
use super::{DownloadConfig, DownloadError};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use openssl::x509::X509VerifyResult;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_openssl::SslStream;

/// A small read buffer (hyper's default may grow to 400 KiB): a gateway's
/// memory, and the body reaches the file chunk by chunk anyway.
const MAX_BUF: usize = 64 << 10;

pub(super) type Body = http_body_util::Empty<Bytes>;

pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Conn = http1::Connection<TokioIo<Box<dyn Io>>, Body>;

/// The TLS client context: peer verification with the host name (or IP address)
/// checked, TLS 1.2 at least.
pub(super) fn tls(cfg: &DownloadConfig) -> Result<SslConnector, DownloadError> {
    let config = |what: String| DownloadError::Config(format!("TLS: {what}"));
    // builder() loads the system's default verify paths (/etc/ssl/certs).
    let mut b =
        SslConnector::builder(SslMethod::tls_client()).map_err(|e| config(e.to_string()))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| config(e.to_string()))?;
    if let Some(ca) = &cfg.ca_file {
        // Added to the store that already holds the system's CAs.
        b.set_ca_file(ca)
            .map_err(|e| config(format!("CA file {}: {e}", ca.display())))?;
    }
    Ok(b.build())
}

/// Polls the connection while the request's futures wait on it: hyper does the
/// socket's I/O in the connection future, which this drives in the caller's own
/// task (no spawned task that could outlive a dropped download).
pub(super) struct Driver {
    conn: Pin<Box<Conn>>,
    closed: bool,
}

impl Driver {
    pub(super) async fn run<F: Future>(&mut self, f: F) -> F::Output {
        tokio::pin!(f);
        loop {
            tokio::select! {
                biased;
                out = &mut f => return out,
                r = &mut self.conn, if !self.closed => {
                    // The request's own future reports what went wrong.
                    self.closed = true;
                    if let Err(e) = r {
                        tracing::debug!("download connection ended: {e}");
                    }
                }
            }
        }
    }
}

pub(super) async fn open(
    cfg: &DownloadConfig,
    tls: &SslConnector,
    uri: &Uri,
) -> Result<(http1::SendRequest<Body>, Driver), DownloadError> {
    let io = timeout(cfg.connect_timeout, connect(tls, uri))
        .await
        .map_err(|_| {
            DownloadError::lost(
                uri,
                format!("no connection within {:?}", cfg.connect_timeout),
            )
        })??;
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(MAX_BUF)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| DownloadError::lost(uri, format!("HTTP: {e}")))?;
    Ok((
        sender,
        Driver {
            conn: Box::pin(conn),
            closed: false,
        },
    ))
}

async fn connect(tls: &SslConnector, uri: &Uri) -> Result<Box<dyn Io>, DownloadError> {
    let tcp = tcp(uri)
        .await
        .map_err(|e| DownloadError::lost(uri, format!("connect: {e}")))?;
    if !is_https(uri) {
        return Ok(Box::new(tcp));
    }
    let tls_error = |e: &dyn std::fmt::Display| DownloadError::lost(uri, format!("TLS: {e}"));
    let ssl = tls
        .configure()
        .and_then(|c| c.into_ssl(host(uri)))
        .map_err(|e| tls_error(&e))?;
    let mut s = SslStream::new(ssl, tcp).map_err(|e| tls_error(&e))?;
    if let Err(e) = Pin::new(&mut s).connect().await {
        let verify = s.ssl().verify_result();
        if verify != X509VerifyResult::OK {
            return Err(DownloadError::Untrusted {
                url: shown(uri),
                reason: format!("certificate verify failed: {}", verify.error_string()),
            });
        }
        return Err(tls_error(&e));
    }
    Ok(Box::new(s))
}

async fn tcp(uri: &Uri) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host(uri), port(uri))).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the host has no address")))
}
