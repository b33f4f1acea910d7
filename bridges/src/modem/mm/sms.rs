//! A ModemManager SMS object's properties to what the agent gets: a whole
//! received message, something to throw away, or not yet (a concatenated message
//! ModemManager is still joining).

use super::time::parse_iso8601;
use super::values::{as_bytes, get, prop_str, prop_u32, Props};
use crate::modem::pdu::Alphabet;
use crate::modem::text::{encode_gsm7, encode_ucs2};
use crate::modem::Sms;

/// MMSmsState.
pub mod sms_state {
    pub const RECEIVING: u32 = 2;
    pub const RECEIVED: u32 = 3;
}

/// MMSmsPduType.
pub mod pdu_type {
    pub const UNKNOWN: u32 = 0;
    pub const DELIVER: u32 = 1;
    pub const STATUS_REPORT: u32 = 3;
    pub const CDMA_DELIVER: u32 = 4;
}

#[derive(Debug, Clone, PartialEq)]
pub enum Judged {
    /// Not complete yet: look again when its `State` changes.
    Pending,
    Deliver(Sms),
    /// Received, but nothing for the agent (a delivery report): deleted.
    Discard {
        sender: Option<String>,
        reason: String,
    },
    /// One we sent or a draft: not ours to touch.
    Outgoing,
}

/// `now` (Unix seconds) stands in for a missing time stamp.
pub fn judge(p: &Props, now: f64) -> Judged {
    let state = prop_u32(p, "State").unwrap_or(0);
    let kind = prop_u32(p, "PduType").unwrap_or(pdu_type::UNKNOWN);
    let received = matches!(
        kind,
        pdu_type::DELIVER | pdu_type::CDMA_DELIVER | pdu_type::STATUS_REPORT
    ) || (kind == pdu_type::UNKNOWN
        && matches!(state, sms_state::RECEIVING | sms_state::RECEIVED));
    if !received {
        return Judged::Outgoing;
    }
    if state != sms_state::RECEIVED {
        return Judged::Pending;
    }
    let sender = prop_str(p, "Number");
    if kind == pdu_type::STATUS_REPORT {
        return Judged::Discard {
            sender,
            reason: "a delivery report, not a message".into(),
        };
    }
    let time = prop_str(p, "Timestamp")
        .and_then(|t| parse_iso8601(&t))
        .unwrap_or(now);
    let data = get(p, "Data").and_then(as_bytes).unwrap_or_default();
    let text = get(p, "Text").and_then(super::values::as_str).unwrap_or("");
    let sender = sender.unwrap_or_default();
    Judged::Deliver(message(sender, data, text, time))
}

/// ModemManager gives 8-bit messages as `Data` and text as `Text` (UTF-8, whatever
/// its alphabet was): text is given back as the AT backend would (septets when the
/// GSM alphabet has every character, else UCS2 octets).
fn message(sender: String, data: Vec<u8>, text: &str, time: f64) -> Sms {
    if !data.is_empty() || text.is_empty() {
        let parts = parts(data.len(), 140, 134);
        return Sms {
            sender,
            data,
            time,
            text: None,
            alphabet: Alphabet::Eight,
            parts,
        };
    }
    let (data, alphabet, parts) = match encode_gsm7(text) {
        Ok(septets) => {
            let n = septets.len();
            (septets, Alphabet::Gsm7, parts(n, 160, 153))
        }
        Err(_) => {
            let octets = encode_ucs2(text);
            let n = octets.len();
            (octets, Alphabet::Ucs2, parts(n, 140, 134))
        }
    };
    Sms {
        sender,
        data,
        time,
        text: Some(text.to_string()),
        alphabet,
        parts,
    }
}

/// ModemManager does not say how many SMS a message came in; this is how many it
/// takes with 8-bit-reference concatenation headers.
fn parts(len: usize, single: usize, each: usize) -> u8 {
    if len <= single {
        1
    } else {
        u8::try_from(len.div_ceil(each)).unwrap_or(u8::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::mm::values::test_values::*;
    use zbus::zvariant::Value;

    fn sms(entries: Vec<(&str, Value<'static>)>) -> Judged {
        judge(&props(entries), 99.0)
    }

    #[test]
    fn binary_message() {
        let j = sms(vec![
            ("State", Value::U32(3)),
            ("PduType", Value::U32(1)),
            ("Number", Value::from("+447700900123")),
            ("Text", Value::from("")),
            ("Data", bytes(&[0x44, 0x02, 0x3A])),
            ("Timestamp", Value::from("2025-03-14T10:30:00Z")),
        ]);
        assert_eq!(
            j,
            Judged::Deliver(Sms {
                sender: "+447700900123".into(),
                data: vec![0x44, 0x02, 0x3A],
                time: 1_741_948_200.0,
                text: None,
                alphabet: Alphabet::Eight,
                parts: 1
            })
        );
        let Judged::Deliver(s) = sms(vec![
            ("State", Value::U32(3)),
            ("PduType", Value::U32(1)),
            ("Data", bytes(&[7; 200])),
        ]) else {
            panic!()
        };
        assert_eq!((s.parts, s.time, s.sender.as_str()), (2, 99.0, ""));
    }

    #[test]
    fn text_messages() {
        let Judged::Deliver(s) = sms(vec![
            ("State", Value::U32(3)),
            ("PduType", Value::U32(1)),
            ("Text", Value::from("Hi @")),
            ("Data", bytes(&[])),
        ]) else {
            panic!()
        };
        assert_eq!(
            (s.alphabet, s.data, s.text.as_deref()),
            (Alphabet::Gsm7, vec![0x48, 0x69, 0x20, 0x00], Some("Hi @"))
        );
        let Judged::Deliver(s) = sms(vec![
            ("State", Value::U32(3)),
            ("PduType", Value::U32(1)),
            ("Text", Value::from("Привет")),
        ]) else {
            panic!()
        };
        assert_eq!((s.alphabet, s.data.len(), s.parts), (Alphabet::Ucs2, 12, 1));
        let Judged::Deliver(s) = sms(vec![
            ("State", Value::U32(3)),
            ("PduType", Value::U32(1)),
            ("Text", Value::from("x".repeat(161))),
        ]) else {
            panic!()
        };
        assert_eq!(s.parts, 2);
    }

    #[test]
    fn not_yet_and_not_ours() {
        let pending = sms(vec![("State", Value::U32(2)), ("PduType", Value::U32(1))]);
        assert_eq!(pending, Judged::Pending);
        let unknown_type = sms(vec![("State", Value::U32(2))]);
        assert_eq!(unknown_type, Judged::Pending);
        // Sent by us, a draft, a CDMA submit.
        for (state, kind) in [(5, 2), (1, 2), (0, 0), (3, 5)] {
            let j = sms(vec![
                ("State", Value::U32(state)),
                ("PduType", Value::U32(kind)),
            ]);
            assert_eq!(j, Judged::Outgoing, "{state} {kind}");
        }
        let report = sms(vec![
            ("State", Value::U32(3)),
            ("PduType", Value::U32(3)),
            ("Number", Value::from("+1")),
        ]);
        assert!(matches!(
            report,
            Judged::Discard {
                sender: Some(_),
                ..
            }
        ));
        // Mistyped properties: nothing certain, so nothing deleted.
        let j = sms(vec![
            ("State", Value::from("3")),
            ("PduType", Value::U32(1)),
        ]);
        assert_eq!(j, Judged::Pending);
    }

    #[test]
    fn part_counts() {
        assert_eq!(parts(0, 140, 134), 1);
        assert_eq!(parts(140, 140, 134), 1);
        assert_eq!(parts(141, 140, 134), 2);
        assert_eq!(parts(268, 140, 134), 2);
        assert_eq!(parts(269, 140, 134), 3);
        assert_eq!(parts(100_000, 140, 134), 255);
    }
}
