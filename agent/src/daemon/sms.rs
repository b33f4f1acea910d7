//! SMS in the driver: the modem bridge's messages judged by `lwm2m::sms` (only
//! the trigger executes, only from a server's or an allowed number, not twice,
//! not too often), the accepted ones carried out by the client over the server's
//! own transport, the answers sent back by SMS, and what `lwgate status` shows of
//! the modem and the last triggers.

use super::engine::unix_now;
use crate::lwm2m::sms::{SmsGate, SmsPolicy, Trigger, Verdict};
use lwgate_bridges::modem::{Link, Modem, ModemConfig, ModemEvent, ModemHandle, ModemState, Sms};
use std::collections::VecDeque;
use std::time::Instant;
use tokio::sync::mpsc;

/// The last this many messages are shown by `lwgate status`.
const SHOWN: usize = 8;

pub struct SmsDriver {
    modem: ModemHandle,
    pub events: mpsc::Receiver<ModemEvent>,
    gate: SmsGate,
    policy: SmsPolicy,
    /// The `[modem]` backend, and the port it names (ModemManager's modem says
    /// its D-Bus path in its state).
    backend: String,
    port: String,
    state: Option<ModemState>,
    recent: VecDeque<String>,
}

/// What the engine must do for one message.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// The trigger to carry out (server instance).
    pub trigger: Option<(u16, Trigger)>,
}

impl SmsDriver {
    /// Starts the modem's task.
    pub fn start(cfg: &ModemConfig, policy: SmsPolicy) -> Self {
        let backend = format!("{:?}", cfg.backend).to_lowercase();
        let (modem, events) = Modem::spawn(cfg.clone());
        Self {
            modem,
            events,
            gate: SmsGate::default(),
            policy,
            backend,
            port: cfg.port.clone(),
            state: None,
            recent: VecDeque::new(),
        }
    }

    /// The modem's state changed; its own number when it gives one.
    pub fn state_changed(&mut self, st: ModemState) -> Option<String> {
        match &st.link {
            Link::Down { reason } => tracing::warn!(port = %st.port, "modem down: {reason}"),
            Link::Ready => tracing::info!(
                port = %st.port,
                operator = st.operator.as_deref().unwrap_or("-"),
                signal_dbm = st.signal_dbm,
                own_number = st.own_number.as_deref().unwrap_or("-"),
                "modem ready: SMS triggers are received"
            ),
            Link::Opening => tracing::debug!(port = %st.port, "modem opening"),
        }
        let own = st.own_number.clone();
        self.state = Some(st);
        own
    }

    /// Judges one message; the reply (if the rules give one) goes back to its
    /// sender by SMS on a task of its own.
    pub fn received(
        &mut self,
        now: Instant,
        sms: Sms,
        servers: &[crate::lwm2m::sms::SmsServer],
    ) -> Outcome {
        let verdict = self
            .gate
            .judge(now, &sms.sender, &sms.data, servers, &self.policy);
        let sender = sms.sender.as_str();
        let (line, trigger, reply) = match verdict {
            Verdict::Accepted {
                ssid,
                server_instance,
                trigger,
                reply,
            } => {
                tracing::info!(sender, ssid, ?trigger, "SMS trigger accepted");
                (
                    format!("from {sender}: accepted, {trigger:?} of server {ssid}"),
                    Some((server_instance, trigger)),
                    reply,
                )
            }
            Verdict::Refused { reason, reply } => {
                tracing::warn!(
                    sender,
                    text = sms.text.as_deref().unwrap_or(""),
                    "SMS refused: {reason}"
                );
                (format!("from {sender}: refused, {reason}"), None, reply)
            }
            Verdict::Duplicate { reply } => {
                tracing::info!(sender, "SMS repeated: answered as before, nothing done");
                (
                    format!("from {sender}: repeated, answered as before"),
                    None,
                    reply,
                )
            }
        };
        self.remember(format!("{} {line}", clock(sms.time)));
        if let Some(reply) = reply {
            let modem = self.modem.clone();
            let to = sms.sender.clone();
            tokio::spawn(async move {
                match modem.send(&to, &reply).await {
                    Ok(_) => tracing::debug!(to, "SMS answer sent"),
                    Err(e) => tracing::warn!(to, "SMS answer not sent: {e}"),
                }
            });
        }
        Outcome { trigger }
    }

    /// A message the modem could not give us (undecodable, incomplete).
    pub fn discarded(&mut self, sender: Option<String>, reason: String) {
        let from = sender.as_deref().unwrap_or("an unknown sender");
        tracing::warn!(sender = from, "SMS discarded: {reason}");
        self.remember(format!(
            "{} from {from}: discarded, {reason}",
            clock(unix_now())
        ));
    }

    fn remember(&mut self, line: String) {
        if self.recent.len() >= SHOWN {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// The `modem:` line of `lwgate status`.
    pub fn describe(&self) -> String {
        let port = match &self.state {
            Some(st) if !st.port.is_empty() => &st.port,
            _ => &self.port,
        };
        let mut line = self.backend.clone();
        if !port.is_empty() {
            line.push(' ');
            line.push_str(port);
        }
        line.push_str(": ");
        let Some(st) = &self.state else {
            line.push_str("starting");
            return line;
        };
        line.push_str(&match &st.link {
            Link::Opening => "opening".to_string(),
            Link::Ready => "ready".to_string(),
            Link::Down { reason } => format!("down ({reason})"),
        });
        if let Some(r) = &st.registration {
            line.push_str(&format!(", {r:?}").to_lowercase());
        }
        if let Some(o) = &st.operator {
            line.push_str(&format!(", operator {o}"));
        }
        if let Some(s) = st.signal_dbm {
            line.push_str(&format!(", signal {s} dBm"));
        }
        if let Some(n) = &st.own_number {
            line.push_str(&format!(", own number {n}"));
        }
        if st.dropped_events > 0 {
            line.push_str(&format!(", {} events dropped", st.dropped_events));
        }
        line
    }

    /// The last messages, oldest first, for `lwgate status`.
    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }

    /// What the modem says of the radio, as /4/0 resources: 2 Radio Signal
    /// Strength (dBm), 8 Cell ID, 9 SMNC, 10 SMCC.
    pub fn radio(&self) -> Vec<(u16, i64)> {
        let Some(st) = &self.state else {
            return Vec::new();
        };
        let dbm = st
            .signal_dbm
            .or_else(|| st.signal_percent.map(percent_to_dbm));
        [
            (2, dbm.map(i64::from)),
            (8, st.cell_id.map(i64::from)),
            (9, st.mnc.map(i64::from)),
            (10, st.mcc.map(i64::from)),
        ]
        .into_iter()
        .filter_map(|(r, v)| Some((r, v?)))
        .collect()
    }
}

/// ModemManager gives a percentage unless its extended signal is set up: it is
/// AT+CSQ's 0-31 scaled to 100, and CSQ is -113 dBm plus 2 dBm a step.
fn percent_to_dbm(p: u8) -> i32 {
    -113 + 2 * ((i32::from(p.min(100)) * 31 + 50) / 100)
}

/// A message's time as `lwgate status` shows it: UTC, to the second.
fn clock(unix: f64) -> String {
    let secs = unix.max(0.0) as u64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentage_becomes_dbm_as_csq_would_say_it() {
        assert_eq!(percent_to_dbm(0), -113);
        assert_eq!(percent_to_dbm(100), -51);
        assert_eq!(percent_to_dbm(255), -51);
        // AT+CSQ 20 is -73 dBm; ModemManager shows it as 64 %.
        assert_eq!(percent_to_dbm(64), -73);
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(clock(0.0), "00:00:00Z");
        assert_eq!(clock(1_764_806_399.9), "23:59:59Z");
        assert_eq!(clock(-5.0), "00:00:00Z");
    }
}
