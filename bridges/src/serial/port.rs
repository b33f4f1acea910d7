//! One serial device on its tty: the port opened (and reopened with back-off when
//! it vanishes), frames cut and parsed as they come (an instrument that streams),
//! the poll command sent every period with its reply awaited, writes and executes
//! sent between polls, one transaction at a time.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_serial::SerialPortBuilderExt;

use super::config::{Flow, SerialConfig};
use super::framing::Framer;
use super::parse;
use crate::coalesce::Coalescer;
use crate::device::{Availability, Command, CommandError, Event, EventTx, Stats, Value};
use crate::modbus::config::Parity;

const TICK: Duration = Duration::from_millis(50);

type Reply = tokio::sync::oneshot::Sender<Result<(), CommandError>>;

pub(crate) fn spawn(
    id: String,
    config: SerialConfig,
    events: EventTx,
) -> (mpsc::UnboundedSender<Command>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let dev = Dev {
        id,
        framer: Framer::new(
            config.framing.clone(),
            config.max_frame,
            Duration::from_millis(config.frame_timeout_ms),
        ),
        config,
        events,
        state: Availability::Starting,
        stats: Stats::default(),
        held: Coalescer::default(),
        last_good: Instant::now(),
        last_time: None,
        pending: VecDeque::new(),
        busy: None,
    };
    (tx, tokio::spawn(dev.run(rx)))
}

enum Busy {
    Poll { deadline: Instant },
    Command { deadline: Instant, reply: Reply },
}

struct Dev {
    id: String,
    config: SerialConfig,
    framer: Framer,
    events: EventTx,
    state: Availability,
    stats: Stats,
    held: Coalescer,
    last_good: Instant,
    /// The last value of the time point (the last fix's time).
    last_time: Option<f64>,
    /// Commands waiting for the line: (bytes, reply).
    pending: VecDeque<(Vec<u8>, Reply)>,
    busy: Option<Busy>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `MEAS?\r\n` as the journal shows it.
fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

fn open(c: &SerialConfig) -> tokio_serial::Result<tokio_serial::SerialStream> {
    use tokio_serial::{DataBits, FlowControl, StopBits};
    tokio_serial::new(&c.tty, c.baud)
        .parity(match c.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .data_bits(match c.data_bits {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        })
        .stop_bits(if c.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        })
        .flow_control(match c.flow {
            Flow::None => FlowControl::None,
            Flow::Software => FlowControl::Software,
            Flow::Hardware => FlowControl::Hardware,
        })
        .open_native_async()
}

impl Dev {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let port = match open(&self.config) {
                Ok(p) => p,
                Err(e) => {
                    let reason = format!("cannot open {}: {e}", self.config.tty);
                    self.set_state(Availability::Down { reason }).await;
                    if !self.wait(&mut rx, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2)
                        .min(Duration::from_millis(self.config.reconnect_max_ms.max(200)));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            match self.serve(port, &mut rx).await {
                Some(reason) => self.set_state(Availability::Down { reason }).await,
                None => return,
            }
            self.fail_all("the port was lost");
        }
    }

    /// Waits out a back-off, refusing commands meanwhile. False: the device was stopped.
    async fn wait(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>, d: Duration) -> bool {
        let until = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        let why = match &self.state {
                            Availability::Down { reason } => reason.clone(),
                            _ => "the port is not open".into(),
                        };
                        answer(cmd, Err(CommandError::Unavailable(why)));
                    }
                    None => return false,
                },
            }
        }
    }

    fn fail_all(&mut self, why: &str) {
        if let Some(Busy::Command { reply, .. }) = self.busy.take() {
            let _ = reply.send(Err(CommandError::Unavailable(why.into())));
        }
        for (_, reply) in self.pending.drain(..) {
            let _ = reply.send(Err(CommandError::Unavailable(why.into())));
        }
    }

    /// Serves the open port. Some(why) when it was lost, None when the device was stopped.
    async fn serve(
        &mut self,
        mut port: tokio_serial::SerialStream,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<String> {
        let mut buf = [0u8; 512];
        let mut tick = tokio::time::interval(TICK);
        let poll_every = Duration::from_millis(self.config.poll_ms);
        let mut next_poll = Instant::now();
        loop {
            // Start the next transaction when the line is free.
            if self.busy.is_none() {
                let now = Instant::now();
                let out = if let Some((bytes, reply)) = self.pending.pop_front() {
                    let deadline = now + Duration::from_millis(self.config.reply_timeout_ms);
                    self.busy = Some(Busy::Command { deadline, reply });
                    Some(bytes)
                } else if let Some(p) = self.config.poll.clone().filter(|_| now >= next_poll) {
                    next_poll = now + poll_every;
                    self.stats.requests += 1;
                    let deadline = now + Duration::from_millis(self.config.reply_timeout_ms);
                    self.busy = Some(Busy::Poll { deadline });
                    Some(p)
                } else {
                    None
                };
                if let Some(bytes) = out {
                    if let Err(e) = port.write_all(&bytes).await {
                        return Some(format!("{}: write failed: {e}", self.config.tty));
                    }
                }
            }
            tokio::select! {
                n = port.read(&mut buf) => match n {
                    Ok(0) => return Some(format!("{} closed", self.config.tty)),
                    Ok(n) => {
                        let frames = self.framer.push(&buf[..n], Instant::now());
                        for f in frames {
                            self.frame(&f).await;
                        }
                    }
                    Err(e) => return Some(format!("{}: {e}", self.config.tty)),
                },
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return None,
                },
                _ = tick.tick() => self.tick().await,
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let rid = match &cmd {
            Command::Write { id, .. } | Command::Execute { id, .. } => *id,
        };
        let Some(p) = self.config.points.iter().find(|p| p.path == rid) else {
            return answer(cmd, Err(CommandError::NotAllowed(rid)));
        };
        let path = rid.to_string();
        let (template, var, reply) = match cmd {
            Command::Write { value, reply, .. } => {
                let text = match value {
                    Value::Bool(b) => u8::from(b).to_string(),
                    Value::Int(i) => i.to_string(),
                    Value::Float(f) => f.to_string(),
                    Value::Text(t) => t,
                    Value::Opaque(_) => {
                        let _ = reply.send(Err(CommandError::BadValue(
                            "an opaque value cannot be sent as text".into(),
                        )));
                        return;
                    }
                };
                (p.write.clone(), ("value", text), reply)
            }
            Command::Execute { args, reply, .. } => (p.execute.clone(), ("args", args), reply),
        };
        let Some(t) = template else {
            let _ = reply.send(Err(CommandError::NotAllowed(rid)));
            return;
        };
        let text = String::from_utf8_lossy(&t)
            .replace(&format!("{{{}}}", var.0), &var.1)
            .replace("{path}", &path);
        self.pending.push_back((text.into_bytes(), reply));
    }

    async fn frame(&mut self, f: &[u8]) {
        if let Some(Busy::Command { .. }) = &self.busy {
            let Some(Busy::Command { reply, .. }) = self.busy.take() else {
                return;
            };
            let text = shown(f);
            let ok = self
                .config
                .reply_ok
                .as_ref()
                .is_none_or(|r| r.0.is_match(&text));
            let _ = reply.send(if ok {
                Ok(())
            } else {
                Err(CommandError::Failed(format!(
                    "the device answered {text:?}"
                )))
            });
            return;
        }
        match parse::values(&self.config, f) {
            Ok((values, misses)) => {
                self.stats.errors += misses as u64;
                if values.is_empty() {
                    if misses > 0 {
                        self.send_stats();
                    }
                    return;
                }
                if matches!(self.busy, Some(Busy::Poll { .. })) {
                    self.busy = None;
                }
                let now = unix_now();
                let time = self
                    .config
                    .time_point
                    .and_then(|t| values.iter().find(|(r, _)| *r == t))
                    .and_then(|(_, v)| match v {
                        Value::Int(i) if *i > 0 => Some(*i as f64),
                        Value::Float(x) if *x > 0.0 => Some(*x),
                        _ => None,
                    });
                // A frame without the time point (a GPS's GGA beside its RMC)
                // belongs to the last fix: coalesced with it, it keeps its time.
                if time.is_some() {
                    self.last_time = time;
                }
                let time = time
                    .or(self.config.time_point.and(self.last_time))
                    .unwrap_or(now);
                self.stats.last_ok = Some(now);
                self.last_good = Instant::now();
                if self.held.hold(time, values) {
                    self.stats.dropped_values += 1;
                }
                self.emit();
                self.set_state(Availability::Up).await;
            }
            Err(_) => {
                self.stats.errors += 1;
                self.send_stats();
            }
        }
    }

    /// Sends the held values when the interval allows.
    fn emit(&mut self) {
        let interval = Duration::from_millis(self.config.min_interval_ms);
        let Some((time, values)) = self.held.take(Instant::now(), interval) else {
            return;
        };
        if self
            .events
            .try_send((self.id.clone(), Event::Values { time, values }))
            .is_err()
        {
            self.stats.dropped_values += 1;
        }
        self.send_stats();
    }

    fn send_stats(&mut self) {
        let d = &self.framer.dropped;
        let mut s = self.stats.clone();
        s.errors += d.overlong + d.timed_out;
        let _ = self.events.try_send((self.id.clone(), Event::Stats(s)));
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        self.framer.expire(now);
        self.emit();
        match &self.busy {
            Some(Busy::Poll { deadline }) if *deadline <= now => {
                self.busy = None;
                self.stats.timeouts += 1;
                let poll = self.config.poll.as_deref().map(shown).unwrap_or_default();
                let reason = format!(
                    "no reply to {poll:?} within {} ms on {}",
                    self.config.reply_timeout_ms, self.config.tty
                );
                self.set_state(Availability::Down { reason }).await;
                self.send_stats();
            }
            Some(Busy::Command { deadline, .. }) if *deadline <= now => {
                if let Some(Busy::Command { reply, .. }) = self.busy.take() {
                    let _ = reply.send(Err(CommandError::Failed(format!(
                        "no reply within {} ms",
                        self.config.reply_timeout_ms
                    ))));
                }
            }
            _ => {}
        }
        if self.config.silence_s > 0
            && !matches!(self.state, Availability::Down { .. })
            && now.duration_since(self.last_good) >= Duration::from_secs(self.config.silence_s)
        {
            let reason = format!(
                "no good frame on {} for {} s",
                self.config.tty, self.config.silence_s
            );
            self.set_state(Availability::Down { reason }).await;
        }
    }

    async fn set_state(&mut self, state: Availability) {
        if self.state == state {
            return;
        }
        self.state = state.clone();
        let _ = self
            .events
            .send((
                self.id.clone(),
                Event::Availability {
                    state,
                    time: unix_now(),
                },
            ))
            .await;
        self.send_stats();
    }
}

pub(crate) fn answer(cmd: Command, result: Result<(), CommandError>) {
    match cmd {
        Command::Write { reply, .. } | Command::Execute { reply, .. } => {
            let _ = reply.send(result);
        }
    }
}
