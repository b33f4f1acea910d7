//! Every payload decoder, at every path depth, plus link-format and paths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate::codec::{self, Format};
use lwgate::model::{Path, Registry};

fuzz_target!(|data: &[u8]| {
    let reg = Registry::builtin();
    let types = |p: &Path| lwgate::lwm2m::dm::type_of(&reg, p);
    // The first byte: the depth (b % 5) of a path to one of these resources,
    // chosen by b / 5, so that text and TLV decode every data type.
    const IDS: [[u16; 4]; 8] = [
        [3, 0, 11, 0], // integer, multiple
        [3, 0, 0, 0],  // string
        [3, 0, 13, 0], // time
        [0, 0, 3, 0],  // opaque
        [1, 0, 6, 0],  // boolean
        [5, 0, 0, 0],  // opaque package
        [3, 0, 18, 0], // string
        [1, 0, 13, 0], // unsigned
    ];
    let first = data.first().copied().unwrap_or(0);
    let depth = usize::from(first % 5);
    let ids = IDS[usize::from(first / 5) % IDS.len()];
    let base = Path::new(&ids[..depth]);
    let body = data.get(1..).unwrap_or(&[]);
    for f in [
        Format::Text,
        Format::Opaque,
        Format::Tlv,
        Format::SenmlJson,
        Format::SenmlCbor,
        Format::LwJson,
    ] {
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
