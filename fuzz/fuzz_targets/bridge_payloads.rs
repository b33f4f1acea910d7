//! What downstream devices and SMS senders hand the agent: MQTT payloads on any
//! topic (JSON mapping, names, times, status), serial byte streams cut into frames
//! and parsed (NMEA checksums and formats, regex captures), and CoAP messages in
//! SMS judged by the trigger rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwgate::lwm2m::sms::{SmsGate, SmsPolicy, SmsServer};
use lwgate_bridges::mqtt::{mapping, MqttConfig};
use lwgate_bridges::serial::config::Framing;
use lwgate_bridges::serial::framing::Framer;
use lwgate_bridges::serial::{parse, SerialConfig};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MQTT: &str = "topic = \"s/+/data\"\nname = \"{1}\"\ntime_json = \"/ts\"\nstatus_topic = \"s/{name}/status\"\n[[point]]\npath = \"3303/0/5700\"\njson = \"/t\"\ntype = \"float\"\nscale = 0.1\n[[point]]\npath = \"3342/0/5500\"\njson = \"/a/b/0\"\ntype = \"bool\"\n[[point]]\npath = \"3341/0/5527\"\ntopic = \"s/{name}/text\"\ntype = \"text\"\n";
const SERIAL: &str = "tty = \"/dev/null\"\nchecksum = \"nmea\"\n[[point]]\npath = \"6/0/0\"\nmatch = '^\\$G.GGA'\nfield = 2\nwith = 3\ntype = \"float\"\nformat = \"nmea-coordinate\"\n[[point]]\npath = \"6/0/5\"\nmatch = '^\\$G.RMC'\nfield = 1\nwith = 9\ntype = \"int\"\nformat = \"nmea-datetime\"\n[[point]]\npath = \"3303/0/5700\"\nregex = 'T=(?P<t>-?[0-9.]+)'\ncapture = \"t\"\ntype = \"float\"\n";

fn configs() -> &'static (MqttConfig, SerialConfig) {
    static C: OnceLock<(MqttConfig, SerialConfig)> = OnceLock::new();
    C.get_or_init(|| {
        (
            toml::from_str(MQTT).expect("the MQTT mapping"),
            toml::from_str(SERIAL).expect("the serial mapping"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (mqtt, serial) = configs();
    // The first line is the topic, the rest the payload.
    let (topic, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).to_string(),
            &data[i + 1..],
        ),
        None => ("s/x/data".to_string(), data),
    };
    let _ = mapping::map(mqtt, &topic, payload, 0.0);
    let _ = mapping::status(mqtt, &topic, payload);

    let t = Instant::now();
    let mut framer = Framer::new(
        Framing::Delimiter(b"\r\n".to_vec()),
        96,
        Duration::from_secs(1),
    );
    for chunk in data.chunks(7) {
        for frame in framer.push(chunk, t) {
            let _ = parse::values(serial, &frame);
        }
        assert!(framer.held() <= 96 + 2);
    }

    // The first byte picks the server's SMS Security Mode (/0/x/6) too.
    let security_mode = data.first().map(|b| i64::from(b % 4));
    let servers = [SmsServer {
        ssid: 101,
        server_instance: 0,
        number: Some("+447700900123".into()),
        security_mode,
    }];
    let mut gate = SmsGate::default();
    let _ = gate.judge(t, "+447700900123", data, &servers, &SmsPolicy::default());
});
