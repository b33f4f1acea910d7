//! Block1/Block2 option values (RFC 7959 2.2) and block arithmetic.

/// A decoded Block1/Block2 option: block number, more flag, size exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOpt {
    pub num: u32,
    pub more: bool,
    /// Block size is 2^(szx+4): 16..1024.
    pub szx: u8,
}

impl BlockOpt {
    pub fn size(self) -> usize {
        1usize << (self.szx + 4)
    }

    pub fn offset(self) -> usize {
        self.num as usize * self.size()
    }

    /// Option value bytes, shortest form (0 bytes for num 0, more false, szx 0).
    pub fn encode(self) -> Vec<u8> {
        let v = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx);
        let b = v.to_be_bytes();
        match v {
            0 => vec![],
            1..=0xFF => b[3..].to_vec(),
            0x100..=0xFFFF => b[2..].to_vec(),
            _ => b[1..].to_vec(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 3 {
            return None;
        }
        let v = bytes.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b));
        let szx = (v & 0b111) as u8;
        if szx == 7 {
            return None; // reserved (BERT over TCP only)
        }
        Some(Self {
            num: v >> 4,
            more: v & 0b1000 != 0,
            szx,
        })
    }

    /// Size exponent for a byte size (rounded down to a power of two in 16..=1024).
    pub fn szx_for(size: usize) -> u8 {
        let mut szx = 6u8;
        while szx > 0 && (1usize << (szx + 4)) > size {
            szx -= 1;
        }
        szx
    }
}

/// The slice of `body` that block `opt` asks for, and whether more follow.
pub fn slice(body: &[u8], opt: BlockOpt) -> Option<(&[u8], bool)> {
    let start = opt.offset();
    if start > body.len() || (start == body.len() && start != 0) {
        return None;
    }
    let end = (start + opt.size()).min(body.len());
    Some((&body[start..end], end < body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_7959_examples() {
        // num 0, more, szx 6 (1024)
        assert_eq!(
            BlockOpt {
                num: 0,
                more: true,
                szx: 6
            }
            .encode(),
            vec![0x0E]
        );
        assert_eq!(
            BlockOpt::decode(&[0x0E]),
            Some(BlockOpt {
                num: 0,
                more: true,
                szx: 6
            })
        );
        assert_eq!(
            BlockOpt::decode(&[]),
            Some(BlockOpt {
                num: 0,
                more: false,
                szx: 0
            })
        );
        assert_eq!(BlockOpt::decode(&[0x17]), None, "szx 7 is reserved");
        assert_eq!(BlockOpt::decode(&[1, 2, 3, 4]), None);
        assert_eq!(BlockOpt::szx_for(1024), 6);
        assert_eq!(BlockOpt::szx_for(1000), 5);
        assert_eq!(BlockOpt::szx_for(2000), 6);
        assert_eq!(BlockOpt::szx_for(1), 0);
    }

    #[test]
    fn slicing() {
        let body: Vec<u8> = (0..100).collect();
        let b = |num| BlockOpt {
            num,
            more: false,
            szx: 1,
        }; // 32 bytes
        assert_eq!(slice(&body, b(0)).unwrap(), (&body[0..32], true));
        assert_eq!(slice(&body, b(3)).unwrap(), (&body[96..100], false));
        assert_eq!(slice(&body, b(4)), None);
        assert_eq!(slice(&[], b(0)).unwrap(), (&[][..], false));
    }

    proptest! {
        #[test]
        fn option_round_trip(num in 0u32..(1 << 20), more: bool, szx in 0u8..7) {
            let o = BlockOpt { num, more, szx };
            prop_assert_eq!(BlockOpt::decode(&o.encode()), Some(o));
        }
    }
}
