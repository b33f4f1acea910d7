//! The tokio side of the LwM2M client: the servers' peers, timers, system
//! sampling and the actions the core asks for.

use super::bootstrap::{self, CardIdentity};
use super::device_firmware::DeviceFirmwareDriver;
use super::devices::EndDevices;
use super::firmware;
use super::package::Report;
use super::peers::{Heard, PeerEvent, PeerSecurity, Peers};
use super::security;
use super::sms::SmsDriver;
use super::software;
use super::system;
use crate::coap::TxParams;
use crate::codec::Format;
use crate::config::{self, Loaded, PayloadFormat};
use crate::lwm2m::factory::DeviceInfo;
use crate::lwm2m::firmware::SwEvent;
use crate::lwm2m::{Action, Client, ClientConfig, SessionStatus, Version};
use crate::lwm2m::{FirmwareTask, SoftwareTask, SwCommand, Trees};
use crate::model::{ddf, Registry};
use crate::store::batch::Batcher;
use crate::store::Store;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How old the system facts in the gateway's objects may be when the core reads them.
const SAMPLE_FRESH: Duration = Duration::from_millis(100);

pub struct Engine {
    client: Client,
    pub devices: EndDevices,
    /// /5's downloads, checks and installer, when `[firmware]` is configured.
    pub firmware: Option<firmware::FirmwareDriver>,
    /// /9/0's downloads, checks and commands, when `[software]` is configured.
    pub software: Option<software::SoftwareDriver>,
    /// End devices' /prefix/5, for those whose file has `[firmware]`.
    pub device_firmware: DeviceFirmwareDriver,
    /// SMS triggers through the `[modem]`, when configured.
    pub sms: Option<SmsDriver>,
    /// `[sms] own_number`: wins over what the modem says.
    sms_own_number: Option<String>,
    /// When the system facts were last read into the gateway's objects.
    sampled_at: Option<Instant>,
    pub peers: Peers,
    /// DTLS settings LwM2M has no resource for, by Short Server ID (BS_PEER: the
    /// bootstrap server).
    security_local: HashMap<u16, security::Local>,
    storage_dir: PathBuf,
    system: config::SystemSection,
    store: Store,
    batch: Batcher,
    client_cfg: ClientConfig,
    reg: Registry,
    info: DeviceInfo,
    smartcard: Option<config::SmartcardSection>,
    bs_finish_timeout: Option<Duration>,
    keep_bs_peer: bool,
    /// The card the accounts came from, and the accounts it provisioned.
    card: Option<(CardIdentity, Vec<u16>)>,
    /// New accounts (from a changed card or a bootstrap server) waiting for the old
    /// ones to de-register.
    reprovision: Option<Reprovision>,
    /// Client-initiated bootstrap in progress (its peer is key 0 in `peers`).
    bs: Option<crate::lwm2m::bootstrap::Bootstrapper>,
    bs_failures: u32,
    /// A Bootstrap-Request Trigger waiting for the bootstrap server's socket.
    bs_triggered: bool,
    /// SIGTERM: no new bootstrap while the servers are de-registered.
    stopping: bool,
    bs_not_before: Option<Instant>,
    pub bs_error: Option<String>,
    /// Bootstrap-Server Account Timeout (/0/x/12): when to purge that account.
    bs_purge_at: Option<Instant>,
    /// Where the server accounts came from, for `lwgate status`.
    pub bootstrap: String,
    pub card_error: Option<String>,
    /// A card check is running on a blocking thread; its result comes on `card_rx`.
    card_checking: bool,
    card_tx: mpsc::Sender<CardRead>,
    pub card_rx: mpsc::Receiver<CardRead>,
}

/// What a re-read of the card found.
pub type CardRead = Result<(Trees, CardIdentity, Vec<u16>), bootstrap::CardFailure>;

fn format_of(f: PayloadFormat) -> Format {
    match f {
        PayloadFormat::Tlv => Format::Tlv,
        PayloadFormat::SenmlJson => Format::SenmlJson,
        PayloadFormat::SenmlCbor => Format::SenmlCbor,
        PayloadFormat::Lwm2mJson => Format::LwJson,
    }
}

/// OS-seeded randomness for message ids and tokens, without another dependency.
fn seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

pub fn registry(dirs: &[PathBuf]) -> Registry {
    let mut reg = Registry::builtin();
    let (defs, errors) = ddf::load_dirs(dirs);
    for e in errors {
        tracing::warn!("object definition skipped: {e}");
    }
    for d in defs {
        if matches!(d.id, 0..=5 | 9 | 25) {
            tracing::warn!(
                "object {} ({}) is built in; its DDF file is ignored",
                d.id,
                d.name
            );
            continue;
        }
        tracing::debug!("object {} {} v{} loaded", d.id, d.name, d.version);
        reg.insert(d);
    }
    reg
}

/// Meta key of the devices the discovering files found: JSON, file id → ids.
const KNOWN_DEVICES: &str = "known_devices";

fn known_devices(store: &Store) -> std::collections::BTreeMap<String, Vec<String>> {
    match store.get_meta(KNOWN_DEVICES) {
        Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!("the stored list of devices found is unreadable, starting without: {e}");
            Default::default()
        }),
        Ok(None) => Default::default(),
        Err(e) => {
            tracing::warn!("cannot read the devices found earlier: {e}");
            Default::default()
        }
    }
}

impl Engine {
    pub fn new(loaded: &Loaded, now: Instant, store: Store) -> Self {
        let cfg = &loaded.config;
        let info = system::device_info(&cfg.device, &loaded.endpoint);
        let reg = registry(&cfg.lwm2m.object_dirs);
        let prov = bootstrap::provision(loaded, &reg, &info, &store);
        let mut trees = prov.trees;
        if cfg.modem.is_some() {
            // /3/0/16 Supported Binding and Modes: SMS too, through the modem.
            trees
                .gateway
                .set(3, 0, 16, crate::model::Value::String("US".into()));
        }
        // Before the client exists: restored observations of end-device paths find
        // their trees.
        let mut devices = EndDevices::new();
        devices.restore_known(known_devices(&store));
        devices.apply(&loaded.devices, &mut trees, &reg);
        let storage_dir = cfg
            .store
            .path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        system::apply(&mut trees.gateway, &system::sample(&storage_dir));
        let tx_per_server = cfg
            .servers
            .iter()
            .map(|s| {
                let d = TxParams::default();
                let tx = TxParams {
                    ack_timeout: s
                        .ack_timeout
                        .map(|t| t.as_duration())
                        .unwrap_or(d.ack_timeout),
                    max_retransmit: s.max_retransmit.unwrap_or(d.max_retransmit),
                    ..d
                };
                (s.ssid, tx)
            })
            .collect();
        let client_cfg = ClientConfig {
            endpoint: loaded.endpoint.clone(),
            version: match cfg.lwm2m.version {
                config::Lwm2mVersion::V1_0 => Version::V1_0,
                config::Lwm2mVersion::V1_1 => Version::V1_1,
            },
            tx: TxParams::default(),
            tx_per_server,
            format_v10: format_of(cfg.lwm2m.format_1_0),
            format_v11: format_of(cfg.lwm2m.format_1_1),
            block_size: 1024,
            queue_cap: cfg.store.queue_cap,
            queue_timeout: cfg
                .servers
                .iter()
                .filter_map(|s| s.queue_timeout.map(|t| (s.ssid, t.as_duration())))
                .collect(),
            confirmable_notifications: cfg
                .servers
                .iter()
                .filter_map(|s| s.confirmable_notifications.map(|c| (s.ssid, c)))
                .collect(),
            firmware: firmware::setup(
                cfg.firmware.as_ref(),
                &cfg.store.path,
                &info.firmware_version,
            ),
            software: software::setup(cfg.software.as_ref(), &cfg.store.path),
        };
        let mut client = Client::new(client_cfg.clone(), reg.clone(), trees, now, seed());
        client.set_wall_clock(unix_now());
        match store.load() {
            Ok(r) => {
                if !r.registrations.is_empty() || !r.queue.is_empty() {
                    tracing::info!(
                        "resuming: {} registration(s), {} observation(s), {} stored notification(s)",
                        r.registrations.len(),
                        r.observations.len(),
                        r.queue.len()
                    );
                }
                client.restore(r);
            }
            Err(e) => tracing::error!("cannot load the stored state, starting afresh: {e}"),
        }
        let (card_tx, card_rx) = mpsc::channel(1);
        let mut engine = Self {
            client,
            devices,
            firmware: firmware::FirmwareDriver::new(cfg.firmware.as_ref(), &cfg.store.path),
            software: software::SoftwareDriver::new(cfg.software.as_ref(), &cfg.store.path),
            device_firmware: DeviceFirmwareDriver::new(&cfg.store.path),
            sms: cfg.modem.as_ref().map(|m| {
                SmsDriver::start(m, cfg.sms.as_ref().map(|s| s.policy()).unwrap_or_default())
            }),
            sms_own_number: cfg.sms.as_ref().and_then(|s| s.own_number.clone()),
            sampled_at: Some(now),
            peers: Peers::default(),
            security_local: security_locals(cfg),
            storage_dir,
            system: cfg.system.clone(),
            store,
            batch: Batcher::default(),
            client_cfg,
            reg,
            info,
            smartcard: cfg
                .bootstrap
                .as_ref()
                .and_then(|b| b.smartcard.clone())
                .filter(|s| s.enabled),
            bootstrap: prov.source,
            card: prov.card.map(|c| (c, prov.card_ssids)),
            reprovision: None,
            bs: None,
            bs_failures: 0,
            bs_triggered: false,
            stopping: false,
            bs_not_before: None,
            bs_error: None,
            bs_purge_at: None,
            keep_bs_peer: false,
            bs_finish_timeout: cfg
                .bootstrap
                .as_ref()
                .and_then(|b| b.server.as_ref())
                .and_then(|s| s.finish_timeout)
                .map(|t| t.as_duration()),
            card_error: prov.card_error,
            card_checking: false,
            card_tx,
            card_rx,
        };
        let peers = engine.server_peers();
        engine.peers.reset(peers);
        engine.sync_device_firmware(now);
        if let Some(n) = engine.sms_own_number.clone() {
            engine.client.set_sms_number(now, Some(n));
        }
        engine
    }

    /// What the modem bridge reports: a message to judge, its state, a message
    /// it had to drop.
    pub fn modem_event(&mut self, now: Instant, ev: lwgate_bridges::modem::ModemEvent) {
        use lwgate_bridges::modem::ModemEvent;
        let Some(sms) = self.sms.as_mut() else {
            return;
        };
        match ev {
            ModemEvent::Sms(m) => {
                let servers = self.client.sms_servers();
                if let Some((inst, trigger)) = sms.received(now, m, &servers).trigger {
                    self.sample();
                    self.client.sms_trigger(now, inst, trigger);
                }
            }
            ModemEvent::State(st) => {
                let own = sms.state_changed(st);
                // The radio resources of /4/0 are the modem's.
                let radio = sms.radio();
                for (res, v) in &radio {
                    self.client
                        .trees
                        .gateway
                        .set(4, 0, *res, crate::model::Value::Integer(*v));
                }
                if !radio.is_empty() {
                    self.client.values_changed(now);
                }
                if self.sms_own_number.is_none() && own.is_some() {
                    self.client.set_sms_number(now, own);
                }
            }
            ModemEvent::Discarded { sender, reason } => sms.discarded(sender, reason),
        }
    }

    /// A datagram, a socket opened or refused, an address that did not resolve.
    pub fn peer_event(&mut self, now: Instant, ev: PeerEvent) {
        let heard = self.peers.handle(ev);
        self.heard(now, heard);
    }

    fn heard(&mut self, now: Instant, heard: Vec<Heard>) {
        for h in heard {
            match h {
                Heard::Datagram(key, bytes) => self.datagram(now, key, &bytes),
                Heard::Unreachable(key, why) if key == BS_PEER => self.bootstrap_failed(now, why),
                Heard::Unreachable(key, why) => self.client.unreachable(now, key, &why),
                Heard::Refused(key, why) if key != BS_PEER => self.client.refused(now, key, &why),
                Heard::Refused(..) => {}
                Heard::TlsAlert(key, code) if key != BS_PEER => {
                    self.client.tls_alert(now, key, code)
                }
                Heard::TlsAlert(..) => {}
            }
        }
    }

    /// One peer per server account, secured as its Security instance says.
    fn server_peers(&self) -> Vec<(u16, String, PeerSecurity)> {
        self.client
            .servers()
            .into_iter()
            .map(|(ssid, uri)| {
                let local = self.security_local.get(&ssid).cloned().unwrap_or_default();
                let sec = security::peer_security(&self.client.trees.gateway, Some(ssid), &local);
                (ssid, uri, sec)
            })
            .collect()
    }

    /// The bootstrap server's peer, secured as its Security instance says.
    fn bootstrap_peer_security(&self) -> PeerSecurity {
        let local = self
            .security_local
            .get(&BS_PEER)
            .cloned()
            .unwrap_or_default();
        security::peer_security(&self.client.trees.gateway, None, &local)
    }

    pub fn deadline(&self) -> Option<Instant> {
        [
            self.client.poll_timeout(),
            self.batch.deadline(),
            self.bs.as_ref().and_then(|b| b.poll_timeout()),
            self.peers.deadline(),
            // A DTLS failure found while sending is taken at once, by `timeout`.
            self.peers.has_heard().then(Instant::now),
            self.bs_not_before.filter(|_| self.bs.is_none()),
            self.bs_purge_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn datagram(&mut self, now: Instant, ssid: u16, bytes: &[u8]) {
        if ssid == BS_PEER {
            if self.bs.is_none() && self.reprovision.is_none() {
                // Server-initiated bootstrap: smartcard and factory were tried at start.
                let mut b = crate::lwm2m::bootstrap::Bootstrapper::server_initiated(
                    now,
                    TxParams::default(),
                    seed(),
                    self.client_cfg.version,
                    self.reg.clone(),
                    self.client.trees.gateway.clone(),
                );
                if let Some(t) = self.bs_finish_timeout {
                    b = b.with_finish_timeout(t);
                }
                self.bs = Some(b);
            }
            if let Some(b) = self.bs.as_mut() {
                b.handle_datagram(now, bytes);
            }
            return;
        }
        // A request may read the system's values; an ACK or a response cannot (a
        // hundred notifications a second bring a hundred ACKs).
        if is_request(bytes) {
            self.sample();
        } else {
            self.client.set_wall_clock(unix_now());
        }
        self.client.handle_datagram(now, ssid, bytes);
    }

    pub fn timeout(&mut self, now: Instant) {
        // Observations are evaluated here: their values must be those of this
        // moment; the system's only matter to observations of the gateway's own
        // objects (the 1 s refresh keeps them current for the rest).
        if self.client.observes_gateway_objects() {
            self.sample();
        } else {
            self.client.set_wall_clock(unix_now());
        }
        self.peers.handle_timeout(now);
        let heard = self.peers.take_heard();
        self.heard(now, heard);
        self.client.handle_timeout(now);
        if let Some(b) = self.bs.as_mut() {
            b.handle_timeout(now);
        }
    }

    /// Reads the system's values into the gateway's objects just before the core
    /// reads them: the clock (and with it /3/0/13) every time, the rest (storage,
    /// addresses, routes: slow to change, dearer to read) when older than
    /// `SAMPLE_FRESH`, so a burst of datagrams does not re-read /proc for each.
    fn sample(&mut self) {
        self.client.set_wall_clock(unix_now());
        let now = Instant::now();
        if self
            .sampled_at
            .is_some_and(|t| now.duration_since(t) < SAMPLE_FRESH)
        {
            return;
        }
        self.sampled_at = Some(now);
        system::apply(
            &mut self.client.trees.gateway,
            &system::sample(&self.storage_dir),
        );
    }

    /// Whether the driver's 1 s tick has work here: an observation of the gateway's
    /// own objects (their system values re-sampled, `refresh`) or an update waiting
    /// for its restart (`firmware_tick`). Otherwise the tick need not wake us.
    pub fn wants_ticks(&self) -> bool {
        self.client.observes_gateway_objects()
            || self
                .client
                .firmware_status()
                .is_some_and(|s| s.state == crate::lwm2m::firmware::State::Updating)
    }

    /// Re-samples the system; observers of changed values get notified.
    pub fn refresh(&mut self, now: Instant) {
        self.sample();
        self.client.values_changed(now);
    }

    /// What an end device's bridge reported.
    pub fn device_event(&mut self, now: Instant, id: &str, ev: lwgate_bridges::device::Event) {
        let changed = self
            .devices
            .event(id, ev, &mut self.client.trees, &self.reg);
        if let Some(known) = self.devices.take_known() {
            // Kept at once: a device found is in /25 for servers from now on.
            let text = serde_json::to_string(known).unwrap_or_default();
            if let Err(e) = self.store.set_meta(KNOWN_DEVICES, &text) {
                tracing::warn!("cannot store the devices found: {e}");
            }
        }
        if self.devices.take_objects_changed() {
            self.client.objects_changed(now);
        }
        if let Some(c) = changed {
            self.client.set_wall_clock(unix_now());
            // Observers of its values get them with the time the device gave them
            // (an MQTT message's own time), or the time they were read.
            self.client
                .device_values_changed(now, c.prefix.as_deref(), c.time);
        }
    }

    /// An end device carried out (or not) a server's write or execute.
    pub fn device_done(
        &mut self,
        now: Instant,
        ticket: u64,
        result: Result<(), crate::lwm2m::error::OpError>,
    ) {
        self.sample();
        self.client.device_done(now, ticket, result);
    }

    /// devices.d re-read: only the difference is applied; /25 changes bring an Update.
    pub fn reload_devices(&mut self, now: Instant, devices: &[config::LoadedDevice]) {
        let changed = self
            .devices
            .apply(devices, &mut self.client.trees, &self.reg);
        self.sync_device_firmware(now);
        if changed {
            self.client.objects_changed(now);
        }
    }

    /// Gives the running end devices with `[firmware]` their /prefix/5 (restored
    /// from the state database), and takes it from those that lost it.
    pub fn sync_device_firmware(&mut self, now: Instant) {
        for c in self.device_firmware.sync(self.devices.firmware_devices()) {
            let stored = match &c.setup {
                Some(_) => self.store.device_firmware(&c.prefix).unwrap_or_else(|e| {
                    tracing::warn!(prefix = %c.prefix, "cannot read the device's firmware-update state: {e}");
                    None
                }),
                None => None,
            };
            self.client
                .set_device_firmware(now, &c.prefix, c.setup, stored.as_deref());
        }
    }

    /// A report of an end device's package work, to its machine.
    pub fn device_firmware_report(&mut self, now: Instant, prefix: &str, report: firmware::Report) {
        if let Some(ev) = self.firmware_event_of(now, report) {
            self.client.device_firmware_event(now, prefix, ev);
        }
    }

    /// `lwgate status` lines of the end devices' /5: prefix, state, result,
    /// progress, the reason of a failure.
    pub fn device_firmware_status(&self) -> Vec<String> {
        self.client
            .device_firmware_status()
            .into_iter()
            .map(|(prefix, s)| {
                let progress = self.device_firmware.describe_progress(&prefix);
                format!("{prefix}: {}", describe_firmware(&s, progress))
            })
            .collect()
    }

    /// A request from the control socket.
    pub fn command(&mut self, now: Instant, cmd: crate::control::Command) {
        self.sample();
        match cmd {
            crate::control::Command::Send { ssid, paths, reply } => {
                let parsed: Result<Vec<crate::model::Path>, String> = paths
                    .iter()
                    .map(|p| crate::model::Path::parse(p).map_err(|e| format!("{p}: {e}")))
                    .collect();
                // No --server: the first server.
                let ssid = ssid.or_else(|| self.client.servers().first().map(|s| s.0));
                let Some(ssid) = ssid else {
                    let _ = reply.send(Err("there is no server account".into()));
                    return;
                };
                self.client.set_wall_clock(unix_now());
                let result = parsed.and_then(|p| self.client.send(now, ssid, &p));
                let _ = reply.send(result);
            }
        }
    }

    pub fn shutdown(&mut self, now: Instant) {
        self.stopping = true;
        self.client.shutdown(now);
    }

    /// The shutdown deadline passed: says which servers did not answer in time.
    pub fn report_unfinished_shutdown(&self) {
        for s in self.client.status(Instant::now()) {
            let net = self
                .peers
                .error(s.ssid)
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            match s.state.as_str() {
                "deregistering" => tracing::warn!(
                    ssid = s.ssid,
                    server = %s.uri,
                    "no answer to the De-register of {} before the shutdown deadline{net}; the server keeps the registration until its lifetime ({} s) ends",
                    s.location.as_deref().unwrap_or("/"),
                    s.lifetime
                ),
                "registering" => tracing::warn!(
                    ssid = s.ssid,
                    server = %s.uri,
                    "a Register was still unanswered at the shutdown deadline{net}"
                ),
                _ => {}
            }
        }
    }

    pub fn stopped(&self) -> bool {
        self.client.is_stopped()
    }

    /// Commits what the core asked to keep (one transaction: a group commit per
    /// event), then sends what it queued and carries out its actions. Durable first:
    /// a notification is never sent before the record that replaces it is stored.
    pub fn flush(&mut self) {
        let now = Instant::now();
        self.check_card();
        // The bootstrap server's datagrams (the Finish response among them) go out
        // before a finished bootstrap is taken down.
        if let Some(b) = self.bs.as_mut() {
            while let Some(bytes) = b.poll_transmit() {
                self.peers.send(BS_PEER, bytes);
            }
        }
        self.after_bootstrap(now);
        self.purge_bootstrap_account(now);
        self.maybe_bootstrap(now, false);
        // A bootstrap started just now sends its Bootstrap-Request now: no later
        // event may come to flush it (the loop sleeps when idle).
        if let Some(b) = self.bs.as_mut() {
            while let Some(bytes) = b.poll_transmit() {
                self.peers.send(BS_PEER, bytes);
            }
        }
        self.finish_reprovision(now);
        let ops: Vec<_> = std::iter::from_fn(|| self.client.poll_persist()).collect();
        if let Some(batch) = self.batch.push(ops, Instant::now()) {
            self.commit(&batch);
        }
        for ssid in self.client.asleep_servers() {
            self.peers.asleep(ssid);
        }
        while let Some((ssid, bytes)) = self.client.poll_transmit() {
            self.peers.send(ssid, bytes);
        }
        while let Some(action) = self.client.poll_action() {
            self.act(action);
        }
    }

    fn commit(&mut self, ops: &[crate::lwm2m::persist::Persist]) {
        if let Err(e) = self.store.apply(ops) {
            tracing::error!("state database: {} change(s) not saved: {e}", ops.len());
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Reboot => run_later("reboot", &self.system.reboot_command),
            Action::FactoryReset => run_later("factory reset", &self.system.factory_reset_command),
            Action::Execute { path, .. }
                if path.prefix.is_none()
                    && path.object() == Some(1)
                    && path.resource() == Some(9) =>
            {
                tracing::info!("Bootstrap-Request Trigger executed by a server");
                self.maybe_bootstrap(Instant::now(), true);
            }
            Action::Execute { path, .. } => {
                tracing::warn!(%path, "Execute on {path}: nothing handles it in this version")
            }
            Action::Written(path) if path.to_string() == "/3/0/13" => {
                tracing::info!(
                    "a server wrote the current time; lwgate leaves the system clock to NTP"
                )
            }
            Action::Written(_) => {}
            Action::Device { ticket, op } => self.devices.command(ticket, op),
            Action::Firmware(task) => {
                let dtls = match &task {
                    FirmwareTask::Download { uri, .. } if uri.starts_with("coaps://") => {
                        self.package_dtls(uri)
                    }
                    _ => None,
                };
                match self.firmware.as_mut() {
                    Some(f) => f.task(task, dtls),
                    None => tracing::warn!("firmware task without [firmware]: {task:?}"),
                }
            }
            Action::DeviceFirmware(prefix, task) => {
                let dtls = match &task {
                    FirmwareTask::Download { uri, .. } if uri.starts_with("coaps://") => {
                        self.package_dtls(uri)
                    }
                    _ => None,
                };
                self.device_firmware.task(&prefix, task, dtls);
            }
            Action::Software(inst, task) => {
                let dtls = match &task {
                    SoftwareTask::Download { uri, .. } if uri.starts_with("coaps://") => {
                        self.package_dtls(uri)
                    }
                    _ => None,
                };
                match self.software.as_mut() {
                    Some(s) => s.task(inst, task, dtls),
                    None => tracing::warn!("software task without [software]: {task:?}"),
                }
            }
        }
    }

    /// DTLS for a coaps:// Package URI: the session settings of the LwM2M server
    /// account on the same host and port (a server that hands out a CoAP URL of
    /// its own, as ThingsBoard does, knows the gateway by those credentials).
    fn package_dtls(&self, uri: &str) -> Option<crate::dtls::DtlsConfig> {
        let authority = |u: &str| -> Option<(String, u16)> {
            let rest = u.strip_prefix("coaps://")?;
            let auth = rest.split(['/', '?', '#']).next()?;
            let (host, port) = match auth.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || auth.starts_with('[') => {
                    (h.to_string(), p.parse().ok()?)
                }
                _ => (auth.to_string(), 5684),
            };
            Some((host.to_ascii_lowercase(), port))
        };
        let want = authority(uri)?;
        let (ssid, _) = self
            .client
            .servers()
            .into_iter()
            .find(|(_, u)| authority(u).as_ref() == Some(&want))?;
        let local = self.security_local.get(&ssid).cloned().unwrap_or_default();
        match security::peer_security(&self.client.trees.gateway, Some(ssid), &local) {
            PeerSecurity::Dtls(cfg, _) => Some(*cfg),
            _ => None,
        }
    }

    /// A firmware task's report: to the machine (an installer's exit with the
    /// machine's clock), progress to `lwgate status`.
    pub fn firmware_report(&mut self, now: Instant, report: firmware::Report) {
        if let Some(ev) = self.firmware_event_of(now, report) {
            self.client.firmware_event(now, ev);
        }
    }

    /// The machine's event for a package report (None: progress, kept by the
    /// driver).
    fn firmware_event_of(
        &self,
        now: Instant,
        report: firmware::Report,
    ) -> Option<crate::lwm2m::firmware::Event> {
        use crate::lwm2m::firmware::Event;
        let ev = match report {
            Report::DownloadProgress { id, bytes, total } => {
                Event::DownloadProgress { id, bytes, total }
            }
            Report::DownloadFinished { id, bytes } => Event::DownloadFinished { id, bytes },
            Report::DownloadFailed {
                id,
                failure,
                detail,
            } => Event::DownloadFailed {
                id,
                failure,
                detail,
            },
            Report::VerificationOk { id, info } => Event::VerificationOk { id, info },
            Report::VerificationFailed {
                id,
                failure,
                detail,
            } => Event::VerificationFailed {
                id,
                failure,
                detail,
            },
            Report::PushAborted => Event::PushAborted,
            Report::CommandStarted(()) => Event::InstallStarted { now_ms: 0 },
            Report::CommandExited {
                success, detail, ..
            } => Event::InstallExited {
                success,
                detail,
                now_ms: self.client.firmware_clock_ms(now),
            },
            // Kept by the driver.
            Report::Progress(_) => return None,
        };
        Some(ev)
    }

    pub fn firmware_tick(&mut self, now: Instant) {
        self.client.firmware_tick(now);
    }

    pub fn firmware_status(&self) -> Option<String> {
        let s = self.client.firmware_status()?;
        let progress = self
            .firmware
            .as_ref()
            .and_then(|f| f.pkg.describe_progress());
        Some(describe_firmware(&s, progress))
    }

    /// A software task's report: to the machine of its /9 instance.
    pub fn software_report(&mut self, now: Instant, (inst, report): (u16, software::Report)) {
        let ev = match report {
            Report::DownloadProgress { id, bytes, total } => {
                SwEvent::DownloadProgress { id, bytes, total }
            }
            Report::DownloadFinished { id, bytes } => SwEvent::DownloadFinished { id, bytes },
            Report::DownloadFailed {
                id,
                failure,
                detail,
            } => SwEvent::DownloadFailed {
                id,
                failure,
                detail,
            },
            Report::VerificationOk { id, info } => SwEvent::VerificationOk { id, info },
            Report::VerificationFailed {
                id,
                failure,
                detail,
            } => SwEvent::VerificationFailed {
                id,
                failure,
                detail,
            },
            Report::PushAborted => SwEvent::PushAborted,
            // The machine marked itself busy when it asked for the command.
            Report::CommandStarted(_) => return,
            Report::CommandExited {
                command,
                success,
                detail,
            } => match command {
                SwCommand::Install => SwEvent::InstallExited { success, detail },
                SwCommand::Uninstall => SwEvent::UninstallExited { success, detail },
                SwCommand::Activate | SwCommand::Deactivate => {
                    SwEvent::ActivationExited { success, detail }
                }
            },
            // Kept by the driver.
            Report::Progress(_) => return,
        };
        self.client.software_event(now, inst, ev);
    }

    /// The `software:` line of `lwgate status`: each /9 instance (named when
    /// there are several).
    pub fn software_status(&self) -> Option<String> {
        use crate::lwm2m::firmware::SwState;
        let all = self.client.software_status();
        let several = all.len() > 1 || all.first().is_some_and(|(i, _)| *i != 0);
        let lines: Vec<String> = all
            .into_iter()
            .map(|(inst, s)| {
                let mut line = if several {
                    format!("/9/{inst}: ")
                } else {
                    String::new()
                };
                line.push_str(&format!(
                    "{:?}, result {} ({:?})",
                    s.state,
                    s.result.code(),
                    s.result
                ));
                if !s.name.is_empty() {
                    line.push_str(&format!(", {} {}", s.name, s.version));
                }
                if s.state == SwState::Installed {
                    line.push_str(if s.active { ", active" } else { ", inactive" });
                }
                if let Some(b) = s.busy {
                    line.push_str(&format!(", {b:?}").to_lowercase());
                }
                if s.state == SwState::DownloadStarted {
                    if let Some(p) = self
                        .software
                        .as_ref()
                        .and_then(|d| d.package(inst))
                        .and_then(|p| p.describe_progress())
                    {
                        line.push_str(&format!(", {p}"));
                    }
                }
                if let Some(d) = s.detail {
                    line.push_str(&format!(": {d}"));
                }
                line
            })
            .collect();
        (!lines.is_empty()).then(|| lines.join("; "))
    }

    pub fn status(&self, now: Instant) -> Vec<(SessionStatus, Option<String>, Option<String>)> {
        self.client
            .status(now)
            .into_iter()
            .map(|s| {
                let net = self.peers.error(s.ssid);
                let security = self.peers.security(s.ssid);
                (s, net, security)
            })
            .collect()
    }

    pub fn observation_count(&self) -> usize {
        self.client.observation_count()
    }
}

/// A CoAP request (code class 0, not the empty 0.00 of an ACK or RST).
fn is_request(datagram: &[u8]) -> bool {
    datagram
        .get(1)
        .is_some_and(|&code| code != 0 && code >> 5 == 0)
}

impl Drop for Engine {
    fn drop(&mut self) {
        let rest: Vec<_> = std::iter::from_fn(|| self.client.poll_persist()).collect();
        self.batch.push(rest, Instant::now());
        if let Some(ops) = self.batch.take() {
            self.commit(&ops);
        }
    }
}

/// New accounts: the trees, the card they came from (and its accounts), a label for status.
type Reprovision = (Trees, Option<(CardIdentity, Vec<u16>)>, String);

/// The config's DTLS settings that have no LwM2M resource: a CA file and the
/// handshake deadline, per `[[server]]` and for `[bootstrap.server]`.
fn security_locals(cfg: &config::Config) -> HashMap<u16, security::Local> {
    let mut m: HashMap<u16, security::Local> = cfg
        .servers
        .iter()
        .map(|s| {
            let local = security::Local {
                ca_file: s.ca_file.clone(),
                handshake_timeout: Some(s.handshake_timeout.as_duration()),
                certificate: s.certificate.clone(),
            };
            (s.ssid, local)
        })
        .collect();
    if let Some(bs) = cfg.bootstrap.as_ref().and_then(|b| b.server.as_ref()) {
        let local = security::Local {
            ca_file: bs.ca_file.clone(),
            handshake_timeout: Some(bs.handshake_timeout.as_duration()),
            certificate: bs.certificate.clone(),
        };
        m.insert(BS_PEER, local);
    }
    m
}

/// Key of the bootstrap server in `peers` (0 is not a valid Short Server ID).
pub const BS_PEER: u16 = 0;

pub(super) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs a configured command a moment later, so the server's response leaves first.
fn run_later(what: &'static str, cmd: &[String]) {
    let Some((prog, args)) = cmd.split_first() else {
        tracing::error!(
            "{what} requested by a server, but no command is configured ([system] in lwgate.toml)"
        );
        return;
    };
    tracing::warn!("{what} requested by a server: running {}", cmd.join(" "));
    let prog = prog.clone();
    let args = args.to_vec();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match tokio::process::Command::new(&prog)
            .args(&args)
            .status()
            .await
        {
            Ok(s) if s.success() => tracing::info!("{what} command finished"),
            Ok(s) => tracing::error!("{what} command {prog} failed: {s}"),
            Err(e) => tracing::error!("{what} command {prog} could not run: {e}"),
        }
    });
}

mod accounts;

/// A /5 for `lwgate status`: state, result, the progress of a download, where
/// from (without the URI's query: a signed URL's is a credential), why it failed.
fn describe_firmware(s: &crate::lwm2m::FirmwareStatus, progress: Option<String>) -> String {
    let mut line = format!("{:?}, result {} ({:?})", s.state, s.result.code(), s.result);
    if s.state == crate::lwm2m::firmware::State::Downloading {
        if let Some(p) = progress {
            line.push_str(&format!(", {p}"));
        }
    }
    if !s.uri.is_empty() {
        let shown = s.uri.split(['?', '#']).next().unwrap_or_default();
        line.push_str(&format!(", from {shown}"));
    }
    if let Some(d) = &s.detail {
        line.push_str(&format!(": {d}"));
    }
    line
}
