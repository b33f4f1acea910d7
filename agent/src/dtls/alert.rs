//! TLS alert numbers (RFC 5246 §7.2, RFC 4279, RFC 6066, RFC 8446) by name, and
//! how OpenSSL reports a received one: as the reason code 1000 + the alert.

/// The registry's name of an alert description.
pub fn name(desc: u8) -> &'static str {
    match desc {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "unknown_alert",
    }
}

/// OpenSSL's ERR_LIB_SSL (openssl-sys does not export it).
pub const ERR_LIB_SSL: i32 = 20;

/// The alert a peer sent, from an OpenSSL error's library and reason codes.
pub fn received(library: i32, reason: i32) -> Option<u8> {
    let offset = openssl_sys::SSL_AD_REASON_OFFSET;
    if library != ERR_LIB_SSL || !(offset..offset + 256).contains(&reason) {
        return None;
    }
    u8::try_from(reason - offset).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_offsets() {
        assert_eq!(name(51), "decrypt_error");
        assert_eq!(name(115), "unknown_psk_identity");
        assert_eq!(name(7), "unknown_alert");
        let ssl = ERR_LIB_SSL;
        assert_eq!(received(ssl, 1051), Some(51));
        assert_eq!(received(ssl, 1000), Some(0));
        assert_eq!(received(ssl, 134), None);
        assert_eq!(received(ssl + 1, 1051), None);
    }
}
