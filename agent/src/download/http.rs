//! The HTTP side of a download: the request with its redirects, the answer to a
//! range request, and the body streamed into the partial file.

use super::connect::{self, Body, Driver};
use super::progress::{Meter, Progress};
use super::resume::ContentRange;
use super::sink::{Finished, Sink};
use super::uri::{self, shown};
use super::{space, Done, DownloadError, Downloader, Resume};
use crate::lwm2m::firmware::verify::Policy;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_LENGTH, HOST, IF_RANGE, LOCATION, RANGE, USER_AGENT};
use hyper::{Request, Response, StatusCode, Uri};
use std::io::ErrorKind;
use std::path::Path;
use std::time::Instant;
use tokio::sync::watch;
use tokio::time::timeout;

/// Free space is checked again after this many bytes: another writer may fill the
/// file system while a long download runs.
const SPACE_CHECK_EVERY: u64 = 1 << 20;

/// A response with what keeps its body flowing.
struct Exchange {
    resp: Response<Incoming>,
    driver: Driver,
    // Dropping it could end the connection before the body is read.
    _sender: SendRequest<Body>,
    at: Uri,
}

/// GET `url`, following redirects (each on a new connection: they usually lead
/// to another host); Range/If-Range go to every hop, since they are about the
/// resource at the end.
async fn get(
    dl: &Downloader,
    url: &Uri,
    range: Option<(u64, &str)>,
) -> Result<Exchange, DownloadError> {
    let cfg = &dl.cfg;
    let mut at = url.clone();
    for _ in 0..=cfg.max_redirects {
        let (mut sender, mut driver) = connect::open(cfg, &dl.tls, &at).await?;
        let mut req = Request::get(at.path_and_query().map_or("/", |p| p.as_str()))
            .header(HOST, uri::host_header(&at))
            .header(USER_AGENT, concat!("lwgate/", env!("CARGO_PKG_VERSION")));
        if let Some((from, validator)) = range {
            req = req
                .header(RANGE, format!("bytes={from}-"))
                .header(IF_RANGE, validator);
        }
        let req = req
            .body(Body::new())
            .map_err(|e| DownloadError::lost(&at, format!("request: {e}")))?;
        let sent = async {
            sender.ready().await?;
            sender.send_request(req).await
        };
        let resp = timeout(cfg.idle_timeout, driver.run(sent))
            .await
            .map_err(|_| {
                DownloadError::lost(&at, format!("no response within {:?}", cfg.idle_timeout))
            })?
            .map_err(|e| DownloadError::lost(&at, format!("HTTP: {e}")))?;
        let status = resp.status();
        if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
            return Ok(Exchange {
                resp,
                driver,
                _sender: sender,
                at,
            });
        }
        let next = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| uri::resolve(&at, l))
            .ok_or_else(|| DownloadError::Http {
                url: shown(&at),
                status: status.as_u16(),
            })?;
        uri::parse(&next.to_string())?;
        if uri::is_https(&at) && !uri::is_https(&next) {
            return Err(DownloadError::InsecureRedirect {
                from: shown(&at),
                to: shown(&next),
            });
        }
        tracing::debug!(status = status.as_u16(), from = %shown(&at), to = %shown(&next), "download redirected");
        at = next;
    }
    Err(DownloadError::TooManyRedirects {
        uri: shown(url),
        limit: cfg.max_redirects,
    })
}

fn content_length(resp: &Response<Incoming>) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub(super) async fn transfer(
    dl: &Downloader,
    url: &Uri,
    path: &Path,
    state: &mut Resume,
    progress: Option<&watch::Sender<Progress>>,
    policy: Policy,
) -> Result<Done, DownloadError> {
    let cfg = &dl.cfg;
    let on_disk = match tokio::fs::metadata(path).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => return Err(file_error(path, e)),
    };
    let mut offset = match state.if_range() {
        Some(_) => state.bytes.min(on_disk),
        None => 0,
    };
    let (mut ex, total) = loop {
        let validator = state.if_range().filter(|_| offset > 0).map(String::from);
        let ex = get(dl, url, validator.as_deref().map(|v| (offset, v))).await?;
        let status = ex.resp.status().as_u16();
        match (status, ContentRange::from_headers(ex.resp.headers())) {
            (200, _) => {
                if offset > 0 {
                    tracing::info!(url = %shown(&ex.at), "download starts over: the resource changed, or the server ignores ranges");
                }
                state.restart(ex.resp.headers());
                offset = 0;
                let total = content_length(&ex.resp);
                break (ex, total);
            }
            (
                206,
                Some(ContentRange::Bytes {
                    first, complete, ..
                }),
            ) if offset > 0 && first == offset => {
                let total = complete.or_else(|| content_length(&ex.resp).map(|n| offset + n));
                break (ex, total);
            }
            // The If-Range validator matched and nothing is past our bytes: the
            // last attempt had fetched it all.
            (416, Some(ContentRange::Unsatisfied { complete }))
                if offset > 0 && complete == offset =>
            {
                let (mut file, _) = Sink::open(path, policy)
                    .await
                    .map_err(|e| file_error(path, e))?;
                file.cut(offset).await.map_err(|e| file_error(path, e))?;
                let f = file.finish().await.map_err(|e| file_error(path, e))?;
                state.bytes = f.bytes;
                return Ok(done(path, f, 0, 0));
            }
            // A range answer that does not fit what we asked: nothing on disk can
            // be trusted to continue.
            (206 | 416, range) if offset > 0 => {
                tracing::info!(url = %shown(&ex.at), status, ?range, offset, "download starts over: unusable range answer");
                *state = Resume::new(std::mem::take(&mut state.url));
                offset = 0;
            }
            (status, _) => {
                return Err(DownloadError::Http {
                    url: shown(&ex.at),
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
    let err = |e| file_error(path, e);
    // The lock waits for a cancelled attempt's writer to stop; what it had
    // written past our resume point is cut.
    let (mut file, _) = Sink::open(path, policy).await.map_err(err)?;
    file.cut(offset).await.map_err(err)?;
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
    let at = ex.at.clone();
    let body = ex.resp.body_mut();
    let lost = loop {
        let frame = match timeout(cfg.idle_timeout, ex.driver.run(body.frame())).await {
            Err(_) => break Some(format!("no data for {:?}", cfg.idle_timeout)),
            Ok(None) => break None,
            Ok(Some(Err(e))) => break Some(format!("body: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let next = file.len() + chunk.len() as u64;
        space::check_limit(total.unwrap_or(next).max(next), cfg.max_size)?;
        file.write_bytes(chunk).await.map_err(err)?;
        // What the OS has: a Resume saved from a dropped download never
        // claims a write still queued.
        state.bytes = file.written();
        if state.bytes.saturating_sub(space_checked) >= SPACE_CHECK_EVERY {
            let remaining = total.map_or(0, |t| t.saturating_sub(state.bytes));
            space::check(&cfg.dir, remaining, cfg.reserve)?;
            space_checked = state.bytes;
        }
        if let Some(rate) = meter.tick(state.bytes, Instant::now()) {
            tracing::debug!(url = %shown(&at), bytes = state.bytes, total, rate, "download progress");
            report(state, rate);
        }
    };
    let lost = lost.or_else(|| {
        total
            .filter(|t| file.len() < *t)
            .map(|t| format!("the body ended at {} of {t} bytes", file.len()))
    });
    if let Some(why) = lost {
        // What arrived is kept for the next attempt to continue from.
        file.settle().await.map_err(err)?;
        state.bytes = file.written();
        report(state, 0);
        return Err(DownloadError::lost(&at, why));
    }
    let f = file.finish().await.map_err(err)?;
    state.bytes = f.bytes;
    let (fetched, rate) = meter.summary(f.bytes, Instant::now());
    report(state, rate);
    Ok(done(path, f, fetched, rate))
}

fn done(path: &Path, f: Finished, fetched: u64, rate: u64) -> Done {
    Done {
        path: path.to_owned(),
        bytes: f.bytes,
        fetched,
        rate,
        check: f.check,
    }
}

/// A full disk is NoSpace (Update Result 2), whatever the check before said.
fn file_error(path: &Path, e: std::io::Error) -> DownloadError {
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => DownloadError::NoSpace {
            dir: path.parent().map(Path::to_owned).unwrap_or_default(),
            needed: 0,
            available: 0,
        },
        _ => DownloadError::File {
            path: path.to_owned(),
            source: e,
        },
    }
}
