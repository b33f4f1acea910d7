//! SMS text codings (3GPP TS 23.038): the GSM 7-bit default alphabet with its
//! extension table, septet packing, and UCS2. Binary SMS (what CoAP uses) needs none
//! of this; it is here to name alphanumeric senders and to log text messages.

use super::PduError;

/// The GSM 7-bit default alphabet (TS 23.038 6.2.1); 0x1B is the escape to the
/// extension table and decodes through [`EXTENSION`].
const DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

const ESCAPE: u8 = 0x1B;

/// The extension table (TS 23.038 6.2.1.1): the septet after an escape.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Septets (one per byte, values 0–127) to text. An escape followed by a septet the
/// extension table lacks shows that septet from the default table, as TS 23.038
/// asks of a receiver; a lone escape at the end is dropped.
pub fn decode_gsm7(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut it = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = it.next() {
        if s != ESCAPE {
            out.push(DEFAULT[usize::from(s)]);
            continue;
        }
        let Some(next) = it.next() else { break };
        match EXTENSION.iter().find(|(code, _)| *code == next) {
            Some((_, c)) => out.push(*c),
            None if next == ESCAPE => out.push(' '),
            None => out.push(DEFAULT[usize::from(next)]),
        }
    }
    out
}

/// Text to septets; extension characters take two. Characters outside the alphabet
/// are an error naming the first of them.
pub fn encode_gsm7(text: &str) -> Result<Vec<u8>, PduError> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c != '\u{1b}' {
            if let Some(i) = DEFAULT.iter().position(|d| *d == c) {
                out.push(i as u8);
                continue;
            }
        }
        match EXTENSION.iter().find(|(_, e)| *e == c) {
            Some((code, _)) => out.extend([ESCAPE, *code]),
            None => {
                return Err(PduError::new(
                    "text",
                    format!("{c:?} is not in the GSM 7-bit alphabet"),
                ))
            }
        }
    }
    Ok(out)
}

/// Packs septets into octets, least significant bit first, after `fill` zero bits
/// (the fill that aligns 7-bit text after a user data header).
pub fn pack_septets(septets: &[u8], fill: usize) -> Vec<u8> {
    let bits = fill + septets.len() * 7;
    let mut out = vec![0u8; bits.div_ceil(8)];
    for (k, s) in septets.iter().enumerate() {
        let at = fill + k * 7;
        let v = u16::from(s & 0x7F) << (at % 8);
        out[at / 8] |= (v & 0xFF) as u8;
        if v > 0xFF {
            if let Some(o) = out.get_mut(at / 8 + 1) {
                *o |= (v >> 8) as u8;
            }
        }
    }
    out
}

/// `count` septets from `octets`, starting `skip` bits in; the octets must hold them.
pub fn unpack_septets(octets: &[u8], skip: usize, count: usize) -> Result<Vec<u8>, PduError> {
    let need = skip + count * 7;
    if need > octets.len() * 8 {
        return Err(PduError::new(
            "TP-UD",
            format!(
                "{count} septets need {} octets, got {}",
                need.div_ceil(8),
                octets.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let at = skip + k * 7;
        let lo = u16::from(octets[at / 8]);
        let hi = u16::from(octets.get(at / 8 + 1).copied().unwrap_or(0));
        out.push((((hi << 8 | lo) >> (at % 8)) & 0x7F) as u8);
    }
    Ok(out)
}

/// UCS2 (UTF-16 big-endian, as phones send it) to text; unpaired surrogates become
/// U+FFFD. An odd number of octets is an error.
pub fn decode_ucs2(octets: &[u8]) -> Result<String, PduError> {
    if octets.len() % 2 != 0 {
        return Err(PduError::new(
            "TP-UD",
            format!(
                "UCS2 text needs an even number of octets, got {}",
                octets.len()
            ),
        ));
    }
    let units: Vec<u16> = octets
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02X}")).collect()
    }

    #[test]
    fn packs_known_examples() {
        let s = encode_gsm7("hellohello").unwrap();
        assert_eq!(hex(&pack_septets(&s, 0)), "E8329BFD4697D9EC37");
        // TS 23.038's classic: "hello" packs to five septets in five octets.
        assert_eq!(
            hex(&pack_septets(&encode_gsm7("hello").unwrap(), 0)),
            "E8329BFD06"
        );
        // Eight septets fill seven octets exactly.
        let eight = encode_gsm7("12345678").unwrap();
        assert_eq!(hex(&pack_septets(&eight, 0)), "31D98C56B3DD70");
        let back = unpack_septets(&pack_septets(&eight, 0), 0, 8).unwrap();
        assert_eq!(decode_gsm7(&back), "12345678");
    }

    #[test]
    fn fill_bits_after_a_header() {
        // A 6-octet header is 48 bits: 7 septets (49 bits) with one fill bit.
        let s = encode_gsm7("hi").unwrap();
        let packed = pack_septets(&s, 1);
        assert_eq!(unpack_septets(&packed, 1, 2).unwrap(), s);
    }

    #[test]
    fn extension_table() {
        let s = encode_gsm7("€5 [x]|{}~^\\").unwrap();
        assert_eq!(s[..2], [0x1B, 0x65]);
        assert_eq!(decode_gsm7(&s), "€5 [x]|{}~^\\");
        // An escape before a septet without extension: the default character.
        assert_eq!(decode_gsm7(&[0x1B, 0x41, 0x1B]), "A");
        assert!(encode_gsm7("日本").is_err());
    }

    #[test]
    fn ucs2() {
        assert_eq!(decode_ucs2(&encode_ucs2("Grüße 😀")).unwrap(), "Grüße 😀");
        assert!(decode_ucs2(&[0x00]).is_err());
    }

    #[test]
    fn unpack_checks_the_length() {
        assert!(unpack_septets(&[0xE8], 0, 2).is_err());
        assert_eq!(unpack_septets(&[], 0, 0).unwrap(), Vec::<u8>::new());
    }
}
