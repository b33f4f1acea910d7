//! The HTTP side of a download: the client (OpenSSL through native-tls), the
//! request with its redirects, the answer to a range request, and the body
//! streamed into the partial file.

use super::error::shown;
use super::partial::{self, PartialFile};
use super::progress::{Meter, Progress};
use super::resume::ContentRange;
use super::{space, Done, DownloadConfig, DownloadError, Downloader, Resume};
use reqwest::header::{IF_RANGE, LOCATION, RANGE};
use reqwest::{Response, StatusCode, Url};
use std::path::Path;
use std::time::Instant;
use tokio::sync::watch;
use tokio::time::timeout;

/// Free space is checked again after this many bytes: another writer may fill the
/// file system while a long download runs.
const SPACE_CHECK_EVERY: u64 = 1 << 20;

pub(super) fn client(cfg: &DownloadConfig) -> Result<reqwest::Client, DownloadError> {
    let mut b = reqwest::Client::builder()
        // Redirects are followed by get(), which checks each hop's scheme and
        // keeps Range/If-Range on every hop.
        .redirect(reqwest::redirect::Policy::none())
        // A service's environment is no configuration: proxies are not supported.
        .no_proxy()
        .referer(false)
        .user_agent(concat!("lwgate/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(cfg.connect_timeout)
        .read_timeout(cfg.idle_timeout)
        // Downloads are rare: an idle connection is only held memory and a socket.
        .pool_max_idle_per_host(0)
        .tls_version_min(reqwest::tls::Version::TLS_1_2);
    if let Some(ca) = &cfg.ca_file {
        let config =
            |what: String| DownloadError::Config(format!("CA file {}: {what}", ca.display()));
        let pem = std::fs::read(ca).map_err(|e| config(e.to_string()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| config(e.to_string()))?;
        if certs.is_empty() {
            return Err(config("no PEM certificate in it".into()));
        }
        b = b.tls_certs_merge(certs);
    }
    b.build()
        .map_err(|e| DownloadError::Config(format!("HTTP client: {e}")))
}

pub(super) fn check_scheme(url: &Url, uri: &str) -> Result<(), DownloadError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        s => Err(DownloadError::UnsupportedScheme {
            uri: uri.to_owned(),
            scheme: s.to_owned(),
        }),
    }
}

/// GET `url`, following redirects; returns the final answer and its URL.
async fn get(
    dl: &Downloader,
    url: &Url,
    range: Option<(u64, &str)>,
) -> Result<(Response, Url), DownloadError> {
    let cfg = &dl.cfg;
    let mut at = url.clone();
    for _ in 0..=cfg.max_redirects {
        let mut req = dl.client.get(at.clone());
        if let Some((from, validator)) = range {
            req = req
                .header(RANGE, format!("bytes={from}-"))
                .header(IF_RANGE, validator);
        }
        // read_timeout covers a silent server; this also bounds one that trickles
        // its headers.
        let resp = timeout(cfg.connect_timeout + cfg.idle_timeout, req.send())
            .await
            .map_err(|_| DownloadError::lost(&at, "no response in time"))?
            .map_err(|e| DownloadError::from_client(&at, e))?;
        if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
            return Ok((resp, at));
        }
        let next = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| at.join(l).ok())
            .ok_or_else(|| DownloadError::Http {
                url: shown(&at),
                status: resp.status().as_u16(),
            })?;
        check_scheme(&next, next.as_str())?;
        if at.scheme() == "https" && next.scheme() == "http" {
            return Err(DownloadError::InsecureRedirect {
                from: shown(&at),
                to: shown(&next),
            });
        }
        tracing::debug!(status = resp.status().as_u16(), from = %shown(&at), to = %shown(&next), "download redirected");
        at = next;
    }
    Err(DownloadError::TooManyRedirects {
        uri: shown(url),
        limit: cfg.max_redirects,
    })
}

pub(super) async fn transfer(
    dl: &Downloader,
    url: &Url,
    path: &Path,
    state: &mut Resume,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<Done, DownloadError> {
    let cfg = &dl.cfg;
    let on_disk = partial::existing_len(path).await?;
    let mut offset = match state.if_range() {
        Some(_) => state.bytes.min(on_disk),
        None => 0,
    };
    let (mut resp, at, total) = loop {
        let validator = state.if_range().filter(|_| offset > 0).map(String::from);
        let (resp, at) = get(dl, url, validator.as_deref().map(|v| (offset, v))).await?;
        let status = resp.status().as_u16();
        match (status, ContentRange::from_headers(resp.headers())) {
            (200, _) => {
                if offset > 0 {
                    tracing::info!(url = %shown(&at), "download starts over: the resource changed, or the server ignores ranges");
                }
                state.restart(resp.headers());
                offset = 0;
                let total = resp.content_length();
                break (resp, at, total);
            }
            (
                206,
                Some(ContentRange::Bytes {
                    first, complete, ..
                }),
            ) if offset > 0 && first == offset => {
                let total = complete.or_else(|| resp.content_length().map(|n| offset + n));
                break (resp, at, total);
            }
            // The If-Range validator matched and nothing is past our bytes: the
            // last attempt had fetched it all.
            (416, Some(ContentRange::Unsatisfied { complete }))
                if offset > 0 && complete == offset =>
            {
                let file = PartialFile::open(path, offset).await?;
                state.bytes = file.finish().await?;
                return Ok(done(path, state.bytes, 0, 0));
            }
            // A range answer that does not fit what we asked: nothing on disk can
            // be trusted to continue.
            (206 | 416, range) if offset > 0 => {
                tracing::info!(url = %shown(&at), status, ?range, offset, "download starts over: unusable range answer");
                *state = Resume::new(std::mem::take(&mut state.url));
                offset = 0;
            }
            (status, _) => {
                return Err(DownloadError::Http {
                    url: shown(&at),
                    status,
                })
            }
        }
    };

    // Checked before the first byte is written: a package that cannot fit is
    // refused at once, not after filling the disk.
    if let Some(total) = total {
        space::check_limit(total, cfg.max_size)?;
        space::check(&cfg.dir, total.saturating_sub(offset), cfg.reserve)?;
    }
    let mut file = PartialFile::open(path, offset).await?;
    state.bytes = offset;
    let mut meter = Meter::new(cfg.progress_interval, offset, Instant::now());
    let report = |state: &Resume, rate| {
        if let Some(tx) = progress {
            tx.send_replace(Progress {
                bytes: state.bytes,
                total,
                rate,
                resume: state.clone(),
            });
        }
    };
    report(state, 0);
    let mut space_checked = offset;
    loop {
        let chunk = match timeout(cfg.idle_timeout, resp.chunk()).await {
            Err(_) => {
                return Err(DownloadError::lost(
                    &at,
                    format!("no data for {:?}", cfg.idle_timeout),
                ))
            }
            Ok(Err(e)) => return Err(DownloadError::from_client(&at, e)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        let next = file.len() + chunk.len() as u64;
        space::check_limit(total.unwrap_or(next).max(next), cfg.max_size)?;
        file.write(&chunk).await?;
        state.bytes = file.len();
        if state.bytes - space_checked >= SPACE_CHECK_EVERY {
            let remaining = total.map_or(0, |t| t.saturating_sub(state.bytes));
            space::check(&cfg.dir, remaining, cfg.reserve)?;
            space_checked = state.bytes;
        }
        if let Some(rate) = meter.tick(state.bytes, Instant::now()) {
            tracing::debug!(url = %shown(&at), bytes = state.bytes, total, rate, "download progress");
            report(state, rate);
        }
    }
    if let Some(t) = total.filter(|t| state.bytes < *t) {
        return Err(DownloadError::lost(
            &at,
            format!("the body ended at {} of {t} bytes", state.bytes),
        ));
    }
    let bytes = file.finish().await?;
    let (fetched, rate) = meter.summary(bytes, Instant::now());
    report(state, rate);
    Ok(done(path, bytes, fetched, rate))
}

fn done(path: &Path, bytes: u64, fetched: u64, rate: u64) -> Done {
    Done {
        path: path.to_owned(),
        bytes,
        fetched,
        rate,
    }
}
