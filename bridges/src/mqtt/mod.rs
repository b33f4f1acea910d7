//! MQTT bridge: devices that publish to (and take commands from) a local broker.
//!
//! `config` is the `[mqtt]` table of a `devices.d` file; `topic` and `mapping` are
//! the pure parts (filters, templates, payloads to values); `Brokers` runs one
//! client per broker for every device on it, and finds devices by topic when a
//! file declares a discovery filter instead of one device.

mod broker;
pub mod config;
pub mod mapping;
mod service;
pub mod topic;

pub use config::MqttConfig;
pub use service::Brokers;
