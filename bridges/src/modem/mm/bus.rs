//! The D-Bus calls the task makes, each under a timeout of ours (a hung
//! ModemManager must not hang the task), with errors in words.

use std::collections::HashMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use zbus::message::Type as MessageType;
use zbus::zvariant::{DynamicType, OwnedObjectPath, OwnedValue, Type, Value};
use zbus::{Connection, MatchRule, MessageStream};

use super::pick::Managed;
use super::values::Props;
use super::{MESSAGING, MODEM, ROOT, SERVICE, SMS};
use crate::modem::config::Bus;

const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// Enabling powers the radio up and registers: slow modems take half a minute.
const ENABLE_TIMEOUT: Duration = Duration::from_secs(90);
/// ModemManager answers `Send` once the network took every part.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);
/// Signals queued before the task takes them (zbus drops beyond).
const QUEUED: usize = 256;

pub struct Mm {
    conn: Connection,
}

pub async fn connect(bus: Bus) -> Result<Mm, String> {
    let (built, which) = match bus {
        Bus::System => (zbus::connection::Builder::system(), "system"),
        Bus::Session => (zbus::connection::Builder::session(), "session"),
    };
    let fail = |e: zbus::Error| format!("cannot reach the D-Bus {which} bus: {e}");
    let conn = tokio::time::timeout(CALL_TIMEOUT, built.map_err(fail)?.build())
        .await
        .map_err(|_| format!("no answer from the D-Bus {which} bus"))?
        .map_err(fail)?;
    Ok(Mm { conn })
}

impl Mm {
    async fn call<B, R>(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, String>
    where
        B: serde::Serialize + DynamicType,
        R: DeserializeOwned + Type,
    {
        let call = self
            .conn
            .call_method(Some(dest), path, Some(iface), method, body);
        let reply = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| format!("no answer to {method} within {} s", timeout.as_secs()))?
            .map_err(|e| format!("{method}: {}", said(e)))?;
        reply
            .body()
            .deserialize::<R>()
            .map_err(|e| format!("{method} answered something unexpected: {e}"))
    }

    async fn mm<B, R>(&self, path: &str, iface: &str, method: &str, body: &B) -> Result<R, String>
    where
        B: serde::Serialize + DynamicType,
        R: DeserializeOwned + Type,
    {
        self.call(SERVICE, path, iface, method, body, CALL_TIMEOUT)
            .await
    }

    /// Whether ModemManager runs (asked of the bus, so that a call does not start
    /// it by D-Bus activation behind its owner's back).
    pub async fn running(&self) -> Result<bool, String> {
        self.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            &(SERVICE,),
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn managed_objects(&self) -> Result<Managed, String> {
        self.mm(
            ROOT,
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
            &(),
        )
        .await
    }

    pub async fn get_all(&self, path: &str, iface: &str) -> Result<Props, String> {
        self.mm(path, "org.freedesktop.DBus.Properties", "GetAll", &(iface,))
            .await
    }

    pub async fn enable(&self, modem: &str) -> Result<(), String> {
        self.call(SERVICE, modem, MODEM, "Enable", &(true,), ENABLE_TIMEOUT)
            .await
    }

    pub async fn location(&self, modem: &str) -> Result<HashMap<u32, OwnedValue>, String> {
        self.mm(modem, super::LOCATION, "GetLocation", &()).await
    }

    pub async fn list(&self, modem: &str) -> Result<Vec<OwnedObjectPath>, String> {
        self.mm(modem, MESSAGING, "List", &()).await
    }

    pub async fn delete(&self, modem: &str, sms: &str) -> Result<(), String> {
        let path = zbus::zvariant::ObjectPath::try_from(sms).map_err(|e| e.to_string())?;
        self.mm(modem, MESSAGING, "Delete", &(path,)).await
    }

    /// An 8-bit message, created and sent; its object is deleted either way (the
    /// message reference kept).
    pub async fn send(&self, modem: &str, number: &str, data: &[u8]) -> Result<u8, String> {
        let mut props: HashMap<&str, Value> = HashMap::new();
        props.insert("number", Value::from(number));
        props.insert("data", Value::from(data.to_vec()));
        let sms: OwnedObjectPath = self.mm(modem, MESSAGING, "Create", &(props,)).await?;
        let sent: Result<(), String> = self
            .call(SERVICE, sms.as_str(), SMS, "Send", &(), SEND_TIMEOUT)
            .await;
        let reference = match &sent {
            Ok(()) => self
                .get_all(sms.as_str(), SMS)
                .await
                .ok()
                .and_then(|p| super::values::prop_u32(&p, "MessageReference"))
                .map_or(0, |r| (r & 0xFF) as u8),
            Err(_) => 0,
        };
        // Created messages stay in ModemManager's list until deleted.
        let _ = self.delete(modem, sms.as_str()).await;
        sent.map(|()| reference)
    }

    /// Every signal ModemManager sends (the bus matches the well-known name to
    /// whoever owns it, so this survives a restart of ModemManager).
    pub async fn signals(&self) -> Result<MessageStream, String> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(SERVICE)
            .map_err(|e| e.to_string())?
            .build();
        self.stream(rule).await
    }

    /// ModemManager starting and stopping.
    pub async fn owner_changes(&self) -> Result<MessageStream, String> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender("org.freedesktop.DBus")
            .and_then(|b| b.interface("org.freedesktop.DBus"))
            .and_then(|b| b.member("NameOwnerChanged"))
            .and_then(|b| b.arg(0, SERVICE))
            .map_err(|e| e.to_string())?
            .build();
        self.stream(rule).await
    }

    async fn stream(&self, rule: MatchRule<'static>) -> Result<MessageStream, String> {
        let add = MessageStream::for_match_rule(rule, &self.conn, Some(QUEUED));
        tokio::time::timeout(CALL_TIMEOUT, add)
            .await
            .map_err(|_| "no answer to AddMatch from the bus".to_string())?
            .map_err(|e| format!("AddMatch: {e}"))
    }
}

/// A method error in ModemManager's words (its name says what failed).
fn said(e: zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(text), _) => format!("{text} ({name})"),
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        e => e.to_string(),
    }
}
