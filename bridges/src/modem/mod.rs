//! The gateway's cellular modem as an SMS channel: received messages (sender,
//! user data, time) out, messages to send in. Knows SMS frames, not what they carry
//! (CoAP is the agent's business).
//!
//! The pure parts: the PDU codec ([`pdu`], with [`udh`] and [`text`]), reassembly
//! of concatenated messages ([`concat`]) and the AT command layer ([`at`]). The tokio
//! task around them (`port`) owns the modem's AT port: it sets the modem up, drains
//! what was stored while we were away, hands every message over on the events
//! channel before deleting it from the modem, sends, and reopens the port with
//! back-off when it goes away.
//!
//! ```no_run
//! # async fn f() {
//! use lwgate_bridges::modem::{Modem, ModemConfig, ModemEvent};
//! let (modem, mut events) = Modem::spawn(ModemConfig::at("/dev/ttyUSB2"));
//! while let Some(e) = events.recv().await {
//!     if let ModemEvent::Sms(sms) = e {
//!         let _ = modem.send(&sms.sender, &sms.data).await;
//!     }
//! }
//! # }
//! ```

pub mod at;
pub mod concat;
pub mod config;
#[cfg(feature = "modemmanager")]
pub mod mm;
pub mod pdu;
mod port;
pub mod text;
pub mod udh;

use tokio::sync::{mpsc, oneshot};

pub use at::Registration;
pub use config::{Backend, Bus, Delivery, ModemConfig, ModemSelector, Pin, PinSource};
pub use pdu::{Alphabet, PduError};

/// A message received, whole (a concatenated one once all its parts are here).
#[derive(Debug, Clone, PartialEq)]
pub struct Sms {
    /// `+4477...` for international numbers, the digits otherwise, or the text of an
    /// alphanumeric sender.
    pub sender: String,
    /// The user data after its header: octets for 8-bit data (what LwM2M sends) and
    /// UCS2, one septet per byte for GSM 7-bit text.
    pub data: Vec<u8>,
    /// Unix seconds from the service centre's time stamp (the first part's, when
    /// concatenated), or the time of reception when the stamp is no date.
    pub time: f64,
    /// The text of a 7-bit or UCS2 message, for the log; `None` for 8-bit data.
    pub text: Option<String>,
    pub alphabet: Alphabet,
    /// How many SMS it came in.
    pub parts: u8,
}

/// The modem as lwgate status shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Link {
    /// Opening the port and setting the modem up.
    #[default]
    Opening,
    /// Set up: messages are received and can be sent.
    Ready,
    Down {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModemState {
    pub link: Link,
    /// The AT port; with ModemManager the modem's D-Bus object path (or, while none
    /// is found, the `modem` setting).
    pub port: String,
    /// From `own_number`, else `AT+CNUM` (ModemManager: `OwnNumbers`).
    pub own_number: Option<String>,
    /// `AT+COPS?` (ModemManager: `Modem3gpp.OperatorName`).
    pub operator: Option<String>,
    /// `AT+CSQ`, in dBm (ModemManager: the RSSI of `Modem.Signal`, when its
    /// owner set up extended signal reporting).
    pub signal_dbm: Option<i32>,
    /// `AT+CREG?` (ModemManager: `Modem3gpp.RegistrationState`).
    pub registration: Option<Registration>,
    /// Signal quality in percent (ModemManager's `SignalQuality`).
    pub signal_percent: Option<u8>,
    /// The serving cell's id (28 bits in LTE, 16 in GSM).
    pub cell_id: Option<u32>,
    /// Location area code (or the LTE tracking area code when there is no LAC).
    pub lac: Option<u32>,
    /// Mobile country and network codes of the serving network.
    pub mcc: Option<u16>,
    pub mnc: Option<u16>,
    /// Events dropped because the agent did not take them (a stored message is
    /// then left on the modem and read again after a restart).
    pub dropped_events: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModemEvent {
    Sms(Sms),
    /// Said once per change.
    State(ModemState),
    /// A message that could not be delivered (undecodable, or a concatenated one
    /// whose parts did not all come) and was deleted from the modem.
    Discarded {
        sender: Option<String>,
        reason: String,
    },
}

/// What the network gave back for a message sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// TP-MR of each part, as `+CMGS` said it.
    pub references: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The number or the size cannot be sent.
    #[error("{0}")]
    Invalid(String),
    #[error("the modem is unavailable: {0}")]
    Unavailable(String),
    /// The modem or the network refused.
    #[error("{0}")]
    Failed(String),
}

pub(crate) enum Request {
    Send {
        number: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Sent, SendError>>,
    },
}

/// Sends through the modem task; the task ends when every handle is dropped.
#[derive(Debug, Clone)]
pub struct ModemHandle {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Send { number, data, .. } => {
                write!(f, "Send({number}, {} octets)", data.len())
            }
        }
    }
}

impl ModemHandle {
    /// `data` as 8-bit SMS to `number` (`+...` international, or as dialled),
    /// concatenated when longer than 140 octets. Answers once the modem said
    /// `+CMGS` for every part.
    pub async fn send(&self, number: &str, data: &[u8]) -> Result<Sent, SendError> {
        pdu::Address::number(number).map_err(|e| SendError::Invalid(e.problem))?;
        if data.len() > pdu::MAX_CONCAT_OCTETS {
            return Err(SendError::Invalid(format!(
                "{} octets do not fit in 255 SMS ({} at most)",
                data.len(),
                pdu::MAX_CONCAT_OCTETS
            )));
        }
        let (reply, rx) = oneshot::channel();
        let gone = || SendError::Unavailable("the modem task has ended".into());
        self.tx
            .send(Request::Send {
                number: number.to_string(),
                data: data.to_vec(),
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

pub struct Modem;

#[cfg(not(feature = "modemmanager"))]
pub(crate) const NO_MODEMMANAGER: &str =
    "this build of lwgate has no ModemManager backend (built without the modemmanager feature): use backend = \"at\"";

/// The wall clock in Unix seconds: the time of a message whose stamp is no date.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Events the agent has not taken yet; beyond this the modem task waits (stored
/// messages stay on the modem meanwhile).
const EVENTS: usize = 64;

impl Modem {
    /// Starts the modem's task (inside a tokio runtime).
    pub fn spawn(config: ModemConfig) -> (ModemHandle, mpsc::Receiver<ModemEvent>) {
        let (tx, requests) = mpsc::channel(16);
        let (events, rx) = mpsc::channel(EVENTS);
        match config.backend {
            Backend::At => tokio::spawn(port::run(config, requests, events)),
            #[cfg(feature = "modemmanager")]
            Backend::ModemManager => tokio::spawn(mm::run(config, requests, events)),
            // The config refuses it in such a build; said once, should it get here.
            #[cfg(not(feature = "modemmanager"))]
            Backend::ModemManager => tokio::spawn(async move {
                let _keep = requests;
                let _ = events
                    .send(ModemEvent::State(ModemState {
                        link: Link::Down {
                            reason: NO_MODEMMANAGER.into(),
                        },
                        ..ModemState::default()
                    }))
                    .await;
                std::future::pending::<()>().await
            }),
        };
        (ModemHandle { tx }, rx)
    }
}
