//! The `[mqtt]` table of a `devices.d` file, checked as it is parsed.

use serde::Deserialize;

/// A validated `[mqtt]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MqttConfig {}

impl MqttConfig {
    /// A file that discovers devices by topic rather than declaring one.
    pub fn discovers(&self) -> bool {
        false
    }
}
