//! What `lwgate status` shows: a snapshot the daemon keeps current and the control
//! socket serves as JSON.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub endpoint: String,
    pub config: String,
    /// Unix time (s) the daemon started.
    pub started_at: u64,
    pub uptime_s: u64,
    /// How often this installation's daemon has started (crash loops show here).
    pub starts: u64,
    pub store: StoreStatus,
    pub servers: Vec<ServerStatus>,
    /// Active observations across all servers.
    #[serde(default)]
    pub observations: usize,
    /// Where the server accounts came from: smartcard or factory.
    #[serde(default)]
    pub bootstrap: String,
    /// Why the smartcard was not used (no pcscd, no card, wrong PIN, …).
    #[serde(default)]
    pub smartcard_error: Option<String>,
    /// Why the last client-initiated bootstrap failed.
    #[serde(default)]
    pub bootstrap_error: Option<String>,
    /// /5 Firmware Update: state, result, progress or why it failed.
    #[serde(default)]
    pub firmware: Option<String>,
    /// /9 Software Management (/9/0): state, result, package, activation.
    #[serde(default)]
    pub software: Option<String>,
    /// End devices' /prefix/5: a line each, starting with the prefix.
    #[serde(default)]
    pub device_firmware: Vec<String>,
    /// The modem SMS triggers come through: backend and port, link, registration,
    /// operator, signal, own number.
    #[serde(default)]
    pub modem: Option<String>,
    /// The last SMS received: time, sender, accepted or refused and why.
    #[serde(default)]
    pub sms: Vec<String>,
    pub devices: Vec<DeviceStatus>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreStatus {
    pub path: String,
    pub schema_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerStatus {
    pub ssid: u16,
    pub uri: String,
    pub binding: String,
    pub lifetime_s: u32,
    /// `starting`, `registering`, `registered`, `retrying in Ns …`, `disabled for Ns`, `stopped`.
    pub state: String,
    pub last_error: Option<String>,
    /// `psk over DTLS: established (DTLSv1.2 PSK-AES128-CCM8)`, or the handshake's
    /// state or last failure; absent for NoSec.
    #[serde(default)]
    pub security: Option<String>,
    /// Registration location on the server (`/rd/…`) while registered.
    #[serde(default)]
    pub location: Option<String>,
    /// LwM2M version spoken with this server.
    #[serde(default)]
    pub lwm2m_version: Option<String>,
    /// Notifications stored for this server, waiting for it to be reachable.
    #[serde(default)]
    pub queued: usize,
    /// Notifications dropped (queue cap, storing off, observation gone).
    #[serde(default)]
    pub dropped: u64,
    /// Unix time of the last notification delivered.
    #[serde(default)]
    pub last_delivery: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceStatus {
    pub id: String,
    pub prefix: String,
    pub protocol: String,
    pub enabled: bool,
    pub file: String,
    /// `starting`, `up`, `down: why`, `not running: why`.
    pub state: String,
    /// Its /25 instance while it runs.
    #[serde(default)]
    pub instance: Option<u16>,
    /// Unix time of the last fully successful poll.
    #[serde(default)]
    pub last_ok: Option<i64>,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub timeouts: u64,
    /// Exception responses from the device.
    #[serde(default)]
    pub exceptions: u64,
    /// Other failures: connection lost, malformed frames.
    #[serde(default)]
    pub errors: u64,
}

fn human_duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

impl Status {
    /// The terminal view: what a field engineer scans first.
    pub fn render(&self) -> String {
        // "now" as of the last status update, so the view is self-consistent.
        let now = self.started_at.saturating_add(self.uptime_s);
        let mut o = String::new();
        let _ = writeln!(
            o,
            "lwgate {} running (pid {}), up {}, start #{}",
            self.version,
            self.pid,
            human_duration(self.uptime_s),
            self.starts
        );
        let _ = writeln!(o, "endpoint: {}", self.endpoint);
        let _ = writeln!(o, "config:   {}", self.config);
        let _ = writeln!(
            o,
            "store:    {} (schema {})",
            self.store.path, self.store.schema_version
        );
        if !self.bootstrap.is_empty() {
            let _ = writeln!(o, "accounts: {}", self.bootstrap);
        }
        if let Some(e) = &self.smartcard_error {
            let _ = writeln!(o, "smartcard: {e}");
        }
        if let Some(e) = &self.bootstrap_error {
            let _ = writeln!(o, "bootstrap: {e}");
        }
        if let Some(f) = &self.firmware {
            let _ = writeln!(o, "firmware: {f}");
        }
        if let Some(s) = &self.software {
            let _ = writeln!(o, "software: {s}");
        }
        for f in &self.device_firmware {
            let _ = writeln!(o, "device firmware: {f}");
        }
        if let Some(m) = &self.modem {
            let _ = writeln!(o, "modem:    {m}");
        }
        for m in &self.sms {
            let _ = writeln!(o, "sms:      {m}");
        }
        let _ = writeln!(o, "servers:  {}", self.servers.len());
        for s in &self.servers {
            let _ = write!(
                o,
                "  [{}] {} binding={} lifetime={}s: {}",
                s.ssid, s.uri, s.binding, s.lifetime_s, s.state
            );
            if let Some(l) = &s.location {
                let _ = write!(o, " at {l}");
            }
            if let Some(v) = &s.lwm2m_version {
                let _ = write!(o, " (LwM2M {v})");
            }
            if s.queued > 0 || s.dropped > 0 {
                let _ = write!(o, "; queued {} dropped {}", s.queued, s.dropped);
            }
            if let Some(t) = s.last_delivery {
                let age = now.saturating_sub(u64::try_from(t).unwrap_or(0));
                let _ = write!(o, "; last delivery {} ago", human_duration(age));
            }
            if let Some(e) = &s.last_error {
                let _ = write!(o, " ({e})");
            }
            o.push('\n');
            if let Some(sec) = &s.security {
                let _ = writeln!(o, "    security: {sec}");
            }
        }
        let _ = writeln!(o, "observations: {}", self.observations);
        let _ = writeln!(o, "devices:  {}", self.devices.len());
        for d in &self.devices {
            let _ = write!(
                o,
                "  {} prefix=/{} {}{}",
                d.id,
                d.prefix,
                d.protocol,
                if d.enabled { "" } else { " (disabled)" },
            );
            if let Some(i) = d.instance {
                let _ = write!(o, " /25/{i}");
            }
            let _ = write!(o, ": {}", d.state);
            if let Some(t) = d.last_ok {
                let age = now.saturating_sub(u64::try_from(t).unwrap_or(0));
                let _ = write!(o, "; last good poll {} ago", human_duration(age));
            }
            if d.requests > 0 {
                let _ = write!(
                    o,
                    "; {} requests, {} timeouts, {} exceptions, {} errors",
                    d.requests, d.timeouts, d.exceptions, d.errors
                );
            }
            o.push('\n');
        }
        for w in &self.warnings {
            let _ = writeln!(o, "warning:  {w}");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(7260), "2h01m");
        assert_eq!(human_duration(90_000), "1d01h");
    }

    #[test]
    fn render_lists_servers_and_errors() {
        let s = Status {
            version: "0.1.0".into(),
            pid: 42,
            endpoint: "gw".into(),
            config: "/etc/lwgate/lwgate.toml".into(),
            started_at: 0,
            uptime_s: 61,
            starts: 3,
            store: StoreStatus {
                path: "/var/lib/lwgate/state.db".into(),
                schema_version: 1,
            },
            servers: vec![ServerStatus {
                ssid: 101,
                uri: "coap://h".into(),
                binding: "U".into(),
                lifetime_s: 300,
                state: "failed".into(),
                last_error: Some("timeout".into()),
                security: Some("psk over DTLS: handshaking".into()),
                location: None,
                lwm2m_version: None,
                queued: 0,
                dropped: 0,
                last_delivery: None,
            }],
            observations: 0,
            bootstrap: String::new(),
            smartcard_error: None,
            bootstrap_error: None,
            firmware: None,
            software: None,
            device_firmware: vec![],
            modem: None,
            sms: vec![],
            devices: vec![],
            warnings: vec!["w".into()],
        };
        let mut s = s;
        s.started_at = 1_000;
        let mut delivering = s.servers[0].clone();
        delivering.ssid = 102;
        delivering.queued = 4;
        delivering.last_delivery = Some(1_050);
        s.servers.push(delivering);
        let r = s.render();
        assert!(
            r.contains("[101] coap://h binding=U lifetime=300s: failed (timeout)"),
            "{r}"
        );
        assert!(
            r.contains("queued 4 dropped 0; last delivery 11s ago"),
            "{r}"
        );
        assert!(r.contains("up 1m01s, start #3"), "{r}");
        assert!(r.contains("warning:  w"), "{r}");
    }
}
