//! One DTLS 1.2 client session, sans-IO in quinn-proto's shape: datagrams and
//! timeouts in, datagrams and a deadline out, time a parameter. OpenSSL does the
//! protocol over an in-memory wire; this file keeps the state, our handshake
//! deadline and the plaintext queued while the handshake runs.

use super::context::{DtlsContext, SessionTicket};
use super::failure::{self, Facts};
use super::wire::Wire;
use super::{ffi, DtlsError};
use openssl::error::ErrorStack;
use openssl::ssl::{ErrorCode, ShutdownState, Ssl, SslStream};
use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Plaintext kept while the handshake runs; the CoAP layer retransmits anyway,
/// so the oldest is dropped past this.
const QUEUE_MAX: usize = 16;
/// DTLS's largest plaintext record (OpenSSL ends the session on a bigger write).
const MAX_PLAINTEXT: usize = 16_384;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsState {
    Handshaking,
    Established {
        /// An abbreviated handshake resumed the offered session.
        resumed: bool,
        /// OpenSSL's name of the suite (`ciphers::iana_number` gives its number).
        cipher: String,
        protocol: String,
    },
    /// Why, in words naming the alert or the verification error.
    Failed(String),
    Closed,
}

pub struct DtlsSession {
    ctx: DtlsContext,
    stream: SslStream<Wire>,
    state: DtlsState,
    started: Instant,
    deadline: Instant,
    retransmit_at: Option<Instant>,
    queued: VecDeque<Vec<u8>>,
    heard: bool,
    offered_resumption: bool,
    /// Why the server failed the resumed handshake we then replaced by a full one.
    resumption_refused: Option<String>,
    handshake_time: Option<Duration>,
}

/// A fresh SSL on the context's settings, offering `resume` when it came from a
/// session of this context; says whether it was offered.
fn open(
    ctx: &DtlsContext,
    resume: Option<&SessionTicket>,
) -> Result<(SslStream<Wire>, bool), DtlsError> {
    let inner = &ctx.inner;
    let mut ssl = Ssl::new(&inner.ctx)?;
    ssl.set_mtu(u32::from(inner.mtu))?;
    ffi::set_retransmit_schedule(&mut ssl);
    ffi::alerts::record(&mut ssl);
    if let Some(name) = &inner.sni {
        let ip = name.parse::<IpAddr>().ok();
        if ip.is_none() {
            ssl.set_hostname(name)?;
        }
        if inner.check_name {
            match ip {
                Some(ip) => ssl.param_mut().set_ip(ip)?,
                None => ssl.param_mut().set_host(name)?,
            }
        }
    }
    let mut offered = false;
    if let Some(t) = resume.filter(|t| t.context_id == inner.id) {
        // SAFETY: OpenSSL may resume a session only on the SSL_CTX that made it;
        // the matching id says this ticket's session came from this one.
        unsafe { ssl.set_session(&t.session)? };
        offered = true;
    }
    Ok((SslStream::new(ssl, Wire::default())?, offered))
}

impl fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSession")
            .field("state", &self.state)
            .field("queued", &self.queued.len())
            .finish_non_exhaustive()
    }
}

/// OpenSSL's SSL_free takes a session that was not shut down for a bad one and
/// makes it unresumable, ticket and all; a session left behind because its
/// server went quiet (a stale session, queue-mode sleep, a new address) is not
/// bad, and the abbreviated handshake that follows needs it (RFC 5246 §7.2.1).
impl Drop for DtlsSession {
    fn drop(&mut self) {
        if matches!(self.state, DtlsState::Established { .. }) {
            self.stream
                .set_shutdown(ShutdownState::SENT | ShutdownState::RECEIVED);
        }
    }
}

impl DtlsSession {
    /// Starts a handshake (the ClientHello is ready for `poll_transmit`), offering
    /// `resume` when it came from a session of this context.
    pub fn new(
        ctx: &DtlsContext,
        resume: Option<&SessionTicket>,
        now: Instant,
    ) -> Result<Self, DtlsError> {
        let (stream, offered_resumption) = open(ctx, resume)?;
        let mut s = Self {
            ctx: ctx.clone(),
            stream,
            state: DtlsState::Handshaking,
            started: now,
            deadline: now + ctx.inner.handshake_timeout,
            retransmit_at: None,
            queued: VecDeque::new(),
            heard: false,
            offered_resumption,
            resumption_refused: None,
            handshake_time: None,
        };
        s.drive_handshake(now);
        s.refresh_timer(now);
        Ok(s)
    }

    pub fn state(&self) -> &DtlsState {
        &self.state
    }

    /// The last fatal TLS alert of this session (the server's or ours): its code
    /// (RFC 5246 §7.2, for LwM2M's /1/x/11) and whether we sent it.
    pub fn last_alert(&self) -> Option<(u8, bool)> {
        ffi::alerts::last(self.stream.ssl())
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, DtlsState::Established { .. })
    }

    /// Whether a resumption was offered (to tell a refused one from none).
    pub fn offered_resumption(&self) -> bool {
        self.offered_resumption
    }

    /// Why the server failed the resumed handshake, when it did: the session then
    /// made a full handshake instead, within the same deadline. (libcoap's
    /// OpenSSL server does this for certificate sessions: it sets no session id
    /// context and answers a resumption with internal_error.)
    pub fn resumption_refused(&self) -> Option<&str> {
        self.resumption_refused.as_deref()
    }

    /// From `new` to the handshake's end, by the `now`s given.
    pub fn handshake_time(&self) -> Option<Duration> {
        self.handshake_time
    }

    /// The largest application datagram that goes out as one datagram within the
    /// MTU with the negotiated suite; larger ones are sent but may be fragmented
    /// by IP. `None` before the handshake ends.
    pub fn max_app_datagram(&self) -> Option<usize> {
        self.is_established()
            .then(|| ffi::data_mtu(self.stream.ssl()))
            .filter(|&n| n > 0)
    }

    /// Takes one datagram from the server; returns the application datagrams it
    /// carried, decrypted.
    pub fn handle_datagram(&mut self, bytes: &[u8], now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if matches!(self.state, DtlsState::Failed(_) | DtlsState::Closed) {
            return out;
        }
        self.heard = true;
        self.stream.get_mut().incoming.push_back(bytes.to_vec());
        if self.state == DtlsState::Handshaking {
            self.drive_handshake(now);
        }
        if self.is_established() {
            self.read_all(&mut out);
        }
        // Left over only when OpenSSL stopped at a failure.
        self.stream.get_mut().incoming.clear();
        self.refresh_timer(now);
        out
    }

    /// Encrypts one application datagram, or queues it until the handshake ends.
    pub fn send(&mut self, app_datagram: &[u8]) -> Result<(), DtlsError> {
        if app_datagram.len() > MAX_PLAINTEXT {
            return Err(DtlsError::Config(format!(
                "a datagram of {} bytes exceeds DTLS's {MAX_PLAINTEXT}",
                app_datagram.len()
            )));
        }
        match &self.state {
            DtlsState::Handshaking => {
                if self.queued.len() >= QUEUE_MAX {
                    self.queued.pop_front();
                }
                self.queued.push_back(app_datagram.to_vec());
                Ok(())
            }
            DtlsState::Established { .. } => self.write(app_datagram),
            DtlsState::Failed(why) => Err(DtlsError::NotConnected(why.clone())),
            DtlsState::Closed => Err(DtlsError::NotConnected("closed".into())),
        }
    }

    /// One encrypted datagram for the socket, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().outgoing.pop_front()
    }

    /// When `handle_timeout` is due: OpenSSL's retransmission or our deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            DtlsState::Handshaking => Some(
                self.retransmit_at
                    .map_or(self.deadline, |t| t.min(self.deadline)),
            ),
            // OpenSSL's timer may still run for a flight the server could ask again.
            DtlsState::Established { .. } => self.retransmit_at,
            DtlsState::Failed(_) | DtlsState::Closed => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == DtlsState::Handshaking && now >= self.deadline {
            let why = self.timed_out(now);
            self.fail(why);
            return;
        }
        if !matches!(
            self.state,
            DtlsState::Handshaking | DtlsState::Established { .. }
        ) {
            return;
        }
        // OpenSSL checks its own (real) clock and retransmits only when due.
        if self.retransmit_at.is_some_and(|t| now >= t)
            && ffi::handle_timeout(self.stream.ssl()) < 0
        {
            let stack = ErrorStack::get();
            let why = failure::from_stack(Some(&stack), None, self.stream.ssl(), &self.facts());
            self.fail(why);
            return;
        }
        self.refresh_timer(now);
    }

    /// What to offer the next session to the same server for an abbreviated
    /// handshake; `None` until a handshake has succeeded.
    pub fn session_for_resumption(&self) -> Option<SessionTicket> {
        if self.handshake_time.is_none() || matches!(self.state, DtlsState::Failed(_)) {
            return None;
        }
        let session = self.stream.ssl().session()?.to_owned();
        Some(SessionTicket {
            context_id: self.ctx.inner.id,
            session,
        })
    }

    /// Sends close_notify (when established) and ends the session.
    pub fn close(&mut self) {
        if self.is_established() {
            // The alert lands on the wire; its result does not change the outcome.
            let _ = self.stream.shutdown();
        }
        if !matches!(self.state, DtlsState::Failed(_)) {
            self.state = DtlsState::Closed;
        }
        self.queued.clear();
        self.retransmit_at = None;
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            kind: self.ctx.inner.kind,
            sni: self.ctx.inner.sni.as_deref(),
            rpk: self.ctx.inner.rpk,
        }
    }

    fn drive_handshake(&mut self, now: Instant) {
        match self.stream.connect() {
            Ok(()) => self.established(now),
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {}
            Err(e) => {
                let why = failure::describe(&e, self.stream.ssl(), &self.facts());
                if self.offered_resumption && self.resumption_refused.is_none() {
                    self.full_handshake_instead(why, now);
                } else {
                    self.fail(why);
                }
            }
        }
    }

    /// Some servers fail a resumption they cannot honour instead of falling back
    /// to a full handshake themselves; we start one on a fresh SSL.
    fn full_handshake_instead(&mut self, why: String, now: Instant) {
        self.resumption_refused = Some(why);
        match open(&self.ctx, None) {
            Ok((mut stream, _)) => {
                // Whatever the failed attempt still had to send goes first.
                let left = std::mem::take(&mut self.stream.get_mut().outgoing);
                stream.get_mut().outgoing = left;
                self.stream = stream;
                self.drive_handshake(now);
            }
            Err(e) => self.fail(format!("cannot restart the handshake: {e}")),
        }
    }

    fn established(&mut self, now: Instant) {
        let ssl = self.stream.ssl();
        self.state = DtlsState::Established {
            resumed: ssl.session_reused(),
            cipher: ssl
                .current_cipher()
                .map_or_else(String::new, |c| c.name().to_string()),
            protocol: ssl.version_str().to_string(),
        };
        self.handshake_time = Some(now.saturating_duration_since(self.started));
        while let Some(d) = self.queued.pop_front() {
            if self.write(&d).is_err() {
                break;
            }
        }
    }

    fn write(&mut self, d: &[u8]) -> Result<(), DtlsError> {
        match self.stream.ssl_write(d) {
            Ok(_) => Ok(()),
            Err(e) => {
                let why = failure::describe(&e, self.stream.ssl(), &self.facts());
                self.fail(why.clone());
                Err(DtlsError::NotConnected(why))
            }
        }
    }

    fn read_all(&mut self, out: &mut Vec<Vec<u8>>) {
        let mut buf = vec![0u8; MAX_PLAINTEXT];
        loop {
            match self.stream.ssl_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.push(buf[..n].to_vec()),
                Err(e) => {
                    match e.code() {
                        ErrorCode::WANT_READ | ErrorCode::WANT_WRITE => {}
                        ErrorCode::ZERO_RETURN => {
                            self.state = DtlsState::Closed;
                            self.retransmit_at = None;
                        }
                        _ => {
                            let why = failure::describe(&e, self.stream.ssl(), &self.facts());
                            self.fail(why);
                        }
                    }
                    break;
                }
            }
        }
    }

    fn refresh_timer(&mut self, now: Instant) {
        self.retransmit_at = match self.state {
            DtlsState::Handshaking | DtlsState::Established { .. } => {
                ffi::timeout(self.stream.ssl()).map(|d| now + d)
            }
            DtlsState::Failed(_) | DtlsState::Closed => None,
        };
    }

    fn fail(&mut self, why: String) {
        self.state = DtlsState::Failed(why);
        self.queued.clear();
        self.retransmit_at = None;
    }

    fn timed_out(&self, now: Instant) -> String {
        let after = now.saturating_duration_since(self.started).as_secs_f32();
        let at = self.stream.ssl().state_string_long();
        if !self.heard {
            return format!("handshake timed out after {after:.1} s: no answer from the server");
        }
        if self.ctx.inner.kind == super::ciphers::SuiteKind::Psk && at.contains("finished") {
            return format!(
                "handshake timed out after {after:.1} s waiting for the server's Finished: \
                 the server could not decrypt ours, so the PSK is wrong or its identity \
                 unknown to the server (DTLS servers drop what they cannot decrypt \
                 instead of sending an alert)"
            );
        }
        format!("handshake timed out after {after:.1} s (at {at})")
    }
}
