//! One broker connection serving every MQTT device (and discovering file) on it:
//! a persistent session (clean_session = false, a stable client id) so messages
//! published at QoS 1 while lwgate was away are delivered after it reconnects;
//! subscriptions at QoS 1, made again when the broker lost the session; devices
//! found by topic; per-device rate limits; writes and executes published, answered
//! by the device's acknowledgement where one is configured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::config::{Broker, MqttConfig, Naming, Tls};
use super::mapping::{self, MapError};
use super::topic;
use crate::coalesce::Coalescer;
use crate::device::{Availability, Command, CommandError, Event, EventTx, Stats};

pub(crate) enum Msg {
    Add(String, Arc<MqttConfig>),
    Remove(String),
    Adopt(String, Vec<String>),
    Command(String, Command),
}

/// Discovered device → the file that found it; shared with `Brokers` to route commands.
pub(crate) type Owners = Arc<Mutex<HashMap<String, String>>>;

const TICK: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(crate) fn spawn(
    broker: &Broker,
    events: EventTx,
    owners: Owners,
) -> (mpsc::UnboundedSender<Msg>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut opts = MqttOptions::new(client_id(broker), broker.host.clone(), broker.port);
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(256 * 1024, 256 * 1024);
    match &broker.tls {
        Some(Tls::SystemTrust) => {
            opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Native));
        }
        Some(Tls::Ca(pem)) => {
            opts.set_transport(rumqttc::Transport::Tls(
                rumqttc::TlsConfiguration::SimpleNative {
                    ca: pem.clone(),
                    client_auth: None,
                },
            ));
        }
        None => {}
    }
    if let Some(u) = &broker.username {
        opts.set_credentials(u.clone(), broker.password.clone().unwrap_or_default());
    }
    let (client, eventloop) = AsyncClient::new(opts, 256);
    let (ev_tx, ev_rx) = mpsc::channel(256);
    let poller = tokio::spawn(poll(eventloop, ev_tx));
    let task = Task {
        client,
        events,
        owners,
        where_: format!("{}:{}", broker.host, broker.port),
        files: HashMap::new(),
        devices: HashMap::new(),
        waiting: Vec::new(),
        connected: false,
        broker_down: None,
    };
    (tx, tokio::spawn(task.run(rx, ev_rx, poller)))
}

/// The default client id: the host's name, so that each gateway has its own
/// persistent session on a shared broker and keeps it across restarts.
fn client_id(b: &Broker) -> String {
    if let Some(id) = &b.client_id {
        return id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("lwgate-{}", if host.is_empty() { "gateway" } else { &host })
}

/// The event loop on a task of its own (its `poll` is not safe to cancel in a
/// `select!`): events forwarded, errors forwarded and waited out with back-off.
async fn poll(mut el: EventLoop, tx: mpsc::Sender<Result<MqttEvent, String>>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match el.poll().await {
            Ok(ev) => {
                if matches!(ev, MqttEvent::Incoming(Packet::ConnAck(_))) {
                    backoff = Duration::from_millis(250);
                }
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if tx.send(Err(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

struct Dev {
    /// The file it comes from.
    file: String,
    /// What `{name}` stands for: the found name, or the declared device's id.
    name: String,
    state: Availability,
    stats: Stats,
    last_msg: Instant,
    /// Values waiting for the rate limit.
    held: Coalescer,
}

struct Waiting {
    topic: String,
    deadline: Instant,
    error_mark: Option<String>,
    reply: oneshot::Sender<Result<(), CommandError>>,
}

struct Task {
    client: AsyncClient,
    events: EventTx,
    owners: Owners,
    where_: String,
    files: HashMap<String, Arc<MqttConfig>>,
    /// By device id (a declared device: its file's id).
    devices: HashMap<String, Dev>,
    waiting: Vec<Waiting>,
    connected: bool,
    /// Why the broker cannot be reached, said once.
    broker_down: Option<String>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A found name that can be a path prefix: 1–64 of `[A-Za-z0-9._-]`, not a number.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !n.bytes().all(|b| b.is_ascii_digit())
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        mut ev_rx: mpsc::Receiver<Result<MqttEvent, String>>,
        poller: JoinHandle<()>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => self.message(m).await,
                    None => break,
                },
                ev = ev_rx.recv() => match ev {
                    Some(Ok(ev)) => self.mqtt(ev).await,
                    Some(Err(e)) => self.lost(e).await,
                    None => break,
                },
                _ = tick.tick() => self.tick().await,
            }
        }
        let _ = self.client.try_disconnect();
        poller.abort();
    }

    async fn message(&mut self, m: Msg) {
        match m {
            Msg::Add(id, config) => {
                if self.connected {
                    self.subscribe(&config);
                }
                if !config.discovers() {
                    self.add_device(&id, &id, &id);
                }
                self.files.insert(id, config);
            }
            Msg::Adopt(file, names) => {
                for n in names {
                    if valid_name(&n) && !self.devices.contains_key(&n) {
                        self.add_device(&n, &file, &n);
                    }
                }
            }
            Msg::Remove(id) => {
                self.files.remove(&id);
                let gone: Vec<String> = self
                    .devices
                    .iter()
                    .filter(|(_, d)| d.file == id)
                    .map(|(k, _)| k.clone())
                    .collect();
                if let Ok(mut o) = self.owners.lock() {
                    for g in &gone {
                        o.remove(g);
                    }
                }
                for g in gone {
                    self.devices.remove(&g);
                }
            }
            Msg::Command(id, cmd) => self.command(&id, cmd),
        }
    }

    fn add_device(&mut self, id: &str, file: &str, name: &str) {
        self.devices.insert(
            id.to_string(),
            Dev {
                file: file.to_string(),
                name: name.to_string(),
                state: Availability::Starting,
                stats: Stats::default(),
                last_msg: Instant::now(),
                held: Coalescer::default(),
            },
        );
        if id != file {
            if let Ok(mut o) = self.owners.lock() {
                o.insert(id.to_string(), file.to_string());
            }
        }
    }

    fn subscribe(&self, config: &MqttConfig) {
        for f in mapping::subscriptions(config) {
            let _ = self.client.try_subscribe(f, QoS::AtLeastOnce);
        }
        if let Some(t) = &config.response_topic {
            let _ = self
                .client
                .try_subscribe(t.replace("{name}", "+"), QoS::AtLeastOnce);
        }
    }

    async fn mqtt(&mut self, ev: MqttEvent) {
        match ev {
            MqttEvent::Incoming(Packet::ConnAck(ack)) => {
                self.connected = true;
                if !ack.session_present {
                    let files: Vec<Arc<MqttConfig>> = self.files.values().cloned().collect();
                    for f in files {
                        self.subscribe(&f);
                    }
                }
                if self.broker_down.take().is_some() {
                    let ids: Vec<String> = self.devices.keys().cloned().collect();
                    for id in ids {
                        self.set_state(&id, Availability::Up).await;
                    }
                }
            }
            MqttEvent::Incoming(Packet::Publish(p)) => {
                let topic = p.topic.clone();
                self.publish(&topic, &p.payload).await;
            }
            _ => {}
        }
    }

    async fn lost(&mut self, e: String) {
        self.connected = false;
        if self.broker_down.is_some() {
            return;
        }
        let reason = format!("cannot reach the MQTT broker {}: {e}", self.where_);
        self.broker_down = Some(reason.clone());
        let ids: Vec<String> = self.devices.keys().cloned().collect();
        for id in ids {
            self.set_state(
                &id,
                Availability::Down {
                    reason: reason.clone(),
                },
            )
            .await;
        }
    }

    async fn set_state(&mut self, id: &str, state: Availability) {
        let Some(d) = self.devices.get_mut(id) else {
            return;
        };
        if d.state == state {
            return;
        }
        d.state = state.clone();
        let stats = d.stats.clone();
        let time = unix_now();
        let _ = self
            .events
            .send((id.to_string(), Event::Availability { state, time }))
            .await;
        let _ = self.events.try_send((id.to_string(), Event::Stats(stats)));
    }

    async fn publish(&mut self, t: &str, payload: &[u8]) {
        // Acknowledgements first: they belong to no device's values.
        if let Some(i) = self
            .waiting
            .iter()
            .position(|w| topic::matches(&w.topic, t).is_some())
        {
            let w = self.waiting.remove(i);
            let text = String::from_utf8_lossy(payload);
            let failed = w
                .error_mark
                .as_ref()
                .is_some_and(|m| text.contains(m.as_str()));
            let _ = w.reply.send(if failed {
                Err(CommandError::Failed(format!(
                    "the device answered {text:?}"
                )))
            } else {
                Ok(())
            });
            return;
        }
        let arrival = unix_now();
        let files: Vec<(String, Arc<MqttConfig>)> = self
            .files
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (file, config) in files {
            if let Some((name, online)) = mapping::status(&config, t, payload) {
                let id = name.unwrap_or_else(|| file.clone());
                if self.devices.get(&id).is_some_and(|d| d.file == file) {
                    let state = if online {
                        Availability::Up
                    } else {
                        Availability::Down {
                            reason: format!("the device said {:?} on {t}", config.offline),
                        }
                    };
                    self.set_state(&id, state).await;
                }
                continue;
            }
            let mapped = mapping::map(&config, t, payload, arrival);
            let id = match &mapped {
                Ok(m) => match (&config.naming, &m.name) {
                    (Naming::Declared, _) => file.clone(),
                    (_, Some(n)) => n.clone(),
                    (_, None) => continue,
                },
                Err(MapError::NotOurs) => continue,
                // A bad payload is counted on the device it came from, when that is known.
                Err(_) => match &config.naming {
                    Naming::Declared => file.clone(),
                    Naming::Level(l) => match topic::matches(&config.topic, t)
                        .and_then(|c| c.get(l - 1).map(|s| s.to_string()))
                    {
                        Some(n) => n,
                        None => continue,
                    },
                    Naming::Json(_) => continue,
                },
            };
            if !self.devices.contains_key(&id) {
                if !config.discovers() || !valid_name(&id) || mapped.is_err() {
                    continue;
                }
                let found = self.devices.values().filter(|d| d.file == file).count();
                if found >= config.max_devices {
                    continue;
                }
                self.add_device(&id, &file, &id);
                let _ = self
                    .events
                    .send((file.clone(), Event::Discovered { id: id.clone() }))
                    .await;
            }
            let Some(d) = self.devices.get_mut(&id) else {
                continue;
            };
            if d.file != file {
                continue;
            }
            d.stats.requests += 1;
            d.last_msg = Instant::now();
            match mapped {
                Ok(m) => {
                    d.stats.errors += m.misses as u64;
                    if m.values.is_empty() {
                        continue;
                    }
                    d.stats.last_ok = Some(arrival);
                    if d.held.hold(m.time, m.values) {
                        d.stats.dropped_values += 1;
                    }
                    self.emit(&id, Duration::from_millis(config.min_interval_ms));
                    if !matches!(
                        self.devices.get(&id).map(|d| &d.state),
                        Some(Availability::Up)
                    ) {
                        self.set_state(&id, Availability::Up).await;
                    }
                }
                Err(_) => {
                    d.stats.errors += 1;
                    let stats = d.stats.clone();
                    let _ = self.events.try_send((id.clone(), Event::Stats(stats)));
                }
            }
        }
    }

    /// Sends the device's held values when its interval allows (never waiting: a
    /// full channel counts them dropped).
    fn emit(&mut self, id: &str, interval: Duration) {
        let Some(d) = self.devices.get_mut(id) else {
            return;
        };
        let Some((time, values)) = d.held.take(Instant::now(), interval) else {
            return;
        };
        if self
            .events
            .try_send((id.to_string(), Event::Values { time, values }))
            .is_err()
        {
            d.stats.dropped_values += 1;
        }
        let _ = self
            .events
            .try_send((id.to_string(), Event::Stats(d.stats.clone())));
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut silent = Vec::new();
        for (id, d) in &self.devices {
            let Some(c) = self.files.get(&d.file) else {
                continue;
            };
            due.push((id.clone(), Duration::from_millis(c.min_interval_ms)));
            if c.silence_s > 0
                && self.broker_down.is_none()
                && !matches!(d.state, Availability::Down { .. })
                && now.duration_since(d.last_msg) >= Duration::from_secs(c.silence_s)
            {
                let t = topic::render(&c.topic, &[("name", &d.name)]);
                silent.push((
                    id.clone(),
                    format!("no message on {t} for {} s", c.silence_s),
                ));
            }
        }
        for (id, interval) in due {
            self.emit(&id, interval);
        }
        for (id, reason) in silent {
            self.set_state(&id, Availability::Down { reason }).await;
        }
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].deadline <= now {
                let w = self.waiting.remove(i);
                let _ = w.reply.send(Err(CommandError::Failed(format!(
                    "no acknowledgement on {} in time",
                    w.topic
                ))));
            } else {
                i += 1;
            }
        }
    }

    fn command(&mut self, id: &str, cmd: Command) {
        let rid = match &cmd {
            Command::Write { id, .. } | Command::Execute { id, .. } => *id,
        };
        let Some(d) = self.devices.get(id) else {
            return answer(
                cmd,
                Err(CommandError::Unavailable(format!(
                    "no MQTT device \"{id}\""
                ))),
            );
        };
        let Some(c) = self.files.get(&d.file).cloned() else {
            return answer(
                cmd,
                Err(CommandError::Unavailable("its file was removed".into())),
            );
        };
        if let Some(why) = &self.broker_down {
            return answer(cmd, Err(CommandError::Unavailable(why.clone())));
        }
        let Some(p) = c.points.iter().find(|p| p.path == rid) else {
            return answer(cmd, Err(CommandError::NotAllowed(rid)));
        };
        let name = d.name.clone();
        let path = rid.to_string();
        let (topic_t, payload, reply) = match cmd {
            Command::Write { value, reply, .. } => {
                let Some(t) = &p.write_topic else {
                    let _ = reply.send(Err(CommandError::NotAllowed(rid)));
                    return;
                };
                let v = match mapping::written(&value, p) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = reply.send(Err(CommandError::BadValue(e)));
                        return;
                    }
                };
                let body = topic::render(
                    &p.write_payload,
                    &[("value", &v), ("name", &name), ("path", &path)],
                );
                (t.clone(), body, reply)
            }
            Command::Execute { args, reply, .. } => {
                let Some(t) = &p.execute_topic else {
                    let _ = reply.send(Err(CommandError::NotAllowed(rid)));
                    return;
                };
                let body = topic::render(
                    &p.execute_payload,
                    &[("args", &args), ("name", &name), ("path", &path)],
                );
                (t.clone(), body, reply)
            }
        };
        let t = topic::render(&topic_t, &[("name", &name)]);
        if let Err(e) =
            self.client
                .try_publish(t.clone(), QoS::AtLeastOnce, false, payload.into_bytes())
        {
            let _ = reply.send(Err(CommandError::Unavailable(format!(
                "cannot publish on {t}: {e}"
            ))));
            return;
        }
        match &c.response_topic {
            Some(rt) => self.waiting.push(Waiting {
                topic: topic::render(rt, &[("name", &name)]),
                deadline: Instant::now() + Duration::from_millis(c.response_timeout_ms),
                error_mark: c.response_error.clone(),
                reply,
            }),
            None => {
                let _ = reply.send(Ok(()));
            }
        }
    }
}

pub(crate) fn answer(cmd: Command, result: Result<(), CommandError>) {
    match cmd {
        Command::Write { reply, .. } | Command::Execute { reply, .. } => {
            let _ = reply.send(result);
        }
    }
}
