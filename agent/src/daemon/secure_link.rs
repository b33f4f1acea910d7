//! DTLS under one server peer: a session made when there is something to send,
//! remade after a failure, after the server's address changed, or when it has
//! gone stale (confirmable messages sent for `STALE` with nothing heard back: the server lost
//! the session, or a NAT forgot our mapping); the last session is offered for
//! resumption. What the CoAP core sends and receives stays plaintext.

use crate::dtls::{DtlsConfig, DtlsContext, DtlsSession, DtlsState, SessionTicket};
use std::time::{Duration, Instant};

/// Sent with nothing heard for this long, an established session is remade. It
/// is the third retransmission of a confirmable message at RFC 7252's defaults (0,
/// 2, 6 s), so one lost ACK is not taken for a lost session.
const STALE: Duration = Duration::from_secs(6);

/// What a step of the link produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Encrypted datagrams for the socket.
    pub wire: Vec<Vec<u8>>,
    /// Decrypted datagrams for the core.
    pub app: Vec<Vec<u8>>,
    /// The handshake or the session failed (said once per session).
    pub failed: Option<String>,
    /// The fatal TLS alert of that failure, sent or received (LwM2M's /1/x/11).
    pub alert: Option<u8>,
    /// The handshake has just completed.
    pub established: Option<String>,
}

/// CoAP's message type 0 (CON), in the first byte's bits 4–5.
fn is_confirmable(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (b >> 4) & 0b11 == 0)
}

pub struct SecureLink {
    ctx: DtlsContext,
    mode: &'static str,
    session: Option<DtlsSession>,
    ticket: Option<SessionTicket>,
    /// The first datagram sent since the server was last heard.
    unanswered_since: Option<Instant>,
    failure_said: bool,
    last_failure: Option<String>,
    /// The client slept (queue mode) since the session was made.
    slept: bool,
}

impl SecureLink {
    pub fn new(cfg: &DtlsConfig, mode: &'static str) -> Result<Self, String> {
        let ctx = DtlsContext::new(cfg).map_err(|e| e.to_string())?;
        Ok(Self {
            ctx,
            mode,
            session: None,
            ticket: None,
            unanswered_since: None,
            failure_said: false,
            last_failure: None,
            slept: false,
        })
    }

    fn usable(&self) -> bool {
        self.session.as_ref().is_some_and(|s| {
            matches!(
                s.state(),
                DtlsState::Handshaking | DtlsState::Established { .. }
            )
        })
    }

    fn start(&mut self, now: Instant, step: &mut Step) {
        if let Some(s) = self.session.as_ref() {
            if let Some(t) = s.session_for_resumption() {
                self.ticket = Some(t);
            }
        }
        match DtlsSession::new(&self.ctx, self.ticket.as_ref(), now) {
            Ok(s) => {
                tracing::debug!(
                    "DTLS handshake starts ({})",
                    if s.offered_resumption() {
                        "offering the last session for resumption"
                    } else {
                        "full"
                    }
                );
                self.session = Some(s);
                self.failure_said = false;
                self.unanswered_since = None;
            }
            Err(e) => {
                self.session = None;
                step.failed = Some(format!("cannot start a DTLS handshake: {e}"));
            }
        }
    }

    /// Sends one application datagram, starting a session first when needed.
    pub fn send(&mut self, app: &[u8], now: Instant) -> Step {
        let mut step = Step::default();
        let stale = self
            .unanswered_since
            .is_some_and(|t| now.duration_since(t) >= STALE)
            && self.session.as_ref().is_some_and(|s| s.is_established());
        if stale {
            tracing::info!(
                "DTLS session unanswered for {} s: a new handshake (the server may have lost it, or a NAT our mapping)",
                STALE.as_secs()
            );
            self.session = None;
        }
        if std::mem::take(&mut self.slept)
            && self.session.as_ref().is_some_and(|s| s.is_established())
        {
            // A sleeper's NAT mapping has likely expired and the server would not
            // know our new address: an abbreviated handshake costs one round trip,
            // where waiting for the old session to go stale costs `STALE`.
            tracing::info!("awake after queue-mode sleep: resuming the DTLS session");
            self.forget_session();
        }
        if !self.usable() {
            self.start(now, &mut step);
        }
        if let Some(s) = self.session.as_mut() {
            if let Err(e) = s.send(app) {
                tracing::debug!("DTLS: datagram not sent: {e}");
            }
        }
        // Only a confirmable message promises an answer; NON notifications and our
        // ACKs may rightly go unanswered for ever.
        if is_confirmable(app) {
            self.unanswered_since.get_or_insert(now);
        }
        self.drain(&mut step);
        step
    }

    pub fn receive(&mut self, wire: &[u8], now: Instant) -> Step {
        let mut step = Step::default();
        let Some(s) = self.session.as_mut() else {
            return step;
        };
        let was_established = s.is_established();
        step.app = s.handle_datagram(wire, now);
        self.unanswered_since = None;
        if !was_established && s.is_established() {
            step.established = Some(self.describe());
        }
        self.drain(&mut step);
        step
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Step {
        let mut step = Step::default();
        if let Some(s) = self.session.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        self.drain(&mut step);
        step
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.session.as_ref().and_then(|s| s.poll_timeout())
    }

    /// The client went to sleep (queue mode).
    pub fn asleep(&mut self) {
        self.slept = true;
    }

    /// The server's address changed: a session is bound to the old one.
    pub fn forget_session(&mut self) {
        if let Some(s) = self.session.take() {
            if let Some(t) = s.session_for_resumption() {
                self.ticket = Some(t);
            }
        }
        self.unanswered_since = None;
    }

    fn drain(&mut self, step: &mut Step) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        while let Some(d) = s.poll_transmit() {
            step.wire.push(d);
        }
        if let DtlsState::Failed(why) = s.state() {
            self.last_failure = Some(why.clone());
            if !self.failure_said {
                self.failure_said = true;
                step.failed = Some(why.clone());
                step.alert = s.last_alert().map(|(code, _)| code);
            }
        }
    }

    /// For `lwgate status`: the mode and the session's state, or the last failure.
    pub fn describe(&self) -> String {
        let state = match self.session.as_ref().map(|s| s.state()) {
            None => match &self.last_failure {
                Some(f) => format!("no session; last failure: {f}"),
                None => "no session yet".into(),
            },
            Some(DtlsState::Handshaking) => "handshaking".into(),
            Some(DtlsState::Established {
                resumed,
                cipher,
                protocol,
            }) => {
                let how = if *resumed { ", resumed" } else { "" };
                let took = self
                    .session
                    .as_ref()
                    .and_then(|s| s.handshake_time())
                    .map(|d| format!(" in {:.1} ms", d.as_secs_f64() * 1000.0))
                    .unwrap_or_default();
                format!("established ({protocol} {cipher}{how}){took}")
            }
            Some(DtlsState::Failed(why)) => format!("failed: {why}"),
            Some(DtlsState::Closed) => "closed".into(),
        };
        format!("{} over DTLS: {state}", self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_confirmable_messages_wait_for_an_answer() {
        assert!(is_confirmable(&[0x40, 0x01, 0, 1])); // CON GET
        assert!(!is_confirmable(&[0x50, 0x45, 0, 1])); // NON 2.05
        assert!(!is_confirmable(&[0x60, 0x00, 0, 1])); // ACK
        assert!(!is_confirmable(&[0x70, 0x00, 0, 1])); // RST
        assert!(!is_confirmable(&[]));
    }
}
