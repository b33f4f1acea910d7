//! What ModemManager's modem properties mean for us: whether messages can flow
//! (and why not), registration, signal, operator, the serving cell.

use std::collections::HashMap;

use zbus::zvariant::OwnedValue;

use super::values::{self, as_f64, dict_get, fields, get, prop_i32, prop_str, prop_u32, Props};
use crate::modem::Registration;

/// `org.freedesktop.ModemManager1.Modem`'s `State` (MMModemState).
pub mod state {
    pub const FAILED: i32 = -1;
    pub const UNKNOWN: i32 = 0;
    pub const INITIALIZING: i32 = 1;
    pub const LOCKED: i32 = 2;
    pub const DISABLED: i32 = 3;
    pub const DISABLING: i32 = 4;
    pub const ENABLING: i32 = 5;
    pub const ENABLED: i32 = 6;
}

/// What the task does about the modem's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enabled (searching, registered or connected too): messages flow.
    Ready,
    /// On its way (initialising, enabling): wait for the next change.
    Wait,
    /// Disabled, and ours to enable.
    Enable,
    Down(String),
}

/// The modem interface's properties that decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemInfo {
    pub state: i32,
    pub failed_reason: u32,
    pub unlock_required: u32,
    pub equipment: Option<String>,
    pub signal_percent: Option<u8>,
    pub own_numbers: Vec<String>,
}

impl ModemInfo {
    pub fn from_props(p: &Props) -> ModemInfo {
        let signal_percent = get(p, "SignalQuality")
            .and_then(fields)
            .and_then(|f| f.first())
            .and_then(values::as_u32)
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| *n <= 100);
        ModemInfo {
            state: prop_i32(p, "State").unwrap_or(state::UNKNOWN),
            failed_reason: prop_u32(p, "StateFailedReason").unwrap_or(0),
            unlock_required: prop_u32(p, "UnlockRequired").unwrap_or(0),
            equipment: prop_str(p, "EquipmentIdentifier"),
            signal_percent,
            own_numbers: get(p, "OwnNumbers")
                .map(values::as_strings)
                .unwrap_or_default()
                .into_iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }

    pub fn verdict(&self, enable: bool, has_messaging: bool) -> Verdict {
        match self.state {
            state::FAILED => Verdict::Down(format!(
                "the modem failed: {}",
                failed_reason(self.failed_reason)
            )),
            state::LOCKED => Verdict::Down(format!(
                "the modem is locked ({}): ModemManager's owner (NetworkManager) or mmcli must unlock it",
                lock(self.unlock_required)
            )),
            state::DISABLED if enable => Verdict::Enable,
            state::DISABLED => Verdict::Down(
                "modem disabled: its owner (NetworkManager) has not enabled it (modem.enable = true lets lwgate enable it)".into(),
            ),
            state::DISABLING => Verdict::Down("modem disabled (being disabled)".into()),
            state::UNKNOWN | state::INITIALIZING | state::ENABLING => Verdict::Wait,
            s if s >= state::ENABLED && !has_messaging => Verdict::Down(
                "the modem has no SMS support in ModemManager (no Messaging interface)".into(),
            ),
            s if s >= state::ENABLED => Verdict::Ready,
            s => Verdict::Down(format!("the modem is in an unknown state ({s})")),
        }
    }
}

/// MMModemStateFailedReason.
fn failed_reason(n: u32) -> String {
    match n {
        2 => "no SIM".into(),
        3 => "SIM error".into(),
        4 => "unknown capabilities".into(),
        5 => "eSIM without profiles".into(),
        n => format!("reason {n}"),
    }
}

/// MMModemLock.
fn lock(n: u32) -> String {
    match n {
        2 => "SIM PIN".into(),
        3 => "SIM PIN2".into(),
        4 => "SIM PUK".into(),
        5 => "SIM PUK2".into(),
        n => format!("lock {n}"),
    }
}

/// MMModem3gppRegistrationState.
pub fn registration(n: u32) -> Registration {
    match n {
        0 => Registration::NotRegistered,
        // Home, home SMS-only, home CSFB-not-preferred, attached (RLOS).
        1 | 6 | 9 | 11 => Registration::Home,
        2 => Registration::Searching,
        3 => Registration::Denied,
        5 | 7 | 10 => Registration::Roaming,
        _ => Registration::Unknown,
    }
}

/// From `Modem3gpp`'s properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub operator: Option<String>,
    pub registration: Option<Registration>,
}

impl Network {
    pub fn from_props(p: &Props) -> Network {
        Network {
            operator: prop_str(p, "OperatorName"),
            registration: prop_u32(p, "RegistrationState").map(registration),
        }
    }
}

/// The serving cell, from the 3GPP location source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    pub mcc: Option<u16>,
    pub mnc: Option<u16>,
    pub lac: Option<u32>,
    pub cell_id: Option<u32>,
}

/// MM_MODEM_LOCATION_SOURCE_3GPP_LAC_CI.
pub const LOCATION_3GPP: u32 = 1;

/// `GetLocation`'s (or the `Location` property's) 3GPP entry:
/// `"MCC,MNC,LAC,CI,TAC"`, the codes in decimal, the rest in hexadecimal; zero is
/// ModemManager's "unknown".
pub fn cell(location: &HashMap<u32, OwnedValue>) -> Option<Cell> {
    let s = location
        .get(&LOCATION_3GPP)
        .and_then(|v| values::as_str(v))?;
    parse_cell(s)
}

pub fn parse_cell(s: &str) -> Option<Cell> {
    let f: Vec<&str> = s.split(',').map(str::trim).collect();
    if f.len() < 4 {
        return None;
    }
    let dec = |x: &str| x.parse::<u16>().ok();
    let hex = |x: &str| u32::from_str_radix(x, 16).ok().filter(|n| *n != 0);
    let lac = hex(f[2]);
    let tac = f.get(4).and_then(|x| hex(x));
    let mcc = dec(f[0]).filter(|n| *n != 0);
    let c = Cell {
        mcc,
        // MNC 0 is a real network, but not without a country.
        mnc: dec(f[1]).filter(|_| mcc.is_some()),
        // LTE has no LAC: its tracking area stands in.
        lac: lac.or(tac),
        cell_id: hex(f[3]),
    };
    (c != Cell::default()).then_some(c)
}

/// An RSSI in dBm from `Modem.Signal` (set up by its owner; `Rate` 0 leaves it
/// empty), the newest technology first.
pub fn signal_dbm(p: &Props) -> Option<i32> {
    ["Nr5g", "Lte", "Umts", "Gsm", "Evdo", "Cdma"]
        .iter()
        .filter_map(|t| get(p, t))
        .filter_map(|d| dict_get(d, "rssi").and_then(as_f64))
        .find(|x| (-200.0..0.0).contains(x))
        .map(|x| x.round() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::mm::values::test_values::*;
    use zbus::zvariant::Value;

    fn modem(state: i32) -> ModemInfo {
        ModemInfo::from_props(&props(vec![("State", Value::I32(state))]))
    }

    #[test]
    fn modem_properties() {
        let m = ModemInfo::from_props(&props(vec![
            ("State", Value::I32(8)),
            ("SignalQuality", pair(80, true)),
            ("OwnNumbers", strings(&["", " +447700900123 "])),
            ("EquipmentIdentifier", Value::from("490154203237518")),
        ]));
        assert_eq!(m.state, 8);
        assert_eq!(m.signal_percent, Some(80));
        assert_eq!(m.own_numbers, vec!["+447700900123".to_string()]);
        assert_eq!(m.equipment.as_deref(), Some("490154203237518"));
        // Missing or mistyped: unknown, not a panic.
        let m = ModemInfo::from_props(&props(vec![
            ("State", Value::from("8")),
            ("SignalQuality", Value::U32(80)),
            ("OwnNumbers", Value::U32(1)),
        ]));
        assert_eq!(m.state, state::UNKNOWN);
        assert_eq!((m.signal_percent, m.own_numbers.len()), (None, 0));
        let m = ModemInfo::from_props(&props(vec![("SignalQuality", pair(300, true))]));
        assert_eq!(m.signal_percent, None);
    }

    #[test]
    fn verdicts() {
        assert_eq!(modem(8).verdict(false, true), Verdict::Ready);
        assert_eq!(modem(6).verdict(false, true), Verdict::Ready);
        assert_eq!(modem(11).verdict(false, true), Verdict::Ready);
        assert_eq!(modem(5).verdict(false, true), Verdict::Wait);
        assert_eq!(modem(1).verdict(false, true), Verdict::Wait);
        assert_eq!(modem(3).verdict(true, true), Verdict::Enable);
        let Verdict::Down(why) = modem(3).verdict(false, true) else {
            panic!()
        };
        assert!(why.contains("modem disabled"), "{why}");
        let Verdict::Down(why) = modem(8).verdict(false, false) else {
            panic!()
        };
        assert!(why.contains("no SMS"), "{why}");
        let mut m = modem(-1);
        m.failed_reason = 2;
        assert_eq!(
            m.verdict(true, true),
            Verdict::Down("the modem failed: no SIM".into())
        );
        let mut m = modem(2);
        m.unlock_required = 2;
        let Verdict::Down(why) = m.verdict(true, true) else {
            panic!()
        };
        assert!(why.contains("SIM PIN"), "{why}");
        assert!(matches!(modem(4).verdict(true, true), Verdict::Down(_)));
        assert!(matches!(modem(-7).verdict(true, true), Verdict::Down(_)));
    }

    #[test]
    fn registrations() {
        assert_eq!(registration(1), Registration::Home);
        assert_eq!(registration(5), Registration::Roaming);
        assert_eq!(registration(2), Registration::Searching);
        assert_eq!(registration(3), Registration::Denied);
        assert_eq!(registration(0), Registration::NotRegistered);
        assert_eq!(registration(4), Registration::Unknown);
        assert_eq!(registration(99), Registration::Unknown);
        let n = Network::from_props(&props(vec![
            ("OperatorName", Value::from("Fake Telecom")),
            ("RegistrationState", Value::U32(1)),
        ]));
        assert_eq!(n.operator.as_deref(), Some("Fake Telecom"));
        assert_eq!(n.registration, Some(Registration::Home));
        assert_eq!(Network::from_props(&props(vec![])), Network::default());
    }

    #[test]
    fn cells() {
        assert_eq!(
            parse_cell("1,1,1A2B,00C0FFEE,0"),
            Some(Cell {
                mcc: Some(1),
                mnc: Some(1),
                lac: Some(0x1A2B),
                cell_id: Some(0xC0FFEE)
            })
        );
        // LTE: no LAC, the TAC stands in.
        let c = parse_cell("234,15,0,01A2B3C4,00BEEF").unwrap();
        assert_eq!(
            (c.lac, c.cell_id, c.mnc),
            (Some(0xBEEF), Some(0x1A2B3C4), Some(15))
        );
        // Older ModemManager: four fields.
        assert_eq!(parse_cell("262,2,12,34").unwrap().lac, Some(0x12));
        assert_eq!(parse_cell("0,0,0,0,0"), None);
        assert_eq!(parse_cell("1,2,3"), None);
        assert_eq!(parse_cell(""), None);
        assert_eq!(parse_cell("x,y,zz,ww").map(|c| c.cell_id), None);
        let mut loc = HashMap::new();
        loc.insert(1, owned(Value::from("1,1,1A2B,00C0FFEE,0")));
        loc.insert(2, owned(Value::from("$GPGGA")));
        assert_eq!(cell(&loc).and_then(|c| c.cell_id), Some(0xC0FFEE));
        loc.insert(1, owned(Value::U32(5)));
        assert_eq!(cell(&loc), None);
        assert_eq!(cell(&HashMap::new()), None);
    }

    #[test]
    fn signal() {
        let p = props(vec![
            ("Rate", Value::U32(30)),
            (
                "Lte",
                asv(vec![
                    ("rsrp", Value::F64(-100.0)),
                    ("rssi", Value::F64(-70.6)),
                ]),
            ),
            ("Gsm", asv(vec![("rssi", Value::F64(-80.0))])),
        ]);
        assert_eq!(signal_dbm(&p), Some(-71));
        let p = props(vec![
            ("Lte", asv(vec![])),
            ("Umts", asv(vec![("rssi", Value::F64(-90.0))])),
        ]);
        assert_eq!(signal_dbm(&p), Some(-90));
        assert_eq!(
            signal_dbm(&props(vec![("Lte", asv(vec![("rssi", Value::F64(0.0))]))])),
            None
        );
        assert_eq!(signal_dbm(&props(vec![])), None);
    }
}
