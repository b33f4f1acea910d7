//! BER-TLV as smartcards use it (ISO 7816-4, PKCS#15 DER): tags of one or two
//! bytes, definite lengths. Cards pad records with 00 or FF: parsing stops there.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u16,
    pub value: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("BER data truncated at byte {0}")]
    Truncated(usize),
    #[error("indefinite or oversized BER length at byte {0}")]
    BadLength(usize),
    #[error("tag {0:02X} not found")]
    Missing(u16),
}

/// All TLVs at this level.
pub fn parse(b: &[u8]) -> Result<Vec<Tlv<'_>>, BerError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && b[i] != 0x00 && b[i] != 0xFF {
        let mut tag = u16::from(b[i]);
        i += 1;
        if tag & 0x1F == 0x1F {
            let next = *b.get(i).ok_or(BerError::Truncated(i))?;
            tag = (tag << 8) | u16::from(next);
            i += 1;
        }
        let first = *b.get(i).ok_or(BerError::Truncated(i))?;
        i += 1;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 || n > 3 {
                return Err(BerError::BadLength(i - 1));
            }
            let bytes = b.get(i..i + n).ok_or(BerError::Truncated(i))?;
            i += n;
            bytes.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x))
        };
        let value = b.get(i..i + len).ok_or(BerError::Truncated(i))?;
        i += len;
        out.push(Tlv { tag, value });
    }
    Ok(out)
}

/// The value of the first TLV with `tag` at this level.
pub fn get(b: &[u8], tag: u16) -> Result<&[u8], BerError> {
    parse(b)?
        .into_iter()
        .find(|t| t.tag == tag)
        .map(|t| t.value)
        .ok_or(BerError::Missing(tag))
}

/// Descends through nested tags: `find(fcp, &[0x62, 0x80])`.
pub fn find<'a>(b: &'a [u8], tags: &[u16]) -> Result<&'a [u8], BerError> {
    tags.iter().try_fold(b, |acc, t| get(acc, *t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_long_forms() {
        let b = [
            0x62, 0x08, 0x80, 0x02, 0x01, 0x00, 0x82, 0x02, 0x41, 0x21, 0xFF, 0xFF,
        ];
        assert_eq!(find(&b, &[0x62, 0x80]).unwrap(), &[0x01, 0x00]);
        let long = [&[0x04, 0x81, 0x81][..], &[7u8; 0x81]].concat();
        assert_eq!(get(&long, 0x04).unwrap().len(), 0x81);
        let two_byte_tag = [0x5F, 0x2D, 0x02, b'e', b'n'];
        assert_eq!(get(&two_byte_tag, 0x5F2D).unwrap(), b"en");
    }

    #[test]
    fn hostile_inputs_are_errors() {
        for bad in [
            &[0x30, 0x05, 0x01][..],
            &[0x30],
            &[0x30, 0x80],
            &[0x30, 0x84, 1, 1, 1, 1],
            &[0x1F],
        ] {
            assert!(parse(bad).is_err(), "{bad:02X?}");
        }
        assert_eq!(get(&[0x30, 0x00], 0x31), Err(BerError::Missing(0x31)));
    }
}
