//! The ModemManager backend: the modem is ModemManager's (and its data connection
//! NetworkManager's); we ask ModemManager over D-Bus for the messages it received
//! and to send ours, and read the modem's status from it.
//!
//! The pure parts: property values read defensively ([`values`]), the modem's
//! state, network and cell ([`status`]), an SMS object's properties to a message
//! ([`sms`], [`time`]) and which modem is ours ([`pick`]). The tokio task (`task`,
//! over the calls in `bus`) follows ModemManager's signals: the modem coming and
//! going, ModemManager stopping and starting again, messages added.
//!
//! A received message leaves ModemManager in this order: complete (`State` 3),
//! handed over on the events channel, deleted; one the channel has no room for is
//! left there and offered again at the next status round.

mod bus;
pub mod pick;
pub mod sms;
pub mod status;
mod task;
pub mod time;
pub mod values;

pub(crate) use task::run;

pub const SERVICE: &str = "org.freedesktop.ModemManager1";
pub const ROOT: &str = "/org/freedesktop/ModemManager1";
pub const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
pub const MESSAGING: &str = "org.freedesktop.ModemManager1.Modem.Messaging";
pub const MODEM_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
pub const LOCATION: &str = "org.freedesktop.ModemManager1.Modem.Location";
pub const SIGNAL: &str = "org.freedesktop.ModemManager1.Modem.Signal";
pub const SMS: &str = "org.freedesktop.ModemManager1.Sms";
