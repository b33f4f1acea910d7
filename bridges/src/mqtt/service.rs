//! The MQTT devices of the agent: one client (and task) per broker, shared by
//! every device file naming that broker; the last file gone ends the connection.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::broker::{self, answer, Msg, Owners};
use super::config::{Broker, MqttConfig};
use crate::device::{Command, CommandError, EventTx, Exposed};
use crate::spec::DeviceSpec;

struct Handle {
    tx: UnboundedSender<Msg>,
    task: JoinHandle<()>,
    files: usize,
}

pub struct Brokers {
    events: EventTx,
    brokers: HashMap<Broker, Handle>,
    /// File id → its broker.
    files: HashMap<String, Broker>,
    owners: Owners,
}

impl Brokers {
    pub fn new(events: EventTx) -> Self {
        Brokers {
            events,
            brokers: HashMap::new(),
            files: HashMap::new(),
            owners: Owners::default(),
        }
    }

    /// Starts the device (or, for a discovering file, the discovery), and says which
    /// resources it (each discovered device) exposes.
    pub fn start(
        &mut self,
        spec: &DeviceSpec,
        config: &MqttConfig,
    ) -> Result<Vec<Exposed>, String> {
        self.stop(&spec.id);
        let key = config.broker.clone();
        let handle = match self.brokers.get_mut(&key) {
            Some(h) if !h.task.is_finished() => h,
            _ => {
                let (tx, task) = broker::spawn(&key, self.events.clone(), self.owners.clone());
                self.brokers
                    .entry(key.clone())
                    .insert_entry(Handle { tx, task, files: 0 })
                    .into_mut()
            }
        };
        if handle
            .tx
            .send(Msg::Add(spec.id.clone(), Arc::new(config.clone())))
            .is_err()
        {
            return Err(format!(
                "the task serving the MQTT broker {}:{} has stopped",
                key.host, key.port
            ));
        }
        handle.files += 1;
        self.files.insert(spec.id.clone(), key);
        Ok(config.exposed())
    }

    /// Devices found earlier by the discovering file `id` (kept by the agent across
    /// restarts): known from the start, so their silence and their commands count.
    pub fn adopt(&mut self, id: &str, devices: &[String]) {
        if let Some(h) = self.files.get(id).and_then(|k| self.brokers.get(k)) {
            let _ = h.tx.send(Msg::Adopt(id.to_string(), devices.to_vec()));
        }
    }

    /// Stops the device, or the discovering file and every device it found.
    pub fn stop(&mut self, id: &str) {
        let Some(key) = self.files.remove(id) else {
            return;
        };
        if let Some(h) = self.brokers.get_mut(&key) {
            let _ = h.tx.send(Msg::Remove(id.to_string()));
            h.files = h.files.saturating_sub(1);
            if h.files == 0 {
                // Dropping the sender ends the task, which disconnects.
                self.brokers.remove(&key);
            }
        }
    }

    /// A write or execute for one of its devices; the command back when `id` is not one.
    pub fn command(&self, id: &str, cmd: Command) -> Result<(), Command> {
        let file = match self.owners.lock() {
            Ok(o) => o.get(id).cloned().unwrap_or_else(|| id.to_string()),
            Err(_) => id.to_string(),
        };
        let Some(h) = self.files.get(&file).and_then(|k| self.brokers.get(k)) else {
            return Err(cmd);
        };
        if let Err(e) = h.tx.send(Msg::Command(id.to_string(), cmd)) {
            if let Msg::Command(_, cmd) = e.0 {
                answer(
                    cmd,
                    Err(CommandError::Unavailable(
                        "the task serving the MQTT broker has stopped".into(),
                    )),
                );
            }
        }
        Ok(())
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for h in self.brokers.values() {
            h.task.abort();
        }
    }
}
