//! The end devices behind the gateway, as the driver holds them: their bridges
//! (tasks of their own, behind `lwgate_bridges::Bridges`), their /25 instances and
//! trees in the client, what they report, and the writes and executes servers ask
//! of them. Reload applies only the difference: an unchanged device keeps running,
//! and its observations with it.
//!
//! A discovering file (MQTT devices named by their topics) is no device itself: the
//! devices it finds get their /25 instances when they first speak, and are kept
//! (`known`, in the state database) so that they are there again after a restart,
//! before they speak. A device with `target = "gateway"` has no /25 instance: its
//! resources are the gateway's own (a GPS receiver as /6).

use crate::config::LoadedDevice;
use crate::lwm2m::dm::{DeviceOp, Trees};
use crate::lwm2m::error::OpError;
use crate::lwm2m::gateway::{self, EndDevice, ERROR_NONE, ERROR_UNREACHABLE};
use crate::model::{Registry, Value};
use crate::status::DeviceStatus;
use lwgate_bridges::device::{
    Availability, Command, CommandError, Event, Exposed, ResourceId, Stats,
};
use lwgate_bridges::manager::Bridges;
use lwgate_bridges::Target;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why an end device's values are unavailable before its first poll.
const NOT_POLLED_YET: &str = "the device has not been polled yet";
/// Longest a command waits for its bridge (which has its own, shorter, timeouts).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Objects the gateway serves itself: a device may not put resources there.
const GATEWAY_OWN: [u16; 8] = [0, 1, 2, 3, 4, 5, 9, 25];

#[derive(Debug, Clone, PartialEq)]
enum Place {
    /// Behind /25: its instance there, its tree under its prefix.
    EndDevice { inst: u16 },
    /// In the gateway's own tree: the (object, instance)s it fills.
    Gateway { instances: Vec<(u16, u16)> },
}

struct Running {
    file: LoadedDevice,
    prefix: String,
    place: Place,
    /// The discovering file that found it.
    origin: Option<String>,
    availability: Availability,
    stats: Stats,
}

impl Running {
    /// The tree its values go to.
    fn tree_prefix(&self) -> Option<&str> {
        match self.place {
            Place::EndDevice { .. } => Some(&self.prefix),
            Place::Gateway { .. } => None,
        }
    }
}

/// A discovering file, running.
struct Discovering {
    file: LoadedDevice,
    /// What each device it finds exposes.
    exposed: Vec<Exposed>,
}

pub struct EndDevices {
    bridges: Bridges,
    pub events: mpsc::Receiver<(String, Event)>,
    done_tx: mpsc::Sender<(u64, Result<(), OpError>)>,
    /// Answers to deferred writes and executes, by ticket.
    pub done: mpsc::Receiver<(u64, Result<(), OpError>)>,
    running: BTreeMap<String, Running>,
    discovering: BTreeMap<String, Discovering>,
    /// Devices found by each discovering file, in the order found; kept across
    /// restarts (`take_known`).
    known: BTreeMap<String, Vec<String>>,
    known_changed: bool,
    /// /25 or the gateway's object list changed outside `apply` (a device found).
    objects_changed: bool,
    /// Devices in devices.d that are not running (disabled, or their bridge refused
    /// them), with why, for `lwgate status`.
    idle: BTreeMap<String, (LoadedDevice, String)>,
    /// A device started, stopped or changed availability since `take_changed`.
    changed: bool,
}

impl EndDevices {
    /// Must be called inside the runtime: bridges spawn their tasks.
    pub fn new() -> Self {
        let (tx, events) = mpsc::channel(1024);
        let (done_tx, done) = mpsc::channel(64);
        Self {
            bridges: Bridges::new(tx),
            events,
            done_tx,
            done,
            running: BTreeMap::new(),
            discovering: BTreeMap::new(),
            known: BTreeMap::new(),
            known_changed: false,
            objects_changed: false,
            idle: BTreeMap::new(),
            changed: true,
        }
    }

    /// The devices discovering files found in earlier runs (before the first `apply`).
    pub fn restore_known(&mut self, known: BTreeMap<String, Vec<String>>) {
        self.known = known;
    }

    /// The devices found so far, when they changed since last asked (to be stored).
    pub fn take_known(&mut self) -> Option<&BTreeMap<String, Vec<String>>> {
        std::mem::take(&mut self.known_changed).then_some(&self.known)
    }

    /// Whether the object list changed outside `apply` since last asked.
    pub fn take_objects_changed(&mut self) -> bool {
        std::mem::take(&mut self.objects_changed)
    }

    /// Brings the running set to `devices`: stops the removed and changed ones,
    /// starts the new and changed ones, leaves the rest alone. True when /25
    /// changed (a Registration Update is due).
    pub fn apply(&mut self, devices: &[LoadedDevice], trees: &mut Trees, reg: &Registry) -> bool {
        let wanted: BTreeMap<&str, &LoadedDevice> = devices
            .iter()
            .map(|d| (d.spec.device.id.as_str(), d))
            .collect();
        let same =
            |id: &str, file: &LoadedDevice| wanted.get(id).is_some_and(|d| d.spec == file.spec);
        let mut changed = false;
        let gone_files: Vec<String> = self
            .discovering
            .iter()
            .filter(|(id, d)| !same(id, &d.file))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone_files {
            self.discovering.remove(id);
            self.bridges.stop(id);
            if !wanted.contains_key(id.as_str()) {
                // Its file is gone: so are the devices it found.
                self.known.remove(id);
                self.known_changed = true;
            }
            tracing::info!(file = %id, "device discovery stopped");
        }
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(id, r)| match &r.origin {
                Some(origin) => gone_files.contains(origin),
                None => !same(id, &r.file),
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(r) = self.running.remove(&id) {
                if r.origin.is_none() {
                    self.bridges.stop(&id);
                }
                remove_from_trees(&r, trees);
                tracing::info!(device = %id, prefix = %r.prefix, "end device stopped");
                changed = true;
            }
        }
        self.idle.clear();
        self.changed = true;
        for (id, d) in wanted {
            if self.running.contains_key(id) || self.discovering.contains_key(id) {
                continue;
            }
            if !d.spec.device.enabled {
                self.idle
                    .insert(id.to_string(), (d.clone(), "disabled".into()));
                continue;
            }
            if d.spec.mqtt.as_ref().is_some_and(|m| m.discovers()) {
                match self.start_discovery(d, trees, reg) {
                    Ok(found) => changed |= found > 0,
                    Err(e) => {
                        tracing::error!(file = %d.file.display(), "device discovery not started: {e}");
                        self.idle.insert(id.to_string(), (d.clone(), e));
                    }
                }
                continue;
            }
            let started = self.bridges.start(id, &d.spec).and_then(|exposed| {
                self.place(id, d.spec.device.prefix(), d, &exposed, None, trees, reg)
            });
            match started {
                Ok(r) => {
                    tracing::info!(device = %id, prefix = %r.prefix, place = ?r.place, "end device started");
                    self.running.insert(id.to_string(), r);
                    changed = true;
                }
                Err(e) => {
                    self.bridges.stop(id);
                    tracing::error!(device = %id, file = %d.file.display(), "end device not started: {e}");
                    self.idle.insert(id.to_string(), (d.clone(), e));
                }
            }
        }
        changed
    }

    /// Starts a discovering file, with the devices it found before. How many.
    fn start_discovery(
        &mut self,
        d: &LoadedDevice,
        trees: &mut Trees,
        reg: &Registry,
    ) -> Result<usize, String> {
        let id = d.spec.device.id.clone();
        let exposed = self.bridges.start(&id, &d.spec)?;
        if let Some(obj) = undefined_object(&exposed, reg) {
            self.bridges.stop(&id);
            return Err(no_definition(obj));
        }
        self.discovering.insert(
            id.clone(),
            Discovering {
                file: d.clone(),
                exposed,
            },
        );
        let known = self.known.get(&id).cloned().unwrap_or_default();
        let mut adopted = Vec::new();
        for name in known {
            if self.found(&id, &name, trees, reg) {
                adopted.push(name);
            }
        }
        self.bridges.adopt(&id, &adopted);
        tracing::info!(file = %id, known = adopted.len(), "device discovery started");
        Ok(adopted.len())
    }

    /// A device found by the discovering file `origin`: placed behind /25 unless its
    /// name is taken. Whether it now runs.
    fn found(&mut self, origin: &str, name: &str, trees: &mut Trees, reg: &Registry) -> bool {
        let Some(disc) = self.discovering.get(origin) else {
            return false;
        };
        let taken = self.running.contains_key(name)
            || self.discovering.contains_key(name)
            || self.running.values().any(|r| r.prefix == name);
        if taken {
            let ours = self.running.get(name).map(|r| r.origin.as_deref());
            if ours != Some(Some(origin)) {
                tracing::warn!(file = %origin, device = %name, "found device left out: its name is already a device's id or prefix");
            }
            return false;
        }
        let (file, exposed) = (disc.file.clone(), disc.exposed.clone());
        match self.place(name, name, &file, &exposed, Some(origin), trees, reg) {
            Ok(r) => {
                tracing::info!(file = %origin, device = %name, place = ?r.place, "end device found");
                self.running.insert(name.to_string(), r);
                self.changed = true;
                true
            }
            Err(e) => {
                tracing::warn!(file = %origin, device = %name, "found device left out: {e}");
                false
            }
        }
    }

    /// Makes room for a started device: its /25 instance and tree, or its
    /// instances in the gateway's tree.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &self,
        id: &str,
        prefix: &str,
        d: &LoadedDevice,
        exposed: &[Exposed],
        origin: Option<&str>,
        trees: &mut Trees,
        reg: &Registry,
    ) -> Result<Running, String> {
        let spec = &d.spec.device;
        let mut instances: Vec<(u16, u16)> = exposed
            .iter()
            .map(|e| (e.id.object, e.id.instance))
            .collect();
        if d.spec.firmware.is_some() {
            // Its /5/0, which the agent keeps (dm::agents_object).
            instances.push((5, 0));
        }
        instances.sort_unstable();
        instances.dedup();
        if let Some(obj) = undefined_object(exposed, reg) {
            return Err(no_definition(obj));
        }
        let running = |place| Running {
            file: d.clone(),
            prefix: prefix.to_string(),
            place,
            origin: origin.map(str::to_string),
            availability: Availability::Starting,
            stats: Stats::default(),
        };
        if spec.target == Target::Gateway {
            if let Some((obj, _)) = instances.iter().find(|(o, _)| GATEWAY_OWN.contains(o)) {
                return Err(format!(
                    "object {obj} is the gateway's own: a device with target = \"gateway\" may fill other objects only (such as 6 Location)"
                ));
            }
            if let Some((obj, inst)) = instances
                .iter()
                .find(|(o, i)| trees.gateway.instance(*o, *i).is_some())
            {
                return Err(format!(
                    "/{obj}/{inst} of the gateway is already filled by another device"
                ));
            }
            for (obj, inst) in &instances {
                trees
                    .gateway
                    .objects
                    .entry(*obj)
                    .or_default()
                    .entry(*inst)
                    .or_default();
            }
            return Ok(running(Place::Gateway { instances }));
        }
        let dev = EndDevice {
            id: id.to_string(),
            prefix: prefix.to_string(),
            manufacturer: spec.manufacturer.clone(),
            model: spec.model.clone(),
            serial: spec.serial.clone(),
            firmware_version: spec.firmware_version.clone(),
            instances,
        };
        let tree = gateway::device_tree(&dev);
        let inst = trees
            .gateway
            .free_instance_id(25)
            .ok_or("no free /25 instance")?;
        gateway::set_gateway_instance(
            &mut trees.gateway,
            inst,
            &dev,
            gateway::iot_device_objects(reg, &tree),
        );
        gateway::grant_like_device(&mut trees.gateway, inst);
        trees.devices.insert(dev.prefix.clone(), tree);
        // Until its first poll a device has no values to give: 5.03 says so, where
        // 4.04 would say the resource does not exist.
        trees.down.insert(dev.prefix.clone(), NOT_POLLED_YET.into());
        Ok(running(Place::EndDevice { inst }))
    }

    /// What a device reported. The device's prefix when its values changed
    /// (observers under it may be due).
    pub fn event(
        &mut self,
        id: &str,
        ev: Event,
        trees: &mut Trees,
        reg: &Registry,
    ) -> Option<Changed> {
        if let Event::Discovered { id: name } = ev {
            if self.found(id, &name, trees, reg) {
                let known = self.known.entry(id.to_string()).or_default();
                if !known.contains(&name) {
                    known.push(name);
                    self.known_changed = true;
                }
                self.objects_changed = true;
            }
            return None;
        }
        let r = self.running.get_mut(id)?; // None: stopped meanwhile
        let changed = Changed {
            prefix: r.tree_prefix().map(str::to_string),
            time: None,
        };
        match ev {
            Event::Values { time, values } => {
                // Values: it answers, whatever its availability event said last.
                if trees.down.get(&r.prefix).map(String::as_str) == Some(NOT_POLLED_YET) {
                    trees.down.remove(&r.prefix);
                }
                let tree = trees.get_mut(r.tree_prefix()).ok()?;
                for (rid, v) in values {
                    let ty = reg
                        .get(rid.object)
                        .and_then(|d| d.resource(rid.resource))
                        .map(|d| d.data_type);
                    match ty.and_then(|t| gateway::convert(&v, t)) {
                        Some(v) => tree.set(rid.object, rid.instance, rid.resource, v),
                        None => {
                            tracing::debug!(device = %id, resource = %rid, "value {v:?} does not fit the resource; left out")
                        }
                    }
                }
                Some(Changed {
                    time: Some(time),
                    ..changed
                })
            }
            Event::Availability { state, .. } => {
                let on_gateway = r.tree_prefix().is_none();
                let error = match &state {
                    Availability::Down { reason } => {
                        tracing::warn!(device = %id, prefix = %r.prefix, "end device down: {reason}");
                        if !on_gateway {
                            trees.down.insert(r.prefix.clone(), reason.clone());
                        }
                        ERROR_UNREACHABLE
                    }
                    Availability::Up => {
                        if matches!(r.availability, Availability::Down { .. }) {
                            tracing::info!(device = %id, prefix = %r.prefix, "end device back");
                        }
                        trees.down.remove(&r.prefix);
                        ERROR_NONE
                    }
                    Availability::Starting => ERROR_NONE,
                };
                // The gateway's own /3/0/11 is the gateway's, not a device's.
                if !on_gateway {
                    if let Ok(tree) = trees.get_mut(Some(&r.prefix)) {
                        tree.set_multi(3, 0, 11, [(0, Value::Integer(error))].into());
                    }
                }
                r.availability = state;
                self.changed = true;
                Some(changed)
            }
            Event::Stats(s) => {
                r.stats = s;
                None
            }
            Event::Discovered { .. } => None,
        }
    }

    /// A server's write or execute for an end device: carried out on a task of
    /// its own; the answer comes on `done`.
    pub fn command(&self, ticket: u64, op: DeviceOp) {
        let prefix = match &op {
            DeviceOp::Write { prefix, .. } | DeviceOp::Execute { prefix, .. } => prefix.clone(),
        };
        let Some(id) = self
            .running
            .iter()
            .find(|(_, r)| r.prefix == prefix)
            .map(|(id, _)| id.clone())
        else {
            let _ = self.done_tx.try_send((ticket, Err(OpError::NotFound)));
            return;
        };
        let mut commands = Vec::new();
        match op {
            DeviceOp::Write { records, .. } => {
                for (path, value) in records {
                    let (Some(rid), Some(value)) = (resource_id(&path), gateway::to_bridge(&value))
                    else {
                        let _ = self.done_tx.try_send((
                            ticket,
                            Err(OpError::BadRequest(format!(
                                "{path}: not a value an end device takes"
                            ))),
                        ));
                        return;
                    };
                    commands.push((rid, Some(value), String::new()));
                }
            }
            DeviceOp::Execute { path, args, .. } => match resource_id(&path) {
                Some(rid) => commands.push((rid, None, args)),
                None => {
                    let _ = self
                        .done_tx
                        .try_send((ticket, Err(OpError::MethodNotAllowed)));
                    return;
                }
            },
        }
        // Queued on the device's bus in the order the server wrote them (a bus does
        // one thing at a time); the answers are awaited off the main loop.
        let mut answers = Vec::new();
        for (rid, value, args) in commands {
            let (reply, answer) = oneshot::channel();
            let cmd = match value {
                Some(value) => Command::Write {
                    id: rid,
                    value,
                    reply,
                },
                None => Command::Execute {
                    id: rid,
                    args,
                    reply,
                },
            };
            self.bridges.command(&id, cmd);
            answers.push(answer);
        }
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let mut result = Ok(());
            for answer in answers {
                let r = match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(e))) => Err(op_error(e)),
                    Ok(Err(_)) => Err(OpError::Unavailable("the device's bridge stopped".into())),
                    Err(_) => Err(OpError::Unavailable(format!(
                        "no answer from the device within {} s",
                        COMMAND_TIMEOUT.as_secs()
                    ))),
                };
                // The first failure is the answer.
                if result.is_ok() {
                    result = r;
                }
            }
            let _ = done.send((ticket, result)).await;
        });
    }

    /// Whether the status rows changed in more than their counters since last asked.
    /// The running end devices whose file has `[firmware]`.
    pub fn firmware_devices(&self) -> Vec<super::device_firmware::Wanted> {
        self.running
            .iter()
            .filter(|(_, r)| matches!(r.place, Place::EndDevice { .. }))
            .filter_map(|(id, r)| {
                Some(super::device_firmware::Wanted {
                    prefix: r.prefix.clone(),
                    id: id.clone(),
                    spec: r.file.spec.firmware.clone()?,
                    version: r
                        .file
                        .spec
                        .device
                        .firmware_version
                        .clone()
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Rows for `lwgate status`, in devices.d order.
    pub fn status(&self) -> Vec<DeviceStatus> {
        let mut rows: Vec<(String, DeviceStatus)> = Vec::new();
        for (id, r) in &self.running {
            let state = match &r.availability {
                Availability::Starting => "starting".to_string(),
                Availability::Up => "up".to_string(),
                Availability::Down { reason } => format!("down: {reason}"),
            };
            let inst = match r.place {
                Place::EndDevice { inst } => Some(inst),
                Place::Gateway { .. } => None,
            };
            rows.push((
                format!("{}\0{id}", r.file.file.display()),
                row(id, &r.prefix, &r.file, state, inst, &r.stats),
            ));
        }
        for (id, d) in &self.discovering {
            let n = self
                .running
                .values()
                .filter(|r| r.origin.as_deref() == Some(id.as_str()))
                .count();
            rows.push((
                d.file.file.display().to_string(),
                row(
                    id,
                    "",
                    &d.file,
                    format!("discovering: {n} device(s) found"),
                    None,
                    &Stats::default(),
                ),
            ));
        }
        for (id, (d, why)) in &self.idle {
            rows.push((
                d.file.display().to_string(),
                row(
                    id,
                    d.spec.device.prefix(),
                    d,
                    format!("not running: {why}"),
                    None,
                    &Stats::default(),
                ),
            ));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter().map(|(_, r)| r).collect()
    }
}

/// What a device's event changed: the tree (None: the gateway's) whose observers
/// may be due, and the time of its values when it brought some.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub prefix: Option<String>,
    pub time: Option<f64>,
}

fn remove_from_trees(r: &Running, trees: &mut Trees) {
    match &r.place {
        Place::EndDevice { inst } => {
            trees.devices.remove(&r.prefix);
            trees.down.remove(&r.prefix);
            let _ = trees.gateway.delete_instance(25, *inst);
            crate::lwm2m::acl::on_delete(&mut trees.gateway, 25, *inst);
        }
        Place::Gateway { instances } => {
            for (obj, inst) in instances {
                let _ = trees.gateway.delete_instance(*obj, *inst);
                if trees.gateway.objects.get(obj).is_some_and(|m| m.is_empty()) {
                    trees.gateway.objects.remove(obj);
                }
            }
        }
    }
}

fn undefined_object(exposed: &[Exposed], reg: &Registry) -> Option<u16> {
    exposed
        .iter()
        .map(|e| e.id.object)
        .find(|o| reg.get(*o).is_none())
}

fn no_definition(obj: u16) -> String {
    format!(
        "object {obj} has no definition: add its DDF XML to /etc/lwgate/objects \
         or /usr/share/lwgate/objects"
    )
}

fn row(
    id: &str,
    prefix: &str,
    d: &LoadedDevice,
    state: String,
    inst: Option<u16>,
    s: &Stats,
) -> DeviceStatus {
    DeviceStatus {
        id: id.to_string(),
        prefix: prefix.to_string(),
        protocol: d.spec.device.protocol.as_str().to_string(),
        enabled: d.spec.device.enabled,
        file: d.file.display().to_string(),
        state,
        instance: inst,
        last_ok: s.last_ok.map(|t| t as i64),
        requests: s.requests,
        timeouts: s.timeouts,
        exceptions: s.exceptions,
        errors: s.errors,
    }
}

fn resource_id(p: &crate::model::Path) -> Option<ResourceId> {
    match p.ids() {
        [object, instance, resource] => Some(ResourceId {
            object: *object,
            instance: *instance,
            resource: *resource,
        }),
        _ => None,
    }
}

fn op_error(e: CommandError) -> OpError {
    match e {
        CommandError::NotAllowed(_) => OpError::MethodNotAllowed,
        CommandError::BadValue(m) => OpError::BadRequest(m),
        CommandError::Unavailable(m) => OpError::Unavailable(m),
        CommandError::Failed(m) => OpError::DeviceFailed(m),
    }
}
