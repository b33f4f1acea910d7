//! lwgate: the LwM2M client of a Linux edge gateway.
//!
//! See docs/ARCHITECTURE.md for the map of this crate.

// Input from outside the process must never panic the agent: no unwrap/expect
// outside tests, checked by clippy.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cli;
pub mod coap;
pub mod codec;
pub mod config;
pub mod control;
pub mod daemon;
pub mod download;
pub mod dtls;
pub mod fetch;
pub mod logging;
pub mod lwm2m;
pub mod model;
pub mod smartcard;
pub mod sms_decode;
pub mod status;
pub mod store;

/// The agent's version, as shown by `lwgate version` and in /3/0/3.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
