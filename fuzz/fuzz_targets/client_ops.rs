//! Sequences of what servers, the network, an end device and the driver do to
//! one registered gateway client (`lwgate_fuzz::client`): requests built from
//! valid methods, paths over real ids, options and payloads in the declared
//! format, so that Write, Write-Attributes, Execute, Create, Observe,
//! Block1/Block2 and the composite operations are decoded and carried out, and
//! the state machines behind them (observations and notifications, deferred
//! end-device operations, /5 and /9, queue mode, registration updates) move.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use lwgate_fuzz::client::Harness;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut h = Harness::registered();
    for _ in 0..64 {
        if u.is_empty() || h.step(&mut u).is_err() {
            break;
        }
    }
});
