//! MQTT bridge: devices that publish to (and take commands from) a local broker.
//!
//! `config` is the `[mqtt]` table of a `devices.d` file; `Brokers` runs one client
//! per broker for every device on it, and finds devices by topic when a file
//! declares a discovery filter instead of one device.

pub mod config;
mod service;

pub use config::MqttConfig;
pub use service::Brokers;
