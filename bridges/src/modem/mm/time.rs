//! ModemManager's SMS time stamps: ISO 8601 as GLib writes them
//! (`2025-03-14T10:30:00Z`, `2025-03-14T10:30:00+01:00`; older versions `+01`),
//! to Unix seconds.

use crate::modem::pdu;

/// `None` when it is no date (ModemManager leaves the stamp empty when the PDU's
/// was unusable).
pub fn parse_iso8601(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, rest) = s.split_at_checked(10)?;
    let mut d = date.split('-');
    let year: i64 = digits(d.next()?, 4)?;
    let month: i64 = digits(d.next()?, 2)?;
    let day: i64 = digits(d.next()?, 2)?;
    if d.next().is_some() || !(1..=12).contains(&month) || day < 1 || day > days_in(year, month) {
        return None;
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        // No zone: ModemManager only omits it when the network gave none; UTC is
        // the least wrong guess.
        None => (rest, ""),
    };
    let (hms, fraction) = match time.split_once(['.', ',']) {
        Some((hms, f)) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (hms, format!("0.{f}").parse::<f64>().ok()?)
        }
        None => (time, 0.0),
    };
    let mut t = hms.split(':');
    let hour: i64 = digits(t.next()?, 2)?;
    let minute: i64 = digits(t.next()?, 2)?;
    let second: i64 = match t.next() {
        Some(x) => digits(x, 2)?,
        None => 0,
    };
    // 60: a leap second.
    if t.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset = offset_seconds(zone)?;
    let days = pdu::days_from_civil(year, month, day);
    let local = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local - offset) as f64 + fraction)
}

/// `Z`, `+HH`, `+HHMM` or `+HH:MM` (and `-`), or nothing.
fn offset_seconds(zone: &str) -> Option<i64> {
    if zone.is_empty() || zone.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let (sign, z) = match zone.split_at_checked(1)? {
        ("+", z) => (1, z),
        ("-", z) => (-1, z),
        _ => return None,
    };
    let (h, m) = match z.len() {
        2 => (z, "00"),
        4 => z.split_at_checked(2)?,
        5 if z.as_bytes()[2] == b':' => (&z[..2], &z[3..]),
        _ => return None,
    };
    let (h, m): (i64, i64) = (digits(h, 2)?, digits(m, 2)?);
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn days_in(year: i64, month: i64) -> i64 {
    // Years outside u16 have no month that fits: the day check then fails.
    match (u16::try_from(year), u16::try_from(month)) {
        (Ok(y), Ok(m)) => i64::from(pdu::days_in_month(y, m)),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms_modemmanager_writes() {
        // date -u -d 2025-03-14T10:30:00Z +%s
        let t = 1_741_948_200.0;
        assert_eq!(parse_iso8601("2025-03-14T10:30:00Z"), Some(t));
        assert_eq!(parse_iso8601("2025-03-14T11:30:00+01:00"), Some(t));
        assert_eq!(parse_iso8601("2025-03-14T11:30:00+01"), Some(t));
        assert_eq!(parse_iso8601("2025-03-14T11:30:00+0100"), Some(t));
        assert_eq!(parse_iso8601("2025-03-14T05:00:00-05:30"), Some(t));
        assert_eq!(parse_iso8601("2025-03-14T10:30:00"), Some(t));
        assert_eq!(parse_iso8601("2025-03-14T10:30Z"), Some(t));
        assert_eq!(parse_iso8601("2025-03-14T10:30:00.250Z"), Some(t + 0.25));
        assert_eq!(parse_iso8601(" 1970-01-01T00:00:00Z\n"), Some(0.0));
        assert_eq!(parse_iso8601("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        assert_eq!(parse_iso8601("1969-12-31T23:59:59Z"), Some(-1.0));
    }

    #[test]
    fn not_dates() {
        for s in [
            "",
            "2025",
            "2025-03-14",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-03-00T00:00:00Z",
            "2025-03-14T24:00:00Z",
            "2025-03-14T10:60:00Z",
            "2025-03-14T10:30:00+1",
            "2025-03-14T10:30:00+01:0",
            "2025-03-14T10:30:00+25:00",
            "2025-03-14T10:30:00X",
            "2025-03-14T10:30:00.Z",
            "2025-03-14T10:30:00.5.5Z",
            "25-03-14T10:30:00Z",
            "2025-3-14T10:30:00Z",
            "2025-03-14X10:30:00Z",
            "2025-03-14T+1:30:00Z",
            "2025-03-14T10:30:00:00Z",
            "é025-03-14T10:30:00Z",
            "2025-03-14Té",
        ] {
            assert_eq!(parse_iso8601(s), None, "{s:?}");
        }
    }

    proptest! {
        /// Every second of four centuries, written the way GLib does, reads back.
        #[test]
        fn round_trip(t in -2_208_988_800i64..7_258_118_400, q in -48i64..=56) {
            let offset = q * 15 * 60;
            let local = t + offset;
            let days = local.div_euclid(86_400);
            let secs = local.rem_euclid(86_400);
            let (y, m, d) = pdu::civil_from_days(days);
            let zone = if offset == 0 {
                "Z".to_string()
            } else {
                let a = offset.abs();
                format!("{}{:02}:{:02}", if offset < 0 { '-' } else { '+' }, a / 3600, a % 3600 / 60)
            };
            let s = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{zone}",
                secs / 3600,
                secs % 3600 / 60,
                secs % 60
            );
            prop_assert_eq!(parse_iso8601(&s), Some(t as f64), "{}", s);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_iso8601(&s);
        }
    }
}
