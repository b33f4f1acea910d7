//! The LwM2M client as a state machine without I/O: one CoAP endpoint and one
//! registration per server account, request dispatch, observations.
//!
//! The driver feeds datagrams (tagged with the server's Short Server ID) and time,
//! sends what `poll_transmit` yields, sleeps until `poll_timeout`, and carries out
//! `poll_action` (reboot, factory reset, …).

use super::dm::{AttrStore, DeviceOp, Dm, Effect, Op, Reply, Trees};
use super::error::OpError;
use super::observe::{self, Observation};
use super::persist::{Persist, QueuedNote, Restored, StoredObservation, StoredRegistration};
use super::registration::{self, RegParams, RetryPolicy, Version};
use super::request;
use super::tree::WriteMode;
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
/// How long a server's write or execute on an end device waits for the device.
const DEVICE_ANSWER: Duration = Duration::from_secs(20);
/// The grid observation deadlines are evaluated on (see `observation_deadline`).
const NOTIFY_TICK: Duration = Duration::from_millis(100);
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
    /// /5 Firmware Update: present when an installer is configured.
    pub firmware: Option<FirmwareSetup>,
    /// /9 Software Management (one instance per package): present with `[software]`.
    pub software: Option<SoftwareSetup>,
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
            firmware: None,
            software: None,
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
    /// An end device must carry this out; the driver answers with `device_done`.
    Device {
        ticket: u64,
        op: DeviceOp,
    },
    /// Work of /5 Firmware Update; the driver reports with `firmware_event`.
    Firmware(FirmwareTask),
    /// Work of an end device's /prefix/5; the driver reports with
    /// `device_firmware_event`.
    DeviceFirmware(String, FirmwareTask),
    /// Work of /9 Software Management on an instance; the driver reports with
    /// `software_event`.
    Software(u16, SoftwareTask),
}

/// A server's request waiting for its end devices (several for a Write-Composite
/// across devices): answered when the last one has, with the first failure if any.
#[derive(Debug)]
struct Deferred {
    ssid: u16,
    inc: Incoming,
    /// The ops still out, by ticket.
    waiting: HashMap<u64, DeviceOp>,
    failed: Option<OpError>,
    expires: Instant,
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
    /// What the network said of the server since it last answered (port refused):
    /// the reason given if the pending exchange times out.
    net_hint: Option<String>,
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
    /// While a device's values are being checked: the time it gave them.
    sample_time: Option<f64>,
    /// The gateway's MSISDN, for `sms=`.
    sms_number: Option<String>,
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
    /// Requests waiting for an end device, by ticket.
    /// By request: the first ticket of its ops.
    deferred: HashMap<u64, Deferred>,
    /// Ticket → request.
    tickets: HashMap<u64, u64>,
    next_ticket: u64,
    /// Set by `process` when the request it handled must wait for an end device.
    deferring: Vec<DeviceOp>,
    /// Changes whenever notification attributes may have changed (any server
    /// request: Write-Attributes, or a write of /1/x/2-3; a restore): observations'
    /// cached attributes older than this are looked up again.
    attrs_generation: u64,
    /// /5 Firmware Update, when configured.
    firmware: Option<crate::lwm2m::firmware::Firmware>,
    fw_push: Option<push::PushRx>,
    /// End devices' /5 by prefix, for those whose file has `[firmware]`.
    device_firmware: std::collections::BTreeMap<String, firmware::DeviceFirmware>,
    /// /9 Software Management by instance, when configured.
    software: std::collections::BTreeMap<u16, crate::lwm2m::firmware::Software>,
    sw_push: std::collections::BTreeMap<u16, push::PushRx>,
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
            sample_time: None,
            sms_number: None,
            next_note_id: 1,
            epoch: now,
            now,
            reg_activity: Vec::new(),
            factory: Default::default(),
            deferred: HashMap::new(),
            tickets: HashMap::new(),
            next_ticket: 1,
            deferring: Vec::new(),
            attrs_generation: 0,
            firmware: None,
            fw_push: None,
            device_firmware: Default::default(),
            software: Default::default(),
            sw_push: Default::default(),
        };
        if let Some(setup) = &c.cfg.firmware {
            c.firmware = Some(Self::firmware_machine(setup));
            c.sync_firmware_values();
        }
        c.software_setup_instances();
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
                    seed.wrapping_add((n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
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
                net_hint: None,
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
                last_error: s.last_error.clone().or_else(|| s.net_hint.clone()),
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
            sms: self.sms_number.clone(),
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

    /// The servers this client is asleep for (queue mode).
    pub fn asleep_servers(&self) -> impl Iterator<Item = u16> + '_ {
        self.sessions.iter().filter(|s| s.asleep).map(|s| s.ssid)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The driver's wall clock (Unix seconds): timestamps of stored notifications and
    /// registration expiry, which must survive restarts, are wall-clock times.
    /// Current Time (/3/0/13) follows it, so a notification at time t carries the
    /// time of t and not that of an earlier sampling.
    pub fn set_wall_clock(&mut self, unix: f64) {
        self.wall = unix;
        if self
            .trees
            .gateway
            .objects
            .get(&3)
            .is_some_and(|o| o.contains_key(&0))
        {
            self.trees
                .gateway
                .set(3, 0, 13, Value::Time(unix.floor() as i64));
        }
    }

    /// An observation's next deadline, moved up to the next `NOTIFY_TICK` of the
    /// client's clock: observations due within one tick are evaluated together
    /// (one wake-up, one commit for their notifications), and a tick is small next
    /// to pmin and pmax, which are whole seconds.
    fn observation_deadline(&self, o: &Observation) -> Option<Instant> {
        let t = observe::deadline(o, &self.effective_attrs(o))?;
        let ticks = self.ticks(t);
        let on_grid = self.tick(ticks);
        Some(if on_grid < t {
            self.tick(ticks + 1)
        } else {
            on_grid
        })
    }

    /// Whole `NOTIFY_TICK`s from the client's epoch to `t` (rounded down).
    fn ticks(&self, t: Instant) -> u128 {
        t.saturating_duration_since(self.epoch).as_nanos() / NOTIFY_TICK.as_nanos()
    }

    fn tick(&self, n: u128) -> Instant {
        let offset = u64::try_from(n * NOTIFY_TICK.as_nanos()).unwrap_or(u64::MAX);
        self.epoch + Duration::from_nanos(offset)
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
            consider(self.observation_deadline(o));
        }
        for d in self.deferred.values() {
            consider(Some(d.expires));
        }
        consider(self.push_deadline());
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
        self.sessions[idx].net_hint = None;
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
        self.expire_deferred(now);
        self.expire_pushes(now);
        self.check_due_observations(now);
    }

    /// The gateway's own number (config, or the modem's AT+CNUM): servers with an
    /// SMS binding are told it (`sms=`) in the next Register or Update.
    pub fn set_sms_number(&mut self, now: Instant, number: Option<String>) {
        if self.sms_number == number {
            return;
        }
        self.sms_number = number;
        for idx in 0..self.sessions.len() {
            if self.binding(self.sessions[idx].server_inst).contains('S') {
                self.request_update(now, idx);
            }
        }
    }

    /// The server accounts as SMS sees them: /1 instance and SMS number (/0/x/9).
    pub fn sms_servers(&self) -> Vec<crate::lwm2m::sms::SmsServer> {
        let gw = &self.trees.gateway;
        self.sessions
            .iter()
            .map(|s| {
                let sec = gw.objects.get(&0).and_then(|sec| {
                    sec.keys().copied().find(|i| {
                        let is_bs = matches!(gw.get(0, *i, 1), Some(Value::Boolean(true)));
                        !is_bs && gw.get_i64(0, *i, 10) == Some(i64::from(s.ssid))
                    })
                });
                let number = sec.and_then(|i| match gw.get(0, i, 9) {
                    Some(Value::String(n)) if !n.is_empty() => Some(n.clone()),
                    _ => None,
                });
                crate::lwm2m::sms::SmsServer {
                    ssid: s.ssid,
                    server_instance: s.server_inst,
                    number,
                    security_mode: sec.and_then(|i| gw.get_i64(0, i, 6)),
                }
            })
            .collect()
    }

    /// A trigger an SMS carried, judged by `lwm2m::sms` first: what the server's
    /// Execute of /1/x/8 (or /1/x/9) would do, the work going over the server's
    /// own transport (a queue-mode sleeper wakes for it).
    pub fn sms_trigger(
        &mut self,
        now: Instant,
        server_instance: u16,
        trigger: crate::lwm2m::sms::Trigger,
    ) {
        let Some(idx) = self
            .sessions
            .iter()
            .position(|s| s.server_inst == server_instance)
        else {
            return;
        };
        let rid = match trigger {
            crate::lwm2m::sms::Trigger::Update => 8,
            crate::lwm2m::sms::Trigger::Bootstrap => 9,
        };
        self.sessions[idx].asleep = false;
        let path = Path::new(&[1, server_instance, rid]);
        self.execute(now, idx, path, Vec::new());
    }

    /// Values may have changed (the driver refreshed system resources, a bridge reported).
    pub fn values_changed(&mut self, now: Instant) {
        self.check_observations(now);
    }

    /// Values of the end device under `prefix` changed (its bridge polled it; None:
    /// a device filling the gateway's own objects). `time`: when the device says
    /// they were taken, the time of the notifications they cause (composite ones
    /// keep the gateway's clock: they may hold other devices' values too).
    pub fn device_values_changed(&mut self, now: Instant, prefix: Option<&str>, time: Option<f64>) {
        self.sample_time = time;
        self.check_observations_where(now, |_, o| {
            !o.composite.is_empty() || o.path.prefix.as_deref() == prefix
        });
        self.sample_time = None;
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
            let wall = self.wall;
            let s = &mut self.sessions[idx];
            // A registration the server still holds, as far as we know: one from a
            // previous run waiting for its Update counts too.
            let held = !s.location.is_empty() && s.expires.is_some_and(|e| e > wall);
            match s.state {
                RegState::Registered | RegState::Updating => {
                    if let Some((h, _)) = s.pending.take() {
                        s.coap.cancel(h);
                    }
                    self.deregister(now, idx, false);
                }
                RegState::Waiting { .. } if held => self.deregister(now, idx, false),
                // The answer may already be on its way: a Register the server accepts
                // now is de-registered at once (see `on_response`). Unless the port
                // was refused: then no answer is coming.
                RegState::Registering | RegState::Deregistering if s.net_hint.is_none() => {}
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

    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }

    /// Whether an observation reads the gateway's own objects (not only end
    /// devices'), directly or in a composite.
    pub fn observes_gateway_objects(&self) -> bool {
        self.observations.iter().any(|o| {
            if o.composite.is_empty() {
                o.path.prefix.is_none()
            } else {
                o.composite.iter().any(|p| p.prefix.is_none())
            }
        })
    }
}

mod firmware;
pub use firmware::{FirmwareSetup, FirmwareStatus, FirmwareTask};
mod push;
mod software;
pub use software::{SoftwareSetup, SoftwareStatus, SoftwareTask, SwCommand};
mod notify;
mod requests;
mod restore;
mod session;
#[cfg(test)]
mod tests;
