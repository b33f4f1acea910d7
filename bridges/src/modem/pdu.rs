//! SMS TPDUs in the PDU mode of TS 27.005 (hex, with the SMSC address in front):
//! SMS-DELIVER decoded (what arrives), SMS-SUBMIT encoded (what we send) and decoded
//! (to read back what was sent, and for `lwgate sms decode`). Field layout from
//! 3GPP TS 23.040 9.2.2; data coding from TS 23.038 4.
//!
//! Every length is checked against what is there: a malformed PDU is an error that
//! names the field, never a panic, and nothing is allocated beyond the input's size.

use super::text;
use super::udh::{Concat, Udh};

/// What is wrong with a PDU, naming the field (`TP-OA`, `TP-UDL`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct PduError {
    pub field: &'static str,
    pub problem: String,
}

impl PduError {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        PduError {
            field,
            problem: problem.into(),
        }
    }
}

/// An SMSC address of 12 octets (TS 24.011 8.2.5.1 allows 1 + 11) and the longest
/// TPDU (an SMS-SUBMIT with a 7-octet validity period and a 20-digit address: 164
/// octets) fit; anything longer is no SMS.
pub const MAX_PDU_OCTETS: usize = 12 + 164;

/// The most user data one SMS carries.
pub const MAX_UD_OCTETS: usize = 140;
pub const MAX_UD_SEPTETS: usize = 160;

/// Octets from hex (either case); whitespace around is ignored.
pub fn from_hex(s: &str) -> Result<Vec<u8>, PduError> {
    let s = s.trim().as_bytes();
    if s.len() % 2 != 0 {
        return Err(PduError::new(
            "PDU",
            format!("hex needs an even number of digits, got {}", s.len()),
        ));
    }
    if s.len() / 2 > MAX_PDU_OCTETS {
        return Err(PduError::new(
            "PDU",
            format!(
                "{} octets is longer than any SMS ({MAX_PDU_OCTETS} at most)",
                s.len() / 2
            ),
        ));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(PduError::new(
            "PDU",
            format!("expected hex digits, got {:?}", char::from(c)),
        )),
    };
    s.chunks_exact(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

pub fn to_hex(octets: &[u8]) -> String {
    octets.iter().map(|b| format!("{b:02X}")).collect()
}

/// Reads fields off the front of a PDU, each named for its error.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self, field: &'static str) -> Result<u8, PduError> {
        let [first, rest @ ..] = self.rest else {
            return Err(PduError::new(field, "missing: the PDU ends before it"));
        };
        self.rest = rest;
        Ok(*first)
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], PduError> {
        if self.rest.len() < n {
            return Err(PduError::new(
                field,
                format!("needs {n} octets, {} are left", self.rest.len()),
            ));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
}

/// Type of number (TS 23.040 9.1.2.5, bits 6–4 of the type-of-address octet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberType {
    Unknown,
    International,
    National,
    NetworkSpecific,
    Subscriber,
    Alphanumeric,
    Abbreviated,
    Reserved,
}

impl NumberType {
    fn from_bits(b: u8) -> Self {
        match b & 0x07 {
            0 => NumberType::Unknown,
            1 => NumberType::International,
            2 => NumberType::National,
            3 => NumberType::NetworkSpecific,
            4 => NumberType::Subscriber,
            5 => NumberType::Alphanumeric,
            6 => NumberType::Abbreviated,
            _ => NumberType::Reserved,
        }
    }

    fn bits(self) -> u8 {
        match self {
            NumberType::Unknown => 0,
            NumberType::International => 1,
            NumberType::National => 2,
            NumberType::NetworkSpecific => 3,
            NumberType::Subscriber => 4,
            NumberType::Alphanumeric => 5,
            NumberType::Abbreviated => 6,
            NumberType::Reserved => 7,
        }
    }
}

/// An originating, destination or SMSC address. `value` holds the digits (and `*`,
/// `#`, `a`–`c`) without a `+`, or the text of an alphanumeric sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub kind: NumberType,
    /// Numbering plan identification (bits 3–0; 1 is E.164).
    pub plan: u8,
    pub value: String,
}

const SEMI_OCTETS: &[u8; 15] = b"0123456789*#abc";

impl Address {
    /// `+4477...` (international, E.164) or the number as dialled (type unknown,
    /// which networks read as national). Digits only, 1 to 20 of them.
    pub fn number(s: &str) -> Result<Address, PduError> {
        let (kind, digits) = match s.strip_prefix('+') {
            Some(d) => (NumberType::International, d),
            None => (NumberType::Unknown, s),
        };
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PduError::new(
                "TP-DA",
                format!(
                    "expected a phone number of 1 to 20 digits, with + in front when international, got {s:?}"
                ),
            ));
        }
        Ok(Address {
            kind,
            plan: 1,
            value: digits.to_string(),
        })
    }

    fn type_octet(&self) -> u8 {
        0x80 | self.kind.bits() << 4 | (self.plan & 0x0F)
    }

    /// TP-OA / TP-DA: the length counts useful semi-octets.
    fn decode_tp(r: &mut Reader<'_>, field: &'static str) -> Result<Address, PduError> {
        let len = usize::from(r.u8(field)?);
        if len > 20 {
            return Err(PduError::new(
                field,
                format!("an address has at most 20 semi-octets, got a length of {len}"),
            ));
        }
        let toa = r.u8(field)?;
        let octets = r.take(field, len.div_ceil(2))?;
        Self::from_parts(field, toa, octets, len)
    }

    /// The SMSC address in front of a PDU: its length counts octets (with the
    /// type octet); 0 means none (the SIM's own is used).
    fn decode_smsc(r: &mut Reader<'_>) -> Result<Option<Address>, PduError> {
        const FIELD: &str = "SMSC address";
        let len = usize::from(r.u8(FIELD)?);
        if len == 0 {
            return Ok(None);
        }
        if len > 12 {
            return Err(PduError::new(
                FIELD,
                format!("at most 12 octets, got a length of {len}"),
            ));
        }
        let toa = r.u8(FIELD)?;
        let octets = r.take(FIELD, len - 1)?;
        Self::from_parts(FIELD, toa, octets, octets.len() * 2).map(Some)
    }

    fn from_parts(
        field: &'static str,
        toa: u8,
        octets: &[u8],
        semi: usize,
    ) -> Result<Address, PduError> {
        let kind = NumberType::from_bits(toa >> 4);
        let plan = toa & 0x0F;
        let value = if kind == NumberType::Alphanumeric {
            let septets = text::unpack_septets(octets, 0, semi * 4 / 7)
                .map_err(|e| PduError::new(field, e.problem))?;
            text::decode_gsm7(&septets)
        } else {
            let mut v = String::with_capacity(semi);
            for i in 0..semi {
                let o = octets[i / 2];
                let nibble = if i % 2 == 0 { o & 0x0F } else { o >> 4 };
                match SEMI_OCTETS.get(usize::from(nibble)) {
                    Some(c) => v.push(char::from(*c)),
                    // The filler of an odd-length number; some SMSC fields carry it.
                    None if i + 1 == semi && i % 2 == 1 => {}
                    None => {
                        return Err(PduError::new(
                            field,
                            format!("semi-octet {i} is 0x{nibble:X}, which is no digit"),
                        ))
                    }
                }
            }
            v
        };
        Ok(Address { kind, plan, value })
    }

    /// The address field's octets: (semi-octet count, octets).
    fn encode_parts(&self, field: &'static str) -> Result<(usize, Vec<u8>), PduError> {
        if self.kind == NumberType::Alphanumeric {
            let septets = text::encode_gsm7(&self.value)?;
            if septets.len() > 11 {
                return Err(PduError::new(
                    field,
                    format!(
                        "an alphanumeric address has at most 11 characters, got {:?}",
                        self.value
                    ),
                ));
            }
            let packed = text::pack_septets(&septets, 0);
            return Ok(((septets.len() * 7).div_ceil(4), packed));
        }
        let mut nibbles = Vec::with_capacity(self.value.len());
        for c in self.value.bytes() {
            match SEMI_OCTETS.iter().position(|d| *d == c) {
                Some(n) => nibbles.push(n as u8),
                None => {
                    return Err(PduError::new(
                        field,
                        format!("{:?} is no digit of a number", char::from(c)),
                    ))
                }
            }
        }
        if nibbles.len() > 20 {
            return Err(PduError::new(
                field,
                format!("at most 20 digits, got {}", nibbles.len()),
            ));
        }
        let octets = nibbles
            .chunks(2)
            .map(|p| p[0] | p.get(1).copied().unwrap_or(0x0F) << 4)
            .collect();
        Ok((nibbles.len(), octets))
    }

    fn encode_tp(&self, field: &'static str, out: &mut Vec<u8>) -> Result<(), PduError> {
        let (semi, octets) = self.encode_parts(field)?;
        out.push(semi as u8);
        out.push(self.type_octet());
        out.extend(octets);
        Ok(())
    }

    fn encode_smsc(smsc: &Option<Address>, out: &mut Vec<u8>) -> Result<(), PduError> {
        match smsc {
            None => out.push(0),
            Some(a) => {
                let (_, octets) = a.encode_parts("SMSC address")?;
                if octets.len() > 11 {
                    return Err(PduError::new("SMSC address", "at most 20 digits"));
                }
                out.push(octets.len() as u8 + 1);
                out.push(a.type_octet());
                out.extend(octets);
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind == NumberType::International {
            f.write_str("+")?;
        }
        f.write_str(&self.value)
    }
}

/// How the user data is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    Gsm7,
    Eight,
    Ucs2,
}

/// TP-DCS, read as TS 23.038 4 says. Reserved codings are taken as the GSM 7-bit
/// alphabet, which is what the standard asks of a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dcs {
    pub raw: u8,
}

impl Dcs {
    /// 8-bit data without a message class: what LwM2M's SMS binding sends.
    pub const DATA: Dcs = Dcs { raw: 0x04 };

    pub fn alphabet(self) -> Alphabet {
        let alphabet = |bits: u8| match bits & 0x03 {
            1 => Alphabet::Eight,
            2 => Alphabet::Ucs2,
            _ => Alphabet::Gsm7,
        };
        match self.raw >> 4 {
            // General data coding, with or without automatic deletion.
            0x0..=0x7 => alphabet(self.raw >> 2),
            0xE => Alphabet::Ucs2,
            0xF if self.raw & 0x04 != 0 => Alphabet::Eight,
            _ => Alphabet::Gsm7,
        }
    }

    /// Compressed text (TS 23.042): passed on as octets, not decoded.
    pub fn compressed(self) -> bool {
        self.raw >> 6 <= 1 && self.raw & 0x20 != 0
    }

    /// Message class 0–3 (2 is "SIM-specific"), when the coding gives one.
    pub fn class(self) -> Option<u8> {
        match self.raw >> 4 {
            0x0..=0x7 if self.raw & 0x10 != 0 => Some(self.raw & 0x03),
            0xF => Some(self.raw & 0x03),
            _ => None,
        }
    }
}

/// TP-SCTS as it came: seven semi-octet-swapped fields, the last one the zone in
/// quarter hours with its sign in bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub raw: [u8; 7],
}

impl Timestamp {
    /// Year (2000–2089, or 1990–1999 for 90–99), month, day, hour, minute, second
    /// as written, and the zone in quarter hours east of UTC; `None` when a field is
    /// no number or out of its range.
    pub fn fields(&self) -> Option<([u16; 6], i16)> {
        let bcd = |o: u8| {
            let (tens, units) = (o & 0x0F, o >> 4);
            (tens <= 9 && units <= 9).then_some(u16::from(tens) * 10 + u16::from(units))
        };
        let mut f = [0u16; 6];
        for (i, o) in self.raw[..6].iter().enumerate() {
            f[i] = bcd(*o)?;
        }
        f[0] += if f[0] >= 90 { 1900 } else { 2000 };
        let zone = self.raw[6];
        let quarters = bcd(zone & !0x08)? as i16;
        let quarters = if zone & 0x08 != 0 {
            -quarters
        } else {
            quarters
        };
        let [_, month, day, hour, minute, second] = f;
        let ok = (1..=12).contains(&month)
            && (1..=days_in_month(f[0], month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60
            && quarters.abs() <= 14 * 4;
        ok.then_some((f, quarters))
    }

    /// Unix seconds (the local time the SMSC wrote less its zone).
    pub fn unix(&self) -> Option<i64> {
        let ([y, mo, d, h, mi, s], quarters) = self.fields()?;
        let days = days_from_civil(i64::from(y), i64::from(mo), i64::from(d));
        let local = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
        Some(local - i64::from(quarters) * 900)
    }

    /// From Unix seconds, written as local time in `quarters` (east of UTC).
    pub fn from_unix(unix: i64, quarters: i8) -> Timestamp {
        let quarters = quarters.clamp(-56, 56);
        let local = unix + i64::from(quarters) * 900;
        let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        let swap = |v: i64| {
            let v = v.rem_euclid(100) as u8;
            ((v % 10) << 4) | (v / 10)
        };
        let zone = swap(i64::from(quarters.unsigned_abs())) | if quarters < 0 { 0x08 } else { 0 };
        Timestamp {
            raw: [
                swap(y),
                swap(mo),
                swap(d),
                swap(secs / 3600),
                swap(secs / 60 % 60),
                swap(secs % 60),
                zone,
            ],
        }
    }
}

pub(crate) fn days_in_month(y: u16, m: u16) -> u16 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (H. Hinnant's algorithm); also ModemManager's times.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The user data of one SMS: its header, and the rest as octets (8-bit and UCS2)
/// or as septets, one per byte (7-bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    pub header: Option<Udh>,
    pub body: Vec<u8>,
}

impl UserData {
    /// Reads TP-UDL and TP-UD, which must be the rest of the PDU.
    fn decode(r: &mut Reader<'_>, udhi: bool, alphabet: Alphabet) -> Result<UserData, PduError> {
        let udl = usize::from(r.u8("TP-UDL")?);
        let (octets, limit) = match alphabet {
            Alphabet::Gsm7 => ((udl * 7).div_ceil(8), MAX_UD_SEPTETS),
            _ => (udl, MAX_UD_OCTETS),
        };
        if udl > limit {
            return Err(PduError::new(
                "TP-UDL",
                format!("at most {limit} in one SMS, got {udl}"),
            ));
        }
        let ud = r.take("TP-UD", octets)?;
        if !r.rest.is_empty() {
            return Err(PduError::new(
                "TP-UD",
                format!(
                    "{} octets follow the user data that TP-UDL ({udl}) does not count",
                    r.rest.len()
                ),
            ));
        }
        let (header, header_octets) = if udhi {
            let Some(&udhl) = ud.first() else {
                return Err(PduError::new(
                    "UDHL",
                    "TP-UDHI says a header follows, but the user data is empty",
                ));
            };
            let udhl = usize::from(udhl);
            if udhl + 1 > ud.len() {
                return Err(PduError::new(
                    "UDHL",
                    format!(
                        "a {udhl}-octet header does not fit in {} octets of user data",
                        ud.len()
                    ),
                ));
            }
            (Some(Udh::parse(&ud[1..=udhl])?), udhl + 1)
        } else {
            (None, 0)
        };
        let body = match alphabet {
            Alphabet::Gsm7 => {
                // The header is padded with fill bits to a whole septet.
                let header_septets = (header_octets * 8).div_ceil(7);
                let Some(count) = udl.checked_sub(header_septets) else {
                    return Err(PduError::new(
                        "TP-UDL",
                        format!(
                            "{udl} septets cannot hold a {header_octets}-octet header ({header_septets} septets)"
                        ),
                    ));
                };
                text::unpack_septets(ud, header_septets * 7, count)?
            }
            _ => ud[header_octets..].to_vec(),
        };
        Ok(UserData { header, body })
    }

    fn encode(&self, alphabet: Alphabet, out: &mut Vec<u8>) -> Result<(), PduError> {
        let header = self.header.as_ref().map(|h| {
            let mut v = h.encode();
            v.insert(0, v.len() as u8);
            v
        });
        let header_octets = header.as_ref().map_or(0, Vec::len);
        let (udl, ud) = match alphabet {
            Alphabet::Gsm7 => {
                let header_septets = (header_octets * 8).div_ceil(7);
                let udl = header_septets + self.body.len();
                if udl > MAX_UD_SEPTETS {
                    return Err(PduError::new(
                        "TP-UD",
                        format!("{udl} septets do not fit in one SMS ({MAX_UD_SEPTETS})"),
                    ));
                }
                let mut ud = text::pack_septets(&self.body, header_septets * 7);
                if let Some(h) = &header {
                    ud[..h.len()].copy_from_slice(h);
                }
                (udl, ud)
            }
            _ => {
                let mut ud = header.unwrap_or_default();
                ud.extend_from_slice(&self.body);
                if ud.len() > MAX_UD_OCTETS {
                    return Err(PduError::new(
                        "TP-UD",
                        format!(
                            "{} octets do not fit in one SMS ({MAX_UD_OCTETS})",
                            ud.len()
                        ),
                    ));
                }
                (ud.len(), ud)
            }
        };
        out.push(udl as u8);
        out.extend(ud);
        Ok(())
    }

    /// The text of a 7-bit or UCS2 message, for logs; `None` for 8-bit data.
    pub fn text(&self, dcs: Dcs) -> Option<String> {
        if dcs.compressed() {
            return None;
        }
        match dcs.alphabet() {
            Alphabet::Gsm7 => Some(text::decode_gsm7(&self.body)),
            Alphabet::Ucs2 => Some(text::decode_ucs2(&self.body).unwrap_or_else(|_| {
                // The odd octet is left out; the log still shows the rest.
                text::decode_ucs2(&self.body[..self.body.len() - 1]).unwrap_or_default()
            })),
            Alphabet::Eight => None,
        }
    }
}

const MTI_DELIVER: u8 = 0;
const MTI_SUBMIT: u8 = 1;
const UDHI: u8 = 0x40;

/// An SMS-DELIVER: a message from the network to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    pub smsc: Option<Address>,
    /// TP-MMS inverted: more messages are waiting at the SMSC.
    pub more_messages: bool,
    pub reply_path: bool,
    pub status_report: bool,
    pub sender: Address,
    pub pid: u8,
    pub dcs: Dcs,
    pub timestamp: Timestamp,
    pub user_data: UserData,
}

impl Deliver {
    pub fn concat(&self) -> Option<Concat> {
        self.user_data.header.as_ref().and_then(Udh::concat)
    }

    pub fn text(&self) -> Option<String> {
        self.user_data.text(self.dcs)
    }

    /// The PDU with its SMSC field, as a modem lists it. Used to make test
    /// messages; a gateway never sends an SMS-DELIVER.
    pub fn encode(&self) -> Result<Vec<u8>, PduError> {
        let mut out = Vec::with_capacity(64);
        Address::encode_smsc(&self.smsc, &mut out)?;
        let udhi = if self.user_data.header.is_some() {
            UDHI
        } else {
            0
        };
        out.push(
            MTI_DELIVER
                | if self.more_messages { 0 } else { 0x04 }
                | if self.status_report { 0x20 } else { 0 }
                | udhi
                | if self.reply_path { 0x80 } else { 0 },
        );
        self.sender.encode_tp("TP-OA", &mut out)?;
        out.push(self.pid);
        out.push(self.dcs.raw);
        out.extend(self.timestamp.raw);
        self.user_data.encode(self.dcs.alphabet(), &mut out)?;
        Ok(out)
    }
}

/// TP-VP of an SMS-SUBMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    None,
    /// Relative (TS 23.040 9.2.3.12.1): 0–143 are 5-minute steps from 5 minutes on,
    /// and so on up to 63 weeks.
    Relative(u8),
    /// Absolute or enhanced: seven octets, kept as they came.
    Other {
        format: u8,
        raw: [u8; 7],
    },
}

/// An SMS-SUBMIT: a message from us to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub smsc: Option<Address>,
    pub reject_duplicates: bool,
    pub status_report: bool,
    pub reply_path: bool,
    /// TP-MR; modems put their own in, so we send 0.
    pub reference: u8,
    pub destination: Address,
    pub pid: u8,
    pub dcs: Dcs,
    pub validity: Validity,
    pub user_data: UserData,
}

impl Submit {
    pub fn concat(&self) -> Option<Concat> {
        self.user_data.header.as_ref().and_then(Udh::concat)
    }

    /// The PDU with its SMSC field.
    pub fn encode(&self) -> Result<Vec<u8>, PduError> {
        let mut out = Vec::with_capacity(64);
        Address::encode_smsc(&self.smsc, &mut out)?;
        let vpf = match self.validity {
            Validity::None => 0,
            Validity::Relative(_) => 0x10,
            Validity::Other { format, .. } => (format & 0x03) << 3,
        };
        out.push(
            MTI_SUBMIT
                | if self.reject_duplicates { 0x04 } else { 0 }
                | vpf
                | if self.status_report { 0x20 } else { 0 }
                | if self.user_data.header.is_some() {
                    UDHI
                } else {
                    0
                }
                | if self.reply_path { 0x80 } else { 0 },
        );
        out.push(self.reference);
        self.destination.encode_tp("TP-DA", &mut out)?;
        out.push(self.pid);
        out.push(self.dcs.raw);
        match self.validity {
            Validity::None => {}
            Validity::Relative(v) => out.push(v),
            Validity::Other { raw, .. } => out.extend(raw),
        }
        self.user_data.encode(self.dcs.alphabet(), &mut out)?;
        Ok(out)
    }
}

/// A PDU of either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    Deliver(Deliver),
    Submit(Submit),
}

/// A PDU in the hex of `AT+CMGR`/`AT+CMGL`/`+CMT` (SMSC field first).
pub fn decode_hex(hex: &str) -> Result<Pdu, PduError> {
    decode(&from_hex(hex)?)
}

/// A PDU with its SMSC field in front.
pub fn decode(octets: &[u8]) -> Result<Pdu, PduError> {
    if octets.len() > MAX_PDU_OCTETS {
        return Err(PduError::new(
            "PDU",
            format!(
                "{} octets is longer than any SMS ({MAX_PDU_OCTETS} at most)",
                octets.len()
            ),
        ));
    }
    let mut r = Reader { rest: octets };
    let smsc = Address::decode_smsc(&mut r)?;
    let first = r.u8("first octet")?;
    let udhi = first & UDHI != 0;
    match first & 0x03 {
        MTI_DELIVER => {
            let sender = Address::decode_tp(&mut r, "TP-OA")?;
            let pid = r.u8("TP-PID")?;
            let dcs = Dcs {
                raw: r.u8("TP-DCS")?,
            };
            let ts = r.take("TP-SCTS", 7)?;
            let mut raw = [0u8; 7];
            raw.copy_from_slice(ts);
            let user_data = UserData::decode(&mut r, udhi, dcs.alphabet())?;
            Ok(Pdu::Deliver(Deliver {
                smsc,
                more_messages: first & 0x04 == 0,
                reply_path: first & 0x80 != 0,
                status_report: first & 0x20 != 0,
                sender,
                pid,
                dcs,
                timestamp: Timestamp { raw },
                user_data,
            }))
        }
        MTI_SUBMIT => {
            let reference = r.u8("TP-MR")?;
            let destination = Address::decode_tp(&mut r, "TP-DA")?;
            let pid = r.u8("TP-PID")?;
            let dcs = Dcs {
                raw: r.u8("TP-DCS")?,
            };
            let validity = match (first >> 3) & 0x03 {
                0 => Validity::None,
                2 => Validity::Relative(r.u8("TP-VP")?),
                format => {
                    let mut raw = [0u8; 7];
                    raw.copy_from_slice(r.take("TP-VP", 7)?);
                    Validity::Other { format, raw }
                }
            };
            let user_data = UserData::decode(&mut r, udhi, dcs.alphabet())?;
            Ok(Pdu::Submit(Submit {
                smsc,
                reject_duplicates: first & 0x04 != 0,
                status_report: first & 0x20 != 0,
                reply_path: first & 0x80 != 0,
                reference,
                destination,
                pid,
                dcs,
                validity,
                user_data,
            }))
        }
        mti => Err(PduError::new(
            "TP-MTI",
            format!(
                "expected an SMS-DELIVER (0) or SMS-SUBMIT (1), got {mti} ({})",
                if mti == 2 {
                    "a status report"
                } else {
                    "reserved"
                }
            ),
        )),
    }
}

/// An SMS-DELIVER from modem hex; anything else is an error.
pub fn decode_deliver(hex: &str) -> Result<Deliver, PduError> {
    match decode_hex(hex)? {
        Pdu::Deliver(d) => Ok(d),
        Pdu::Submit(_) => Err(PduError::new(
            "TP-MTI",
            "expected an SMS-DELIVER, got an SMS-SUBMIT",
        )),
    }
}

/// The concatenation reference of a message we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// IEI 0x00: one octet more data per part than the 16-bit kind.
    Eight(u8),
    Sixteen(u16),
}

/// One SMS ready for `AT+CMGS=<tpdu_len>`, then `hex` and Ctrl-Z.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub hex: String,
    /// TPDU octets, without the SMSC field: what `AT+CMGS` wants.
    pub tpdu_len: usize,
}

/// The most a message sent in up to 255 parts carries with an 8-bit reference.
pub const MAX_CONCAT_OCTETS: usize = 255 * (MAX_UD_OCTETS - 6);

/// `data` to `destination` as 8-bit SMS-SUBMITs: one SMS when it fits in 140
/// octets, else parts with a concatenation header of `reference` (134 octets each
/// with an 8-bit reference, 133 with a 16-bit one). The SMSC is the SIM's.
pub fn encode_submit(
    destination: &str,
    data: &[u8],
    reference: Reference,
) -> Result<Vec<Outgoing>, PduError> {
    let destination = Address::number(destination)?;
    let chunk = match reference {
        Reference::Eight(_) => MAX_UD_OCTETS - 6,
        Reference::Sixteen(_) => MAX_UD_OCTETS - 7,
    };
    let bodies: Vec<&[u8]> = if data.len() <= MAX_UD_OCTETS {
        vec![data]
    } else {
        data.chunks(chunk).collect()
    };
    if bodies.len() > 255 {
        return Err(PduError::new(
            "TP-UD",
            format!(
                "{} octets need {} parts, at most 255 are possible ({} octets)",
                data.len(),
                bodies.len(),
                255 * chunk
            ),
        ));
    }
    let total = bodies.len() as u8;
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let header = (total > 1).then(|| {
                let (reference, wide) = match reference {
                    Reference::Eight(r) => (u16::from(r), false),
                    Reference::Sixteen(r) => (r, true),
                };
                Udh {
                    ies: vec![Concat {
                        reference,
                        wide,
                        total,
                        seq: i as u8 + 1,
                    }
                    .ie()],
                }
            });
            let submit = Submit {
                smsc: None,
                reject_duplicates: false,
                status_report: false,
                reply_path: false,
                reference: 0,
                destination: destination.clone(),
                pid: 0,
                dcs: Dcs::DATA,
                validity: Validity::None,
                user_data: UserData {
                    header,
                    body: body.to_vec(),
                },
            };
            let octets = submit.encode()?;
            Ok(Outgoing {
                hex: to_hex(&octets),
                tpdu_len: octets.len() - 1,
            })
        })
        .collect()
}

/// TPDU length of a PDU in hex with its SMSC field, as `+CMGR`/`+CMGL` give it.
pub fn tpdu_len(octets: &[u8]) -> Option<usize> {
    let smsc = usize::from(*octets.first()?);
    octets.len().checked_sub(1 + smsc)
}

#[cfg(test)]
#[path = "pdu_tests.rs"]
mod tests;
