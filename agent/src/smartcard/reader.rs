//! The PC/SC side (libpcsclite through the `pcsc` crate): choosing a reader,
//! connecting shared, and leaving the card powered for other users of the reader.

use super::walk::{CardData, SmartcardError, Transport, Walk};
use std::ffi::CString;

struct PcscCard(pcsc::Card);

impl Transport for PcscCard {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, SmartcardError> {
        let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        match self.0.transmit(apdu, &mut buf) {
            Ok(r) => Ok(r.to_vec()),
            Err(pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard) => {
                Err(SmartcardError::Removed)
            }
            Err(e) => Err(SmartcardError::Pcsc(e.to_string())),
        }
    }
}

fn map(e: pcsc::Error) -> SmartcardError {
    match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped | pcsc::Error::NoReadersAvailable => {
            if matches!(e, pcsc::Error::NoReadersAvailable) {
                SmartcardError::NoReader
            } else {
                SmartcardError::NoService(e.to_string())
            }
        }
        pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard => SmartcardError::Removed,
        other => SmartcardError::Pcsc(other.to_string()),
    }
}

/// Readers and whether each holds a card.
pub fn readers() -> Result<Vec<(String, bool)>, SmartcardError> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(map)?;
    let names = ctx.list_readers_owned().map_err(map)?;
    let mut states: Vec<pcsc::ReaderState> = names
        .iter()
        .map(|n| pcsc::ReaderState::new(n.clone(), pcsc::State::UNAWARE))
        .collect();
    if !states.is_empty() {
        ctx.get_status_change(std::time::Duration::from_millis(0), &mut states)
            .map_err(map)?;
    }
    Ok(states
        .iter()
        .map(|s| {
            (
                s.name().to_string_lossy().into_owned(),
                s.event_state().contains(pcsc::State::PRESENT),
            )
        })
        .collect())
}

/// Reads the LwM2M bootstrap data from the named reader, or the first holding a card.
/// Returns the reader used and the data, and the APDU transcript either way.
pub fn read(
    reader: Option<&str>,
    pin: Option<&str>,
) -> (Result<(String, CardData), SmartcardError>, Vec<String>) {
    read_checked(reader, pin, &|_, _| true)
}

/// Like `read`, asking `may_verify(iccid, pin)` before presenting the PIN.
pub fn read_checked(
    reader: Option<&str>,
    pin: Option<&str>,
    may_verify: &dyn Fn(&str, &str) -> bool,
) -> (Result<(String, CardData), SmartcardError>, Vec<String>) {
    let mut log = Vec::new();
    let r = read_logged(reader, pin, may_verify, &mut log);
    (r, log)
}

fn read_logged(
    reader: Option<&str>,
    pin: Option<&str>,
    may_verify: &dyn Fn(&str, &str) -> bool,
    log: &mut Vec<String>,
) -> Result<(String, CardData), SmartcardError> {
    let all = readers()?;
    if all.is_empty() {
        return Err(SmartcardError::NoReader);
    }
    let name = match reader {
        Some(r) => {
            let (n, present) = all.iter().find(|(n, _)| n == r).ok_or_else(|| {
                SmartcardError::Pcsc(format!("no reader named {r:?}; readers: {}", names(&all)))
            })?;
            if !present {
                return Err(SmartcardError::NoCard(n.clone()));
            }
            n.clone()
        }
        None => all
            .iter()
            .find(|(_, present)| *present)
            .map(|(n, _)| n.clone())
            .ok_or_else(|| SmartcardError::NoCard(names(&all)))?,
    };
    let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(map)?;
    let cname = CString::new(name.clone())
        .map_err(|_| SmartcardError::Pcsc("reader name with NUL".into()))?;
    let card = ctx
        .connect(&cname, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        .map_err(map)?;
    let mut t = PcscCard(card);
    let result = {
        let mut walk = Walk::new(&mut t).with_pin_check(may_verify);
        let r = walk.read(pin);
        *log = std::mem::take(&mut walk.log);
        r
    };
    // Leave the card powered: the modem or another agent may share the reader.
    let _ = t.0.disconnect(pcsc::Disposition::LeaveCard);
    result.map(|d| (name, d))
}

fn names(all: &[(String, bool)]) -> String {
    all.iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
