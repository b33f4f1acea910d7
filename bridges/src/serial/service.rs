//! The serial-line devices of the agent: one task per port, one device per port.

use std::collections::HashMap;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::config::SerialConfig;
use super::port::{self, answer};
use crate::device::{Command, CommandError, EventTx, Exposed};
use crate::spec::DeviceSpec;

struct Handle {
    tty: String,
    tx: UnboundedSender<Command>,
    task: JoinHandle<()>,
}

pub struct Ports {
    events: EventTx,
    devices: HashMap<String, Handle>,
}

impl Ports {
    pub fn new(events: EventTx) -> Self {
        Ports {
            events,
            devices: HashMap::new(),
        }
    }

    /// Starts the device and says which resources it exposes.
    pub fn start(
        &mut self,
        spec: &DeviceSpec,
        config: &SerialConfig,
    ) -> Result<Vec<Exposed>, String> {
        self.stop(&spec.id);
        if let Some((other, _)) = self.devices.iter().find(|(_, h)| h.tty == config.tty) {
            return Err(format!(
                "{} is already device \"{other}\": expected one serial device per port",
                config.tty
            ));
        }
        let (tx, task) = port::spawn(spec.id.clone(), config.clone(), self.events.clone());
        self.devices.insert(
            spec.id.clone(),
            Handle {
                tty: config.tty.clone(),
                tx,
                task,
            },
        );
        Ok(config.exposed())
    }

    pub fn stop(&mut self, id: &str) {
        if let Some(h) = self.devices.remove(id) {
            // The port closes with the task (nothing half-written matters: the
            // device is gone from the agent).
            h.task.abort();
        }
    }

    /// A write or execute for one of its devices; the command back when `id` is not one.
    pub fn command(&self, id: &str, cmd: Command) -> Result<(), Command> {
        let Some(h) = self.devices.get(id) else {
            return Err(cmd);
        };
        if let Err(e) = h.tx.send(cmd) {
            answer(
                e.0,
                Err(CommandError::Unavailable(
                    "the task serving the port has stopped".into(),
                )),
            );
        }
        Ok(())
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
        for h in self.devices.values() {
            h.task.abort();
        }
    }
}
