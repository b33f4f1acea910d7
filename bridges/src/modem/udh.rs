//! The user data header (TS 23.040 9.2.3.24): information elements, of which the
//! concatenation ones (IEI 0x00 with an 8-bit reference, 0x08 with a 16-bit one)
//! mean something here; every other element is kept as it came and skipped.

use super::PduError;

pub const IEI_CONCAT_8: u8 = 0x00;
pub const IEI_CONCAT_16: u8 = 0x08;

/// One information element, as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ie {
    pub iei: u8,
    pub data: Vec<u8>,
}

/// The elements of a header, in order (without the UDHL octet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Udh {
    pub ies: Vec<Ie>,
}

/// Where a part belongs: message `reference` from its sender, part `seq` of
/// `total` (both from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    pub reference: u16,
    /// The reference came in a 16-bit element (IEI 0x08).
    pub wide: bool,
    pub total: u8,
    pub seq: u8,
}

impl Udh {
    /// The elements of `octets` (the header after its length octet). An element
    /// that runs past the header is an error; what an element holds is judged only
    /// for the ones this code uses.
    pub fn parse(octets: &[u8]) -> Result<Udh, PduError> {
        let mut ies = Vec::new();
        let mut rest = octets;
        while !rest.is_empty() {
            let [iei, len, tail @ ..] = rest else {
                return Err(PduError::new(
                    "UDH",
                    format!("element 0x{:02X} has no length octet", rest[0]),
                ));
            };
            let len = usize::from(*len);
            if tail.len() < len {
                return Err(PduError::new(
                    "UDH",
                    format!(
                        "element 0x{iei:02X} says {len} octets, {} are left in the header",
                        tail.len()
                    ),
                ));
            }
            ies.push(Ie {
                iei: *iei,
                data: tail[..len].to_vec(),
            });
            rest = &tail[len..];
        }
        Ok(Udh { ies })
    }

    /// The header's octets, without the UDHL octet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ie in &self.ies {
            out.push(ie.iei);
            out.push(ie.data.len() as u8);
            out.extend_from_slice(&ie.data);
        }
        out
    }

    /// The concatenation element, if one is usable. TS 23.040 9.2.3.24.1: an
    /// element whose total is 0, or whose sequence number is 0 or above the total,
    /// is ignored (the message is then taken alone); when one occurs more than once,
    /// the last one counts.
    pub fn concat(&self) -> Option<Concat> {
        self.ies.iter().rev().find_map(|ie| {
            let (reference, wide, total, seq) = match (ie.iei, ie.data.as_slice()) {
                (IEI_CONCAT_8, [r, t, s]) => (u16::from(*r), false, *t, *s),
                (IEI_CONCAT_16, [r1, r2, t, s]) => (u16::from_be_bytes([*r1, *r2]), true, *t, *s),
                _ => return None,
            };
            (total > 0 && seq > 0 && seq <= total).then_some(Concat {
                reference,
                wide,
                total,
                seq,
            })
        })
    }
}

impl Concat {
    pub fn ie(&self) -> Ie {
        if self.wide {
            let [r1, r2] = self.reference.to_be_bytes();
            Ie {
                iei: IEI_CONCAT_16,
                data: vec![r1, r2, self.total, self.seq],
            }
        } else {
            Ie {
                iei: IEI_CONCAT_8,
                data: vec![self.reference as u8, self.total, self.seq],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_8_and_16() {
        let h = Udh::parse(&[0x00, 0x03, 0x5C, 0x02, 0x01]).unwrap();
        assert_eq!(
            h.concat(),
            Some(Concat {
                reference: 0x5C,
                wide: false,
                total: 2,
                seq: 1
            })
        );
        let h = Udh::parse(&[0x08, 0x04, 0x12, 0x34, 0x03, 0x03]).unwrap();
        assert_eq!(
            h.concat(),
            Some(Concat {
                reference: 0x1234,
                wide: true,
                total: 3,
                seq: 3
            })
        );
        assert_eq!(Udh::parse(&h.encode()).unwrap(), h);
    }

    #[test]
    fn unknown_elements_are_skipped_by_length() {
        // Application port addressing (0x05), then a concatenation element.
        let h = Udh::parse(&[
            0x05, 0x04, 0x16, 0x34, 0x00, 0x00, 0x00, 0x03, 0x07, 0x02, 0x02,
        ])
        .unwrap();
        assert_eq!(h.ies.len(), 2);
        assert_eq!(h.concat().map(|c| (c.reference, c.seq)), Some((7, 2)));
    }

    #[test]
    fn unusable_concat_elements_are_ignored() {
        for bad in [
            [0x00, 0x03, 0x01, 0x00, 0x01], // total 0
            [0x00, 0x03, 0x01, 0x02, 0x00], // seq 0
            [0x00, 0x03, 0x01, 0x02, 0x03], // seq above total
        ] {
            assert_eq!(Udh::parse(&bad).unwrap().concat(), None);
        }
        // Wrong length for its kind.
        assert_eq!(
            Udh::parse(&[0x00, 0x02, 0x01, 0x02]).unwrap().concat(),
            None
        );
    }

    #[test]
    fn truncated_elements_are_errors() {
        assert!(Udh::parse(&[0x00]).is_err());
        assert!(Udh::parse(&[0x00, 0x03, 0x01]).is_err());
    }
}
