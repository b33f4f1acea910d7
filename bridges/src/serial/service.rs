//! The serial-line devices of the agent: one task per port.

use crate::device::{Command, EventTx, Exposed};
use crate::spec::DeviceSpec;

use super::config::SerialConfig;

pub struct Ports {
    #[allow(dead_code)]
    events: EventTx,
}

impl Ports {
    pub fn new(events: EventTx) -> Self {
        Ports { events }
    }

    /// Starts the device and says which resources it exposes.
    pub fn start(
        &mut self,
        _spec: &DeviceSpec,
        _config: &SerialConfig,
    ) -> Result<Vec<Exposed>, String> {
        Err("protocol \"serial\" is not supported in this version".into())
    }

    pub fn stop(&mut self, _id: &str) {}

    /// A write or execute for one of its devices; the command back when `id` is not one.
    pub fn command(&self, _id: &str, cmd: Command) -> Result<(), Command> {
        Err(cmd)
    }
}
