//! Downstream devices behind the gateway, as the agent sees them.
//!
//! Bridges know nothing of CoAP or LwM2M transport: they describe a device (its id,
//! the prefix it is addressed by, the protocol that reaches it; `spec`), what it is
//! to the agent (`device`: resources, values, availability, commands), and the
//! protocols that reach it (`modbus`).

// No unwrap/expect outside tests: device data comes from outside the process.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod coalesce;
pub mod device;
pub mod manager;
pub mod modbus;
pub mod modem;
pub mod mqtt;
pub mod serial;
pub mod spec;

pub use manager::Bridges;
pub use spec::{DeviceFile, DeviceSpec, Protocol, SpecError, Target};
