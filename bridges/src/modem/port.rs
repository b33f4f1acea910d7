//! The modem task: one AT port, opened with tokio-serial, set up, drained, served;
//! reopened with back-off when it fails. The protocol decisions are `at`'s; this
//! file only sequences commands and moves bytes.
//!
//! Messages leave the modem in this order: read, handed over (queued on the events
//! channel), deleted. A message read but not yet handed over when the port goes is
//! read again from storage after the reopen, so a restart can deliver one twice but
//! never loses a stored one.

use super::unix_now;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::at::{self, At, AtEvent, Final, PinStep, ReplyLine, SimState, Urc};
use super::concat::{self, Limits, Outcome, Reassembler};
use super::config::{Delivery, ModemConfig};
use super::pdu::{self, Reference, UserData};
use super::{Link, ModemEvent, ModemState, Request, SendError, Sent, Sms};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Listing a full storage takes a while on slow modems.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
const PROMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The network's answer to a submit (27.005 leaves it open; a minute covers slow
/// networks).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Stored messages read ahead of the agent taking them.
const READ_AHEAD: usize = 8;
/// Events kept while the agent does not take them; more are dropped and counted.
const OUT_CAP: usize = 256;

/// Why a command got no reply.
enum Failure {
    Timeout(String),
    Io(String),
}

impl Failure {
    fn reason(self) -> String {
        match self {
            Failure::Timeout(s) | Failure::Io(s) => s,
        }
    }
}

type Reply = Result<Vec<ReplyLine>, Final>;

struct Conn {
    port: SerialStream,
    name: String,
    at: At,
    urcs: VecDeque<Urc>,
    buf: Box<[u8; 1024]>,
}

impl Conn {
    fn open(config: &ModemConfig) -> Result<Conn, String> {
        let port = tokio_serial::new(&config.port, config.baud)
            .open_native_async()
            .map_err(|e| format!("cannot open {}: {e}", config.port))?;
        // Whatever the modem said before is nobody's reply.
        let _ = tokio_serial::SerialPort::clear(&port, tokio_serial::ClearBuffer::All);
        Ok(Conn {
            port,
            name: config.port.clone(),
            at: At::default(),
            urcs: VecDeque::new(),
            buf: Box::new([0; 1024]),
        })
    }

    /// One read from the port, its unsolicited lines queued.
    async fn read(&mut self, deadline: Option<Instant>) -> Result<bool, String> {
        let read = self.port.read(&mut self.buf[..]);
        let n = match deadline {
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r,
                Err(_) => return Ok(false),
            },
            None => read.await,
        };
        match n {
            Ok(0) => Err(format!("{} was closed", self.name)),
            Ok(n) => {
                self.at.push(&self.buf[..n]);
                Ok(true)
            }
            Err(e) => Err(format!("{} failed: {e}", self.name)),
        }
    }

    /// A read between commands: whatever came is unsolicited.
    async fn idle_read(&mut self) -> Result<(), String> {
        self.read(None).await?;
        while let Some(e) = self.at.poll() {
            if let AtEvent::Urc(u) = e {
                self.urcs.push_back(u);
            }
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let r = match self.port.write_all(bytes).await {
            Ok(()) => self.port.flush().await,
            Err(e) => Err(e),
        };
        r.map_err(|e| Failure::Io(format!("{} failed: {e}", self.name)))
    }

    /// Events until the command's end (or the prompt, when `prompt`).
    async fn wait(
        &mut self,
        shown: &str,
        timeout: Duration,
        prompt: bool,
    ) -> Result<Option<Reply>, Failure> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(e) = self.at.poll() {
                match e {
                    AtEvent::Urc(u) => self.urcs.push_back(u),
                    AtEvent::Prompt if prompt => return Ok(None),
                    AtEvent::Prompt => {}
                    AtEvent::Done(r) => return Ok(Some(r)),
                }
            }
            match self.read(Some(deadline)).await {
                Ok(true) => {}
                Ok(false) => {
                    self.at.abandon();
                    return Err(Failure::Timeout(format!(
                        "no answer to {shown} within {} s from {}",
                        timeout.as_secs(),
                        self.name
                    )));
                }
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }

    async fn command_as(
        &mut self,
        command: &str,
        shown: &str,
        timeout: Duration,
    ) -> Result<Reply, Failure> {
        let bytes = self.at.start(command, false);
        self.write(&bytes).await?;
        match self.wait(shown, timeout, false).await? {
            Some(r) => Ok(r),
            None => Ok(Err(Final::Error)),
        }
    }

    async fn command(&mut self, command: &str, timeout: Duration) -> Result<Reply, Failure> {
        self.command_as(command, command, timeout).await
    }

    /// `AT+CMGS=<len>`, the prompt, the PDU and Ctrl-Z.
    async fn submit(&mut self, tpdu_len: usize, hex: &str) -> Result<Reply, Failure> {
        let command = format!("AT+CMGS={tpdu_len}");
        let bytes = self.at.start(&command, true);
        self.write(&bytes).await?;
        match self.wait(&command, PROMPT_TIMEOUT, true).await {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => {}
            Err(Failure::Timeout(reason)) => {
                // ESC leaves the prompt without sending, should it come late.
                let _ = self.write(&[0x1B]).await;
                return Err(Failure::Timeout(reason));
            }
            Err(e) => return Err(e),
        }
        let mut body = hex.as_bytes().to_vec();
        body.push(0x1A);
        self.write(&body).await?;
        match self.wait(&command, SUBMIT_TIMEOUT, false).await? {
            Some(r) => Ok(r),
            None => Ok(Err(Final::Error)),
        }
    }
}

/// Where a part came from: the storage index to delete it by, or `+CMT`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tag {
    Stored(u32),
    Direct,
}

struct Out {
    event: Option<ModemEvent>,
    /// Storage indices to delete once the event is handed over.
    delete: Vec<u32>,
}

enum End {
    /// Nobody listens any more.
    Quit,
    Down(String),
}

struct Task {
    config: ModemConfig,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<ModemEvent>,
    out: VecDeque<Out>,
    state: ModemState,
    said: Option<ModemState>,
    /// The SIM refused our PIN (why, as said then): it is never sent again (the
    /// next refusals would lock the SIM to its PUK).
    pin_rejected: Option<String>,
    concat: Reassembler<Tag>,
    /// Storage indices announced by `+CMTI`, to read.
    to_read: VecDeque<u32>,
    /// `AT+CSMS=1` took: `+CMT` must be acknowledged.
    ack_needed: bool,
    reference: u8,
    clock: Instant,
}

pub(crate) async fn run(
    config: ModemConfig,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<ModemEvent>,
) {
    let limits = Limits {
        timeout: f64::from(config.concat_timeout),
        ..Limits::default()
    };
    let state = ModemState {
        link: Link::Opening,
        port: config.port.clone(),
        own_number: config.own_number.clone(),
        operator: None,
        signal_dbm: None,
        registration: None,
        dropped_events: 0,
        signal_percent: None,
        cell_id: None,
        lac: None,
        mcc: None,
        mnc: None,
    };
    // A reference that differs across restarts, so that a receiver does not join
    // parts of two messages.
    let reference = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u8 ^ d.as_secs() as u8);
    let mut task = Task {
        config,
        requests,
        events,
        out: VecDeque::new(),
        state,
        said: None,
        pin_rejected: None,
        concat: Reassembler::new(limits),
        to_read: VecDeque::new(),
        ack_needed: false,
        reference,
        clock: Instant::now(),
    };
    task.run().await;
}

impl Task {
    async fn run(&mut self) {
        let mut backoff = Duration::from_secs(1);
        let max = Duration::from_secs(u64::from(self.config.reconnect_max));
        loop {
            // Down stays down (said once) until the modem is ready or fails otherwise.
            if !matches!(self.state.link, Link::Down { .. }) {
                self.set_link(Link::Opening);
            }
            let reason = match Conn::open(&self.config) {
                Err(e) => e,
                Ok(mut conn) => {
                    let mut ready = false;
                    match self.session(&mut conn, &mut ready).await {
                        End::Quit => return,
                        End::Down(reason) => {
                            if ready {
                                backoff = Duration::from_secs(1);
                            }
                            reason
                        }
                    }
                }
            };
            self.state.operator = None;
            self.state.signal_dbm = None;
            self.state.registration = None;
            self.set_link(Link::Down { reason });
            // What came from storage is read again after the reopen.
            self.out.retain(|o| o.delete.is_empty());
            self.concat = Reassembler::new(Limits {
                timeout: f64::from(self.config.concat_timeout),
                ..Limits::default()
            });
            self.to_read.clear();
            if !self.pause(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// Waits `d`, answering sends and handing events over meanwhile; false when
    /// nobody listens any more.
    async fn pause(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            let reason = match &self.state.link {
                Link::Down { reason } => reason.clone(),
                _ => "not set up yet".into(),
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                r = self.requests.recv() => match r {
                    None => return false,
                    Some(Request::Send { reply, .. }) => {
                        let _ = reply.send(Err(SendError::Unavailable(reason)));
                    }
                },
                p = self.events.reserve(), if !self.out.is_empty() => match p {
                    Err(_) => return false,
                    Ok(p) => {
                        if let Some(e) = self.out.pop_front().and_then(|o| o.event) {
                            p.send(e);
                        }
                    }
                },
            }
        }
    }

    fn set_link(&mut self, link: Link) {
        self.state.link = link;
        self.say_state();
    }

    fn say_state(&mut self) {
        if self.said.as_ref() != Some(&self.state) {
            self.said = Some(self.state.clone());
            self.queue(Some(ModemEvent::State(self.state.clone())), Vec::new());
        }
    }

    fn queue(&mut self, event: Option<ModemEvent>, delete: Vec<u32>) {
        if self.out.len() >= OUT_CAP {
            // Left on the modem (if stored): read again after a restart.
            self.state.dropped_events += 1;
            return;
        }
        self.out.push_back(Out { event, delete });
    }

    async fn session(&mut self, conn: &mut Conn, ready: &mut bool) -> End {
        if let Err(reason) = self.setup(conn).await {
            return End::Down(reason);
        }
        *ready = true;
        self.set_link(Link::Ready);
        if let Err(f) = self.drain(conn).await {
            return End::Down(f.reason());
        }
        let interval = Duration::from_secs(u64::from(self.config.status_interval));
        // A permit borrows its sender; this one is not `self`'s.
        let events = self.events.clone();
        let mut next_status = Instant::now() + interval;
        loop {
            if let Err(f) = self.work(conn).await {
                return End::Down(f.reason());
            }
            if !conn.urcs.is_empty() || (!self.to_read.is_empty() && self.out.len() < READ_AHEAD) {
                continue;
            }
            let concat_at = self
                .concat
                .deadline()
                .map(|t| self.clock + Duration::from_secs_f64(t.max(0.0)));
            let wake = concat_at.map_or(next_status, |c| c.min(next_status));
            tokio::select! {
                r = conn.idle_read() => if let Err(reason) = r {
                    return End::Down(reason);
                },
                r = self.requests.recv() => match r {
                    None => return End::Quit,
                    Some(Request::Send { number, data, reply }) => {
                        match self.send(conn, &number, &data).await {
                            Ok(r) => { let _ = reply.send(r); }
                            Err(f) => {
                                let reason = f.reason();
                                let _ = reply.send(Err(SendError::Unavailable(reason.clone())));
                                return End::Down(reason);
                            }
                        }
                    }
                },
                p = events.reserve(), if !self.out.is_empty() => match p {
                    Err(_) => return End::Quit,
                    Ok(p) => {
                        if let Some(o) = self.out.pop_front() {
                            match o.event {
                                Some(e) => p.send(e),
                                None => drop(p),
                            }
                            if let Err(f) = self.delete(conn, &o.delete).await {
                                return End::Down(f.reason());
                            }
                        }
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= next_status {
                        next_status = Instant::now() + interval;
                        if let Err(f) = self.status(conn).await {
                            return End::Down(f.reason());
                        }
                    }
                }
            }
        }
    }

    /// Unsolicited lines, announced messages, timed-out parts, and events the
    /// channel has room for.
    async fn work(&mut self, conn: &mut Conn) -> Result<(), Failure> {
        while let Some(urc) = conn.urcs.pop_front() {
            self.on_urc(conn, urc).await?;
        }
        while self.out.len() < READ_AHEAD {
            let Some(index) = self.to_read.pop_front() else {
                break;
            };
            self.read_stored(conn, index).await?;
        }
        let now = self.clock.elapsed().as_secs_f64();
        for d in self.concat.expire(now) {
            self.dropped(d);
        }
        let events = self.events.clone();
        while !self.out.is_empty() {
            let Ok(permit) = events.try_reserve() else {
                break;
            };
            if let Some(o) = self.out.pop_front() {
                match o.event {
                    Some(e) => permit.send(e),
                    None => drop(permit),
                }
                self.delete(conn, &o.delete).await?;
            }
        }
        Ok(())
    }

    async fn delete(&mut self, conn: &mut Conn, indices: &[u32]) -> Result<(), Failure> {
        for i in indices {
            // An error (already gone) leaves nothing to do.
            conn.command(&format!("AT+CMGD={i}"), COMMAND_TIMEOUT)
                .await?
                .ok();
        }
        Ok(())
    }

    /// Wakes the modem, checks the SIM, sets the modem up and reads what it says
    /// about itself.
    async fn setup(&mut self, conn: &mut Conn) -> Result<(), String> {
        // The first command can be lost in whatever the modem was doing.
        let mut synced = false;
        for _ in 0..3 {
            match conn.command("AT", Duration::from_secs(2)).await {
                Ok(_) => {
                    synced = true;
                    break;
                }
                Err(Failure::Timeout(_)) => {}
                Err(Failure::Io(e)) => return Err(e),
            }
        }
        if !synced {
            return Err(format!("no answer to AT from {}", conn.name));
        }
        self.required(conn, "ATE0").await?;
        conn.command("AT+CMEE=1", COMMAND_TIMEOUT)
            .await
            .map_err(Failure::reason)?
            .ok();
        self.sim(conn).await?;
        self.ack_needed = false;
        for step in at::setup_steps(&self.config.storage, self.config.delivery) {
            let r = conn
                .command(&step.command, COMMAND_TIMEOUT)
                .await
                .map_err(Failure::reason)?;
            match r {
                Ok(_) if step.command == "AT+CSMS=1" => {
                    self.ack_needed = self.config.delivery == Delivery::Direct;
                }
                Ok(_) => {}
                Err(f) if step.required => {
                    return Err(format!("the modem refused {}: {f}", step.command))
                }
                Err(_) => {}
            }
        }
        if self.state.own_number.is_none() {
            if let Ok(lines) = conn
                .command("AT+CNUM", COMMAND_TIMEOUT)
                .await
                .map_err(Failure::reason)?
            {
                self.state.own_number = at::parse_cnum(&lines);
            }
        }
        self.status(conn).await.map_err(Failure::reason)
    }

    async fn required(&mut self, conn: &mut Conn, command: &str) -> Result<(), String> {
        match conn
            .command(command, COMMAND_TIMEOUT)
            .await
            .map_err(Failure::reason)?
        {
            Ok(_) => Ok(()),
            Err(f) => Err(format!("the modem refused {command}: {f}")),
        }
    }

    /// The SIM's lock: the PIN entered at most once, never after a refusal.
    async fn sim(&mut self, conn: &mut Conn) -> Result<(), String> {
        let mut entered = false;
        for _ in 0..20 {
            let reply = conn
                .command("AT+CPIN?", COMMAND_TIMEOUT)
                .await
                .map_err(Failure::reason)?;
            let state = match reply {
                Ok(lines) => at::parse_cpin(&lines).unwrap_or(SimState::Ready),
                // Not inserted.
                Err(f @ (Final::Cme(10) | Final::Cms(310))) => {
                    return Err(format!("no SIM in the modem ({f})"))
                }
                // Busy: it is still starting up.
                Err(Final::Cme(14) | Final::Cms(314)) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                // A modem without AT+CPIN: nothing to unlock.
                Err(_) => SimState::Ready,
            };
            if let (SimState::Pin, Some(why)) = (&state, &self.pin_rejected) {
                return Err(why.clone());
            }
            let pin = match &self.config.pin {
                Some(source) if state == SimState::Pin && !entered => Some(source.load()?),
                _ => None,
            };
            let rejected = self.pin_rejected.is_some();
            match at::pin_step(&state, self.config.pin.is_some(), rejected, entered) {
                PinStep::Proceed => return Ok(()),
                PinStep::Stop(reason) => return Err(reason),
                PinStep::Enter => {
                    let Some(pin) = pin else {
                        return Err("the SIM PIN could not be read".into());
                    };
                    entered = true;
                    let r = conn
                        .command_as(
                            &format!("AT+CPIN=\"{}\"", pin.expose()),
                            "AT+CPIN=<pin>",
                            Duration::from_secs(20),
                        )
                        .await
                        .map_err(Failure::reason)?;
                    if let Err(f) = r {
                        let why = format!(
                            "the SIM refused the configured PIN ({f}); it is not tried again (that would lock the SIM to its PUK): correct modem.pin and restart lwgate"
                        );
                        self.pin_rejected = Some(why.clone());
                        return Err(why);
                    }
                    // The SIM takes a moment to read its files after the PIN.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err("the SIM stayed busy for 20 s".into())
    }

    /// Signal, operator and registration; said when they changed.
    async fn status(&mut self, conn: &mut Conn) -> Result<(), Failure> {
        if let Ok(lines) = conn.command("AT+CSQ", COMMAND_TIMEOUT).await? {
            self.state.signal_dbm = at::parse_csq(&lines);
        }
        if let Ok(lines) = conn.command("AT+COPS?", COMMAND_TIMEOUT).await? {
            self.state.operator = at::parse_cops(&lines);
        }
        if let Ok(lines) = conn.command("AT+CREG?", COMMAND_TIMEOUT).await? {
            self.state.registration = at::parse_creg(&lines);
        }
        // During the set-up, Ready says them.
        if self.state.link == Link::Ready {
            self.say_state();
        }
        Ok(())
    }

    /// Everything stored, as at a start after being away.
    async fn drain(&mut self, conn: &mut Conn) -> Result<(), Failure> {
        let lines = match conn.command("AT+CMGL=4", LIST_TIMEOUT).await? {
            Ok(lines) => lines,
            Err(_) => return Ok(()),
        };
        for l in lines {
            if let (Some(index), Some(pdu)) = (at::cmgl_index(&l.text), l.pdu) {
                self.received(Tag::Stored(index), &pdu);
            }
        }
        Ok(())
    }

    async fn on_urc(&mut self, conn: &mut Conn, urc: Urc) -> Result<(), Failure> {
        match urc {
            Urc::Cmti { index, .. } => {
                if !self.to_read.contains(&index) {
                    self.to_read.push_back(index);
                }
            }
            Urc::Cmt { pdu, .. } => {
                // First, within the modem's timeout; what follows may take longer.
                if self.ack_needed {
                    conn.command("AT+CNMA", COMMAND_TIMEOUT).await?.ok();
                }
                match pdu {
                    Some(pdu) => self.received(Tag::Direct, &pdu),
                    None => self.queue(
                        Some(ModemEvent::Discarded {
                            sender: None,
                            reason: "+CMT came without its PDU line".into(),
                        }),
                        Vec::new(),
                    ),
                }
            }
            Urc::Other(_) => {}
        }
        Ok(())
    }

    /// A stored message already read (listed and announced both) is not read twice.
    fn holds(&self, index: u32) -> bool {
        let tag = Tag::Stored(index);
        self.out.iter().any(|o| o.delete.contains(&index)) || self.concat.tags().any(|t| *t == tag)
    }

    async fn read_stored(&mut self, conn: &mut Conn, index: u32) -> Result<(), Failure> {
        if self.holds(index) {
            return Ok(());
        }
        // An error (nothing at that index) leaves nothing to read.
        if let Ok(lines) = conn
            .command(&format!("AT+CMGR={index}"), COMMAND_TIMEOUT)
            .await?
        {
            if let Some(pdu) = lines.into_iter().find_map(|l| l.pdu) {
                self.received(Tag::Stored(index), &pdu);
            }
        }
        Ok(())
    }

    fn received(&mut self, tag: Tag, hex: &str) {
        let delete = |t: Tag| match t {
            Tag::Stored(i) => vec![i],
            Tag::Direct => Vec::new(),
        };
        let d = match pdu::decode_deliver(hex) {
            Ok(d) => d,
            Err(e) => {
                let reason = match tag {
                    Tag::Stored(i) => format!("undecodable SMS at index {i}: {e}"),
                    Tag::Direct => format!("undecodable SMS: {e}"),
                };
                self.queue(
                    Some(ModemEvent::Discarded {
                        sender: None,
                        reason,
                    }),
                    delete(tag),
                );
                return;
            }
        };
        let sender = d.sender.to_string();
        let time = d.timestamp.unix().map_or_else(unix_now, |t| t as f64);
        let alphabet = d.dcs.alphabet();
        let sms = |data: Vec<u8>, time: f64, parts: u8| {
            let text = UserData {
                header: None,
                body: data.clone(),
            }
            .text(d.dcs);
            Sms {
                sender: sender.clone(),
                data,
                time,
                text,
                alphabet,
                parts,
            }
        };
        let Some(c) = d.concat().filter(|c| c.total > 1) else {
            let s = sms(d.user_data.body.clone(), time, 1);
            self.queue(Some(ModemEvent::Sms(s)), delete(tag));
            return;
        };
        let key = concat::Key {
            sender: sender.clone(),
            reference: c.reference,
            total: c.total,
        };
        let now = self.clock.elapsed().as_secs_f64();
        match self
            .concat
            .push(now, key, c.seq, time, d.user_data.body.clone(), tag)
        {
            Outcome::Complete(w) => {
                let s = sms(w.data, w.time, c.total);
                let delete = w.tags.into_iter().flat_map(delete).collect();
                self.queue(Some(ModemEvent::Sms(s)), delete);
            }
            Outcome::Pending { evicted } => {
                if let Some(d) = evicted {
                    self.dropped(d);
                }
            }
            Outcome::Duplicate(t) => self.queue(None, delete(t)),
            Outcome::Refused(d) => self.dropped(d),
        }
    }

    fn dropped(&mut self, d: concat::Dropped<Tag>) {
        let delete = d
            .tags
            .iter()
            .filter_map(|t| match t {
                Tag::Stored(i) => Some(*i),
                Tag::Direct => None,
            })
            .collect();
        let reason = format!(
            "concatenated SMS (reference {}, {} of {} parts) dropped: {}",
            d.key.reference, d.received, d.key.total, d.reason
        );
        self.queue(
            Some(ModemEvent::Discarded {
                sender: Some(d.key.sender),
                reason,
            }),
            delete,
        );
    }

    /// `Err` only when the port failed; the modem's refusals are the reply's.
    async fn send(
        &mut self,
        conn: &mut Conn,
        number: &str,
        data: &[u8],
    ) -> Result<Result<Sent, SendError>, Failure> {
        self.reference = self.reference.wrapping_add(1);
        let parts = match pdu::encode_submit(number, data, Reference::Eight(self.reference)) {
            Ok(p) => p,
            Err(e) => return Ok(Err(SendError::Invalid(e.to_string()))),
        };
        let mut references = Vec::with_capacity(parts.len());
        let n = parts.len();
        for (i, p) in parts.iter().enumerate() {
            match conn.submit(p.tpdu_len, &p.hex).await? {
                Ok(lines) => references.push(at::cmgs_reference(&lines).unwrap_or(0)),
                Err(f) => {
                    let which = if n > 1 {
                        format!("part {} of {n}", i + 1)
                    } else {
                        "the SMS".into()
                    };
                    return Ok(Err(SendError::Failed(format!(
                        "the modem refused {which}: {f}"
                    ))));
                }
            }
        }
        Ok(Ok(Sent { references }))
    }
}
