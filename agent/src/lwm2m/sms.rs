//! What an SMS may do, without I/O: LwM2M 1.0 §7.2 carries CoAP in SMS, but an SMS
//! in NoSec mode proves nothing about who sent it (a sender number is easily
//! forged). So an unauthenticated SMS is a wake-up only: it may execute the
//! Registration Update Trigger (/1/x/8) and, where the operator allows it, the
//! Bootstrap-Request Trigger (/1/x/9), and nothing else; the work it causes (the
//! Update, the bootstrap) goes over UDP/DTLS to the configured server, so a
//! forged trigger costs one Update at most. It must come from the server's SMS
//! number (/0/x/9) or from the allow-list; a retransmission (same message id and
//! sender within EXCHANGE_LIFETIME) is answered again but triggers nothing; and
//! triggers are rate-limited, so a flood of SMS cannot keep the modem and the
//! link busy.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet, RequestType};

use crate::coap::message;
use crate::coap::params::TxParams;

/// The operator's rules (`[sms]` in lwgate.toml).
#[derive(Debug, Clone, PartialEq)]
pub struct SmsPolicy {
    /// Numbers that may trigger any server, beside each server's own number.
    pub allow: Vec<String>,
    /// Whether /1/x/9 (Bootstrap-Request Trigger) may be triggered by SMS.
    pub bootstrap_trigger: bool,
    /// Triggers accepted per minute, all senders together.
    pub per_minute: u32,
}

impl Default for SmsPolicy {
    fn default() -> Self {
        SmsPolicy {
            allow: Vec::new(),
            bootstrap_trigger: false,
            per_minute: 6,
        }
    }
}

/// A server account as SMS sees it: its /1 instance and its SMS number (/0/x/9).
#[derive(Debug, Clone, PartialEq)]
pub struct SmsServer {
    pub ssid: u16,
    pub server_instance: u16,
    pub number: Option<String>,
    /// /0/x/6 SMS Security Mode: 1 DTLS, 2 secure packet structure (3GPP TS
    /// 31.115), 3 NoSec; None when the Security instance has none.
    pub security_mode: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// /1/x/8: a Registration Update (or Register) now.
    Update,
    /// /1/x/9: a bootstrap now.
    Bootstrap,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Do it; `reply` (an ACK 2.04 for a CON) goes back to the sender by SMS.
    Accepted {
        ssid: u16,
        server_instance: u16,
        trigger: Trigger,
        reply: Option<Vec<u8>>,
    },
    /// Not done, for `reason` (logged with the sender and shown in `lwgate status`);
    /// `reply` (4.01 or 4.05) only to a known server's number, never to a stranger
    /// (an answer would cost money and confirm the number to whoever probes it).
    Refused {
        reason: String,
        reply: Option<Vec<u8>>,
    },
    /// The same message again within EXCHANGE_LIFETIME: answered as before, nothing done.
    Duplicate { reply: Option<Vec<u8>> },
}

/// The memory the rules need: recent messages (for duplicates) and recent triggers
/// (for the rate).
#[derive(Debug, Default)]
pub struct SmsGate {
    /// (when, sender, message id, reply sent).
    seen: VecDeque<(Instant, String, u16, Option<Vec<u8>>)>,
    triggers: VecDeque<Instant>,
}

/// At most this many messages remembered for de-duplication: a flood cannot grow it.
const SEEN_MAX: usize = 256;

impl SmsGate {
    /// Judges one SMS's payload (`data`: the CoAP message it carries) from `sender`.
    pub fn judge(
        &mut self,
        now: Instant,
        sender: &str,
        data: &[u8],
        servers: &[SmsServer],
        policy: &SmsPolicy,
    ) -> Verdict {
        self.expire(now);
        let server = servers
            .iter()
            .find(|s| s.number.as_deref().is_some_and(|n| same_number(n, sender)));
        let allowed = policy.allow.iter().any(|n| same_number(n, sender));
        let Ok(req) = Packet::from_bytes(data) else {
            return refused("not a CoAP message", None);
        };
        let mid = req.header.message_id;
        if let Some((_, _, _, reply)) = self
            .seen
            .iter()
            .find(|(_, s, m, _)| *m == mid && same_number(s, sender))
        {
            return Verdict::Duplicate {
                reply: reply.clone(),
            };
        }
        let known = server.is_some() || allowed;
        let answer = |code: u8| known.then(|| reply(&req, code)).flatten();
        let verdict = self.decide(now, &req, server, allowed, servers, policy, &answer);
        let sent = match &verdict {
            Verdict::Accepted { reply, .. } | Verdict::Refused { reply, .. } => reply.clone(),
            Verdict::Duplicate { reply } => reply.clone(),
        };
        if self.seen.len() >= SEEN_MAX {
            self.seen.pop_front();
        }
        self.seen.push_back((now, sender.to_string(), mid, sent));
        verdict
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        now: Instant,
        req: &Packet,
        server: Option<&SmsServer>,
        allowed: bool,
        servers: &[SmsServer],
        policy: &SmsPolicy,
        answer: &dyn Fn(u8) -> Option<Vec<u8>>,
    ) -> Verdict {
        if server.is_none() && !allowed {
            return refused(
                "the sender is neither a server's SMS number (/0/x/9) nor in sms.allow",
                None,
            );
        }
        // A server that secures its SMS (DTLS or TS 31.115 secure packets, which
        // lwgate does not implement) sends nothing we could check; a plain SMS
        // from its number is not what it would send, so it is not taken as its.
        if let Some(mode @ (1 | 2)) = server.filter(|_| !allowed).and_then(|s| s.security_mode) {
            return refused(
                &format!(
                    "the server's SMS Security Mode (/0/x/6) is {mode} ({}), which lwgate does not implement: only NoSec (3) triggers are taken",
                    if mode == 1 { "DTLS" } else { "secure packet structure" }
                ),
                None,
            );
        }
        if !matches!(req.header.code, MessageClass::Request(RequestType::Post)) {
            let what = match req.header.code {
                MessageClass::Request(RequestType::Put) => "a Write",
                MessageClass::Request(RequestType::Get) => "a Read",
                MessageClass::Request(RequestType::Delete) => "a Delete",
                MessageClass::Request(_) => "a request other than Execute",
                _ => "not a request",
            };
            return refused(
                &format!("{what} over unauthenticated SMS (only the trigger executes are allowed)"),
                answer(UNAUTHORIZED),
            );
        }
        let path = message::uri_path(req).unwrap_or_default();
        let ids: Vec<Option<u16>> = path.iter().map(|s| s.parse().ok()).collect();
        let (inst, trigger) = match ids.as_slice() {
            [Some(1), Some(inst), Some(8)] => (*inst, Trigger::Update),
            [Some(1), Some(inst), Some(9)] if policy.bootstrap_trigger => (*inst, Trigger::Bootstrap),
            [Some(1), Some(_), Some(9)] => {
                return refused(
                    "Bootstrap-Request Trigger over SMS is not enabled (sms.bootstrap_trigger)",
                    answer(UNAUTHORIZED),
                )
            }
            _ => {
                return refused(
                    &format!(
                        "an Execute of /{} over unauthenticated SMS (only /1/x/8 and /1/x/9 are allowed)",
                        path.join("/")
                    ),
                    answer(UNAUTHORIZED),
                )
            }
        };
        // The server the trigger names must be the sender's, unless the sender is on
        // the allow-list (an operator's phone may wake any of them).
        let Some(target) = servers.iter().find(|s| s.server_instance == inst) else {
            return refused(&format!("no server instance /1/{inst}"), answer(NOT_FOUND));
        };
        if !allowed && server.is_some_and(|s| s.ssid != target.ssid) {
            return refused(
                &format!(
                    "the sender is server {}'s number, the trigger names server {}",
                    server.map_or(0, |s| s.ssid),
                    target.ssid
                ),
                answer(UNAUTHORIZED),
            );
        }
        let minute = Duration::from_secs(60);
        while self
            .triggers
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= minute)
        {
            self.triggers.pop_front();
        }
        if self.triggers.len() >= policy.per_minute as usize {
            return refused(
                &format!(
                    "more than {} SMS triggers in a minute (sms.per_minute)",
                    policy.per_minute
                ),
                answer(SERVICE_UNAVAILABLE),
            );
        }
        self.triggers.push_back(now);
        Verdict::Accepted {
            ssid: target.ssid,
            server_instance: inst,
            trigger,
            reply: answer(CHANGED),
        }
    }

    fn expire(&mut self, now: Instant) {
        let lifetime = exchange_lifetime();
        while self
            .seen
            .front()
            .is_some_and(|(t, ..)| now.saturating_duration_since(*t) >= lifetime)
        {
            self.seen.pop_front();
        }
    }
}

/// RFC 7252's default (247 s): how long a sender may retransmit one message.
fn exchange_lifetime() -> Duration {
    TxParams::default().exchange_lifetime()
}

const CHANGED: u8 = 0x44;
const UNAUTHORIZED: u8 = 0x81;
const NOT_FOUND: u8 = 0x84;
const SERVICE_UNAVAILABLE: u8 = 0xA3;

fn refused(reason: &str, reply: Option<Vec<u8>>) -> Verdict {
    Verdict::Refused {
        reason: reason.to_string(),
        reply,
    }
}

/// The piggybacked answer to a CON (an ACK with the code); a NON gets none.
fn reply(req: &Packet, code: u8) -> Option<Vec<u8>> {
    if req.header.get_type() != MessageType::Confirmable {
        return None;
    }
    let mut r = message::response(req, code);
    r.header.set_type(MessageType::Acknowledgement);
    r.header.message_id = req.header.message_id;
    r.to_bytes().ok()
}

fn digits(n: &str) -> String {
    n.chars().filter(char::is_ascii_digit).collect()
}

/// Two ways of writing one number: `+44 7700 900123`, `447700900123` and
/// `07700900123` (national, trunk prefix 0) are the same. Numbers are compared by
/// their digits; when one is national, by the digits after its trunk 0, which must
/// end the other — with at least 7 of them, so that short codes do not match by
/// accident.
pub fn same_number(a: &str, b: &str) -> bool {
    let (da, db) = (digits(a), digits(b));
    if da.is_empty() || db.is_empty() {
        return false;
    }
    if da == db {
        return true;
    }
    let national = |n: &str, d: &str| !n.trim_start().starts_with('+') && d.starts_with('0');
    let (na, nb) = (national(a, &da), national(b, &db));
    let tail = |d: &str| d.trim_start_matches('0').to_string();
    match (na, nb) {
        (true, false) => tail(&da).len() >= 7 && db.ends_with(&tail(&da)),
        (false, true) => tail(&db).len() >= 7 && da.ends_with(&tail(&db)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::CoapOption;

    const SERVER: &str = "+447700900123";

    fn servers() -> Vec<SmsServer> {
        vec![
            SmsServer {
                ssid: 101,
                server_instance: 0,
                number: Some(SERVER.into()),
                security_mode: Some(3),
            },
            SmsServer {
                ssid: 102,
                server_instance: 1,
                number: None,
                security_mode: None,
            },
        ]
    }

    fn coap(kind: MessageType, method: RequestType, path: &str, mid: u16) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_type(kind);
        p.header.code = MessageClass::Request(method);
        p.header.message_id = mid;
        p.set_token(vec![1, 2]);
        for s in path.split('/').filter(|s| !s.is_empty()) {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        p.to_bytes().unwrap()
    }

    fn post(path: &str, mid: u16) -> Vec<u8> {
        coap(MessageType::Confirmable, RequestType::Post, path, mid)
    }

    fn code_of(reply: &Option<Vec<u8>>) -> Option<u8> {
        reply
            .as_ref()
            .map(|b| u8::from(Packet::from_bytes(b).unwrap().header.code))
    }

    #[test]
    fn the_servers_update_trigger_is_accepted_and_acknowledged() {
        let mut g = SmsGate::default();
        let t = Instant::now();
        let v = g.judge(
            t,
            SERVER,
            &post("/1/0/8", 7),
            &servers(),
            &SmsPolicy::default(),
        );
        let Verdict::Accepted {
            ssid,
            trigger,
            reply,
            ..
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!((ssid, trigger), (101, Trigger::Update));
        let ack = Packet::from_bytes(reply.as_ref().unwrap()).unwrap();
        assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(ack.header.message_id, 7);
        assert_eq!(ack.get_token(), &[1, 2]);
        assert_eq!(u8::from(ack.header.code), CHANGED);
    }

    #[test]
    fn a_server_that_secures_its_sms_is_not_triggered_by_a_plain_one() {
        for mode in [1, 2] {
            let mut servers = servers();
            servers[0].security_mode = Some(mode);
            let v = SmsGate::default().judge(
                Instant::now(),
                SERVER,
                &post("/1/0/8", 7),
                &servers,
                &SmsPolicy::default(),
            );
            let Verdict::Refused { reason, reply } = v else {
                panic!("{v:?}")
            };
            assert!(
                reason.contains(&format!("SMS Security Mode (/0/x/6) is {mode}")),
                "{reason}"
            );
            assert_eq!(reply, None);
        }
        // The allow-list (an operator's phone) is not the server's SMS channel.
        let mut servers = servers();
        servers[0].security_mode = Some(1);
        let policy = SmsPolicy {
            allow: vec![SERVER.into()],
            ..Default::default()
        };
        let v = SmsGate::default().judge(
            Instant::now(),
            SERVER,
            &post("/1/0/8", 8),
            &servers,
            &policy,
        );
        assert!(matches!(v, Verdict::Accepted { .. }), "{v:?}");
    }

    #[test]
    fn the_number_may_be_written_nationally_or_with_spaces() {
        assert!(same_number("+44 7700 900123", "447700900123"));
        assert!(same_number("07700900123", "+447700900123"));
        assert!(same_number("+447700900123", "07700900123"));
        assert!(!same_number("+447700900124", "+447700900123"));
        assert!(
            !same_number("0123", "+44123"),
            "short codes must not match by their tail"
        );
        assert!(!same_number("", ""));
        assert!(!same_number("07700900123", "07700900124"));
    }

    #[test]
    fn strangers_are_refused_without_an_answer() {
        let mut g = SmsGate::default();
        let v = g.judge(
            Instant::now(),
            "+15550001",
            &post("/1/0/8", 1),
            &servers(),
            &SmsPolicy::default(),
        );
        assert!(
            matches!(&v, Verdict::Refused { reason, reply: None } if reason.contains("neither")),
            "{v:?}"
        );
    }

    #[test]
    fn a_write_over_sms_is_refused_even_from_the_server() {
        let mut g = SmsGate::default();
        let put = coap(MessageType::Confirmable, RequestType::Put, "/5/0/1", 3);
        let v = g.judge(
            Instant::now(),
            SERVER,
            &put,
            &servers(),
            &SmsPolicy::default(),
        );
        let Verdict::Refused { reason, reply } = &v else {
            panic!("{v:?}")
        };
        assert!(
            reason.starts_with("a Write over unauthenticated SMS"),
            "{reason}"
        );
        assert_eq!(code_of(reply), Some(UNAUTHORIZED));
        let read = coap(MessageType::Confirmable, RequestType::Get, "/3/0", 4);
        let v = g.judge(
            Instant::now(),
            SERVER,
            &read,
            &servers(),
            &SmsPolicy::default(),
        );
        assert!(matches!(&v, Verdict::Refused { reason, .. } if reason.starts_with("a Read")));
        // Other executes too: a reboot by SMS is not a wake-up.
        let v = g.judge(
            Instant::now(),
            SERVER,
            &post("/3/0/4", 5),
            &servers(),
            &SmsPolicy::default(),
        );
        assert!(
            matches!(&v, Verdict::Refused { reason, .. } if reason.contains("/3/0/4")),
            "{v:?}"
        );
    }

    #[test]
    fn bootstrap_trigger_only_when_enabled() {
        let mut g = SmsGate::default();
        let t = Instant::now();
        let v = g.judge(
            t,
            SERVER,
            &post("/1/0/9", 1),
            &servers(),
            &SmsPolicy::default(),
        );
        assert!(
            matches!(&v, Verdict::Refused { reason, .. } if reason.contains("bootstrap_trigger"))
        );
        let policy = SmsPolicy {
            bootstrap_trigger: true,
            ..SmsPolicy::default()
        };
        let v = g.judge(t, SERVER, &post("/1/0/9", 2), &servers(), &policy);
        assert!(matches!(
            v,
            Verdict::Accepted {
                trigger: Trigger::Bootstrap,
                ..
            }
        ));
    }

    #[test]
    fn a_server_may_not_trigger_another_but_the_allow_list_may() {
        let mut g = SmsGate::default();
        let t = Instant::now();
        let v = g.judge(
            t,
            SERVER,
            &post("/1/1/8", 1),
            &servers(),
            &SmsPolicy::default(),
        );
        assert!(
            matches!(&v, Verdict::Refused { reason, .. } if reason.contains("names server 102")),
            "{v:?}"
        );
        let policy = SmsPolicy {
            allow: vec!["+15550001".into()],
            ..SmsPolicy::default()
        };
        let v = g.judge(t, "15550001", &post("/1/1/8", 2), &servers(), &policy);
        assert!(matches!(v, Verdict::Accepted { ssid: 102, .. }), "{v:?}");
        let v = g.judge(t, "15550001", &post("/1/7/8", 3), &servers(), &policy);
        assert!(
            matches!(&v, Verdict::Refused { reason, .. } if reason.contains("/1/7")),
            "{v:?}"
        );
    }

    #[test]
    fn a_replayed_trigger_is_answered_again_but_does_nothing() {
        let mut g = SmsGate::default();
        let t = Instant::now();
        let msg = post("/1/0/8", 42);
        let first = g.judge(t, SERVER, &msg, &servers(), &SmsPolicy::default());
        let Verdict::Accepted { reply, .. } = first else {
            panic!()
        };
        let again = g.judge(
            t + Duration::from_secs(30),
            "07700900123",
            &msg,
            &servers(),
            &SmsPolicy::default(),
        );
        assert_eq!(again, Verdict::Duplicate { reply });
        // After EXCHANGE_LIFETIME the same message id is a new message.
        let later = g.judge(
            t + exchange_lifetime(),
            SERVER,
            &msg,
            &servers(),
            &SmsPolicy::default(),
        );
        assert!(matches!(later, Verdict::Accepted { .. }));
    }

    #[test]
    fn triggers_are_rate_limited() {
        let mut g = SmsGate::default();
        let t = Instant::now();
        let policy = SmsPolicy {
            per_minute: 2,
            ..SmsPolicy::default()
        };
        let mut accepted = 0;
        for mid in 0..5 {
            if let Verdict::Accepted { .. } =
                g.judge(t, SERVER, &post("/1/0/8", mid), &servers(), &policy)
            {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 2);
        let v = g.judge(t, SERVER, &post("/1/0/8", 9), &servers(), &policy);
        let Verdict::Refused { reason, reply } = v else {
            panic!()
        };
        assert!(reason.contains("sms.per_minute"));
        assert_eq!(code_of(&reply), Some(SERVICE_UNAVAILABLE));
        let v = g.judge(
            t + Duration::from_secs(60),
            SERVER,
            &post("/1/0/8", 10),
            &servers(),
            &policy,
        );
        assert!(matches!(v, Verdict::Accepted { .. }));
    }

    #[test]
    fn a_non_trigger_gets_no_ack_and_garbage_is_refused() {
        let mut g = SmsGate::default();
        let non = coap(MessageType::NonConfirmable, RequestType::Post, "/1/0/8", 1);
        let v = g.judge(
            Instant::now(),
            SERVER,
            &non,
            &servers(),
            &SmsPolicy::default(),
        );
        assert!(matches!(v, Verdict::Accepted { reply: None, .. }));
        for bad in [&b""[..], &[0xff; 3], &[0x40]] {
            let v = g.judge(
                Instant::now(),
                SERVER,
                bad,
                &servers(),
                &SmsPolicy::default(),
            );
            assert!(matches!(v, Verdict::Refused { .. }), "{bad:?}: {v:?}");
        }
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut g = SmsGate::default();
        let t = Instant::now();
        for mid in 0..2000u16 {
            g.judge(
                t,
                "+15550001",
                &post("/1/0/8", mid),
                &servers(),
                &SmsPolicy::default(),
            );
        }
        assert!(g.seen.len() <= SEEN_MAX);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_from_anyone_get_a_verdict(data: Vec<u8>, sender in "[+0-9 ]{0,16}") {
            let mut g = SmsGate::default();
            let _ = g.judge(Instant::now(), &sender, &data, &servers(), &SmsPolicy::default());
        }
    }
}
