//! Serial-line bridge: instruments that talk a line protocol on a tty.
//!
//! `config` is the `[serial]` table of a `devices.d` file; `Ports` runs one task
//! per port.

pub mod config;
mod service;

pub use config::SerialConfig;
pub use service::Ports;
