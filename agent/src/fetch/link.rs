//! The datagrams between the CoAP endpoint and the socket: as they are for
//! coap://, through a DTLS session for coaps://. Without I/O, like the two
//! layers it joins.

use super::error::FetchError;
use crate::dtls::{DtlsConfig, DtlsContext, DtlsSession, DtlsState, SessionTicket};
use std::collections::VecDeque;
use std::time::Instant;

pub enum Link {
    Plain {
        wire: VecDeque<Vec<u8>>,
    },
    Dtls {
        ctx: DtlsContext,
        session: Box<DtlsSession>,
        ticket: Option<SessionTicket>,
    },
}

impl Link {
    pub fn plain() -> Self {
        Link::Plain {
            wire: VecDeque::new(),
        }
    }

    /// A DTLS link; the handshake starts at once. With no SNI configured the
    /// URI's host is used, so certificate trust checks the name the URI gave,
    /// as HTTPS does.
    pub fn dtls(cfg: &DtlsConfig, host: &str, now: Instant) -> Result<Self, FetchError> {
        let mut cfg = cfg.clone();
        if cfg.sni.is_none() {
            cfg.sni = Some(host.to_string());
        }
        let ctx = DtlsContext::new(&cfg).map_err(|e| FetchError::BadCredentials(e.to_string()))?;
        let session = DtlsSession::new(&ctx, None, now)
            .map_err(|e| FetchError::BadCredentials(e.to_string()))?;
        Ok(Link::Dtls {
            ctx,
            session: Box::new(session),
            ticket: None,
        })
    }

    /// Takes one datagram of the endpoint's.
    pub fn send(&mut self, app: Vec<u8>) {
        match self {
            Link::Plain { wire } => wire.push_back(app),
            Link::Dtls { session, .. } => {
                // A failed session shows in `failure`; the endpoint retransmits.
                if let Err(e) = session.send(&app) {
                    tracing::debug!("DTLS: datagram not sent: {e}");
                }
            }
        }
    }

    /// One datagram for the socket.
    pub fn poll_wire(&mut self) -> Option<Vec<u8>> {
        match self {
            Link::Plain { wire } => wire.pop_front(),
            Link::Dtls { session, .. } => session.poll_transmit(),
        }
    }

    /// One datagram from the socket; the endpoint's datagrams it carried.
    pub fn receive(&mut self, wire: &[u8], now: Instant) -> Vec<Vec<u8>> {
        match self {
            Link::Plain { .. } => vec![wire.to_vec()],
            Link::Dtls { session, .. } => session.handle_datagram(wire, now),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Link::Plain { .. } => None,
            Link::Dtls { session, .. } => session.poll_timeout(),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Link::Dtls { session, .. } = self {
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
            }
        }
    }

    /// Why the DTLS session can carry nothing more.
    pub fn failure(&self) -> Option<String> {
        match self {
            Link::Plain { .. } => None,
            Link::Dtls { session, .. } => match session.state() {
                DtlsState::Failed(why) => Some(format!("DTLS: {why}")),
                DtlsState::Closed => Some("DTLS: the server closed the session".into()),
                DtlsState::Handshaking | DtlsState::Established { .. } => None,
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Link::Plain { .. } => "UDP".into(),
            Link::Dtls { session, .. } => match session.state() {
                DtlsState::Established { cipher, .. } => format!("DTLS ({cipher})"),
                other => format!("DTLS ({other:?})"),
            },
        }
    }

    /// After a failed attempt: a new session (offering the old one for an
    /// abbreviated handshake), since a server that restarted or dropped us
    /// has lost ours and silently discards what it cannot decrypt.
    pub fn renew(&mut self, now: Instant) {
        if let Link::Dtls {
            ctx,
            session,
            ticket,
        } = self
        {
            if let Some(t) = session.session_for_resumption() {
                *ticket = Some(t);
            }
            match DtlsSession::new(ctx, ticket.as_ref(), now) {
                Ok(s) => **session = s,
                // The old, failed session stays: `failure` says why next time.
                Err(e) => tracing::debug!("DTLS: cannot start a new session: {e}"),
            }
        }
    }

    /// Sends close_notify, when there is a session to close.
    pub fn close(&mut self) {
        if let Link::Dtls { session, .. } = self {
            session.close();
        }
    }
}
