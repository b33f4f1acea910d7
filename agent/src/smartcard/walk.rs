//! The APDU sequence of LwM2M 1.0 TS Appendix G over any card transport:
//! EF ICCID, EF DIR → PKCS#15 application → MANAGE CHANNEL → SELECT ADF → ODF →
//! DODF → EF LwM2M_Bootstrap in chunks of at most 256 bytes, VERIFY when private.
//! T=0 behaviour is handled (61xx GET RESPONSE, 6Cxx wrong Le, 6282 end of file).

use super::ber;
use super::pkcs15::{self, Application, BootstrapObject};

/// Every command of the sequence is a short APDU: an answer holds at most 256 bytes
/// of data and SW1 SW2.
const MAX_ANSWER: usize = 258;
/// What one command may gather through T=0 GET RESPONSE rounds: an FCP or a
/// 256-byte chunk needs one round, so a card still answering 61xx after this
/// many never stops.
const MAX_GET_RESPONSE: usize = 16;
/// APDUs in one walk: three files of at most 32 KiB in 256-byte chunks and up to
/// 255 EF DIR records, each with its T=0 follow-ups, fit with room to spare; a
/// card that needs more is answering in a loop.
const MAX_APDUS: usize = 4096;

/// Sends one command APDU, returns the response data followed by SW1 SW2.
pub trait Transport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, SmartcardError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartcardError {
    #[error("PC/SC is not available ({0}); is pcscd running? (systemctl status pcscd.socket)")]
    NoService(String),
    #[error("no smartcard reader found")]
    NoReader,
    #[error("no card in {0}")]
    NoCard(String),
    #[error("the card was removed")]
    Removed,
    #[error("PC/SC: {0}")]
    Pcsc(String),
    #[error("{what}: card answered {sw:04X}")]
    Status { what: String, sw: u16 },
    #[error("the card has no PKCS#15 application in EF DIR")]
    NoPkcs15,
    #[error("{0}")]
    Malformed(String),
    #[error("the bootstrap data is PIN-protected and no PIN is configured ([bootstrap.smartcard] pin or pin_file)")]
    PinRequired,
    #[error(
        "the card rejected the PIN: {tries_left} tries left; not retried (fix the configured PIN)"
    )]
    WrongPin { tries_left: u8 },
    #[error("the PIN is blocked on this card; it needs the PUK")]
    PinBlocked,
    #[error("this card rejected the configured PIN before; it is not tried again until the PIN in the configuration changes")]
    PinRejectedBefore,
}

/// What the card holds for LwM2M.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardData {
    pub iccid: String,
    pub application: Application,
    pub object: BootstrapObject,
    pub file: Vec<u8>,
}

/// Decides whether a PIN may be presented to the card with this ICCID.
pub type PinCheck<'a> = Box<dyn Fn(&str, &str) -> bool + 'a>;

pub struct Walk<'a, T: Transport> {
    card: &'a mut T,
    /// ICCID of the card being read (known after the first step).
    iccid: String,
    /// Whether this PIN may be presented to the card with this ICCID: a PIN the card
    /// rejected once must not cost another try at every restart.
    may_verify: PinCheck<'a>,
    /// Human-readable APDU transcript (for `lwgate smartcard dump --trace`).
    pub log: Vec<String>,
    /// APDUs sent so far (at most `MAX_APDUS`).
    sent: usize,
}

fn sw(resp: &[u8]) -> (Vec<u8>, u16) {
    match resp.len() {
        n if n >= 2 => (
            resp[..n - 2].to_vec(),
            u16::from_be_bytes([resp[n - 2], resp[n - 1]]),
        ),
        _ => (Vec::new(), 0x6F00),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// ICCID is BCD with swapped nibbles; F pads.
pub fn iccid_digits(b: &[u8]) -> String {
    b.iter()
        .flat_map(|x| [x & 0x0F, x >> 4])
        .take_while(|d| *d < 10)
        .map(|d| char::from(b'0' + d))
        .collect()
}

/// CLA for a logical channel: 0..3 in the low bits, 4..19 with the 0x40 form.
fn cla_for(channel: u8) -> u8 {
    if channel < 4 {
        channel
    } else {
        0x40 | (channel - 4)
    }
}

impl<'a, T: Transport> Walk<'a, T> {
    pub fn new(card: &'a mut T) -> Self {
        Self {
            card,
            iccid: String::new(),
            may_verify: Box::new(|_, _| true),
            log: Vec::new(),
            sent: 0,
        }
    }

    /// Refuses VERIFY when `check(iccid, pin)` says no.
    pub fn with_pin_check(mut self, check: impl Fn(&str, &str) -> bool + 'a) -> Self {
        self.may_verify = Box::new(check);
        self
    }

    /// One APDU, within the walk's budget; the answer split into (data, SW).
    fn send(&mut self, apdu: &[u8]) -> Result<(Vec<u8>, u16), SmartcardError> {
        if self.sent >= MAX_APDUS {
            return Err(SmartcardError::Malformed(format!(
                "the card needed more than {MAX_APDUS} APDUs"
            )));
        }
        self.sent += 1;
        let resp = self.card.transmit(apdu)?;
        if resp.len() > MAX_ANSWER {
            return Err(SmartcardError::Malformed(format!(
                "the card answered {} bytes to a short APDU (at most {MAX_ANSWER})",
                resp.len()
            )));
        }
        Ok(sw(&resp))
    }

    /// One command with the T=0 follow-ups; returns (data, SW).
    fn cmd(&mut self, apdu: Vec<u8>, what: &str) -> Result<(Vec<u8>, u16), SmartcardError> {
        let (mut data, mut status) = self.send(&apdu)?;
        self.log.push(format!(
            ">> {} ({what})\n<< {} {status:04X}",
            hex(&apdu),
            hex(&data)
        ));
        if status >> 8 == 0x6C {
            // Wrong Le: resend with the length the card asks for.
            let mut again = apdu.clone();
            if let Some(last) = again.last_mut() {
                *last = (status & 0xFF) as u8;
            }
            let (d, s) = self.send(&again)?;
            self.log.push(format!(
                ">> {} (Le corrected)\n<< {} {s:04X}",
                hex(&again),
                hex(&d)
            ));
            data = d;
            status = s;
        }
        let mut rounds = 0;
        while status >> 8 == 0x61 {
            if rounds == MAX_GET_RESPONSE {
                return Err(SmartcardError::Malformed(format!(
                    "{what}: the card still answered {status:04X} after {MAX_GET_RESPONSE} GET RESPONSE"
                )));
            }
            rounds += 1;
            let get = vec![apdu[0] & 0xF3, 0xC0, 0x00, 0x00, (status & 0xFF) as u8];
            let (d, s) = self.send(&get)?;
            self.log.push(format!(
                ">> {} (GET RESPONSE)\n<< {} {s:04X}",
                hex(&get),
                hex(&d)
            ));
            data.extend(d);
            status = s;
        }
        Ok((data, status))
    }

    fn ok(&mut self, apdu: Vec<u8>, what: &str) -> Result<Vec<u8>, SmartcardError> {
        let (data, status) = self.cmd(apdu, what)?;
        if status != 0x9000 {
            return Err(SmartcardError::Status {
                what: what.into(),
                sw: status,
            });
        }
        Ok(data)
    }

    fn read_iccid(&mut self) -> Result<String, SmartcardError> {
        self.ok(
            vec![0x00, 0xA4, 0x00, 0x04, 0x02, 0x2F, 0xE2, 0x00],
            "SELECT EF ICCID",
        )?;
        let b = self.ok(vec![0x00, 0xB0, 0x00, 0x00, 0x0A], "READ BINARY EF ICCID")?;
        Ok(iccid_digits(&b))
    }

    fn find_application(&mut self) -> Result<Application, SmartcardError> {
        let fcp = self.ok(
            vec![0x00, 0xA4, 0x00, 0x04, 0x02, 0x2F, 0x00, 0x00],
            "SELECT EF DIR",
        )?;
        let fd = ber::find(&fcp, &[0x62, 0x82])
            .map_err(|e| SmartcardError::Malformed(format!("EF DIR FCP: {e}")))?;
        // File descriptor: FDB, DCB, record length (2 bytes), record count (1 or 2 bytes).
        let (reclen, count) = match fd {
            [_, _, hi, lo, a, b, ..] => {
                (u16::from_be_bytes([*hi, *lo]), u16::from_be_bytes([*a, *b]))
            }
            [_, _, hi, lo, n] => (u16::from_be_bytes([*hi, *lo]), u16::from(*n)),
            _ => {
                return Err(SmartcardError::Malformed(
                    "EF DIR is not a linear fixed file".into(),
                ))
            }
        };
        for r in 1..=count.min(255) {
            let rec = self.ok(
                vec![0x00, 0xB2, r as u8, 0x04, reclen.min(255) as u8],
                "READ RECORD EF DIR",
            )?;
            if let Some(app) = pkcs15::application(&rec) {
                return Ok(app);
            }
        }
        Err(SmartcardError::NoPkcs15)
    }

    /// SELECT 7FFF/fid on the channel, then READ BINARY in ≤256-byte chunks.
    fn read_ef(
        &mut self,
        cla: u8,
        fid: &[u8],
        what: &str,
        pin: Option<&str>,
    ) -> Result<Vec<u8>, SmartcardError> {
        let mut sel = vec![cla, 0xA4, 0x08, 0x04, 0x04, 0x7F, 0xFF];
        sel.extend_from_slice(fid);
        sel.push(0x00);
        let fcp = self.ok(sel, &format!("SELECT {what}"))?;
        let size = ber::find(&fcp, &[0x62, 0x80])
            .map(|s| s.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)))
            .map_err(|e| SmartcardError::Malformed(format!("{what} FCP: {e}")))?;
        if size > 32 * 1024 {
            return Err(SmartcardError::Malformed(format!(
                "{what} claims {size} bytes (at most 32 KiB)"
            )));
        }
        let mut out = Vec::with_capacity(size);
        let mut verified = false;
        while out.len() < size {
            let le = (size - out.len()).min(256);
            let off = out.len();
            let (d, status) = self.cmd(
                vec![cla, 0xB0, (off >> 8) as u8, off as u8, (le & 0xFF) as u8],
                &format!("READ BINARY {what} at {off}"),
            )?;
            if d.len() > le {
                return Err(SmartcardError::Malformed(format!(
                    "READ BINARY {what} at {off}: the card answered {} bytes, {le} were asked",
                    d.len()
                )));
            }
            match status {
                0x9000 if !d.is_empty() => out.extend(d),
                // End of file before Le: take what came and stop.
                0x6282 => {
                    out.extend(d);
                    break;
                }
                0x6982 if !verified => {
                    let pin = pin.ok_or(SmartcardError::PinRequired)?;
                    if !(self.may_verify)(&self.iccid, pin) {
                        return Err(SmartcardError::PinRejectedBefore);
                    }
                    self.verify(cla, pin)?;
                    verified = true;
                }
                s => {
                    return Err(SmartcardError::Status {
                        what: format!("READ BINARY {what}"),
                        sw: s,
                    })
                }
            }
        }
        Ok(out)
    }

    /// VERIFY PIN key reference 01, ASCII padded with FF to 8 bytes. Never retried:
    /// a wrong PIN costs a try, and a blocked SIM needs a truck roll.
    fn verify(&mut self, cla: u8, pin: &str) -> Result<(), SmartcardError> {
        let mut apdu = vec![cla, 0x20, 0x00, 0x01, 0x08];
        let mut p = pin.as_bytes().to_vec();
        p.resize(8, 0xFF);
        apdu.extend(p);
        let (_, status) = self.cmd(apdu, "VERIFY PIN")?;
        match status {
            0x9000 => Ok(()),
            s if s >> 4 == 0x63C => Err(SmartcardError::WrongPin {
                tries_left: (s & 0x0F) as u8,
            }),
            0x6983 => Err(SmartcardError::PinBlocked),
            s => Err(SmartcardError::Status {
                what: "VERIFY PIN".into(),
                sw: s,
            }),
        }
    }

    /// Reads everything; the logical channel is closed whatever happens.
    pub fn read(&mut self, pin: Option<&str>) -> Result<CardData, SmartcardError> {
        let iccid = self.read_iccid().unwrap_or_default();
        self.iccid = iccid.clone();
        let application = self.find_application()?;
        let ch = self.ok(vec![0x00, 0x70, 0x00, 0x00, 0x01], "MANAGE CHANNEL open")?;
        let channel = *ch.first().ok_or(SmartcardError::Malformed(
            "MANAGE CHANNEL returned no channel".into(),
        ))?;
        let result = self.read_on_channel(cla_for(channel), &application, pin);
        let _ = self.cmd(vec![0x00, 0x70, 0x80, channel], "MANAGE CHANNEL close");
        let (object, file) = result?;
        Ok(CardData {
            iccid,
            application,
            object,
            file,
        })
    }

    fn read_on_channel(
        &mut self,
        cla: u8,
        app: &Application,
        pin: Option<&str>,
    ) -> Result<(BootstrapObject, Vec<u8>), SmartcardError> {
        let mut sel = vec![cla, 0xA4, 0x04, 0x04, app.aid.len() as u8];
        sel.extend_from_slice(&app.aid);
        sel.push(0x00);
        self.ok(sel, "SELECT PKCS#15 ADF")?;
        let odf = self.read_ef(cla, &[0x50, 0x31], "EF ODF", None)?;
        let dodf_path = pkcs15::dodf_path(&odf)
            .map_err(|e| SmartcardError::Malformed(format!("EF ODF: {e}")))?;
        let dodf = self.read_ef(cla, &dodf_path[dodf_path.len() - 2..], "EF DODF", None)?;
        let object = pkcs15::bootstrap_object(&dodf)
            .map_err(|e| SmartcardError::Malformed(format!("EF DODF: {e}")))?;
        if object.path.len() < 2 {
            return Err(SmartcardError::Malformed(
                "bootstrap object path shorter than a file id".into(),
            ));
        }
        let fid = object.path[object.path.len() - 2..].to_vec();
        let file = self.read_ef(cla, &fid, "EF LwM2M_Bootstrap", pin)?;
        Ok((object, file))
    }
}

#[cfg(test)]
mod tests;
