//! The bridges the agent runs: devices started and stopped by id, their commands
//! routed to the task that owns their bus.
//!
//! Devices that share a bus (a serial line, or a TCP host:port) share one task, so
//! their requests never overlap. A bus task lives as long as this `Bridges` (with
//! no device it holds no connection): a new task for the same line could otherwise
//! start while the old one is still finishing a request.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::device::{Access, Command, CommandError, EventTx, Exposed};
use crate::modbus::bus::{self, answer, BusMsg, DeviceSetup};
use crate::modbus::config::Transport;
use crate::modbus::link::BusKey;
use crate::modbus::plan::{plan_reads, PlanOptions, Point};
use crate::mqtt::Brokers;
use crate::serial::Ports;
use crate::spec::{DeviceFile, Protocol};

struct BusHandle {
    tx: UnboundedSender<BusMsg>,
    task: JoinHandle<()>,
    transport: Transport,
    /// Device id → unit id, for the devices on this bus.
    units: HashMap<String, u8>,
}

/// Must be created and used inside a tokio runtime (it spawns tasks).
pub struct Bridges {
    events: EventTx,
    buses: HashMap<BusKey, BusHandle>,
    /// Modbus devices, by the bus that serves them.
    devices: HashMap<String, BusKey>,
    mqtt: Brokers,
    serial: Ports,
    /// Every started device (or discovering file) by id, with its protocol.
    started: HashMap<String, Protocol>,
}

impl Bridges {
    /// Every device reports on `events`, tagged with its id.
    pub fn new(events: EventTx) -> Self {
        Bridges {
            mqtt: Brokers::new(events.clone()),
            serial: Ports::new(events.clone()),
            events,
            buses: HashMap::new(),
            devices: HashMap::new(),
            started: HashMap::new(),
        }
    }

    /// Starts polling the device (or restarts it with a new file), and says which
    /// resources it exposes. A device already started under `id` is stopped first.
    ///
    /// A discovering file (`mqtt` with a topic filter naming devices) is no device
    /// itself: its devices appear as `Event::Discovered`, each exposing what this
    /// returns.
    pub fn start(&mut self, id: &str, file: &DeviceFile) -> Result<Vec<Exposed>, String> {
        self.stop(id);
        let protocol = file.device.protocol;
        let exposed = match protocol {
            Protocol::ModbusTcp | Protocol::ModbusRtu => self.start_modbus(id, file)?,
            Protocol::Mqtt => {
                let config = file.mqtt.as_ref().ok_or_else(|| {
                    "protocol \"mqtt\" needs an [mqtt] table (broker, topics, [[mqtt.point]])"
                        .to_string()
                })?;
                self.mqtt.start(&file.device, config)?
            }
            Protocol::Serial => {
                let config = file.serial.as_ref().ok_or_else(|| {
                    "protocol \"serial\" needs a [serial] table (tty, framing, [[serial.point]])"
                        .to_string()
                })?;
                self.serial.start(&file.device, config)?
            }
        };
        self.started.insert(id.to_string(), protocol);
        Ok(exposed)
    }

    /// Devices found earlier by the discovering file `id` (kept by the agent across
    /// restarts), so that their silence and commands to them count from the start.
    pub fn adopt(&mut self, id: &str, devices: &[String]) {
        if self.started.get(id) == Some(&Protocol::Mqtt) {
            self.mqtt.adopt(id, devices);
        }
    }

    fn start_modbus(&mut self, id: &str, file: &DeviceFile) -> Result<Vec<Exposed>, String> {
        let protocol = file.device.protocol;
        let Some(config) = file.modbus.clone() else {
            return Err(format!(
                "protocol \"{}\" needs a [modbus] table (host or tty, unit, [[modbus.point]])",
                protocol.as_str()
            ));
        };
        let points: Vec<Point<usize>> = config
            .points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_polled())
            .map(|(i, p)| Point::for_codec(i, p.address, &p.codec))
            .collect();
        let options = PlanOptions {
            max_gap: config.max_gap,
            ..PlanOptions::default()
        };
        let plan = plan_reads(&points, &options).map_err(|e| e.to_string())?;
        let exposed = config
            .points
            .iter()
            .map(|p| Exposed {
                id: p.path,
                access: Access {
                    read: p.is_polled(),
                    write: p.writable,
                    execute: p.execute.is_some(),
                },
            })
            .collect();

        let key = BusKey::of(&config.transport);
        if let Some(bus) = self.buses.get(&key) {
            if bus.units.is_empty() && bus.transport != config.transport {
                // Nobody uses the old settings: a task for the new ones replaces it.
                bus.task.abort();
                self.buses.remove(&key);
            }
        }
        if let Some(bus) = self.buses.get(&key) {
            if bus.transport != config.transport {
                return Err(format!(
                    "{key} is already used with other settings by {}: expected the same line settings for every device on it",
                    names(&bus.units)
                ));
            }
            if let Some((other, _)) = bus.units.iter().find(|(_, &u)| u == config.unit) {
                return Err(format!(
                    "unit {} on {key} is already device \"{other}\": expected one device per unit id",
                    config.unit
                ));
            }
        }
        let unit = config.unit;
        let setup = DeviceSetup {
            id: id.to_string(),
            plan: Arc::from(plan),
            config,
        };
        let bus = match self.buses.get_mut(&key) {
            Some(bus) if !bus.task.is_finished() => bus,
            _ => {
                let (tx, task) = bus::spawn(&setup, self.events.clone());
                let handle = BusHandle {
                    tx,
                    task,
                    transport: setup.config.transport.clone(),
                    units: HashMap::new(),
                };
                self.buses
                    .entry(key.clone())
                    .insert_entry(handle)
                    .into_mut()
            }
        };
        if bus.tx.send(BusMsg::Add(Box::new(setup))).is_err() {
            return Err(format!("the task serving {key} has stopped"));
        }
        bus.units.insert(id.to_string(), unit);
        self.devices.insert(id.to_string(), key);
        Ok(exposed)
    }

    /// Stops polling the device (a discovering file: with every device it found);
    /// its pending commands are answered Unavailable.
    pub fn stop(&mut self, id: &str) {
        match self.started.remove(id) {
            Some(Protocol::Mqtt) => self.mqtt.stop(id),
            Some(Protocol::Serial) => self.serial.stop(id),
            _ => {}
        }
        let Some(key) = self.devices.remove(id) else {
            return;
        };
        if let Some(bus) = self.buses.get_mut(&key) {
            bus.units.remove(id);
            let _ = bus.tx.send(BusMsg::Remove(id.to_string()));
        }
    }

    /// Sends a write or execute to the device; the answer comes on its oneshot.
    pub fn command(&self, id: &str, cmd: Command) {
        // Discovered devices are known only to their bridge.
        let cmd = match self.mqtt.command(id, cmd) {
            Ok(()) => return,
            Err(cmd) => cmd,
        };
        let cmd = match self.serial.command(id, cmd) {
            Ok(()) => return,
            Err(cmd) => cmd,
        };
        let tx = self
            .devices
            .get(id)
            .and_then(|key| self.buses.get(key))
            .map(|bus| &bus.tx);
        let Some(tx) = tx else {
            answer(
                cmd,
                Err(CommandError::Unavailable(format!(
                    "no device \"{id}\" is running"
                ))),
            );
            return;
        };
        if let Err(e) = tx.send(BusMsg::Command(id.to_string(), cmd)) {
            let BusMsg::Command(_, cmd) = e.0 else {
                return;
            };
            answer(
                cmd,
                Err(CommandError::Unavailable(
                    "the task serving the device has stopped".into(),
                )),
            );
        }
    }
}

impl Drop for Bridges {
    fn drop(&mut self) {
        for bus in self.buses.values() {
            bus.task.abort();
        }
    }
}

fn names(units: &HashMap<String, u8>) -> String {
    let mut ids: Vec<&str> = units.keys().map(String::as_str).collect();
    ids.sort_unstable();
    ids.iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> DeviceFile {
        toml::from_str(text).unwrap()
    }

    fn rtu(id: &str, unit: u8, baud: u32) -> DeviceFile {
        file(&format!(
            "[device]\nid = \"{id}\"\nprotocol = \"modbus-rtu\"\n[modbus]\ntty = \"/nonexistent/tty\"\nbaud = {baud}\nunit = {unit}\n[[modbus.point]]\npath = \"1/0/1\"\nregister = \"coil\"\naddress = 0\ntype = \"bool\"\n"
        ))
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_serve() {
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let mut b = Bridges::new(tx);
        let mqtt = file("[device]\nid = \"m\"\nprotocol = \"mqtt\"\n");
        assert!(b
            .start("m", &mqtt)
            .unwrap_err()
            .contains("needs an [mqtt] table"));
        let bare = file("[device]\nid = \"x\"\nprotocol = \"modbus-tcp\"\n");
        assert!(b
            .start("x", &bare)
            .unwrap_err()
            .contains("needs a [modbus] table"));
        b.start("a", &rtu("a", 1, 9600)).unwrap();
        assert_eq!(
            b.start("b", &rtu("b", 1, 9600)).unwrap_err(),
            "unit 1 on /nonexistent/tty is already device \"a\": expected one device per unit id"
        );
        assert!(b
            .start("c", &rtu("c", 2, 19200))
            .unwrap_err()
            .starts_with("/nonexistent/tty is already used with other settings by \"a\""));
        // Restarting a device with new settings, alone on its line, is fine.
        b.start("a", &rtu("a", 1, 19200)).unwrap();
        b.stop("a");
        b.start("c", &rtu("c", 2, 9600)).unwrap();
    }

    #[tokio::test]
    async fn commands_to_unknown_devices_are_unavailable() {
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let b = Bridges::new(tx);
        let (reply, rx) = tokio::sync::oneshot::channel();
        let id = crate::device::ResourceId::parse("1/0/1").unwrap();
        b.command(
            "nope",
            Command::Execute {
                id,
                args: String::new(),
                reply,
            },
        );
        assert!(matches!(
            rx.await.unwrap(),
            Err(CommandError::Unavailable(_))
        ));
    }
}
