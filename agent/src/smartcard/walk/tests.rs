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
