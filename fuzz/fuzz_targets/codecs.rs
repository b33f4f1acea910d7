//! Every payload decoder, at every path depth, plus link-format and paths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate::codec::{self, Format};
use lwgate::model::{Path, Registry};

fuzz_target!(|data: &[u8]| {
    let reg = Registry::builtin();
    let types = |p: &Path| lwgate::lwm2m::dm::type_of(&reg, p);
    let depth = data.first().map(|b| (b % 5) as usize).unwrap_or(0);
    let ids = [3u16, 0, 11, 0];
    let base = Path::new(&ids[..depth]);
    let body = data.get(1..).unwrap_or(&[]);
    for f in [Format::Text, Format::Opaque, Format::Tlv, Format::SenmlJson, Format::SenmlCbor, Format::LwJson] {
        if let Ok(records) = codec::decode(f, &base, body, &types) {
            // Whatever decodes must encode again.
            let _ = codec::encode(f, &base, &records);
        }
    }
    let _ = codec::decode_paths(Format::SenmlJson, body);
    let _ = codec::decode_composite(Format::SenmlCbor, body, &types);
    if let Ok(s) = std::str::from_utf8(body) {
        let _ = codec::link::parse(s);
        let _ = Path::parse(s);
    }
});
