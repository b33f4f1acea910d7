//! `lwgate sms decode`: what an SMS PDU holds, in words, for field debugging —
//! the fields of the SMS (the bridges crate's codec) and the CoAP message its user
//! data carries (the CoAP trace's one-line form).

use lwgate_bridges::modem::pdu::{self, Pdu};
use lwgate_bridges::modem::Alphabet;
use std::fmt::Write;

pub struct Described {
    pub text: String,
    /// A part of a concatenated message: its sequence number and its user data.
    pub part: Option<(u8, Vec<u8>)>,
}

/// Describes one PDU in hex (with its SMSC prefix, as PDU mode shows it); the
/// error says what is wrong with it.
pub fn describe(hex: &str) -> Result<Described, String> {
    let pdu = pdu::decode_hex(hex.trim()).map_err(|e| format!("not an SMS PDU: {e}"))?;
    let mut s = String::new();
    let (kind, peer, dcs, ud, time) = match &pdu {
        Pdu::Deliver(d) => (
            "SMS-DELIVER (received)",
            format!("from {}", d.sender),
            d.dcs,
            &d.user_data,
            d.timestamp
                .fields()
                .map(|([y, mo, da, h, mi, se], q)| {
                    let (sign, q) = if q < 0 { ('-', -q) } else { ('+', q) };
                    format!(
                        "{y:04}-{mo:02}-{da:02} {h:02}:{mi:02}:{se:02} {sign}{:02}:{:02}",
                        q / 4,
                        (q % 4) * 15
                    )
                })
                .or_else(|| Some("not a date".into())),
        ),
        Pdu::Submit(m) => (
            "SMS-SUBMIT (sent)",
            format!("to {}", m.destination),
            m.dcs,
            &m.user_data,
            None,
        ),
    };
    let _ = writeln!(s, "  {kind} {peer}");
    if let Some(t) = time {
        let _ = writeln!(s, "  service centre time: {t}");
    }
    let alphabet = match dcs.alphabet() {
        Alphabet::Gsm7 => "GSM 7-bit text",
        Alphabet::Eight => "8-bit data",
        Alphabet::Ucs2 => "UCS2 text",
    };
    let _ = writeln!(s, "  coding: DCS {:#04x}, {alphabet}", dcs.raw);
    let mut part = None;
    if let Some(h) = &ud.header {
        let ies: Vec<String> = h
            .ies
            .iter()
            .map(|ie| format!("IEI {:#04x} [{}]", ie.iei, pdu::to_hex(&ie.data)))
            .collect();
        let _ = writeln!(s, "  header: {}", ies.join(", "));
        if let Some(c) = h.concat() {
            let _ = writeln!(
                s,
                "  part {} of {} of message {} ({}-bit reference)",
                c.seq,
                c.total,
                c.reference,
                if c.wide { 16 } else { 8 }
            );
            part = Some((c.seq, ud.body.clone()));
        }
    }
    let _ = writeln!(s, "  user data: {} octets", ud.body.len());
    match ud.text(dcs) {
        Some(t) => {
            let _ = writeln!(s, "  text: {t:?}");
        }
        None if part.is_some() => {
            let _ = writeln!(s, "  data: {}", pdu::to_hex(&ud.body));
        }
        None => {
            let _ = writeln!(s, "  coap: {}", crate::coap::trace::describe(&ud.body));
        }
    }
    Ok(Described { text: s, part })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vectors.json's single 8-bit SMS (bridges/tests/fixtures/modem).
    const TRIGGER: &str =
        "0791447700090000040C914477000910320004523041010300000E44023A7FA1B2C3D4B13101300138";

    #[test]
    fn a_trigger_sms_shows_its_sender_and_coap() {
        let d = describe(TRIGGER).unwrap();
        assert!(
            d.text.contains("SMS-DELIVER (received) from +447700900123"),
            "{}",
            d.text
        );
        assert!(d.text.contains("2025-03-14 10:30:00 +00:00"), "{}", d.text);
        assert!(d.text.contains("8-bit data"), "{}", d.text);
        assert!(
            d.text.contains("CON POST mid=0x3a7f token=a1b2c3d4 /1/0/8"),
            "{}",
            d.text
        );
        assert!(d.part.is_none());
    }

    #[test]
    fn a_part_of_a_concatenated_sms_says_which() {
        let p = "0791447700090000440C91447700091032000452304101135000380500035C02023162306139663865376436633562346133663265316430633962386137663665356434633362326131663065396438633762";
        let d = describe(p).unwrap();
        assert!(
            d.text
                .contains("part 2 of 2 of message 92 (8-bit reference)"),
            "{}",
            d.text
        );
        assert_eq!(d.part.as_ref().map(|p| p.0), Some(2));
    }

    #[test]
    fn garbage_is_an_error_naming_the_problem() {
        for bad in ["", "zz", "07914477", &TRIGGER[..40]] {
            let e = describe(bad).err().unwrap();
            assert!(e.starts_with("not an SMS PDU: "), "{bad}: {e}");
        }
    }
}
