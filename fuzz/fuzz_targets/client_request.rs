//! A registered LwM2M client fed arbitrary datagrams as if from its server: every
//! request path (classification, Block1/Block2, DM, observe) must answer, not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate::lwm2m::factory::{self, Account, DeviceInfo};
use lwgate::lwm2m::{Client, ClientConfig};
use lwgate::model::Registry;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let acc = Account { uri: "coap://h".into(), ssid: 1, lifetime: 60, binding: "U".into(), notification_storing: true };
    let trees = factory::trees(&[acc.clone(), Account { ssid: 2, ..acc }], &DeviceInfo::default());
    let mut c = Client::new(ClientConfig::default(), Registry::builtin(), trees, now, 1);
    c.handle_timeout(now);
    while c.poll_transmit().is_some() {}
    for (i, chunk) in data.split(|b| *b == 0xFE).enumerate() {
        c.handle_datagram(now, 1 + (i % 2) as u16, chunk);
        while c.poll_transmit().is_some() {}
        while c.poll_action().is_some() {}
    }
});
