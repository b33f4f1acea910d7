//! The task that owns one bus (a serial line, or a TCP host:port) and serves every
//! device (unit id) on it.
//!
//! Requests on a bus are strictly one at a time: the task is the only owner of the
//! connection and awaits each answer (or its timeout) before the next request, so
//! two devices on one RS-485 line can never talk over each other. Devices are
//! polled earliest deadline first; commands wait only for the poll in progress.
//! A device that stops answering is probed less and less often (and with a single
//! try), so it costs the others at most one timeout per probe.
//!
//! After its first poll a device is polled on a grid shared by the whole process
//! (multiples of its period from one epoch): devices with the same period, on
//! every bus, are read at the same moments, so the agent takes their values in one
//! burst — one wake-up, one commit — instead of a hundred scattered ones.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_modbus::{Request, Response};

use super::codec::{self, Encoded, RegisterKind};
use super::config::{ModbusConfig, PointConfig};
use super::link::{exception_name, Failure, Link};
use super::plan::ReadRequest;
use crate::device::{Availability, Command, CommandError, Event, EventTx, Stats, Value};

/// The first moment of the process's poll grid.
static GRID_EPOCH: OnceLock<Instant> = OnceLock::new();

/// The first point of the poll grid of `period` after `now`.
fn next_slot(epoch: Instant, now: Instant, period: Duration) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let slots = now.saturating_duration_since(epoch).as_nanos() / period_ns + 1;
    let offset = u64::try_from(slots * period_ns).unwrap_or(u64::MAX);
    epoch + Duration::from_nanos(offset)
}

fn next_poll_after(now: Instant, period: Duration) -> Instant {
    next_slot(*GRID_EPOCH.get_or_init(Instant::now), now, period)
}

/// A device as its bus task serves it.
#[derive(Debug, Clone)]
pub(crate) struct DeviceSetup {
    pub(crate) id: String,
    pub(crate) config: ModbusConfig,
    /// Indexes into `config.points`.
    pub(crate) plan: Arc<[ReadRequest<usize>]>,
}

#[derive(Debug)]
pub(crate) enum BusMsg {
    /// Starts (or restarts, with a new configuration) a device.
    Add(Box<DeviceSetup>),
    Remove(String),
    Command(String, Command),
}

/// Wait before reconnecting after the first failure; doubled after each failure up
/// to the devices' `reconnect_max_ms`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) fn spawn(
    first: &DeviceSetup,
    events: EventTx,
) -> (mpsc::UnboundedSender<BusMsg>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let bus = Bus {
        link: Link::new(first.config.transport.clone()),
        events,
        devices: Vec::new(),
        pending: VecDeque::new(),
        last_end: None,
        backoff: FIRST_BACKOFF,
        reconnect_at: None,
        down_reason: String::new(),
    };
    (tx, tokio::spawn(bus.run(rx)))
}

struct Dev {
    setup: DeviceSetup,
    next_poll: Instant,
    /// Interval between probes of a device that stopped answering; zero while it
    /// answers.
    probe_every: Duration,
    state: Availability,
    stats: Stats,
    /// Answered Mask Write Register (FC 22) with "illegal function": bits of a
    /// holding register are then written by read-modify-write.
    no_mask_write: bool,
}

impl Dev {
    fn silent(&self) -> bool {
        !self.probe_every.is_zero()
    }
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.setup.config.timeout_ms)
    }
    fn unit(&self) -> u8 {
        self.setup.config.unit
    }
}

struct Bus {
    link: Link,
    events: EventTx,
    devices: Vec<Dev>,
    pending: VecDeque<(String, Command)>,
    /// When the last request ended, for the pause between requests.
    last_end: Option<Instant>,
    backoff: Duration,
    /// No new connection before this, after one failed.
    reconnect_at: Option<Instant>,
    down_reason: String,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Bus {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<BusMsg>) {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(m) => self.take(m),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            if let Some((id, cmd)) = self.pending.pop_front() {
                self.command(&id, cmd).await;
                continue;
            }
            let due = self.next_due();
            let wait = async {
                match due {
                    Some((_, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => self.take(m),
                    None => return,
                },
                () = wait => {
                    if let Some((i, _)) = due {
                        self.poll(i).await;
                    }
                }
            }
        }
    }

    fn take(&mut self, m: BusMsg) {
        match m {
            BusMsg::Add(setup) => {
                self.devices.retain(|d| d.setup.id != setup.id);
                self.devices.push(Dev {
                    setup: *setup,
                    next_poll: Instant::now(),
                    probe_every: Duration::ZERO,
                    state: Availability::Starting,
                    stats: Stats::default(),
                    no_mask_write: false,
                });
            }
            BusMsg::Remove(id) => {
                self.devices.retain(|d| d.setup.id != id);
                let (gone, kept) = std::mem::take(&mut self.pending)
                    .into_iter()
                    .partition(|(d, _)| *d == id);
                self.pending = kept;
                for (_, cmd) in gone {
                    answer(
                        cmd,
                        Err(CommandError::Unavailable("the device was stopped".into())),
                    );
                }
                if self.devices.is_empty() {
                    self.link.close();
                    self.backoff = FIRST_BACKOFF;
                    self.reconnect_at = None;
                }
            }
            BusMsg::Command(id, cmd) => self.pending.push_back((id, cmd)),
        }
    }

    /// The device polled next and when; while the bus waits to reconnect, nobody is
    /// due before then.
    fn next_due(&self) -> Option<(usize, Instant)> {
        let floor = match (self.link.is_open(), self.reconnect_at) {
            (false, Some(at)) => Some(at),
            _ => None,
        };
        self.devices
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.setup.plan.is_empty())
            .map(|(i, d)| (i, floor.map_or(d.next_poll, |f| f.max(d.next_poll))))
            .min_by_key(|&(_, at)| at)
    }

    fn delay(&self) -> Duration {
        let ms = self.devices.iter().map(|d| d.setup.config.delay_ms).max();
        Duration::from_millis(ms.unwrap_or(0))
    }

    fn reconnect_max(&self) -> Duration {
        let ms = self
            .devices
            .iter()
            .map(|d| d.setup.config.reconnect_max_ms)
            .max();
        Duration::from_millis(ms.unwrap_or(30_000))
    }

    /// One request to device `i`, with up to `tries` tries on timeouts.
    async fn request(
        &mut self,
        i: usize,
        request: Request<'static>,
        tries: u32,
    ) -> Result<Response, Failure> {
        let (unit, timeout) = (self.devices[i].unit(), self.devices[i].timeout());
        let mut stray = 0;
        for _ in 0..tries.max(1) {
            if !self.link.is_open() {
                if self.reconnect_at.is_some_and(|at| at > Instant::now()) {
                    return Err(Failure::Link(self.down_reason.clone()));
                }
                if let Err(reason) = self.link.open(timeout).await {
                    self.link_failed(reason.clone());
                    self.all_down(&reason).await;
                    return Err(Failure::Link(reason));
                }
            }
            if let Some(end) = self.last_end {
                tokio::time::sleep_until(end + self.delay()).await;
            }
            self.devices[i].stats.requests += 1;
            let result = self.link.call(unit, request.clone(), timeout).await;
            self.last_end = Some(Instant::now());
            let stats = &mut self.devices[i].stats;
            match result {
                Ok(response) => {
                    self.backoff = FIRST_BACKOFF;
                    return Ok(response);
                }
                Err(Failure::Exception(code)) => {
                    stats.exceptions += 1;
                    self.backoff = FIRST_BACKOFF;
                    return Err(Failure::Exception(code));
                }
                Err(Failure::Timeout { stray: n }) => {
                    stats.timeouts += 1;
                    stray += n;
                }
                Err(Failure::Link(reason)) => {
                    stats.errors += 1;
                    self.link_failed(reason.clone());
                    return Err(Failure::Link(reason));
                }
            }
        }
        Err(Failure::Timeout { stray })
    }

    fn link_failed(&mut self, reason: String) {
        self.link.close();
        self.reconnect_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(self.reconnect_max());
        self.down_reason = reason;
    }

    /// The bus cannot be reached: no device on it can.
    async fn all_down(&mut self, reason: &str) {
        for i in 0..self.devices.len() {
            self.set_state(
                i,
                Availability::Down {
                    reason: reason.to_string(),
                },
            )
            .await;
        }
    }

    async fn set_state(&mut self, i: usize, state: Availability) {
        let d = &mut self.devices[i];
        if d.state == state {
            return;
        }
        d.state = state.clone();
        let id = d.setup.id.clone();
        let stats = d.stats.clone();
        let time = unix_now();
        // The agent must hear every change; a closed channel means it is stopping.
        let _ = self
            .events
            .send((id.clone(), Event::Availability { state, time }))
            .await;
        let _ = self.events.try_send((id, Event::Stats(stats)));
    }

    fn tries(&self, i: usize) -> u32 {
        let d = &self.devices[i];
        if d.silent() {
            1
        } else {
            1 + d.setup.config.retries
        }
    }

    async fn poll(&mut self, i: usize) {
        let plan = Arc::clone(&self.devices[i].setup.plan);
        let tries = self.tries(i);
        let started = Instant::now();
        let mut values = Vec::new();
        for req in plan.iter() {
            let result = self.request(i, read_request(req), tries).await;
            let outcome = result.and_then(|r| self.decode(i, req, r, &mut values));
            if let Err(f) = outcome {
                self.poll_failed(i, req, f, tries, started).await;
                return;
            }
        }
        let time = unix_now();
        let d = &mut self.devices[i];
        d.stats.last_ok = Some(time);
        d.probe_every = Duration::ZERO;
        let period = Duration::from_millis(d.setup.config.poll_ms);
        d.next_poll = next_poll_after(Instant::now(), period);
        let (id, stats) = (d.setup.id.clone(), d.stats.clone());
        // A full channel drops values rather than stalling the bus: the next poll
        // brings fresh ones.
        if self
            .events
            .try_send((id.clone(), Event::Values { time, values }))
            .is_err()
        {
            self.devices[i].stats.dropped_values += 1;
        }
        self.set_state(i, Availability::Up).await;
        let _ = self.events.try_send((id, Event::Stats(stats)));
    }

    fn decode(
        &mut self,
        i: usize,
        req: &ReadRequest<usize>,
        response: Response,
        values: &mut Vec<(crate::device::ResourceId, Value)>,
    ) -> Result<(), Failure> {
        let points = &self.devices[i].setup.config.points;
        let malformed = |e: super::plan::PlanError| Failure::Link(e.to_string());
        let mut put = |p: &PointConfig, v: Result<codec::Value, codec::CodecError>| {
            // A point that reads as nothing sensible (NaN, broken UTF-8) is left
            // out; the others of the poll still count.
            if let Ok(v) = v {
                values.push((p.path, device_value(v)));
            }
        };
        match response {
            Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
                for (&idx, items) in req.split(&bits).map_err(malformed)? {
                    let p = &points[idx];
                    put(
                        p,
                        p.codec.decode_bit(items.first().copied().unwrap_or(false)),
                    );
                }
            }
            Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
                for (&idx, items) in req.split(&words).map_err(malformed)? {
                    let p = &points[idx];
                    put(p, p.codec.decode_registers(items));
                }
            }
            other => {
                return Err(Failure::Link(format!(
                    "unexpected answer {other:?} to a read"
                )))
            }
        }
        Ok(())
    }

    async fn poll_failed(
        &mut self,
        i: usize,
        req: &ReadRequest<usize>,
        f: Failure,
        tries: u32,
        started: Instant,
    ) {
        let now = Instant::now();
        let d = &mut self.devices[i];
        let period = Duration::from_millis(d.setup.config.poll_ms);
        let unit = d.unit();
        let reason = match f {
            Failure::Exception(code) => {
                d.next_poll = next_poll_after(now, period);
                format!(
                    "unit {unit}: exception {code} ({}) reading {}",
                    exception_name(code),
                    span(req.kind, req.address, req.count)
                )
            }
            Failure::Timeout { stray } => {
                let was_silent = d.silent();
                // Probe a silent device less often, so that the others on the bus
                // keep their rate.
                let cap = Duration::from_millis(d.setup.config.reconnect_max_ms);
                d.probe_every = (d.probe_every * 2).max(period).min(cap.max(period));
                d.next_poll = started + d.probe_every;
                if was_silent {
                    return;
                }
                no_answer(unit, d.setup.config.timeout_ms, tries, stray)
            }
            Failure::Link(reason) => {
                d.next_poll = next_poll_after(now, period);
                reason
            }
        };
        self.set_state(i, Availability::Down { reason }).await;
    }

    async fn command(&mut self, id: &str, cmd: Command) {
        let Some(i) = self.devices.iter().position(|d| d.setup.id == id) else {
            answer(
                cmd,
                Err(CommandError::Unavailable(
                    "the device is not started".into(),
                )),
            );
            return;
        };
        let (_, address, encoded, reply, tries) = match cmd {
            Command::Write {
                id: rid,
                value,
                reply,
            } => {
                let point = self.devices[i]
                    .setup
                    .config
                    .points
                    .iter()
                    .find(|p| p.path == rid && p.writable);
                let Some(point) = point else {
                    let _ = reply.send(Err(CommandError::NotAllowed(rid)));
                    return;
                };
                let encoded = match codec_value(value)
                    .and_then(|v| point.codec.encode(&v).map_err(|e| e.to_string()))
                {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = reply.send(Err(CommandError::BadValue(e)));
                        return;
                    }
                };
                // Writing the same value twice does no harm, so a timed-out write
                // is tried again.
                let tries = self.tries(i);
                (rid, point.address, encoded, reply, tries)
            }
            Command::Execute { id: rid, reply, .. } => {
                let point = self.devices[i]
                    .setup
                    .config
                    .points
                    .iter()
                    .find(|p| p.path == rid);
                let Some((address, Some(encoded))) = point.map(|p| (p.address, p.execute.clone()))
                else {
                    let _ = reply.send(Err(CommandError::NotAllowed(rid)));
                    return;
                };
                // A command (a pulse) may have been carried out even when its
                // answer was lost: never sent twice.
                (rid, address, encoded, reply, 1)
            }
        };
        let result = self.write(i, address, &encoded, tries).await;
        let unit = self.devices[i].unit();
        let timeout_ms = self.devices[i].setup.config.timeout_ms;
        let answer = match result {
            Ok(()) => {
                // Read it back soon, so the new value is reported.
                self.devices[i].next_poll = Instant::now();
                Ok(())
            }
            Err(Failure::Exception(code)) => Err(CommandError::Failed(format!(
                "unit {unit}: exception {code} ({}) writing {}",
                exception_name(code),
                written(&encoded, address)
            ))),
            Err(Failure::Timeout { stray }) => Err(CommandError::Failed(no_answer(
                unit, timeout_ms, tries, stray,
            ))),
            Err(Failure::Link(reason)) => Err(CommandError::Unavailable(reason)),
        };
        let _ = reply.send(answer);
    }

    async fn write(
        &mut self,
        i: usize,
        address: u16,
        encoded: &Encoded,
        tries: u32,
    ) -> Result<(), Failure> {
        let request = match encoded {
            Encoded::Bit(b) => Request::WriteSingleCoil(address, *b),
            Encoded::Registers(words) if words.len() == 1 => {
                Request::WriteSingleRegister(address, words[0])
            }
            Encoded::Registers(words) => {
                Request::WriteMultipleRegisters(address, Cow::Owned(words.clone()))
            }
            Encoded::RegisterBit { .. } => return self.write_bit(i, address, encoded, tries).await,
        };
        self.request(i, request, tries).await.map(|_| ())
    }

    /// One bit of a holding register: Mask Write Register, or read-modify-write
    /// for devices without it.
    async fn write_bit(
        &mut self,
        i: usize,
        address: u16,
        encoded: &Encoded,
        tries: u32,
    ) -> Result<(), Failure> {
        if !self.devices[i].no_mask_write {
            if let Some((and, or)) = encoded.masks() {
                match self
                    .request(i, Request::MaskWriteRegister(address, and, or), tries)
                    .await
                {
                    Err(Failure::Exception(1)) => self.devices[i].no_mask_write = true,
                    other => return other.map(|_| ()),
                }
            }
        }
        let current = match self
            .request(i, Request::ReadHoldingRegisters(address, 1), tries)
            .await?
        {
            Response::ReadHoldingRegisters(words) if words.len() == 1 => words[0],
            other => {
                return Err(Failure::Link(format!(
                    "unexpected answer {other:?} to a read of holding register {address}"
                )))
            }
        };
        let Some(new) = encoded.apply_to(current) else {
            return Ok(());
        };
        self.request(i, Request::WriteSingleRegister(address, new), tries)
            .await
            .map(|_| ())
    }
}

fn no_answer(unit: u8, timeout_ms: u64, tries: u32, stray: usize) -> String {
    let s = if tries == 1 { "try" } else { "tries" };
    if stray == 0 {
        format!("unit {unit} did not answer within {timeout_ms} ms ({tries} {s})")
    } else {
        format!(
            "unit {unit} gave no valid answer within {timeout_ms} ms ({tries} {s}): {stray} bytes that make no Modbus frame (bad CRC or noise)"
        )
    }
}

fn read_request(req: &ReadRequest<usize>) -> Request<'static> {
    match req.kind {
        RegisterKind::Coil => Request::ReadCoils(req.address, req.count),
        RegisterKind::DiscreteInput => Request::ReadDiscreteInputs(req.address, req.count),
        RegisterKind::InputRegister => Request::ReadInputRegisters(req.address, req.count),
        RegisterKind::HoldingRegister => Request::ReadHoldingRegisters(req.address, req.count),
    }
}

/// "holding register 40" or "holding registers 100-109".
fn span(kind: RegisterKind, address: u16, count: u16) -> String {
    if count <= 1 {
        format!("{kind} {address}")
    } else {
        let last = u32::from(address) + u32::from(count) - 1;
        format!("{kind}s {address}-{last}")
    }
}

fn written(encoded: &Encoded, address: u16) -> String {
    match encoded {
        Encoded::Bit(_) => span(RegisterKind::Coil, address, 1),
        Encoded::Registers(words) => span(
            RegisterKind::HoldingRegister,
            address,
            u16::try_from(words.len()).unwrap_or(u16::MAX),
        ),
        Encoded::RegisterBit { .. } => span(RegisterKind::HoldingRegister, address, 1),
    }
}

pub(crate) fn answer(cmd: Command, result: Result<(), CommandError>) {
    match cmd {
        Command::Write { reply, .. } | Command::Execute { reply, .. } => {
            let _ = reply.send(result);
        }
    }
}

/// Values the agent understands; an unsigned 64-bit value beyond i64 becomes a
/// float, the nearest the device interface has.
fn device_value(v: codec::Value) -> Value {
    match v {
        codec::Value::Bool(b) => Value::Bool(b),
        codec::Value::Int(i) => Value::Int(i),
        codec::Value::UInt(u) => i64::try_from(u).map_or(Value::Float(u as f64), Value::Int),
        codec::Value::Float(x) => Value::Float(x),
        codec::Value::Text(s) => Value::Text(s),
    }
}

fn codec_value(v: Value) -> Result<codec::Value, String> {
    Ok(match v {
        Value::Bool(b) => codec::Value::Bool(b),
        Value::Int(i) => codec::Value::Int(i),
        Value::Float(x) => codec::Value::Float(x),
        Value::Text(s) => codec::Value::Text(s),
        Value::Opaque(_) => {
            return Err("expected a boolean, number or text, got opaque bytes".into())
        }
    })
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn the_next_slot_is_the_first_grid_point_after_now() {
        let epoch = Instant::now();
        let s = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert_eq!(next_slot(epoch, epoch, s), epoch + s);
        assert_eq!(next_slot(epoch, epoch + ms(3), s), epoch + s);
        assert_eq!(next_slot(epoch, epoch + ms(999), s), epoch + s);
        // Exactly on a point: the next one (a poll at a slot never repeats it).
        assert_eq!(next_slot(epoch, epoch + s, s), epoch + 2 * s);
        // An overrun skips to the next point instead of polling late twice.
        assert_eq!(next_slot(epoch, epoch + ms(2500), s), epoch + 3 * s);
        // Devices with the same period share the grid whenever they were added.
        let a = next_slot(epoch, epoch + ms(10_123), ms(250));
        let b = next_slot(epoch, epoch + ms(10_201), ms(250));
        assert_eq!((a, b), (epoch + ms(10_250), epoch + ms(10_250)));
        // A zero period cannot divide by zero.
        assert!(next_slot(epoch, epoch + ms(5), Duration::ZERO) > epoch + ms(5));
    }
}
