//! The servers' datagram peers: one connected UDP socket per server account,
//! opened when the core first has something to send (DNS may be down at boot; a
//! name that does not resolve is retried on the core's back-off, not on a timer),
//! and what the network said about each (unresolvable, refused) for the journal and
//! `lwgate status`. Every datagram in and out is traced at debug level (the
//! plaintext CoAP, DTLS or not). A `coaps://` peer runs a `SecureLink` between
//! its socket and the core.

use super::secure_link::{SecureLink, Step};
use crate::coap::trace;
use crate::config;
use crate::dtls::DtlsConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Datagrams kept while an address is being resolved (the core retransmits anyway).
const WAITING_MAX: usize = 16;
/// The protocol trace's target: `RUST_LOG=lwgate::coap=trace` shows payloads too.
pub const TRACE: &str = "lwgate::coap";

/// What the sockets and the resolver report to the main loop.
pub enum PeerEvent {
    Datagram {
        key: u16,
        bytes: Vec<u8>,
    },
    Opened {
        key: u16,
        generation: u64,
        result: Result<(UdpSocket, SocketAddr), String>,
    },
    /// ICMP port unreachable, surfaced by the kernel on the connected socket.
    Refused {
        key: u16,
        generation: u64,
    },
}

/// What an event means for the LwM2M core.
#[derive(Debug, PartialEq)]
pub enum Heard {
    Datagram(u16, Vec<u8>),
    /// No socket could be opened (no address): what was sent cannot arrive.
    Unreachable(u16, String),
    /// The server's host answered that nothing listens on the port.
    Refused(u16, String),
    /// A DTLS handshake or session ended with this fatal TLS alert.
    TlsAlert(u16, u8),
}

enum Link {
    Closed,
    Opening,
    Open {
        sock: Arc<UdpSocket>,
        addr: SocketAddr,
        reader: JoinHandle<()>,
    },
}

pub struct Peer {
    uri: String,
    /// Tells a socket's events from those of the one it replaced.
    generation: u64,
    link: Link,
    waiting: Vec<Vec<u8>>,
    error: Option<String>,
    /// DTLS for a coaps:// server; `Err` when its Security instance cannot make a
    /// session (said at every attempt: nothing can be sent).
    secure: Result<Option<SecureLink>, String>,
    last_addr: Option<SocketAddr>,
}

/// What a peer is secured with, as `Peers::insert` takes it.
pub enum PeerSecurity {
    None,
    Dtls(Box<DtlsConfig>, &'static str),
    Unusable(String),
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Link::Open { reader, .. } = &self.link {
            reader.abort();
        }
    }
}

pub struct Peers {
    map: HashMap<u16, Peer>,
    next_generation: u64,
    tx: mpsc::Sender<PeerEvent>,
    pub rx: mpsc::Receiver<PeerEvent>,
    /// What sends and timeouts found (DTLS failures), for the engine to take.
    heard: Vec<Heard>,
}

/// How a peer is named in the trace and the journal.
fn label(key: u16) -> String {
    if key == super::engine::BS_PEER {
        "bootstrap".into()
    } else {
        format!("ssid={key}")
    }
}

impl Default for Peers {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(256);
        Self {
            map: HashMap::new(),
            next_generation: 1,
            tx,
            rx,
            heard: Vec::new(),
        }
    }
}

impl Peers {
    /// Adds (or replaces, closing the old socket) the peer for `key`.
    pub fn insert(&mut self, key: u16, uri: String, security: PeerSecurity) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let secure = match security {
            PeerSecurity::None => Ok(None),
            PeerSecurity::Dtls(cfg, mode) => SecureLink::new(&cfg, mode)
                .map(Some)
                .map_err(|e| format!("DTLS ({mode}) cannot be set up: {e}")),
            PeerSecurity::Unusable(why) => Err(why),
        };
        if let Err(why) = &secure {
            tracing::error!(server = %uri, "{}: {why}", label(key));
        }
        self.map.insert(
            key,
            Peer {
                uri,
                generation,
                link: Link::Closed,
                waiting: Vec::new(),
                error: None,
                secure,
                last_addr: None,
            },
        );
    }

    pub fn has_heard(&self) -> bool {
        !self.heard.is_empty()
    }

    /// What DTLS failures sends and timeouts found since last asked.
    pub fn take_heard(&mut self) -> Vec<Heard> {
        std::mem::take(&mut self.heard)
    }

    /// The earliest DTLS timer (handshake retransmission or deadline).
    pub fn deadline(&self) -> Option<Instant> {
        self.map
            .values()
            .filter_map(|p| p.secure.as_ref().ok()?.as_ref()?.deadline())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let keys: Vec<u16> = self.map.keys().copied().collect();
        for key in keys {
            let Some(peer) = self.map.get_mut(&key) else {
                continue;
            };
            let Ok(Some(link)) = peer.secure.as_mut() else {
                continue;
            };
            if link.deadline().is_some_and(|t| t <= now) {
                let step = link.handle_timeout(now);
                self.apply(key, step);
            }
        }
    }

    /// The security mode and DTLS state of a peer, for `lwgate status`.
    pub fn security(&self, key: u16) -> Option<String> {
        match &self.map.get(&key)?.secure {
            Ok(Some(link)) => Some(link.describe()),
            Ok(None) => None,
            Err(why) => Some(format!("unusable: {why}")),
        }
    }

    /// Puts a secure link's output on the socket and its news where they belong.
    fn apply(&mut self, key: u16, step: Step) -> Vec<Heard> {
        let Some(peer) = self.map.get_mut(&key) else {
            return Vec::new();
        };
        if let Link::Open { sock, addr, .. } = &peer.link {
            for d in &step.wire {
                if let Err(e) = sock.try_send(d) {
                    tracing::debug!("{}: send to {addr}: {e}", label(key));
                }
            }
        }
        if let Some(how) = &step.established {
            tracing::info!(server = %peer.uri, "{}: {how}", label(key));
            peer.error = None;
        }
        if let Some(why) = step.failed {
            let why = format!("DTLS handshake failed: {why}");
            tracing::warn!(server = %peer.uri, "{}: {why}", label(key));
            peer.error = Some(why.clone());
            if let Some(code) = step.alert {
                self.heard.push(Heard::TlsAlert(key, code));
            }
            self.heard.push(Heard::Unreachable(key, why));
        }
        step.app
            .into_iter()
            .map(|bytes| Heard::Datagram(key, bytes))
            .collect()
    }

    pub fn contains(&self, key: u16) -> bool {
        self.map.contains_key(&key)
    }

    /// Takes a peer out with its socket (to keep it across `clear`).
    pub fn take(&mut self, key: u16) -> Option<Peer> {
        self.map.remove(&key)
    }

    pub fn put(&mut self, key: u16, peer: Peer) {
        self.map.insert(key, peer);
    }

    /// Closes every socket and makes one (unopened) peer per server account.
    pub fn reset(&mut self, servers: Vec<(u16, String, PeerSecurity)>) {
        self.map.clear();
        for (key, uri, security) in servers {
            self.insert(key, uri, security);
        }
    }

    pub fn is_open(&self, key: u16) -> bool {
        self.map
            .get(&key)
            .is_some_and(|p| matches!(p.link, Link::Open { .. }))
    }

    /// What the network last said about this peer, while it still holds.
    pub fn error(&self, key: u16) -> Option<String> {
        self.map.get(&key).and_then(|p| p.error.clone())
    }

    /// Sends, opening the socket first when there is none (the datagram waits).
    /// The client fell asleep for this server (queue mode): its DTLS session is
    /// resumed when it wakes.
    pub fn asleep(&mut self, key: u16) {
        if let Some(Ok(Some(link))) = self.map.get_mut(&key).map(|p| p.secure.as_mut()) {
            link.asleep();
        }
    }

    pub fn send(&mut self, key: u16, bytes: Vec<u8>) {
        let Some(peer) = self.map.get_mut(&key) else {
            tracing::debug!("{}: no such peer; datagram dropped", label(key));
            return;
        };
        if let Err(why) = &peer.secure {
            self.heard.push(Heard::Unreachable(key, why.clone()));
            return;
        }
        let step = match &peer.link {
            Link::Open { sock, addr, .. } => {
                log_datagram("→", key, *addr, &bytes);
                match peer.secure.as_mut() {
                    Ok(Some(link)) => Some(link.send(&bytes, Instant::now())),
                    _ => {
                        transmit(sock, *addr, key, &bytes);
                        None
                    }
                }
            }
            Link::Closed | Link::Opening => {
                if peer.waiting.len() < WAITING_MAX {
                    peer.waiting.push(bytes);
                }
                self.open(key);
                None
            }
        };
        if let Some(step) = step {
            self.apply(key, step);
        }
    }

    /// Starts resolving and connecting unless that is done or under way.
    pub fn open(&mut self, key: u16) {
        let Some(peer) = self.map.get_mut(&key) else {
            return;
        };
        if !matches!(peer.link, Link::Closed) {
            return;
        }
        peer.link = Link::Opening;
        let (uri, generation, tx) = (peer.uri.clone(), peer.generation, self.tx.clone());
        tracing::debug!("{}: resolving {uri}", label(key));
        tokio::spawn(async move {
            let result = connect(&uri).await;
            let _ = tx
                .send(PeerEvent::Opened {
                    key,
                    generation,
                    result,
                })
                .await;
        });
    }

    /// Takes one event from the sockets or the resolver.
    pub fn handle(&mut self, ev: PeerEvent) -> Vec<Heard> {
        match ev {
            PeerEvent::Datagram { key, bytes } => {
                let Some(peer) = self.map.get_mut(&key) else {
                    return Vec::new();
                };
                if peer.error.take().is_some() {
                    tracing::info!(server = %peer.uri, "{}: the server answers again", label(key));
                }
                let addr = match &peer.link {
                    Link::Open { addr, .. } => Some(*addr),
                    _ => None,
                };
                let heard = match peer.secure.as_mut() {
                    Ok(Some(link)) => {
                        let step = link.receive(&bytes, Instant::now());
                        self.apply(key, step)
                    }
                    _ => vec![Heard::Datagram(key, bytes)],
                };
                if let Some(addr) = addr {
                    for h in &heard {
                        if let Heard::Datagram(_, b) = h {
                            log_datagram("←", key, addr, b);
                        }
                    }
                }
                heard
            }
            PeerEvent::Opened {
                key,
                generation,
                result,
            } => {
                let tx = self.tx.clone();
                let Some(peer) = self
                    .map
                    .get_mut(&key)
                    .filter(|p| p.generation == generation)
                else {
                    return Vec::new(); // replaced meanwhile
                };
                match result {
                    Ok((sock, addr)) => {
                        tracing::info!(server = %peer.uri, "{}: using {addr}", label(key));
                        let sock = Arc::new(sock);
                        let reader = tokio::spawn(read_loop(sock.clone(), key, generation, tx));
                        let waiting = std::mem::take(&mut peer.waiting);
                        if let Ok(Some(link)) = peer.secure.as_mut() {
                            // A session is bound to the address it was made with.
                            if peer.last_addr.is_some_and(|a| a != addr) {
                                link.forget_session();
                            }
                        }
                        peer.last_addr = Some(addr);
                        peer.link = Link::Open { sock, addr, reader };
                        peer.error = None;
                        for bytes in waiting {
                            self.send(key, bytes);
                        }
                        Vec::new()
                    }
                    Err(e) => {
                        // The next attempt comes when the core sends again, on its back-off.
                        tracing::debug!(server = %peer.uri, "{}: {e}", label(key));
                        peer.link = Link::Closed;
                        peer.waiting.clear();
                        peer.error = Some(e.clone());
                        vec![Heard::Unreachable(key, e)]
                    }
                }
            }
            PeerEvent::Refused { key, generation } => {
                let Some(peer) = self
                    .map
                    .get_mut(&key)
                    .filter(|p| p.generation == generation)
                else {
                    return Vec::new();
                };
                let Link::Open { addr, .. } = &peer.link else {
                    return Vec::new();
                };
                let why = format!(
                    "{addr} refused the datagram (ICMP port unreachable): nothing listens on UDP port {}",
                    addr.port()
                );
                // Said once when it starts; every retransmission would repeat it.
                if peer.error.as_deref() != Some(why.as_str()) {
                    tracing::warn!(server = %peer.uri, "{}: {why}", label(key));
                    peer.error = Some(why.clone());
                }
                vec![Heard::Refused(key, why)]
            }
        }
    }
}

/// UDP sends do not block in practice; a full buffer is a lost datagram, which
/// retransmission covers.
fn transmit(sock: &UdpSocket, addr: SocketAddr, key: u16, bytes: &[u8]) {
    log_datagram("→", key, addr, bytes);
    if let Err(e) = sock.try_send(bytes) {
        tracing::debug!("{}: send to {addr}: {e}", label(key));
    }
}

fn log_datagram(dir: &str, key: u16, addr: SocketAddr, bytes: &[u8]) {
    if tracing::enabled!(target: TRACE, tracing::Level::DEBUG) {
        tracing::debug!(target: TRACE, "{dir} {addr} {} {}", label(key), trace::describe(bytes));
        if tracing::enabled!(target: TRACE, tracing::Level::TRACE) {
            if let Some(p) = trace::payload(bytes) {
                tracing::trace!(target: TRACE, "{dir} {addr} {} payload {p}", label(key));
            }
        }
    }
}

async fn read_loop(sock: Arc<UdpSocket>, key: u16, generation: u64, tx: mpsc::Sender<PeerEvent>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let ev = match sock.recv(&mut buf).await {
            Ok(n) => PeerEvent::Datagram {
                key,
                bytes: buf[..n].to_vec(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                PeerEvent::Refused { key, generation }
            }
            Err(e) => {
                tracing::debug!("{}: receive: {e}", label(key));
                // Whatever it is must not spin the loop.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

async fn connect(uri: &str) -> Result<(UdpSocket, SocketAddr), String> {
    let a = config::parse_uri(uri)?;
    let mut addrs = tokio::net::lookup_host((a.host.as_str(), a.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", a.host))?;
    let addr = addrs
        .next()
        .ok_or_else(|| format!("{} has no address", a.host))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    sock.connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    Ok((sock, addr))
}
