//! What a server or a package repository hands the firmware update: Package URIs
//! (with a `sha256=` in query or fragment), SHA-256 manifests (`sha256sum`
//! format, the first line being the package's URI), minisign keys and
//! signatures, and a sequence of CoAP Block2 responses (raw datagrams, as the
//! fetcher receives them) driving the download machine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate::coap::message;
use lwgate::fetch::block2::{Block2Download, BlockResponse, Limits, Step};
use lwgate::lwm2m::firmware::digest;
use lwgate::lwm2m::firmware::state::{check_package_uri, Protocol};
use lwgate::lwm2m::firmware::verify::{DetachedSignature, TrustedKey};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let all = [
        Protocol::Coap,
        Protocol::Coaps,
        Protocol::Http,
        Protocol::Https,
    ];
    let _ = check_package_uri(&text, &all);
    let _ = TrustedKey::decode(&text);
    let _ = DetachedSignature::decode(&text);
    let (uri, manifest) = text.split_once('\n').unwrap_or((&text, ""));
    let from_uri = digest::from_uri(uri);
    let _ = digest::companion(uri, ".sha256");
    let name = digest::file_name(uri);
    assert!(!name.contains('/') && !name.contains('#'));
    if let (Ok(u), Ok(m)) = (from_uri, digest::from_manifest(manifest, name)) {
        let _ = digest::expected(u, Some(m));
    }

    // Datagrams separated by 0xFF 0xFE: each one a response to the next request.
    let mut dl = Block2Download::new(Limits {
        szx: 6,
        max_bytes: Some(1 << 20),
        retries: 2,
        backoff: Duration::from_millis(1),
        max_restarts: 2,
    });
    for chunk in data.split(|b| *b == 0xFE) {
        if dl.is_done() || dl.next_request().is_err() {
            break;
        }
        let Ok(p) = coap_lite::Packet::from_bytes(chunk) else {
            let _ = dl.on_failed_attempt("not CoAP");
            continue;
        };
        let r = BlockResponse {
            code: message::code_byte(&p),
            block2: message::block(&p, coap_lite::CoapOption::Block2),
            etag: p
                .get_first_option(coap_lite::CoapOption::ETag)
                .map(|v| v.as_slice()),
            size2: message::get_uint(&p, coap_lite::CoapOption::Size2).map(u64::from),
            payload_len: p.payload.len(),
        };
        match dl.on_response(&r) {
            Ok(Step::Write { at, .. }) => assert!(at <= 1 << 20),
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
