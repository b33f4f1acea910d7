//! The tokio side of a CoAP download: one UDP socket connected to the
//! repository, the [`Link`] (plain or DTLS) and the CoAP [`Endpoint`] over it,
//! one confirmable GET per block, each block written to the file as it comes.
//!
//! The file is written (and hashed, and checked) by a [`Sink`] on a blocking
//! thread of its own, so a slow flash card does not stall the other tasks of
//! the agent's current-thread runtime. Dropping the future cancels: the file
//! keeps what was written, for a later [`Resume`].

use super::block2::{self, Block2Download, BlockResponse, Limits, Step};
use super::error::FetchError;
use super::link::Link;
use super::uri::Target;
use super::{FetchConfig, Fetched, Progress, Resume};
use crate::coap::message::{self, codes};
use crate::coap::{Endpoint, Event, Failure};
use crate::download::{Finished, Sink};
use crate::lwm2m::firmware::verify::Policy;
use coap_lite::{CoapOption, Packet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Free space is looked at again after this many bytes.
const SPACE_EVERY: u64 = 1 << 20;
/// Progress goes to the log (debug) at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// The largest UDP payload: a server that ignores Block2 may send that much.
const MAX_DATAGRAM: usize = 65_535;

/// Fetches `uri` into the file at `path`, continuing `resume` when given (and
/// the file holds its bytes), publishing [`Progress`] on `progress`.
pub async fn fetch(
    uri: &str,
    path: &Path,
    cfg: &FetchConfig,
    resume: Option<&Resume>,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<Fetched, FetchError> {
    fetch_checked(uri, path, cfg, resume, progress, Policy::default()).await
}

/// [`fetch`], with the bytes checked against `policy` as they are written:
/// [`Fetched::check`] is the verdict.
pub async fn fetch_checked(
    uri: &str,
    path: &Path,
    cfg: &FetchConfig,
    resume: Option<&Resume>,
    progress: Option<&watch::Sender<Progress>>,
    policy: Policy,
) -> Result<Fetched, FetchError> {
    let t0 = Instant::now();
    let r = download(uri, path, cfg, resume, progress, policy).await;
    if let Err(e) = &r {
        tracing::info!(
            "CoAP download of {uri} failed after {:.1} s: {e} (Update Result {})",
            t0.elapsed().as_secs_f64(),
            e.update_result()
        );
    }
    r
}

async fn download(
    uri: &str,
    path: &Path,
    cfg: &FetchConfig,
    resume: Option<&Resume>,
    progress: Option<&watch::Sender<Progress>>,
    policy: Policy,
) -> Result<Fetched, FetchError> {
    let target = Target::parse(uri)?;
    let dtls = match (target.secure, &cfg.dtls) {
        (false, _) => None,
        (true, Some(c)) => Some(c),
        (true, None) => return Err(FetchError::NoCredentials),
    };
    let limits = Limits {
        szx: block2::szx_for(cfg.block_size),
        max_bytes: cfg.max_bytes,
        retries: cfg.block_retries,
        backoff: cfg.retry_backoff,
        max_restarts: cfg.max_restarts,
    };
    let mut out = Output::open(path, cfg.keep_free, policy).await?;
    let mut dl = match resume {
        Some(r) => Block2Download::resume(limits, uri, r, out.len),
        None => Block2Download::new(limits),
    };
    out.cut(dl.offset()).await?;
    tracing::info!(
        "CoAP download of {uri} to {} starts{}",
        path.display(),
        if dl.offset() > 0 {
            format!(" at byte {}", dl.offset())
        } else {
            String::new()
        }
    );
    let addr = resolve(&target).await?;
    let link = match dtls {
        Some(c) => Link::dtls(c, &target.host, Instant::now())?,
        None => Link::plain(),
    };
    let mut net = Net::connect(addr, link, Endpoint::new(cfg.tx, seed())).await?;
    let mut run = Run {
        uri,
        started: Instant::now(),
        received: 0,
        blocks: 0,
        retries: 0,
        progress_at: None,
        log_at: Instant::now() + LOG_EVERY,
        every: cfg.progress_every,
        progress,
    };
    loop {
        let req = dl.next_request()?;
        let answer = net.exchange(target.get(req.option(), req.ask_size)).await;
        let resp = match answer {
            Ok(p) => p,
            Err(why) => {
                let wait = dl.on_failed_attempt(&why)?;
                run.retries += 1;
                tracing::debug!(
                    "CoAP download: {why}; block {} again in {:.1} s",
                    req.num,
                    wait.as_secs_f32()
                );
                net.coap.cancel_all();
                tokio::time::sleep(wait).await;
                net.link.renew(Instant::now());
                continue;
            }
        };
        let step = dl.on_response(&BlockResponse {
            code: message::code_byte(&resp),
            block2: message::block(&resp, CoapOption::Block2),
            etag: resp.get_first_option(CoapOption::ETag).map(Vec::as_slice),
            size2: message::get_uint(&resp, CoapOption::Size2).map(u64::from),
            payload_len: resp.payload.len(),
        })?;
        match step {
            Step::Wait(wait) => {
                run.retries += 1;
                tokio::time::sleep(wait).await;
            }
            Step::Restart => {
                tracing::info!(
                    "CoAP download of {uri}: the resource changed (another ETag); starting over"
                );
                out.cut(0).await?;
            }
            Step::Write { at, last } => {
                run.blocks += 1;
                out.check_space(dl.total(), at, resp.payload.len() as u64)?;
                out.cut(at).await?;
                out.write(&resp.payload).await?;
                run.received += resp.payload.len() as u64;
                if last {
                    let done = out.finish().await?;
                    let over = net.link.describe();
                    net.close().await;
                    return Ok(run.finish(&dl, &over, done));
                }
                if run.progress_due() {
                    // What Progress reports is in the file (tokio's writes
                    // finish in the background): a Resume stored from it
                    // never claims bytes a cancellation lost.
                    out.settle().await?;
                    run.publish(&dl);
                }
                run.log(&dl);
            }
        }
    }
}

/// Bookkeeping of one call: counts, progress and log throttling.
struct Run<'a> {
    uri: &'a str,
    started: Instant,
    received: u64,
    blocks: u64,
    retries: u64,
    progress_at: Option<Instant>,
    log_at: Instant,
    every: Duration,
    progress: Option<&'a watch::Sender<Progress>>,
}

impl Run<'_> {
    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.received as f64 / secs
        } else {
            0.0
        }
    }

    fn publish(&self, dl: &Block2Download) {
        if let Some(tx) = self.progress {
            tx.send_replace(Progress {
                bytes: dl.offset(),
                total: dl.total(),
                bytes_per_sec: self.rate(),
                resume: dl.snapshot(self.uri),
            });
        }
    }

    fn progress_due(&mut self) -> bool {
        let now = Instant::now();
        let due = self.progress.is_some() && self.progress_at.is_none_or(|t| now >= t + self.every);
        if due {
            self.progress_at = Some(now);
        }
        due
    }

    fn log(&mut self, dl: &Block2Download) {
        let now = Instant::now();
        if now >= self.log_at {
            self.log_at = now + LOG_EVERY;
            tracing::debug!(
                "CoAP download of {}: {} of {} bytes, {:.1} KiB/s",
                self.uri,
                dl.offset(),
                dl.total().map_or_else(|| "?".into(), |t| t.to_string()),
                self.rate() / 1024.0
            );
        }
    }

    fn finish(&self, dl: &Block2Download, over: &str, done: Finished) -> Fetched {
        self.publish(dl);
        let elapsed = self.started.elapsed();
        tracing::info!(
            "CoAP download of {} over {over} done: {} bytes ({} this run) in {:.1} s, {:.1} KiB/s, {} blocks of up to {} bytes, {} retries, {} restarts",
            self.uri,
            dl.offset(),
            self.received,
            elapsed.as_secs_f64(),
            self.rate() / 1024.0,
            self.blocks,
            dl.block_size(),
            self.retries,
            dl.restarts()
        );
        Fetched {
            bytes: dl.offset(),
            etag: dl.etag().map(<[u8]>::to_vec),
            elapsed,
            blocks: self.blocks,
            retries: self.retries,
            restarts: dl.restarts(),
            block_size: dl.block_size(),
            check: done.check,
        }
    }
}

/// The package file, kept exactly as long as the download's offset.
struct Output {
    sink: Sink,
    dir: PathBuf,
    len: u64,
    keep_free: u64,
    /// Free space is checked again at this offset, or when Size2 changes.
    space_at: u64,
    space_total: Option<u64>,
}

impl Output {
    async fn open(path: &Path, keep_free: u64, policy: Policy) -> Result<Self, FetchError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (sink, len) = Sink::open(path, policy)
            .await
            .map_err(|e| FetchError::Io(format!("{}: {e}", path.display())))?;
        Ok(Self {
            sink,
            dir,
            len,
            keep_free,
            space_at: 0,
            space_total: None,
        })
    }

    fn io(&self, e: &std::io::Error) -> FetchError {
        FetchError::io(e, self.available())
    }

    /// Cuts (or keeps) the file at `len` and continues after it.
    async fn cut(&mut self, len: u64) -> Result<(), FetchError> {
        match self.sink.cut(len).await {
            Ok(()) => {
                self.len = len;
                Ok(())
            }
            Err(e) => Err(self.io(&e)),
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), FetchError> {
        match self.sink.write(data).await {
            Ok(()) => {
                self.len += data.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.io(&e)),
        }
    }

    /// Waits until the OS has every byte written so far.
    async fn settle(&mut self) -> Result<(), FetchError> {
        match self.sink.settle().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.io(&e)),
        }
    }

    /// Makes the complete package durable before it is reported done, with
    /// the check's verdict.
    async fn finish(self) -> Result<Finished, FetchError> {
        let available = self.available();
        self.sink
            .finish()
            .await
            .map_err(|e| FetchError::io(&e, available))
    }

    fn available(&self) -> Option<u64> {
        match nix::sys::statvfs::statvfs(&self.dir) {
            // From, not `as`: these are 32 bits on some gateways' targets
            // (armhf), where the conversion is not the identity it is here.
            #[allow(clippy::useless_conversion)]
            Ok(s) => {
                Some(u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
            }
            Err(e) => {
                tracing::debug!("statvfs {}: {e}", self.dir.display());
                None
            }
        }
    }

    /// Before the first write, when Size2 changes, and every `SPACE_EVERY`.
    fn check_space(&mut self, total: Option<u64>, at: u64, next: u64) -> Result<(), FetchError> {
        if total == self.space_total && at < self.space_at {
            return Ok(());
        }
        self.space_total = total;
        self.space_at = at + SPACE_EVERY;
        match self.available() {
            Some(free) => block2::check_space(total, at, next, free, self.keep_free),
            None => Ok(()),
        }
    }
}

/// The socket, the link and the endpoint of one download.
struct Net {
    sock: UdpSocket,
    link: Link,
    coap: Endpoint,
    buf: Vec<u8>,
}

fn describe(f: &Failure) -> String {
    match f {
        Failure::Timeout => "no answer (timed out after the retransmissions)".into(),
        Failure::Reset => "the server reset the request".into(),
        Failure::Invalid(why) => why.clone(),
    }
}

impl Net {
    async fn connect(addr: SocketAddr, link: Link, coap: Endpoint) -> Result<Self, FetchError> {
        let local: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let lost = |e: std::io::Error| FetchError::ConnectionLost(format!("{addr}: {e}"));
        let sock = UdpSocket::bind(local).await.map_err(lost)?;
        sock.connect(addr).await.map_err(lost)?;
        Ok(Self {
            sock,
            link,
            coap,
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    async fn flush(&mut self) {
        while let Some(d) = self.coap.poll_transmit() {
            self.link.send(d);
        }
        while let Some(d) = self.link.poll_wire() {
            // An ICMP error from an earlier datagram may surface here; the
            // endpoint's retransmissions decide what it means.
            if let Err(e) = self.sock.send(&d).await {
                tracing::trace!("CoAP download: send: {e}");
            }
        }
    }

    /// One request to its response, or why there is none.
    async fn exchange(&mut self, packet: Packet) -> Result<Packet, String> {
        let h = self.coap.send_request(Instant::now(), packet, true);
        loop {
            while let Some(ev) = self.coap.poll_event() {
                match ev {
                    Event::Response { handle, packet } if handle == h => return Ok(packet),
                    Event::Failed { handle, reason } if handle == h => {
                        return Err(describe(&reason))
                    }
                    // A repository has nothing to ask of us.
                    Event::Request(inc) => {
                        let r = message::response(&inc.packet, codes::NOT_FOUND);
                        self.coap.respond(&inc, r);
                    }
                    _ => {}
                }
            }
            self.flush().await;
            if let Some(why) = self.link.failure() {
                return Err(why);
            }
            let deadline = [self.coap.poll_timeout(), self.link.deadline()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
            tokio::select! {
                r = self.sock.recv(&mut self.buf) => match r {
                    Ok(n) => {
                        let now = Instant::now();
                        let Some(wire) = self.buf.get(..n) else { continue };
                        for app in self.link.receive(wire, now) {
                            self.coap.handle_datagram(now, &app);
                        }
                    }
                    // ICMP port unreachable: nothing listens (yet); the
                    // retransmissions and retries bound how long we try.
                    Err(e) => tracing::trace!("CoAP download: recv: {e}"),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            self.coap.handle_timeout(now);
            self.link.handle_timeout(now);
        }
    }

    async fn close(&mut self) {
        self.link.close();
        self.flush().await;
    }
}

async fn resolve(t: &Target) -> Result<SocketAddr, FetchError> {
    let mut addrs = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|e| FetchError::ConnectionLost(format!("cannot resolve {}: {e}", t.host)))?;
    addrs
        .next()
        .ok_or_else(|| FetchError::ConnectionLost(format!("{} has no address", t.host)))
}

/// OS-seeded randomness for message ids and tokens, without another dependency.
fn seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
