//! The LwM2M client core: data, operations, registration, observation — no I/O.

pub mod acl;
pub mod attrs;
pub mod bootstrap;
pub mod client;
pub mod dm;
pub mod error;
pub mod factory;
pub mod firmware;
pub mod gateway;
pub mod observe;
pub mod persist;
pub mod registration;
pub mod request;
pub mod security_mode;
pub mod sms;
pub mod tree;

pub use client::{
    Action, Client, ClientConfig, FirmwareSetup, FirmwareStatus, FirmwareTask, SessionStatus,
    SoftwareSetup, SoftwareStatus, SoftwareTask, SwCommand,
};
pub use dm::Trees;
pub use registration::Version;
pub use tree::Tree;
