//! What an end device is to the agent, whatever protocol reaches it: the resources
//! it exposes (as object/instance/resource ids; their definitions are the agent's,
//! from DDF), values read from it with the time they were read, whether it is
//! reachable and why not, and the writes and executes it accepts. Nothing here
//! knows CoAP or LwM2M messages: the agent maps each device to a /25 instance and
//! an object tree under its prefix.
//!
//! A bridge runs as its own task(s). Devices report on one channel shared by all
//! (`EventTx`), tagged with their id; the agent sends commands to a device through
//! its bridge and gets each answer on a oneshot channel, so a device that hangs
//! holds up only its own commands.

use tokio::sync::{mpsc, oneshot};

/// A resource of the end device's object tree, without the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    pub object: u16,
    pub instance: u16,
    pub resource: u16,
}

impl ResourceId {
    /// `"3303/0/5700"` (a leading `/` is allowed).
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.trim_start_matches('/').split('/');
        let mut next = || it.next().and_then(|p| p.parse::<u16>().ok());
        let id = Self {
            object: next()?,
            instance: next()?,
            resource: next()?,
        };
        // Ids 65535 are reserved by LwM2M; nothing may follow the resource.
        let ok = id.object != u16::MAX && id.instance != u16::MAX && id.resource != u16::MAX;
        (ok && it.next().is_none()).then_some(id)
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}/{}/{}", self.object, self.instance, self.resource)
    }
}

/// A value as a device gives or takes it; the agent converts it to the resource's
/// LwM2M type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Opaque(Vec<u8>),
}

/// What the operator may do with a resource of this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exposed {
    pub id: ResourceId,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    /// Not polled yet.
    Starting,
    Up,
    /// Why, in words for `lwgate status` and the journal ("connection refused by
    /// 127.0.0.1:502", "no answer from unit 3 within 500 ms", "exception 2 (illegal
    /// data address) at holding register 40").
    Down {
        reason: String,
    },
}

/// Counters for `lwgate status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub requests: u64,
    pub timeouts: u64,
    /// Exception responses from the device.
    pub exceptions: u64,
    /// Other failures: connection lost, malformed frame, CRC.
    pub errors: u64,
    /// Unix time of the last poll that fully succeeded.
    pub last_ok: Option<f64>,
    /// Value events dropped because the events channel was full.
    pub dropped_values: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Values read at `time` (Unix seconds): every value of one poll, at once.
    Values {
        time: f64,
        values: Vec<(ResourceId, Value)>,
    },
    /// Reachability changed (said once per change, not per failed request).
    Availability {
        state: Availability,
        time: f64,
    },
    Stats(Stats),
    /// A device found by the discovering file whose id tags the event (an MQTT topic
    /// filter with the device's name in it): `id` is the new device's id and prefix,
    /// its resources those the file maps. Said once per device and run; its own
    /// events follow under `id`.
    Discovered {
        id: String,
    },
}

/// Events of every device, tagged with the device's id.
pub type EventTx = mpsc::Sender<(String, Event)>;

/// Why a write or an execute did not happen; the agent turns it into a response code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The resource is not writable/executable on this device (4.05).
    #[error("{0} does not take this operation")]
    NotAllowed(ResourceId),
    /// The value cannot be put in the device's registers (out of range, wrong type): 4.00.
    #[error("{0}")]
    BadValue(String),
    /// The device cannot be reached now (5.03).
    #[error("the device is unavailable: {0}")]
    Unavailable(String),
    /// The device refused or failed (an exception, a timeout): 5.00.
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug)]
pub enum Command {
    Write {
        id: ResourceId,
        value: Value,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    Execute {
        id: ResourceId,
        args: String,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_parse_strictly() {
        let id = ResourceId {
            object: 3303,
            instance: 0,
            resource: 5700,
        };
        assert_eq!(ResourceId::parse("3303/0/5700"), Some(id));
        assert_eq!(ResourceId::parse("/3303/0/5700"), Some(id));
        assert_eq!(id.to_string(), "/3303/0/5700");
        for bad in [
            "",
            "3303",
            "3303/0",
            "3303/0/5700/1",
            "a/0/1",
            "3303/-1/1",
            "65535/0/1",
            "3303//1",
            "3303/0/70000",
        ] {
            assert_eq!(ResourceId::parse(bad), None, "{bad}");
        }
    }
}
