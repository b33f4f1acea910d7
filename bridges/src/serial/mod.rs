//! Serial-line bridge: instruments that talk a line protocol on a tty.
//!
//! `config` is the `[serial]` table of a `devices.d` file; `framing` and `parse`
//! are the pure parts (bytes to frames, frames to values, NMEA); `Ports` runs one
//! task per port (`port`).

pub mod config;
pub mod framing;
pub mod parse;
mod port;
mod service;

pub use config::SerialConfig;
pub use service::Ports;
