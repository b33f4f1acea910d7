//! Object definition files dropped in by operators.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = lwgate::model::ddf::parse("fuzz.xml", s);
    }
});
