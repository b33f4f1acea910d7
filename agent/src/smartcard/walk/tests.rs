use super::*;

#[test]
fn iccid_is_bcd_with_swapped_nibbles() {
    assert_eq!(
        iccid_digits(&[0x98, 0x94, 0x10, 0x32, 0x54, 0x76, 0x98, 0x10, 0x32, 0xF4]),
        "8949012345678901234"
    );
    assert_eq!(iccid_digits(&[]), "");
}

#[test]
fn logical_channel_classes() {
    assert_eq!(cla_for(1), 0x01);
    assert_eq!(cla_for(3), 0x03);
    assert_eq!(cla_for(4), 0x40);
    assert_eq!(cla_for(19), 0x4F);
}

/// A scripted transport: answers in order, records what was sent.
struct Script(Vec<Vec<u8>>, Vec<Vec<u8>>);

impl Transport for Script {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, SmartcardError> {
        self.1.push(apdu.to_vec());
        if self.0.is_empty() {
            return Err(SmartcardError::Removed);
        }
        Ok(self.0.remove(0))
    }
}

#[test]
fn t0_get_response_and_wrong_le_are_followed() {
    let mut s = Script(
        vec![
            vec![0x61, 0x03],
            vec![1, 2, 3, 0x90, 0x00],
            vec![0x6C, 0x05],
            vec![9; 7],
        ],
        vec![],
    );
    let mut w = Walk::new(&mut s);
    assert_eq!(
        w.cmd(vec![0x01, 0xA4, 0x04, 0x04, 0x00], "x").unwrap(),
        (vec![1, 2, 3], 0x9000)
    );
    assert_eq!(
        w.cmd(vec![0x00, 0xB0, 0x00, 0x00, 0x00], "y").unwrap(),
        (vec![9; 5], 0x0909)
    );
    drop(w);
    assert_eq!(
        s.1[1],
        vec![0x01, 0xC0, 0x00, 0x00, 0x03],
        "GET RESPONSE on the same channel"
    );
    assert_eq!(s.1[3], vec![0x00, 0xB0, 0x00, 0x00, 0x05], "Le corrected");
}

#[test]
fn a_wrong_pin_is_reported_and_not_retried() {
    let mut s = Script(vec![vec![0x63, 0xC2]], vec![]);
    let mut w = Walk::new(&mut s);
    assert_eq!(
        w.verify(0x01, "0000"),
        Err(SmartcardError::WrongPin { tries_left: 2 })
    );
    let mut s = Script(vec![vec![0x69, 0x83]], vec![]);
    assert_eq!(
        Walk::new(&mut s).verify(0x01, "0000"),
        Err(SmartcardError::PinBlocked)
    );
    assert_eq!(
        s.1[0],
        vec![0x01, 0x20, 0x00, 0x01, 0x08, b'0', b'0', b'0', b'0', 0xFF, 0xFF, 0xFF, 0xFF]
    );
}

/// A card that answers every APDU with `answer`, counting what it was sent.
struct Forever {
    answer: Vec<u8>,
    sent: usize,
}

impl Transport for Forever {
    fn transmit(&mut self, _apdu: &[u8]) -> Result<Vec<u8>, SmartcardError> {
        self.sent += 1;
        Ok(self.answer.clone())
    }
}

#[test]
fn a_card_answering_61xx_for_ever_ends_in_an_error() {
    // Found by the smartcard_walk fuzz target: GET RESPONSE was repeated without
    // end, the data growing by 256 bytes each round.
    let mut card = Forever {
        answer: vec![0x61, 0x00],
        sent: 0,
    };
    let mut w = Walk::new(&mut card);
    let r = w.cmd(vec![0x00, 0xA4, 0x00, 0x04, 0x02, 0x2F, 0x00, 0x00], "x");
    assert!(matches!(r, Err(SmartcardError::Malformed(_))), "{r:?}");
    assert_eq!(w.log.len(), 1 + MAX_GET_RESPONSE);
    drop(w);
    assert_eq!(card.sent, 1 + MAX_GET_RESPONSE);

    // 256 bytes and 61 00 each time: the same bound, the data with it.
    let mut answer = vec![0xAB; 256];
    answer.extend([0x61, 0x00]);
    let mut card = Forever { answer, sent: 0 };
    assert!(Walk::new(&mut card).read(None).is_err());
    assert!(card.sent <= 2 * (1 + MAX_GET_RESPONSE) + 1, "{}", card.sent);
}

#[test]
fn a_card_answering_6cxx_for_ever_ends_in_an_error() {
    let mut card = Forever {
        answer: vec![0x6C, 0x10],
        sent: 0,
    };
    let r = Walk::new(&mut card).read(None);
    assert!(
        matches!(r, Err(SmartcardError::Status { sw: 0x6C10, .. })),
        "{r:?}"
    );
    assert!(card.sent <= 4, "{}", card.sent);
}

#[test]
fn an_answer_longer_than_a_short_apdu_allows_is_refused() {
    let mut answer = vec![0; 4096];
    answer.extend([0x90, 0x00]);
    let mut card = Forever { answer, sent: 0 };
    let mut w = Walk::new(&mut card);
    let r = w.cmd(vec![0x00, 0xB0, 0x00, 0x00, 0x00], "x");
    assert!(matches!(r, Err(SmartcardError::Malformed(_))), "{r:?}");
}

/// A card that goes along with every step: each file claims `size` bytes and
/// READ BINARY gives `chunk` bytes at a time.
struct Trickle {
    size: u16,
    chunk: usize,
    sent: usize,
}

impl Transport for Trickle {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, SmartcardError> {
        self.sent += 1;
        let mut r = match apdu.get(1) {
            // FCP: a linear fixed EF DIR of one 32-byte record, and the size.
            Some(0xA4) => {
                let [hi, lo] = self.size.to_be_bytes();
                vec![
                    0x62, 0x0B, 0x82, 0x05, 0x42, 0x21, 0x00, 0x20, 0x01, 0x80, 0x02, hi, lo,
                ]
            }
            Some(0xB2) => {
                let mut aid = vec![0x4F, 12];
                aid.extend(pkcs15::PKCS15_AID_PREFIX);
                let mut r = vec![0x61, aid.len() as u8];
                r.extend(aid);
                r
            }
            Some(0x70) => vec![0x01],
            Some(0xB0) => vec![0x30; self.chunk],
            _ => vec![],
        };
        r.extend([0x90, 0x00]);
        Ok(r)
    }
}

#[test]
fn a_file_read_a_byte_at_a_time_ends_within_the_apdu_budget() {
    let mut card = Trickle {
        size: 32 * 1024,
        chunk: 1,
        sent: 0,
    };
    let r = Walk::new(&mut card).read(None);
    assert!(matches!(r, Err(SmartcardError::Malformed(_))), "{r:?}");
    assert!(card.sent <= MAX_APDUS + 1, "{}", card.sent);
}

#[test]
fn a_chunk_longer_than_asked_is_refused() {
    let mut card = Trickle {
        size: 100,
        chunk: 200,
        sent: 0,
    };
    let r = Walk::new(&mut card).read(None);
    match r {
        Err(SmartcardError::Malformed(m)) => assert!(m.contains("100 were asked"), "{m}"),
        r => panic!("{r:?}"),
    }
}
