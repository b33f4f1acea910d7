//! The LwM2M client as a state machine without I/O: one CoAP endpoint and one
//! registration per server account, request dispatch, observations.
//!
//! The driver feeds datagrams (tagged with the server's Short Server ID) and time,
//! sends what `poll_transmit` yields, sleeps until `poll_timeout`, and carries out
//! `poll_action` (reboot, factory reset, …).

use super::dm::{AttrStore, Dm, Effect, Op, Reply, Trees};
use super::error::OpError;
use super::observe::{self, Observation};
use super::persist::{Persist, QueuedNote, Restored, StoredObservation, StoredRegistration};
use super::registration::{self, RegParams, RetryPolicy, Version};
use super::request;
use crate::coap::block::{self, BlockOpt};
use crate::coap::message::{self, codes};
use crate::coap::{Endpoint, Event, Failure, Handle, Incoming, TxParams};
use crate::codec::Format;
use crate::model::{Path, Registry, Value};
use coap_lite::{CoapOption, Packet, RequestType};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Largest request body we reassemble from Block1 (firmware goes elsewhere).
const MAX_BLOCK1_BODY: usize = 1 << 20;
/// How long a Block2 response body is kept for the follow-up block requests.
const BLOCK2_CACHE: Duration = Duration::from_secs(60);
/// Notifications go confirmable at least this often (RFC 7641 4.5).
const CON_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How far a restored observation's sequence number jumps (more than the ops one
/// group commit can leave unsaved).
const SEQ_RESTART_JUMP: u32 = 1 << 16;
/// Default Disable Timeout (/1/x/5) when the resource is absent.
const DEFAULT_DISABLE: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: String,
    pub version: Version,
    /// CoAP timing for servers without their own entry in `tx_per_server`.
    pub tx: TxParams,
    pub tx_per_server: std::collections::BTreeMap<u16, TxParams>,
    pub format_v10: Format,
    pub format_v11: Format,
    /// Our Block2 size for large responses when the server asks for none.
    pub block_size: usize,
    /// Stored notifications kept per server while it is unreachable; oldest dropped first.
    pub queue_cap: usize,
    /// Per server: send notifications confirmable (true) or not (false). Absent: CON
    /// whenever notification storing is on, so an unreachable server is noticed.
    pub confirmable_notifications: std::collections::BTreeMap<u16, bool>,
    /// Queue mode (binding with Q): idle time before the client stops listening.
    /// Absent: MAX_TRANSMIT_WAIT of that server (93 s by default).
    pub queue_timeout: std::collections::BTreeMap<u16, Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoint: "lwgate".into(),
            version: Version::V1_1,
            tx: TxParams::default(),
            tx_per_server: Default::default(),
            format_v10: Format::Tlv,
            format_v11: Format::SenmlCbor,
            block_size: 1024,
            queue_cap: 10_000,
            confirmable_notifications: Default::default(),
            queue_timeout: Default::default(),
        }
    }
}

/// Things only the driver can do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Reboot,
    FactoryReset,
    /// Execute on a resource the client does not handle itself (bridged devices, …).
    Execute {
        path: Path,
        args: Vec<(u8, Option<String>)>,
    },
    /// A server wrote a resource the driver may want to act on (e.g. /3/0/13).
    Written(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub enum RegState {
    /// Waiting until `at` to (re-)register.
    Waiting {
        at: Instant,
    },
    Registering,
    Registered,
    Updating,
    Deregistering,
    Disabled {
        until: Instant,
    },
    /// Gave up (retry policy exhausted) or shut down.
    Stopped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionStatus {
    pub ssid: u16,
    pub uri: String,
    pub state: String,
    pub registered: bool,
    pub location: Option<String>,
    pub version: &'static str,
    pub lifetime: u32,
    pub binding: String,
    pub last_error: Option<String>,
    pub failures: u32,
    /// Notifications not yet acknowledged by this server: stored while it was
    /// unreachable, or sent and waiting for the ACK.
    pub queued: usize,
    /// Notifications dropped (cap exceeded, storing off, observation gone).
    pub dropped: u64,
    /// Unix time of the last notification the server acknowledged or received.
    pub last_delivery: Option<i64>,
}

#[derive(Debug)]
struct Block1Rx {
    body: Vec<u8>,
    expires: Instant,
}

#[derive(Debug)]
struct Session {
    ssid: u16,
    /// /1 instance id of this server.
    server_inst: u16,
    uri: String,
    coap: Endpoint,
    state: RegState,
    version: Version,
    location: Vec<String>,
    sent: Option<RegParams>,
    sent_objects: String,
    update_at: Option<Instant>,
    pending: Option<(Handle, Pending)>,
    /// An Update was asked for while another exchange was in flight.
    update_wanted: bool,
    failures: u32,
    last_error: Option<String>,
    /// Downgraded to 1.0 after a 4.12 to a 1.1 Register.
    downgraded: bool,
    block1: HashMap<String, Block1Rx>,
    block2: HashMap<String, (Instant, Vec<u8>, Format)>,
    /// Unix time at which the server forgets the registration (survives restarts).
    expires: Option<f64>,
    /// Stored notifications, oldest first.
    queue: VecDeque<QueuedNote>,
    /// Live notifications in flight, kept so a failure can store them.
    live: HashMap<Handle, QueuedNote>,
    /// The replayed pack in flight: its handle and the stored ids it carries.
    replay: Option<(Handle, Vec<u64>)>,
    dropped: u64,
    last_delivery: Option<i64>,
    /// Last datagram sent to or received from this server (queue mode).
    last_traffic: Instant,
    /// Queue mode: not listening until something needs the server.
    asleep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    Register,
    Update,
    Deregister { then_disable: bool },
}

pub struct Client {
    pub cfg: ClientConfig,
    pub reg: Registry,
    pub trees: Trees,
    pub attrs: AttrStore,
    sessions: Vec<Session>,
    observations: Vec<Observation>,
    actions: VecDeque<Action>,
    persist: VecDeque<Persist>,
    shutting_down: bool,
    /// Wall-clock time (Unix seconds) as last given by the driver.
    wall: f64,
    next_note_id: u64,
    /// The client's start: "long ago" for restored observations.
    epoch: Instant,
    /// The latest time given by the driver.
    now: Instant,
    /// Servers a Register or Update was sent to since the driver last asked.
    reg_activity: Vec<u16>,
    /// Factory content of each gateway instance (SenML CBOR), to tell server changes
    /// from operator changes at restore.
    factory: std::collections::BTreeMap<(u16, u16), Vec<u8>>,
}

fn uri_of(trees: &Trees, ssid: u16) -> Option<String> {
    let sec = trees.gateway.objects.get(&0)?;
    sec.iter().find_map(|(i, _)| {
        let is_bs = matches!(trees.gateway.get(0, *i, 1), Some(Value::Boolean(true)));
        (!is_bs && trees.gateway.get_i64(0, *i, 10) == Some(i64::from(ssid)))
            .then(|| match trees.gateway.get(0, *i, 0) {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            })
            .flatten()
    })
}

impl Client {
    pub fn new(cfg: ClientConfig, reg: Registry, trees: Trees, now: Instant, seed: u64) -> Self {
        let mut c = Self {
            cfg,
            reg,
            trees,
            attrs: AttrStore::new(),
            sessions: Vec::new(),
            observations: Vec::new(),
            actions: VecDeque::new(),
            persist: VecDeque::new(),
            shutting_down: false,
            wall: 0.0,
            next_note_id: 1,
            epoch: now,
            now,
            reg_activity: Vec::new(),
            factory: Default::default(),
        };
        let objs: Vec<u16> = c.trees.gateway.objects.keys().copied().collect();
        for obj in objs.into_iter().filter(|o| Self::persistent(*o)) {
            for inst in c.trees.gateway.instance_ids(obj) {
                let data = c.instance_data(obj, inst);
                c.factory.insert((obj, inst), data);
            }
        }
        let servers: Vec<(u16, u16)> = c
            .trees
            .gateway
            .instance_ids(1)
            .into_iter()
            .filter_map(|i| Some((i, u16::try_from(c.trees.gateway.get_i64(1, i, 0)?).ok()?)))
            .collect();
        for (n, (inst, ssid)) in servers.into_iter().enumerate() {
            let uri = uri_of(&c.trees, ssid).unwrap_or_default();
            c.sessions.push(Session {
                ssid,
                server_inst: inst,
                uri,
                coap: Endpoint::new(
                    c.cfg.tx_per_server.get(&ssid).copied().unwrap_or(c.cfg.tx),
                    seed.wrapping_add(n as u64 * 0x9E37_79B9_7F4A_7C15),
                ),
                state: RegState::Waiting { at: now },
                version: c.cfg.version,
                location: Vec::new(),
                sent: None,
                sent_objects: String::new(),
                update_at: None,
                pending: None,
                update_wanted: false,
                failures: 0,
                last_error: None,
                downgraded: false,
                block1: HashMap::new(),
                block2: HashMap::new(),
                expires: None,
                queue: VecDeque::new(),
                live: HashMap::new(),
                replay: None,
                dropped: 0,
                last_delivery: None,
                last_traffic: now,
                asleep: false,
            });
        }
        c
    }

    /// (ssid, server URI) of every account, for the driver to open sockets.
    pub fn servers(&self) -> Vec<(u16, String)> {
        self.sessions
            .iter()
            .map(|s| (s.ssid, s.uri.clone()))
            .collect()
    }

    pub fn status(&self, now: Instant) -> Vec<SessionStatus> {
        self.sessions
            .iter()
            .map(|s| SessionStatus {
                ssid: s.ssid,
                uri: s.uri.clone(),
                state: match &s.state {
                    RegState::Waiting { at } if s.failures == 0 => "starting".to_string(),
                    RegState::Waiting { at } => format!(
                        "retrying in {}s (attempt {} failed)",
                        at.saturating_duration_since(now).as_secs(),
                        s.failures
                    ),
                    RegState::Registering => "registering".into(),
                    RegState::Registered if s.asleep => "registered (queue mode: asleep)".into(),
                    RegState::Registered => "registered".into(),
                    RegState::Updating => "registered (updating)".into(),
                    RegState::Deregistering => "deregistering".into(),
                    RegState::Disabled { until } => {
                        format!(
                            "disabled for {}s",
                            until.saturating_duration_since(now).as_secs()
                        )
                    }
                    RegState::Stopped => "stopped".into(),
                },
                registered: matches!(s.state, RegState::Registered | RegState::Updating),
                location: (!s.location.is_empty()).then(|| format!("/{}", s.location.join("/"))),
                version: s.version.as_str(),
                lifetime: self.lifetime(s.server_inst),
                binding: self.binding(s.server_inst),
                last_error: s.last_error.clone(),
                failures: s.failures,
                queued: s.queue.len() + s.live.len(),
                dropped: s.dropped,
                last_delivery: s.last_delivery,
            })
            .collect()
    }

    fn lifetime(&self, inst: u16) -> u32 {
        self.trees
            .gateway
            .get_i64(1, inst, 1)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(86_400)
    }

    fn binding(&self, inst: u16) -> String {
        match self.trees.gateway.get(1, inst, 7) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => "U".into(),
        }
    }

    fn format_for(&self, v: Version) -> Format {
        match v {
            Version::V1_0 => self.cfg.format_v10,
            Version::V1_1 => self.cfg.format_v11,
        }
    }

    fn params(&self, idx: usize) -> RegParams {
        let s = &self.sessions[idx];
        RegParams {
            endpoint: self.cfg.endpoint.clone(),
            lifetime: self.lifetime(s.server_inst),
            version: s.version,
            binding: self.binding(s.server_inst),
        }
    }

    fn objects(&self, v: Version) -> String {
        registration::object_links(&self.reg, &self.trees.gateway, v, self.format_for(v))
    }

    pub fn poll_transmit(&mut self) -> Option<(u16, Vec<u8>)> {
        let now = self.now;
        self.sessions.iter_mut().find_map(|s| {
            s.coap.poll_transmit().map(|b| {
                s.last_traffic = now;
                (s.ssid, b)
            })
        })
    }

    /// Queue mode: the binding says Q (1.0 `UQ`, 1.1 the separate Q parameter).
    fn queue_mode(&self, idx: usize) -> bool {
        self.binding(self.sessions[idx].server_inst).contains('Q')
    }

    fn queue_timeout(&self, idx: usize) -> Duration {
        let s = &self.sessions[idx];
        self.cfg
            .queue_timeout
            .get(&s.ssid)
            .copied()
            .unwrap_or_else(|| s.coap.params().max_transmit_wait())
    }

    /// When an awake queue-mode session may go to sleep.
    fn sleep_at(&self, idx: usize) -> Option<Instant> {
        let s = &self.sessions[idx];
        let idle = s.state == RegState::Registered
            && !s.asleep
            && s.pending.is_none()
            && s.replay.is_none()
            && s.live.is_empty()
            && !s.coap.busy();
        (idle && self.queue_mode(idx)).then(|| s.last_traffic + self.queue_timeout(idx))
    }

    /// Wakes a sleeping queue-mode session: an Update first, then whatever waits.
    pub(super) fn wake(&mut self, now: Instant, idx: usize) {
        if self.sessions[idx].asleep {
            self.sessions[idx].asleep = false;
            tracing::debug!(ssid = self.sessions[idx].ssid, "queue mode: waking up");
            if self.sessions[idx].pending.is_none() {
                self.update(now, idx);
            }
        }
    }

    pub fn is_asleep(&self, ssid: u16) -> bool {
        self.sessions.iter().any(|s| s.ssid == ssid && s.asleep)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Objects whose instances a server may change and that survive restarts; the
    /// Security object is the bootstrap's, Device and Connectivity are sampled.
    fn persistent(obj: u16) -> bool {
        !matches!(obj, 0 | 3 | 4)
    }

    fn instance_data(&self, obj: u16, inst: u16) -> Vec<u8> {
        let recs = self
            .trees
            .gateway
            .read(&self.reg, &Path::new(&[obj, inst]), true)
            .unwrap_or_default();
        crate::codec::encode_absolute(Format::SenmlCbor, &recs, None).unwrap_or_default()
    }

    fn persist_instance(&mut self, path: &Path) {
        let (Some(obj), Some(inst)) = (path.object(), path.instance()) else {
            return;
        };
        if path.prefix.is_some() || !Self::persistent(obj) {
            return;
        }
        let data = self
            .trees
            .gateway
            .instance(obj, inst)
            .map(|_| self.instance_data(obj, inst));
        let factory = self.factory.get(&(obj, inst)).cloned().unwrap_or_default();
        self.persist.push_back(Persist::Instance {
            obj,
            inst,
            data,
            factory,
        });
    }

    /// State changes to make durable, in order (the driver commits them together).
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.persist.pop_front()
    }

    /// The driver's wall clock (Unix seconds): timestamps of stored notifications and
    /// registration expiry, which must survive restarts, are wall-clock times.
    pub fn set_wall_clock(&mut self, unix: f64) {
        self.wall = unix;
    }

    /// Resumes from stored state: registrations still valid are resumed with an Update
    /// on their location, observations carry on, stored notifications wait for replay.
    /// Call before the first `handle_timeout`, after `set_wall_clock`.
    pub fn restore(&mut self, r: Restored) {
        for (obj, inst, data, factory) in r.instances {
            let current = self.factory.get(&(obj, inst)).cloned().unwrap_or_default();
            if current != factory {
                // The operator changed lwgate.toml since: the new factory content wins.
                self.persist.push_back(Persist::Instance {
                    obj,
                    inst,
                    data: None,
                    factory: Vec::new(),
                });
                continue;
            }
            match data {
                None => {
                    let _ = self.trees.gateway.delete_instance(obj, inst);
                }
                Some(bytes) => {
                    let reg = &self.reg;
                    let types = |p: &Path| super::dm::type_of(reg, p);
                    match crate::codec::decode_composite(Format::SenmlCbor, &bytes, &types) {
                        Ok(recs) => {
                            let ipath = Path::new(&[obj, inst]);
                            let insts = self.trees.gateway.objects.entry(obj).or_default();
                            insts.insert(inst, Default::default());
                            let _ = self.trees.gateway.write(
                                &self.reg,
                                &ipath,
                                &recs,
                                super::tree::WriteMode::Provision,
                            );
                        }
                        Err(e) => tracing::warn!("stored /{obj}/{inst} skipped: {e}"),
                    }
                }
            }
        }
        for reg in r.registrations {
            let Some(idx) = self.sessions.iter().position(|s| s.ssid == reg.ssid) else {
                self.persist
                    .push_back(Persist::ForgetRegistration { ssid: reg.ssid });
                continue;
            };
            if (reg.expires as f64) <= self.wall {
                self.persist
                    .push_back(Persist::ForgetRegistration { ssid: reg.ssid });
                continue;
            }
            let params = RegParams {
                endpoint: self.cfg.endpoint.clone(),
                lifetime: reg.lifetime,
                version: reg.version,
                binding: reg.binding.clone(),
            };
            let s = &mut self.sessions[idx];
            s.location = reg.location;
            s.version = reg.version;
            s.sent = Some(params);
            s.sent_objects = reg.objects;
            s.expires = Some(reg.expires as f64);
        }
        for o in r.observations {
            let resumed = self
                .sessions
                .iter()
                .any(|s| s.ssid == o.ssid && !s.location.is_empty());
            if !resumed {
                self.persist.push_back(Persist::ForgetObservation {
                    ssid: o.ssid,
                    token: o.token,
                });
                continue;
            }
            self.observations.push(Observation {
                ssid: o.ssid,
                token: o.token,
                path: o.path,
                composite: o.composite,
                accept: o.accept,
                format: Format::from_number(o.format).unwrap_or(Format::Text),
                // Sequence numbers are committed lazily (within 100 ms), so the last
                // ones sent before a crash may not be on disk. Jumping ahead keeps every
                // new notification "fresher" for the observer (RFC 7641 3.4: any step
                // below 2^23 is newer) instead of being dropped as reordered.
                seq: (o.seq + SEQ_RESTART_JUMP) & 0xFF_FFFF,
                last_sent_at: self.epoch,
                last_values: Vec::new(),
                last_con_at: self.epoch,
                handle: None,
            });
        }
        for (ssid, path, attrs) in r.attributes {
            self.attrs.insert((ssid, path), attrs);
        }
        for (ssid, dropped, last) in r.counters {
            if let Some(s) = self.sessions.iter_mut().find(|s| s.ssid == ssid) {
                s.dropped = dropped;
                s.last_delivery = last;
            }
        }
        let mut queue = r.queue;
        queue.sort_by_key(|n| n.id);
        for n in queue {
            self.next_note_id = self.next_note_id.max(n.id + 1);
            match self
                .sessions
                .iter_mut()
                .find(|s| s.ssid == n.ssid && !s.location.is_empty())
            {
                Some(s) => s.queue.push_back(n),
                None => self.persist.push_back(Persist::Dequeue { ids: vec![n.id] }),
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for s in &self.sessions {
            consider(s.coap.poll_timeout());
            match s.state {
                RegState::Waiting { at } => consider(Some(at)),
                RegState::Disabled { until } => consider(Some(until)),
                RegState::Registered if s.pending.is_none() => consider(s.update_at),
                _ => {}
            }
        }
        for idx in 0..self.sessions.len() {
            consider(self.sleep_at(idx));
        }
        for o in &self.observations {
            let a = self.effective_attrs(o);
            consider(observe::deadline(o, &a));
        }
        t
    }

    /// Datagram from the server with this Short Server ID.
    pub fn handle_datagram(&mut self, now: Instant, ssid: u16, bytes: &[u8]) {
        self.now = now;
        let Some(idx) = self.sessions.iter().position(|s| s.ssid == ssid) else {
            return;
        };
        if self.sessions[idx].asleep {
            // Queue mode: not listening. The server waits for our next Update.
            return;
        }
        self.sessions[idx].last_traffic = now;
        self.sessions[idx].coap.handle_datagram(now, bytes);
        self.drain(now, idx);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        for idx in 0..self.sessions.len() {
            if self.sleep_at(idx).is_some_and(|t| t <= now) {
                tracing::debug!(ssid = self.sessions[idx].ssid, "queue mode: sleeping");
                self.sessions[idx].asleep = true;
            }
            self.sessions[idx].coap.handle_timeout(now);
            self.drain(now, idx);
            let s = &self.sessions[idx];
            match s.state {
                RegState::Waiting { at } if at <= now && !self.shutting_down => {
                    let alive = !s.location.is_empty() && s.expires.is_some_and(|e| e > self.wall);
                    if alive {
                        self.update(now, idx)
                    } else {
                        self.register(now, idx)
                    }
                }
                RegState::Disabled { until } if until <= now && !self.shutting_down => {
                    self.register(now, idx)
                }
                RegState::Registered
                    if s.pending.is_none() && s.update_at.is_some_and(|t| t <= now) =>
                {
                    self.sessions[idx].asleep = false;
                    self.update(now, idx)
                }
                _ => {}
            }
        }
        self.check_observations(now);
    }

    /// Values may have changed (the driver refreshed system resources, a bridge reported).
    pub fn values_changed(&mut self, now: Instant) {
        self.check_observations(now);
    }

    /// Objects or instances were added or removed: every registered server gets an Update.
    pub fn objects_changed(&mut self, now: Instant) {
        for idx in 0..self.sessions.len() {
            self.request_update(now, idx);
        }
    }

    /// Starts de-registration from every server; `is_stopped` tells when done.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        for idx in 0..self.sessions.len() {
            // Unacknowledged notifications must not hold the De-register up (NSTART=1);
            // they are stored and replayed after the restart.
            self.store_in_flight(idx);
        }
        for idx in 0..self.sessions.len() {
            let s = &mut self.sessions[idx];
            match s.state {
                RegState::Registered | RegState::Updating => {
                    if let Some((h, _)) = s.pending.take() {
                        s.coap.cancel(h);
                    }
                    self.deregister(now, idx, false);
                }
                RegState::Deregistering => {}
                _ => {
                    if let Some((h, _)) = s.pending.take() {
                        s.coap.cancel(h);
                    }
                    s.state = RegState::Stopped;
                }
            }
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.sessions.iter().all(|s| s.state == RegState::Stopped)
    }

    /// Servers a Register or Update went to since the last call: a smartcard-provisioned
    /// account must have its card checked at each (LwM2M 1.0 TS 5.2.3.2).
    pub fn take_registration_activity(&mut self) -> Vec<u16> {
        std::mem::take(&mut self.reg_activity)
    }

    /// These accounts are gone (their smartcard was removed or replaced): de-register,
    /// drop what was kept for them, and delete their Security and Server instances.
    pub fn retire(&mut self, now: Instant, ssids: &[u16]) {
        for idx in 0..self.sessions.len() {
            let ssid = self.sessions[idx].ssid;
            if !ssids.contains(&ssid) {
                continue;
            }
            self.forget_observations(idx, "the server account was removed");
            let ids: Vec<u64> = self.sessions[idx].queue.drain(..).map(|n| n.id).collect();
            if !ids.is_empty() {
                self.persist.push_back(Persist::Dequeue { ids });
            }
            let s = &mut self.sessions[idx];
            if let Some((h, _)) = s.pending.take() {
                s.coap.cancel(h);
            }
            if matches!(s.state, RegState::Registered | RegState::Updating)
                && !s.location.is_empty()
            {
                self.deregister(now, idx, false);
            } else {
                s.state = RegState::Stopped;
                self.persist.push_back(Persist::ForgetRegistration { ssid });
            }
            let inst = self.sessions[idx].server_inst;
            let _ = self.trees.gateway.delete_instance(1, inst);
            self.persist.push_back(Persist::Instance {
                obj: 1,
                inst,
                data: None,
                factory: Vec::new(),
            });
            let sec: Vec<u16> = self
                .trees
                .gateway
                .instance_ids(0)
                .into_iter()
                .filter(|i| self.trees.gateway.get_i64(0, *i, 10) == Some(i64::from(ssid)))
                .collect();
            for i in sec {
                let _ = self.trees.gateway.delete_instance(0, i);
            }
            tracing::warn!(ssid, "server account removed");
        }
    }

    fn register(&mut self, now: Instant, idx: usize) {
        self.reg_activity.push(self.sessions[idx].ssid);
        self.sessions[idx].asleep = false;
        // A new registration is a new session for the server: its observations, and
        // the notifications stored for them, are gone.
        self.forget_observations(idx, "the server registration was renewed");
        let params = self.params(idx);
        let objects = self.objects(params.version);
        let mut p = message::request(RequestType::Post, &["rd"], &params.register_query());
        message::set_content_format(&mut p, Format::Link.number());
        p.payload = objects.clone().into_bytes();
        let s = &mut self.sessions[idx];
        s.coap.cancel_all();
        let h = s.coap.send_request(now, p, true);
        s.pending = Some((h, Pending::Register));
        s.state = RegState::Registering;
        s.sent = Some(params);
        s.sent_objects = objects;
        s.update_wanted = false;
        tracing::info!(ssid = s.ssid, server = %s.uri, "registering (LwM2M {})", s.version.as_str());
    }

    fn request_update(&mut self, now: Instant, idx: usize) {
        let s = &mut self.sessions[idx];
        match s.state {
            RegState::Registered if s.pending.is_none() => self.update(now, idx),
            RegState::Registered | RegState::Updating | RegState::Registering => {
                s.update_wanted = true
            }
            _ => {}
        }
    }

    fn update(&mut self, now: Instant, idx: usize) {
        self.reg_activity.push(self.sessions[idx].ssid);
        self.sessions[idx].asleep = false;
        let params = self.params(idx);
        let objects = self.objects(params.version);
        let s = &mut self.sessions[idx];
        let query = match &s.sent {
            Some(before) => params.update_query(before),
            None => params.register_query(),
        };
        let path: Vec<&str> = s.location.iter().map(String::as_str).collect();
        let mut p = message::request(RequestType::Post, &path, &query);
        if objects != s.sent_objects {
            message::set_content_format(&mut p, Format::Link.number());
            p.payload = objects.clone().into_bytes();
        }
        let h = s.coap.send_request(now, p, true);
        s.pending = Some((h, Pending::Update));
        s.state = RegState::Updating;
        s.sent = Some(params);
        s.sent_objects = objects;
        s.update_wanted = false;
        tracing::debug!(ssid = s.ssid, "registration update");
    }

    fn deregister(&mut self, now: Instant, idx: usize, then_disable: bool) {
        let s = &mut self.sessions[idx];
        let path: Vec<&str> = s.location.iter().map(String::as_str).collect();
        let p = message::request(RequestType::Delete, &path, &[]);
        let h = s.coap.send_request(now, p, true);
        s.pending = Some((h, Pending::Deregister { then_disable }));
        s.state = RegState::Deregistering;
        tracing::info!(ssid = s.ssid, "de-registering");
    }

    fn schedule_retry(&mut self, now: Instant, idx: usize, error: String) {
        let policy = RetryPolicy::from_server(&self.trees.gateway, self.sessions[idx].server_inst);
        let s = &mut self.sessions[idx];
        s.failures += 1;
        s.update_at = None;
        // The location is kept: while the registration has not expired, the next
        // attempt is an Update and the observations carry on.
        match policy.delay(s.failures) {
            Some(d) => {
                tracing::warn!(ssid = s.ssid, server = %s.uri, "registration failed: {error}; retrying in {}s", d.as_secs());
                s.state = RegState::Waiting { at: now + d };
            }
            None => {
                tracing::error!(ssid = s.ssid, server = %s.uri, "registration failed: {error}; giving up after {} attempts", s.failures);
                s.state = RegState::Stopped;
            }
        }
        s.last_error = Some(error);
    }

    fn registered(&mut self, now: Instant, idx: usize) {
        let lifetime =
            Duration::from_secs(u64::from(self.lifetime(self.sessions[idx].server_inst)));
        let wait = self.sessions[idx].coap.params().max_transmit_wait();
        let margin = registration::update_margin(lifetime, wait);
        let wall = self.wall;
        let s = &mut self.sessions[idx];
        s.state = RegState::Registered;
        s.failures = 0;
        s.last_error = None;
        s.update_at = Some(now + lifetime - margin);
        s.expires = Some(wall + lifetime.as_secs_f64());
        if let Some(sent) = &s.sent {
            self.persist
                .push_back(Persist::Registration(StoredRegistration {
                    ssid: s.ssid,
                    location: s.location.clone(),
                    version: s.version,
                    lifetime: sent.lifetime,
                    binding: sent.binding.clone(),
                    objects: s.sent_objects.clone(),
                    expires: (wall + lifetime.as_secs_f64()) as i64,
                }));
        }
        if s.update_wanted {
            self.update(now, idx);
        } else {
            self.replay_next(now, idx);
        }
    }

    fn drain(&mut self, now: Instant, idx: usize) {
        while let Some(ev) = self.sessions[idx].coap.poll_event() {
            match ev {
                Event::Request(inc) => self.on_request(now, idx, inc),
                Event::Response { handle, packet } => self.on_response(now, idx, handle, packet),
                Event::Failed { handle, reason } => self.on_failure(now, idx, handle, reason),
                Event::Delivered { handle } => self.notification_delivered(now, idx, handle),
            }
        }
    }

    fn on_response(&mut self, now: Instant, idx: usize, handle: Handle, packet: Packet) {
        if self.send_answered(now, idx, handle, message::code_byte(&packet)) {
            return;
        }
        let s = &mut self.sessions[idx];
        let Some((h, what)) = s.pending else {
            return;
        };
        if h != handle {
            return;
        }
        s.pending = None;
        let code = message::code_byte(&packet);
        match what {
            Pending::Register => {
                if code == codes::CREATED {
                    s.location = message::location_path(&packet).unwrap_or_default();
                    tracing::info!(ssid = s.ssid, location = %format!("/{}", s.location.join("/")), "registered");
                    self.registered(now, idx);
                } else if code == codes::PRECONDITION_FAILED
                    && s.version == Version::V1_1
                    && !s.downgraded
                {
                    // A 1.0 server rejects lwm2m=1.1: speak 1.0 to it.
                    tracing::info!(
                        ssid = s.ssid,
                        "server refused LwM2M 1.1 (4.12); registering as 1.0"
                    );
                    s.version = Version::V1_0;
                    s.downgraded = true;
                    self.register(now, idx);
                } else {
                    self.schedule_retry(
                        now,
                        idx,
                        format!("server answered {} to Register", message::code_text(code)),
                    );
                }
            }
            Pending::Update => {
                if codes::is_success(code) {
                    self.registered(now, idx);
                } else if code == codes::NOT_FOUND {
                    tracing::info!(
                        ssid = s.ssid,
                        "server forgot the registration (4.04 to Update); registering again"
                    );
                    self.register(now, idx);
                } else {
                    // Register again, but with back-off: a server failing every Update
                    // must not be hammered.
                    // An error answer (not silence) means the registration is not
                    // usable: register anew after the back-off.
                    let e = format!("server answered {} to Update", message::code_text(code));
                    s.location.clear();
                    s.expires = None;
                    self.schedule_retry(now, idx, e);
                }
            }
            Pending::Deregister { then_disable } => self.after_deregister(now, idx, then_disable),
        }
    }

    fn after_deregister(&mut self, now: Instant, idx: usize, then_disable: bool) {
        let timeout = self
            .trees
            .gateway
            .get_i64(1, self.sessions[idx].server_inst, 5)
            .and_then(|v| u64::try_from(v).ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_DISABLE);
        if then_disable {
            self.forget_observations(idx, "the server was disabled");
        }
        let s = &mut self.sessions[idx];
        s.location.clear();
        s.update_at = None;
        s.expires = None;
        self.persist
            .push_back(Persist::ForgetRegistration { ssid: s.ssid });
        if then_disable && !self.shutting_down {
            tracing::info!(ssid = s.ssid, "disabled for {}s", timeout.as_secs());
            s.state = RegState::Disabled {
                until: now + timeout,
            };
        } else {
            s.state = RegState::Stopped;
        }
    }

    fn on_failure(&mut self, now: Instant, idx: usize, handle: Handle, reason: Failure) {
        let s = &mut self.sessions[idx];
        if let Some((h, what)) = s.pending {
            if h == handle {
                s.pending = None;
                let why = match &reason {
                    Failure::Timeout => "no answer from the server".to_string(),
                    Failure::Reset => "the server reset the exchange".to_string(),
                    Failure::Invalid(e) => e.clone(),
                };
                match what {
                    Pending::Register => self.schedule_retry(now, idx, why),
                    Pending::Update => {
                        // The registration may be gone: start over (with back-off).
                        self.schedule_retry(now, idx, format!("Update failed: {why}"))
                    }
                    Pending::Deregister { then_disable } => {
                        self.after_deregister(now, idx, then_disable)
                    }
                }
                return;
            }
        }
        self.notification_failed(now, idx, handle, reason);
    }

    fn on_request(&mut self, now: Instant, idx: usize, inc: Incoming) {
        let resp = self.process(now, idx, &inc);
        self.sessions[idx].coap.respond(&inc, resp);
    }

    fn process(&mut self, now: Instant, idx: usize, inc: &Incoming) -> Packet {
        let req = &inc.packet;
        if let Some(opt) = message::unknown_critical_option(req) {
            return error_packet(req, &OpError::BadOption(opt));
        }
        let key = request::cache_key(req);
        // Block1: gather the body first.
        let mut body = req.payload.clone();
        let block1 = match message::block(req, CoapOption::Block1) {
            Some(None) => return error_packet(req, &OpError::BadOption(27)),
            Some(Some(b)) => Some(b),
            None => None,
        };
        if let Some(b) = block1 {
            let s = &mut self.sessions[idx];
            s.block1.retain(|_, r| r.expires > now);
            let rx = s.block1.entry(key.clone()).or_insert(Block1Rx {
                body: Vec::new(),
                expires: now,
            });
            if b.num == 0 {
                rx.body.clear();
            }
            if b.offset() != rx.body.len() {
                s.block1.remove(&key);
                return error_packet(req, &OpError::Incomplete);
            }
            if rx.body.len() + req.payload.len() > MAX_BLOCK1_BODY {
                s.block1.remove(&key);
                return error_packet(req, &OpError::TooLarge);
            }
            rx.body.extend_from_slice(&req.payload);
            rx.expires = now + self.cfg.tx.exchange_lifetime();
            if b.more {
                let mut r = message::response(req, codes::CONTINUE);
                message::set_block(&mut r, CoapOption::Block1, b);
                return r;
            }
            body = s.block1.remove(&key).map(|r| r.body).unwrap_or_default();
        }
        // Block2 follow-up: serve the cached body.
        let block2 = match message::block(req, CoapOption::Block2) {
            Some(None) => return error_packet(req, &OpError::BadOption(23)),
            other => other.flatten(),
        };
        if let Some(b) = block2.filter(|b| b.num > 0) {
            let s = &mut self.sessions[idx];
            s.block2.retain(|_, (t, _, _)| *t > now);
            if let Some((_, cached, format)) = s.block2.get(&key) {
                return match block::slice(cached, b) {
                    Some((chunk, more)) => {
                        let mut r = message::response(req, codes::CONTENT);
                        message::set_content_format(&mut r, format.number());
                        message::set_block(&mut r, CoapOption::Block2, BlockOpt { more, ..b });
                        r.payload = chunk.to_vec();
                        r
                    }
                    None => error_packet(req, &OpError::BadOption(23)),
                };
            }
        }

        let op = match request::classify(req, body, &self.reg) {
            Ok(op) => op,
            Err(e) => return error_packet(req, &e),
        };
        let observe_flag = message::observe(req);
        let ssid = self.sessions[idx].ssid;
        let version = self.sessions[idx].version;
        let servers = self.sessions.len();
        let default_format = self.format_for(version);
        let observe_target = match (&op, observe_flag) {
            (Op::Read { path, accept }, Some(0)) => Some((path.clone(), *accept, Vec::new())),
            // Observe-Composite: the observed paths are the FETCH body.
            (
                Op::ReadComposite {
                    format: Some(f),
                    accept,
                    payload,
                },
                Some(0),
            ) => {
                let paths = Format::from_number(*f)
                    .and_then(|f| crate::codec::decode_paths(f, payload).ok())
                    .unwrap_or_default();
                Some((Path::root(), *accept, paths))
            }
            _ => None,
        };
        if let (Op::ReadComposite { .. }, Some(1)) = (&op, observe_flag) {
            let token = req.get_token().to_vec();
            self.cancel_observations(idx, |o| o.token == token);
        }
        if let (Op::Read { path, .. }, Some(1)) = (&op, observe_flag) {
            let token = req.get_token().to_vec();
            let path = path.clone();
            self.cancel_observations(idx, |o| o.token == token || o.path == path);
        }
        let attr_target = match &op {
            Op::WriteAttributes { path, .. } => Some(path.clone()),
            _ => None,
        };
        let mut dm = Dm {
            reg: &self.reg,
            trees: &mut self.trees,
            attrs: &mut self.attrs,
            servers,
            ssid,
            default_format,
        };
        let reply = dm.handle(op);
        if let Some(path) = attr_target.filter(|_| codes::is_success(reply.code)) {
            self.persist
                .push_back(match self.attrs.get(&(ssid, path.clone())) {
                    Some(a) => Persist::Attributes {
                        ssid,
                        path,
                        attrs: a.clone(),
                    },
                    None => Persist::ForgetAttributes { ssid, path },
                });
        }
        let effects = reply.effects.clone();
        let mut resp = self.reply_packet(idx, req, &key, reply, block2, now);
        if let Some((path, accept, composite)) = observe_target {
            if codes::is_success(message::code_byte(&resp))
                && message::block(&resp, CoapOption::Block2).is_none()
            {
                let token = req.get_token().to_vec();
                let values = self.read_paths(&path, &composite).unwrap_or_default();
                self.observations
                    .retain(|o| !(o.ssid == ssid && o.token == token));
                let format = message::content_format(&resp)
                    .and_then(Format::from_number)
                    .unwrap_or(Format::Text);
                let seq = 0;
                message::set_uint(&mut resp, CoapOption::Observe, seq);
                tracing::debug!(ssid, path = %path, "observation registered");
                self.persist
                    .push_back(Persist::Observation(StoredObservation {
                        ssid,
                        token: token.clone(),
                        path: path.clone(),
                        composite: composite.clone(),
                        format: format.number(),
                        accept,
                        seq,
                    }));
                self.observations.push(Observation {
                    ssid,
                    token,
                    path,
                    composite,
                    accept,
                    format,
                    seq,
                    last_sent_at: now,
                    last_values: values,
                    last_con_at: now,
                    handle: None,
                });
            }
        }
        for e in effects {
            self.apply_effect(now, idx, e);
        }
        resp
    }

    fn reply_packet(
        &mut self,
        idx: usize,
        req: &Packet,
        key: &str,
        reply: Reply,
        block2: Option<BlockOpt>,
        now: Instant,
    ) -> Packet {
        let mut r = message::response(req, reply.code);
        if let Some(f) = reply.format {
            message::set_content_format(&mut r, f.number());
        }
        for seg in &reply.location {
            r.add_option(CoapOption::LocationPath, seg.as_bytes().to_vec());
        }
        if let Some(Some(b1)) = message::block(req, CoapOption::Block1) {
            message::set_block(&mut r, CoapOption::Block1, b1);
        }
        let szx = block2
            .map(|b| b.szx)
            .unwrap_or_else(|| BlockOpt::szx_for(self.cfg.block_size));
        let size = 1usize << (szx + 4);
        if reply.payload.len() > size && codes::is_success(reply.code) {
            // The block asked for (a follow-up whose cached body expired is served
            // from the freshly built one), or the first.
            let first = BlockOpt {
                num: block2.map(|b| b.num).unwrap_or(0),
                more: true,
                szx,
            };
            let Some((chunk, more)) = block::slice(&reply.payload, first) else {
                return error_packet(req, &OpError::BadOption(23));
            };
            r.payload = chunk.to_vec();
            message::set_block(&mut r, CoapOption::Block2, BlockOpt { more, ..first });
            let format = reply.format.unwrap_or(Format::Opaque);
            self.sessions[idx]
                .block2
                .insert(key.to_string(), (now + BLOCK2_CACHE, reply.payload, format));
        } else {
            r.payload = reply.payload;
        }
        r
    }

    fn apply_effect(&mut self, now: Instant, idx: usize, e: Effect) {
        match e {
            Effect::Execute { path, args } => self.execute(now, idx, path, args),
            Effect::Written(path) => {
                self.persist_instance(&path);
                if path.prefix.is_none() && path.object() == Some(1) {
                    // Lifetime or binding may have changed: tell that server.
                    if let Some(i) = self
                        .sessions
                        .iter()
                        .position(|s| Some(s.server_inst) == path.instance())
                    {
                        let changed = self.sessions[i]
                            .sent
                            .as_ref()
                            .is_some_and(|sent| !self.params(i).update_query(sent).is_empty());
                        if changed {
                            self.request_update(now, i);
                        }
                    }
                }
                self.actions.push_back(Action::Written(path));
                self.check_observations(now);
            }
            Effect::Created(path) | Effect::Deleted(path) => {
                self.persist_instance(&path);
                self.objects_changed(now);
                self.check_observations(now);
            }
        }
    }

    fn execute(&mut self, now: Instant, idx: usize, path: Path, args: Vec<(u8, Option<String>)>) {
        if path.prefix.is_some() {
            self.actions.push_back(Action::Execute { path, args });
            return;
        }
        match (path.object(), path.resource()) {
            (Some(1), Some(8)) => {
                let target = self
                    .sessions
                    .iter()
                    .position(|s| Some(s.server_inst) == path.instance())
                    .unwrap_or(idx);
                match self.sessions[target].state {
                    RegState::Registered | RegState::Updating => {
                        self.sessions[target].update_wanted = true;
                        if self.sessions[target].pending.is_none() {
                            self.update(now, target);
                        }
                    }
                    _ => self.register(now, target),
                }
            }
            (Some(1), Some(4)) => {
                if let Some(target) = self
                    .sessions
                    .iter()
                    .position(|s| Some(s.server_inst) == path.instance())
                {
                    if let Some((h, _)) = self.sessions[target].pending.take() {
                        self.sessions[target].coap.cancel(h);
                    }
                    self.deregister(now, target, true);
                }
            }
            (Some(3), Some(4)) => self.actions.push_back(Action::Reboot),
            (Some(3), Some(5)) => self.actions.push_back(Action::FactoryReset),
            (Some(3), Some(12)) => {
                self.trees
                    .gateway
                    .set_multi(3, 0, 11, [(0, Value::Integer(0))].into());
                self.check_observations(now);
            }
            _ => self.actions.push_back(Action::Execute { path, args }),
        }
    }

    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }
}

fn error_packet(req: &Packet, e: &OpError) -> Packet {
    let mut r = message::response(req, e.code());
    r.payload = e.to_string().into_bytes();
    r
}

mod notify;
#[cfg(test)]
mod tests;
