//! What the client asks the driver to make durable, and what it gets back at start.
//! The core never touches the database: it emits these in order, and the driver
//! commits everything emitted during one event in one transaction.

use super::attrs::Attributes;
use super::registration::Version;
use crate::model::Path;

/// A notification kept for a server that cannot be reached (spec 5.5, /1/x/6).
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedNote {
    /// Store-wide increasing id: replay order, and the key to delete on delivery.
    pub id: u64,
    pub ssid: u16,
    /// The observation it belongs to (its token), to replay on it.
    pub token: Vec<u8>,
    pub path: Path,
    /// Unix time (s) the values were sampled.
    pub time: f64,
    /// The values, as SenML CBOR with absolute names (self-describing, compact).
    pub values: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredObservation {
    pub ssid: u16,
    pub token: Vec<u8>,
    pub path: Path,
    /// Observe-Composite paths; empty for a plain observation.
    pub composite: Vec<Path>,
    pub format: u16,
    pub accept: Option<u16>,
    pub seq: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredRegistration {
    pub ssid: u16,
    pub location: Vec<String>,
    pub version: Version,
    pub lifetime: u32,
    pub binding: String,
    pub objects: String,
    /// Unix time (s) at which the server forgets the registration.
    pub expires: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Persist {
    Registration(StoredRegistration),
    ForgetRegistration {
        ssid: u16,
    },
    Observation(StoredObservation),
    ForgetObservation {
        ssid: u16,
        token: Vec<u8>,
    },
    ForgetObservations {
        ssid: u16,
    },
    Attributes {
        ssid: u16,
        path: Path,
        attrs: Attributes,
    },
    ForgetAttributes {
        ssid: u16,
        path: Path,
    },
    Enqueue(QueuedNote),
    Dequeue {
        ids: Vec<u64>,
    },
    /// Running totals per server, for `lwgate status`.
    Counters {
        ssid: u16,
        dropped: u64,
        last_delivery: Option<i64>,
    },
    /// An object instance of the gateway as a server left it (None: deleted), with
    /// the factory content it started from, so an operator's config change wins.
    Instance {
        obj: u16,
        inst: u16,
        data: Option<Vec<u8>>,
        factory: Vec<u8>,
    },
    /// The /5 Firmware Update machine's snapshot (JSON), in place of the last.
    Firmware(String),
    /// An end device's /prefix/5 snapshot (JSON), in place of its last.
    DeviceFirmware {
        prefix: String,
        json: String,
    },
    /// The /9/0 Software Management machine's snapshot (JSON), in place of the last.
    Software(String),
}

/// A stored gateway instance: object, instance, content (None: deleted by a
/// server), and the factory content it replaced.
pub type StoredInstance = (u16, u16, Option<Vec<u8>>, Vec<u8>);

/// Everything restored at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    pub registrations: Vec<StoredRegistration>,
    pub observations: Vec<StoredObservation>,
    pub attributes: Vec<(u16, Path, Attributes)>,
    pub queue: Vec<QueuedNote>,
    pub counters: Vec<(u16, u64, Option<i64>)>,
    pub instances: Vec<StoredInstance>,
    /// The /5 machine's snapshot (JSON).
    pub firmware: Option<String>,
    /// The /9/0 machine's snapshot (JSON).
    pub software: Option<String>,
}
