//! The MQTT devices of the agent: one client per broker.

use crate::device::{Command, EventTx, Exposed};
use crate::spec::DeviceSpec;

use super::config::MqttConfig;

pub struct Brokers {
    #[allow(dead_code)]
    events: EventTx,
}

impl Brokers {
    pub fn new(events: EventTx) -> Self {
        Brokers { events }
    }

    /// Starts the device (or, for a discovering file, the discovery), and says which
    /// resources it (each discovered device) exposes.
    pub fn start(
        &mut self,
        _spec: &DeviceSpec,
        _config: &MqttConfig,
    ) -> Result<Vec<Exposed>, String> {
        Err("protocol \"mqtt\" is not supported in this version".into())
    }

    /// Devices found earlier by the discovering file `id` (kept by the agent across
    /// restarts): known from the start, so their silence and their commands count.
    pub fn adopt(&mut self, _id: &str, _devices: &[String]) {}

    /// Stops the device, or the discovering file and every device it found.
    pub fn stop(&mut self, _id: &str) {}

    /// A write or execute for one of its devices; the command back when `id` is not one.
    pub fn command(&self, _id: &str, cmd: Command) -> Result<(), Command> {
        Err(cmd)
    }
}
