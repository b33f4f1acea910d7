//! The end devices behind the gateway, as the driver holds them: their bridges
//! (tasks of their own, behind `lwgate_bridges::Bridges`), their /25 instances and
//! trees in the client, what they report, and the writes and executes servers ask
//! of them. Reload applies only the difference: an unchanged device keeps running,
//! and its observations with it.

use crate::config::LoadedDevice;
use crate::lwm2m::dm::{DeviceOp, Trees};
use crate::lwm2m::error::OpError;
use crate::lwm2m::gateway::{self, EndDevice, ERROR_NONE, ERROR_UNREACHABLE};
use crate::model::{Registry, Value};
use crate::status::DeviceStatus;
use lwgate_bridges::device::{Availability, Command, CommandError, Event, ResourceId, Stats};
use lwgate_bridges::manager::Bridges;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why an end device's values are unavailable before its first poll.
const NOT_POLLED_YET: &str = "the device has not been polled yet";
/// Longest a command waits for its bridge (which has its own, shorter, timeouts).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

struct Running {
    file: LoadedDevice,
    prefix: String,
    /// Its /25 instance.
    inst: u16,
    availability: Availability,
    stats: Stats,
}

pub struct EndDevices {
    bridges: Bridges,
    pub events: mpsc::Receiver<(String, Event)>,
    done_tx: mpsc::Sender<(u64, Result<(), OpError>)>,
    /// Answers to deferred writes and executes, by ticket.
    pub done: mpsc::Receiver<(u64, Result<(), OpError>)>,
    running: BTreeMap<String, Running>,
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
            idle: BTreeMap::new(),
            changed: true,
        }
    }

    /// Brings the running set to `devices`: stops the removed and changed ones,
    /// starts the new and changed ones, leaves the rest alone. True when /25
    /// changed (a Registration Update is due).
    pub fn apply(&mut self, devices: &[LoadedDevice], trees: &mut Trees, reg: &Registry) -> bool {
        let wanted: BTreeMap<&str, &LoadedDevice> = devices
            .iter()
            .map(|d| (d.spec.device.id.as_str(), d))
            .collect();
        let mut changed = false;
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(id, r)| {
                wanted
                    .get(id.as_str())
                    .is_none_or(|d| d.spec != r.file.spec)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(r) = self.running.remove(&id) {
                self.bridges.stop(&id);
                trees.devices.remove(&r.prefix);
                trees.down.remove(&r.prefix);
                let _ = trees.gateway.delete_instance(25, r.inst);
                crate::lwm2m::acl::on_delete(&mut trees.gateway, 25, r.inst);
                tracing::info!(device = %id, prefix = %r.prefix, "end device stopped");
                changed = true;
            }
        }
        self.idle.clear();
        self.changed = true;
        for (id, d) in wanted {
            if self.running.contains_key(id) {
                continue;
            }
            if !d.spec.device.enabled {
                self.idle
                    .insert(id.to_string(), (d.clone(), "disabled".into()));
                continue;
            }
            match self.start(d, trees, reg) {
                Ok(r) => {
                    tracing::info!(device = %id, prefix = %r.prefix, instance = r.inst, "end device started");
                    self.running.insert(id.to_string(), r);
                    changed = true;
                }
                Err(e) => {
                    tracing::error!(device = %id, file = %d.file.display(), "end device not started: {e}");
                    self.idle.insert(id.to_string(), (d.clone(), e));
                }
            }
        }
        changed
    }

    fn start(
        &mut self,
        d: &LoadedDevice,
        trees: &mut Trees,
        reg: &Registry,
    ) -> Result<Running, String> {
        let spec = &d.spec.device;
        let exposed = self.bridges.start(&spec.id, &d.spec)?;
        let mut instances: Vec<(u16, u16)> = exposed
            .iter()
            .map(|e| (e.id.object, e.id.instance))
            .collect();
        instances.sort_unstable();
        instances.dedup();
        if let Some((obj, _)) = instances.iter().find(|(o, _)| reg.get(*o).is_none()) {
            self.bridges.stop(&spec.id);
            return Err(format!(
                "object {obj} has no definition: add its DDF XML to /etc/lwgate/objects \
                 or /usr/share/lwgate/objects"
            ));
        }
        let dev = EndDevice {
            id: spec.id.clone(),
            prefix: spec.prefix().to_string(),
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
        Ok(Running {
            file: d.clone(),
            prefix: dev.prefix,
            inst,
            availability: Availability::Starting,
            stats: Stats::default(),
        })
    }

    /// What a device reported. The device's prefix when its values changed
    /// (observers under it may be due).
    pub fn event(
        &mut self,
        id: &str,
        ev: Event,
        trees: &mut Trees,
        reg: &Registry,
    ) -> Option<String> {
        let r = self.running.get_mut(id)?; // None: stopped meanwhile
        match ev {
            Event::Values { values, .. } => {
                // Values: it answers, whatever its availability event said last.
                if trees.down.get(&r.prefix).map(String::as_str) == Some(NOT_POLLED_YET) {
                    trees.down.remove(&r.prefix);
                }
                let tree = trees.get_mut(Some(&r.prefix)).ok()?;
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
                Some(r.prefix.clone())
            }
            Event::Availability { state, .. } => {
                let error = match &state {
                    Availability::Down { reason } => {
                        tracing::warn!(device = %id, prefix = %r.prefix, "end device down: {reason}");
                        trees.down.insert(r.prefix.clone(), reason.clone());
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
                if let Ok(tree) = trees.get_mut(Some(&r.prefix)) {
                    tree.set_multi(3, 0, 11, [(0, Value::Integer(error))].into());
                }
                r.availability = state;
                self.changed = true;
                Some(r.prefix.clone())
            }
            Event::Stats(s) => {
                r.stats = s;
                None
            }
            // Not yet: a discovering file is not started as a device.
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
            rows.push((
                r.file.file.display().to_string(),
                row(id, &r.file, state, Some(r.inst), &r.stats),
            ));
        }
        for (id, (d, why)) in &self.idle {
            rows.push((
                d.file.display().to_string(),
                row(
                    id,
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

fn row(id: &str, d: &LoadedDevice, state: String, inst: Option<u16>, s: &Stats) -> DeviceStatus {
    DeviceStatus {
        id: id.to_string(),
        prefix: d.spec.device.prefix().to_string(),
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
