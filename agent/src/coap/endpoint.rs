//! The CoAP message layer towards one peer, without I/O (RFC 7252 sections 4-5,
//! RFC 7959 client side). Datagrams and time go in; datagrams to send, events and
//! the next deadline come out. The driver owns the socket and the clock.
//!
//! One outstanding confirmable exchange at a time (NSTART = 1): our requests and
//! confirmable notifications queue behind it. Requests larger than one block are
//! sent with Block1; responses carrying Block2 are fetched block by block and
//! delivered whole, unless the request named its block itself (Block2 in the
//! request): then each block is delivered as it came.

use super::block::{self, BlockOpt};
use super::message::{self, codes};
use super::params::TxParams;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub type Handle = u64;

/// Largest body we reassemble from Block2 responses to our own requests.
const MAX_BLOCK2_BODY: usize = 4 << 20;
/// Bound on remembered incoming message ids.
const MAX_DEDUP: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// No acknowledgement after MAX_RETRANSMIT, or no response in time.
    Timeout,
    /// The peer answered with Reset.
    Reset,
    /// The message could not be encoded, or a Block2 body grew too large.
    Invalid(String),
}

#[derive(Debug)]
pub enum Event {
    /// A new request from the peer (duplicates are answered from the cache).
    Request(Incoming),
    /// The final response to one of our requests.
    Response {
        handle: Handle,
        packet: Packet,
    },
    /// The peer acknowledged one of our confirmable notifications.
    Delivered {
        handle: Handle,
    },
    Failed {
        handle: Handle,
        reason: Failure,
    },
}

#[derive(Debug, Clone)]
pub struct Incoming {
    pub packet: Packet,
    mid: u16,
    confirmable: bool,
}

impl Incoming {
    pub fn confirmable(&self) -> bool {
        self.confirmable
    }
}

#[derive(Debug)]
enum Kind {
    Request {
        /// Remaining Block1 payload state: full body, size exponent, current block.
        block1: Option<(Vec<u8>, u8, u32)>,
        /// Block2 body gathered so far.
        block2: Option<Vec<u8>>,
        /// The request as built by the caller, for follow-up block requests.
        template: Packet,
    },
    Notification,
}

#[derive(Debug)]
struct Outgoing {
    handle: Handle,
    kind: Kind,
    packet: Packet,
    confirmable: bool,
    // Set when transmitted:
    mid: u16,
    bytes: Vec<u8>,
    retransmits: u32,
    timeout: Duration,
    retransmit_at: Option<Instant>,
    give_up_at: Option<Instant>,
}

#[derive(Debug)]
struct Seen {
    expires: Instant,
    response: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct Endpoint {
    params: TxParams,
    rng: u64,
    next_mid: u16,
    next_handle: Handle,
    in_flight: Option<Outgoing>,
    queue: VecDeque<Outgoing>,
    seen: HashMap<u16, Seen>,
    /// Separate (CON) responses already acknowledged, by message id.
    seen_responses: HashMap<u16, Instant>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    /// Preferred Block1 size for our large requests.
    block_szx: u8,
}

impl Endpoint {
    pub fn new(params: TxParams, seed: u64) -> Self {
        let mut e = Self {
            params,
            rng: seed | 1,
            next_mid: 0,
            next_handle: 1,
            in_flight: None,
            queue: VecDeque::new(),
            seen: HashMap::new(),
            seen_responses: HashMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            block_szx: 6,
        };
        e.next_mid = e.random() as u16;
        e
    }

    pub fn params(&self) -> &TxParams {
        &self.params
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: tokens need to be unpredictable to off-path attackers only
        // as far as RFC 7252 5.3.1 asks; the driver seeds from the OS.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    pub fn new_token(&mut self) -> Vec<u8> {
        self.random().to_be_bytes().to_vec()
    }

    fn initial_timeout(&mut self) -> Duration {
        let r = (self.random() >> 11) as f64 / (1u64 << 53) as f64;
        self.params
            .ack_timeout
            .mul_f64(1.0 + r * (self.params.ack_random_factor - 1.0))
    }

    /// Queues a request; the response arrives as `Event::Response` with the handle.
    pub fn send_request(&mut self, now: Instant, mut packet: Packet, confirmable: bool) -> Handle {
        if packet.get_token().is_empty() {
            let t = self.new_token();
            packet.set_token(t);
        }
        let template = packet.clone();
        let mut block1 = None;
        let max = 1usize << (self.block_szx + 4);
        if packet.payload.len() > max {
            let body = std::mem::take(&mut packet.payload);
            packet.payload = body[..max].to_vec();
            message::set_block(
                &mut packet,
                CoapOption::Block1,
                BlockOpt {
                    num: 0,
                    more: true,
                    szx: self.block_szx,
                },
            );
            block1 = Some((body, self.block_szx, 0));
        }
        let handle = self.push(
            packet,
            confirmable,
            Kind::Request {
                block1,
                block2: None,
                template,
            },
        );
        self.pump(now);
        handle
    }

    /// Sends a notification (the packet carries token and Observe). Confirmable ones
    /// report `Delivered` or `Failed`; non-confirmable ones go out at once.
    pub fn send_notification(&mut self, now: Instant, packet: Packet, confirmable: bool) -> Handle {
        if !confirmable {
            let handle = self.next_handle;
            self.next_handle += 1;
            let mid = self.mid();
            let mut p = packet;
            p.header.set_type(MessageType::NonConfirmable);
            p.header.message_id = mid;
            match encode(&p) {
                Ok(b) => self.transmit.push_back(b),
                Err(e) => self.events.push_back(Event::Failed {
                    handle,
                    reason: Failure::Invalid(e),
                }),
            }
            return handle;
        }
        let h = self.push(packet, true, Kind::Notification);
        self.pump(now);
        h
    }

    fn push(&mut self, packet: Packet, confirmable: bool, kind: Kind) -> Handle {
        let handle = self.next_handle;
        self.next_handle += 1;
        self.queue.push_back(Outgoing {
            handle,
            kind,
            packet,
            confirmable,
            mid: 0,
            bytes: Vec::new(),
            retransmits: 0,
            timeout: Duration::ZERO,
            retransmit_at: None,
            give_up_at: None,
        });
        handle
    }

    /// Drops a queued or outstanding message without an event (e.g. at de-registration).
    pub fn cancel(&mut self, handle: Handle) {
        self.queue.retain(|o| o.handle != handle);
        if self.in_flight.as_ref().is_some_and(|o| o.handle == handle) {
            self.in_flight = None;
        }
    }

    /// Drops everything queued and outstanding.
    pub fn cancel_all(&mut self) {
        self.queue.clear();
        self.in_flight = None;
    }

    pub fn busy(&self) -> bool {
        self.in_flight.is_some() || !self.queue.is_empty()
    }

    fn pump(&mut self, now: Instant) {
        while self.in_flight.is_none() {
            let Some(mut o) = self.queue.pop_front() else {
                return;
            };
            if self.transmit_new(now, &mut o) {
                self.in_flight = Some(o);
            }
        }
    }

    /// Gives `o` a fresh message id and sends it; false (with a Failed event) if it cannot be encoded.
    fn transmit_new(&mut self, now: Instant, o: &mut Outgoing) -> bool {
        o.mid = self.mid();
        o.packet.header.message_id = o.mid;
        o.packet.header.set_type(if o.confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        match encode(&o.packet) {
            Ok(b) => o.bytes = b,
            Err(e) => {
                self.events.push_back(Event::Failed {
                    handle: o.handle,
                    reason: Failure::Invalid(e),
                });
                return false;
            }
        }
        o.retransmits = 0;
        if o.confirmable {
            o.timeout = self.initial_timeout();
            o.retransmit_at = Some(now + o.timeout);
            o.give_up_at = None;
        } else {
            o.retransmit_at = None;
            o.give_up_at = Some(now + self.params.max_transmit_wait());
        }
        self.transmit.push_back(o.bytes.clone());
        true
    }

    /// Answers a request: piggybacked on the ACK for CON, as NON otherwise. The
    /// response is cached so a retransmitted request gets the same answer.
    pub fn respond(&mut self, incoming: &Incoming, mut packet: Packet) {
        if incoming.confirmable {
            packet.header.set_type(MessageType::Acknowledgement);
            packet.header.message_id = incoming.mid;
        } else {
            packet.header.set_type(MessageType::NonConfirmable);
            packet.header.message_id = self.mid();
        }
        packet.set_token(incoming.packet.get_token().to_vec());
        let bytes = match encode(&packet) {
            Ok(b) => b,
            Err(_) => {
                let mut p = message::response(&incoming.packet, codes::INTERNAL_SERVER_ERROR);
                p.header.set_type(packet.header.get_type());
                p.header.message_id = packet.header.message_id;
                encode(&p).unwrap_or_default()
            }
        };
        if let Some(s) = self.seen.get_mut(&incoming.mid) {
            s.response = Some(bytes.clone());
        }
        self.transmit.push_back(bytes);
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let o = self.in_flight.as_ref()?;
        match (o.retransmit_at, o.give_up_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut failed = None;
        if let Some(o) = self.in_flight.as_mut() {
            if o.retransmit_at.is_some_and(|t| t <= now) {
                if o.retransmits < self.params.max_retransmit {
                    o.retransmits += 1;
                    o.timeout *= 2;
                    o.retransmit_at = Some(now + o.timeout);
                    self.transmit.push_back(o.bytes.clone());
                } else {
                    failed = Some(o.handle);
                }
            } else if o.give_up_at.is_some_and(|t| t <= now) {
                failed = Some(o.handle);
            }
        }
        if let Some(handle) = failed {
            self.in_flight = None;
            self.events.push_back(Event::Failed {
                handle,
                reason: Failure::Timeout,
            });
            self.pump(now);
        }
    }

    fn expire(&mut self, now: Instant) {
        self.seen.retain(|_, s| s.expires > now);
        self.seen_responses.retain(|_, t| *t > now);
    }

    fn send_empty(&mut self, t: MessageType, mid: u16) {
        let mut p = Packet::new();
        p.header.set_type(t);
        p.header.code = MessageClass::Empty;
        p.header.message_id = mid;
        if let Ok(b) = encode(&p) {
            self.transmit.push_back(b);
        }
    }

    fn reject_method(&mut self, req: &Packet, confirmable: bool, mid: u16) {
        let mut p = Packet::new();
        if confirmable {
            p.header.set_type(MessageType::Acknowledgement);
            p.header.message_id = mid;
        } else {
            p.header.set_type(MessageType::NonConfirmable);
            p.header.message_id = self.mid();
        }
        p.header.code = MessageClass::Response(coap_lite::ResponseType::MethodNotAllowed);
        p.set_token(req.get_token().to_vec());
        if let Ok(b) = encode(&p) {
            self.transmit.push_back(b);
        }
    }

    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.expire(now);
        if bytes.len() < 4 || bytes[0] >> 6 != 1 {
            return; // not CoAP version 1: silently ignored (RFC 7252 3)
        }
        let ty = (bytes[0] >> 4) & 0b11;
        let mid = u16::from_be_bytes([bytes[2], bytes[3]]);
        let packet = match Packet::from_bytes(bytes) {
            // A payload marker with nothing after it is a format error (RFC 7252
            // 3), which the parser lets through; and so is a reserved class (1, 6,
            // 7: 12.1.1), which it does not know.
            Ok(p) if !marker_without_payload(bytes) && !matches!(bytes[1] >> 5, 1 | 6 | 7) => p,
            _ => {
                // Format error: reject a CON with Reset, ignore anything else (4.2, 4.3).
                if ty == 0 {
                    self.send_empty(MessageType::Reset, mid);
                }
                return;
            }
        };
        if bytes[1] >> 5 == 0 && bytes[1] > 0x07 {
            // A method we do not know (0.08-0.31): 4.05, as 5.8 says, piggybacked
            // on the ACK of a CON, in a NON for a NON.
            self.reject_method(&packet, ty == 0, mid);
            return;
        }
        match (packet.header.get_type(), packet.header.code) {
            (MessageType::Reset, _) => self.on_reset(now, mid),
            (MessageType::Acknowledgement, MessageClass::Empty) => self.on_empty_ack(now, mid),
            (MessageType::Confirmable, MessageClass::Empty) => {
                self.send_empty(MessageType::Reset, mid)
            } // CoAP ping
            (MessageType::Confirmable | MessageType::NonConfirmable, MessageClass::Request(_)) => {
                self.on_request(now, packet, mid)
            }
            (_, MessageClass::Response(_)) | (_, MessageClass::Reserved(_))
                if message::is_response(&packet) =>
            {
                self.on_response(now, packet, mid)
            }
            _ => {}
        }
    }

    fn on_request(&mut self, now: Instant, packet: Packet, mid: u16) {
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        if let Some(s) = self.seen.get(&mid) {
            if let Some(r) = &s.response {
                self.transmit.push_back(r.clone());
            }
            return;
        }
        if self.seen.len() >= MAX_DEDUP {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                self.seen.remove(&oldest);
            }
        }
        let life = if confirmable {
            self.params.exchange_lifetime()
        } else {
            self.params.non_lifetime()
        };
        self.seen.insert(
            mid,
            Seen {
                expires: now + life,
                response: None,
            },
        );
        self.events.push_back(Event::Request(Incoming {
            packet,
            mid,
            confirmable,
        }));
    }

    fn on_reset(&mut self, now: Instant, mid: u16) {
        if self.in_flight.as_ref().is_some_and(|o| o.mid == mid) {
            if let Some(o) = self.in_flight.take() {
                self.events.push_back(Event::Failed {
                    handle: o.handle,
                    reason: Failure::Reset,
                });
            }
            self.pump(now);
        }
    }

    fn on_empty_ack(&mut self, now: Instant, mid: u16) {
        let Some(o) = self.in_flight.as_mut().filter(|o| o.mid == mid) else {
            return;
        };
        match o.kind {
            Kind::Notification => {
                let handle = o.handle;
                self.in_flight = None;
                self.events.push_back(Event::Delivered { handle });
                self.pump(now);
            }
            Kind::Request { .. } => {
                // A separate response will follow; stop retransmitting, wait for it.
                o.retransmit_at = None;
                o.give_up_at = Some(now + self.params.exchange_lifetime());
            }
        }
    }

    fn on_response(&mut self, now: Instant, packet: Packet, mid: u16) {
        let ty = packet.header.get_type();
        let matches = self.in_flight.as_ref().is_some_and(|o| {
            matches!(o.kind, Kind::Request { .. })
                && o.packet.get_token() == packet.get_token()
                && (ty != MessageType::Acknowledgement || o.mid == mid)
        });
        if ty == MessageType::Confirmable {
            if self.seen_responses.contains_key(&mid) {
                self.send_empty(MessageType::Acknowledgement, mid);
                return;
            }
            if !matches {
                self.send_empty(MessageType::Reset, mid);
                return;
            }
            self.seen_responses
                .insert(mid, now + self.params.exchange_lifetime());
            self.send_empty(MessageType::Acknowledgement, mid);
        }
        if !matches {
            return;
        }
        let Some(mut o) = self.in_flight.take() else {
            return;
        };
        let code = message::code_byte(&packet);
        if let Kind::Request {
            block1,
            block2,
            template,
        } = &mut o.kind
        {
            // Block1: the server wants the next block.
            if code == codes::CONTINUE {
                if let Some((body, szx, num)) = block1.as_mut() {
                    // The server may ask for smaller blocks (RFC 7959 2.5): continue
                    // after the block it acknowledged, in its size.
                    match message::block(&packet, CoapOption::Block1) {
                        Some(Some(b)) if b.szx < *szx => {
                            *szx = b.szx;
                            *num = b.num + 1;
                        }
                        _ => *num += 1,
                    }
                    let opt = BlockOpt {
                        num: *num,
                        more: false,
                        szx: *szx,
                    };
                    if let Some((chunk, more)) = block::slice(body, opt) {
                        let mut next = template.clone();
                        next.payload = chunk.to_vec();
                        message::set_block(&mut next, CoapOption::Block1, BlockOpt { more, ..opt });
                        o.packet = next;
                        if self.transmit_new(now, &mut o) {
                            self.in_flight = Some(o);
                        }
                        self.pump(now);
                        return;
                    }
                }
            }
            // Block2: gather the body, ask for the next block. A request that
            // names its block itself (a streaming download) gets that block as
            // it came: reassembly would hold the whole body in memory.
            let own_block2 = message::block(template, CoapOption::Block2).is_some();
            if let Some(Some(b2)) = message::block(&packet, CoapOption::Block2) {
                if !own_block2 && codes::is_success(code) && (b2.more || block2.is_some()) {
                    let acc = block2.get_or_insert_with(Vec::new);
                    if b2.offset() != acc.len() {
                        self.events.push_back(Event::Failed {
                            handle: o.handle,
                            reason: Failure::Invalid(format!(
                                "Block2 offset {} where {} was expected",
                                b2.offset(),
                                acc.len()
                            )),
                        });
                        self.pump(now);
                        return;
                    }
                    acc.extend_from_slice(&packet.payload);
                    if acc.len() > MAX_BLOCK2_BODY {
                        self.events.push_back(Event::Failed {
                            handle: o.handle,
                            reason: Failure::Invalid("Block2 body too large".into()),
                        });
                        self.pump(now);
                        return;
                    }
                    if b2.more {
                        let mut next = template.clone();
                        next.payload.clear();
                        message::set_block(
                            &mut next,
                            CoapOption::Block2,
                            BlockOpt {
                                num: b2.num + 1,
                                more: false,
                                szx: b2.szx,
                            },
                        );
                        o.packet = next;
                        if self.transmit_new(now, &mut o) {
                            self.in_flight = Some(o);
                        }
                        self.pump(now);
                        return;
                    }
                    let mut whole = packet;
                    whole.payload = std::mem::take(acc);
                    whole.clear_option(CoapOption::Block2);
                    self.events.push_back(Event::Response {
                        handle: o.handle,
                        packet: whole,
                    });
                    self.pump(now);
                    return;
                }
            }
        }
        self.events.push_back(Event::Response {
            handle: o.handle,
            packet,
        });
        self.pump(now);
    }
}

fn encode(p: &Packet) -> Result<Vec<u8>, String> {
    // Our own limit is the block size plus headers; 64 KiB guards against bugs.
    p.to_bytes_with_limit(65_000).map_err(|e| format!("{e:?}"))
}

/// The datagram ends with the payload marker: options walked (RFC 7252 3.1) up
/// to a 0xFF that has nothing after it. False for anything that is not well
/// formed up to there: the parser judges that.
fn marker_without_payload(bytes: &[u8]) -> bool {
    let Some(&first) = bytes.first() else {
        return false;
    };
    let mut i = 4 + usize::from(first & 0x0F);
    // An extended delta or length: 13 adds one byte, 14 two, 15 is no length.
    let ext = |nibble: u8, i: &mut usize| -> Option<usize> {
        match nibble {
            0..=12 => Some(usize::from(nibble)),
            13 => {
                let v = *bytes.get(*i)?;
                *i += 1;
                Some(usize::from(v) + 13)
            }
            14 => {
                let v = u16::from_be_bytes([*bytes.get(*i)?, *bytes.get(*i + 1)?]);
                *i += 2;
                Some(usize::from(v) + 269)
            }
            _ => None,
        }
    };
    while let Some(&b) = bytes.get(i) {
        if b == 0xFF {
            return i + 1 == bytes.len();
        }
        i += 1;
        if ext(b >> 4, &mut i).is_none() {
            return false;
        }
        let Some(len) = ext(b & 0x0F, &mut i) else {
            return false;
        };
        i += len;
    }
    false
}

#[cfg(test)]
mod tests;
