//! Bytes read from a smartcard: BER-TLV, PKCS#15 records (EF DIR, ODF, DODF) and the
//! LwM2M bootstrap file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate::smartcard::{ber, bootfile, pkcs15};

fuzz_target!(|data: &[u8]| {
    let _ = ber::parse(data);
    let _ = ber::find(data, &[0x62, 0x82]);
    let _ = pkcs15::application(data);
    let _ = pkcs15::dodf_path(data);
    let _ = pkcs15::bootstrap_object(data);
    if let Ok(objects) = bootfile::parse(data) {
        let _ = bootfile::records(&objects, &lwgate::model::Registry::builtin());
    }
});
