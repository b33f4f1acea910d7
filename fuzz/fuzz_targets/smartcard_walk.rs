//! The Appendix G APDU walk over a fake card. The card holds EF ODF, EF DODF and
//! EF LwM2M_Bootstrap from the input and answers as a UICC does, except where
//! the input's behaviour bytes make it misbehave (T=0 61xx and 6Cxx, end of
//! file, PIN demands, answers too long or without a status word, removal); when
//! they run out the last behaviour repeats for ever, so a walk that does not
//! bound its steps hangs here. What the walk reads goes on to the bootstrap
//! file's parser as in the daemon.
//!
//! Input: three files, each after a 2-byte big-endian length, then the
//! behaviour bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate::model::Registry;
use lwgate::smartcard::pkcs15::PKCS15_AID_PREFIX;
use lwgate::smartcard::walk::{Transport, Walk};
use lwgate::smartcard::{bootfile, SmartcardError};

/// More APDUs than the walk's own budget: a walk still going here loops.
const APDU_LIMIT: usize = 5000;
const ICCID: [u8; 10] = [0x98, 0x94, 0x10, 0x32, 0x54, 0x76, 0x98, 0x10, 0x32, 0xF4];

struct Card<'a> {
    files: [&'a [u8]; 3],
    /// Files of the application selected so far (ODF, DODF, bootstrap file).
    next_file: usize,
    current: &'a [u8],
    behave: &'a [u8],
    pos: usize,
    /// Data held back by a 61xx, for GET RESPONSE.
    pending: Vec<u8>,
    sent: usize,
}

fn dir_record() -> Vec<u8> {
    let mut aid = vec![0x4F, 12];
    aid.extend(PKCS15_AID_PREFIX);
    aid.extend([0x50, 5]);
    aid.extend(b"LwM2M");
    let mut r = vec![0x61, aid.len() as u8];
    r.extend(aid);
    r
}

impl Card<'_> {
    fn behaviour(&mut self) -> u8 {
        let b = match self.behave.get(self.pos) {
            Some(b) => *b,
            None => self.behave.last().copied().unwrap_or(0),
        };
        self.pos += 1;
        b
    }

    fn fcp_size(n: usize) -> Vec<u8> {
        let [hi, lo] = (n.min(0xFFFF) as u16).to_be_bytes();
        vec![0x62, 0x04, 0x80, 0x02, hi, lo]
    }

    /// What a well-behaved card answers: data and status word.
    fn honest(&mut self, apdu: &[u8]) -> (Vec<u8>, [u8; 2]) {
        let ok = [0x90, 0x00];
        let (ins, p1, p2) = match apdu {
            [_, ins, p1, p2, ..] => (*ins, *p1, *p2),
            _ => return (vec![], [0x67, 0x00]),
        };
        let le = |a: &[u8]| match a.last() {
            Some(0) | None => 256,
            Some(n) => usize::from(*n),
        };
        match ins {
            0xA4 => match (p1, apdu.get(5..7)) {
                (0x00, Some([0x2F, 0xE2])) => {
                    self.current = &ICCID;
                    (Self::fcp_size(ICCID.len()), ok)
                }
                (0x00, Some([0x2F, 0x00])) => {
                    let n = dir_record().len() as u8;
                    (vec![0x62, 0x07, 0x82, 0x05, 0x42, 0x21, 0x00, n, 0x02], ok)
                }
                (0x08, _) => {
                    let f = self.files[self.next_file.min(2)];
                    self.next_file += 1;
                    self.current = f;
                    (Self::fcp_size(f.len()), ok)
                }
                _ => (vec![], ok),
            },
            0xB0 => {
                let off = usize::from(p1) << 8 | usize::from(p2);
                let data = self.current.get(off..).unwrap_or(&[]);
                let n = data.len().min(le(apdu));
                if n == 0 {
                    (vec![], [0x6B, 0x00])
                } else {
                    (data[..n].to_vec(), ok)
                }
            }
            // A USIM record first, then the PKCS#15 application.
            0xB2 if p1 == 1 => (vec![0x61, 0x03, 0x4F, 0x01, 0xA0], ok),
            0xB2 => (dir_record(), ok),
            0x70 if p1 == 0 => (vec![0x01], ok),
            0xC0 => {
                let n = self.pending.len().min(le(apdu));
                let d: Vec<u8> = self.pending.drain(..n).collect();
                (d, ok)
            }
            _ => (vec![], ok),
        }
    }
}

impl Transport for Card<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, SmartcardError> {
        self.sent += 1;
        assert!(self.sent <= APDU_LIMIT, "the walk does not end");
        let b = self.behaviour();
        let (mut data, sw) = self.honest(apdu);
        let sw = match b {
            0xF0 => return Err(SmartcardError::Removed),
            0xF1 => {
                // T=0: the data waits for GET RESPONSE.
                let n = data.len().min(255) as u8;
                self.pending = std::mem::take(&mut data);
                [0x61, n]
            }
            0xF2 => [0x61, 0x00],
            0xF3 => [0x6C, self.behave.get(self.pos).copied().unwrap_or(0x10)],
            0xF4 => {
                data.truncate(data.len() / 2);
                [0x62, 0x82]
            }
            0xF5 => [0x69, 0x82],
            0xF6 => [0x63, 0xC1],
            0xF7 => [0x69, 0x83],
            0xF8 => {
                data = vec![0x5A; 300];
                sw
            }
            0xF9 => return Ok(vec![]),
            0xFA => {
                data.extend_from_slice(&[0xEE; 64]);
                sw
            }
            _ => sw,
        };
        data.extend(sw);
        Ok(data)
    }
}

fn take<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let n = match rest {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 0,
    };
    let body = rest.get(2..).unwrap_or(&[]);
    let (file, after) = body.split_at(n.min(body.len()));
    *rest = after;
    file
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let files = [take(&mut rest), take(&mut rest), take(&mut rest)];
    let mut card = Card {
        files,
        next_file: 0,
        current: &[],
        behave: rest,
        pos: 0,
        pending: Vec::new(),
        sent: 0,
    };
    let pin = rest.first().is_some_and(|b| b % 2 == 0).then_some("1234");
    let read = Walk::new(&mut card).read(pin);
    if let Ok(card_data) = read {
        assert!(card_data.file.len() <= 32 * 1024);
        if let Ok(objects) = bootfile::parse(&card_data.file) {
            let _ = bootfile::records(&objects, &Registry::builtin());
        }
    }
});
