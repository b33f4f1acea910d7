//! Registration interface (spec 5.3): parameters, the object list, timing.

use super::tree::Tree;
use crate::codec::{link::Link, Format, LinkFormat};
use crate::model::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1_0,
    V1_1,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
        }
    }
}

/// What a Register or Update says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegParams {
    pub endpoint: String,
    pub lifetime: u32,
    pub version: Version,
    /// Binding as configured (1.0 letters, e.g. "UQ").
    pub binding: String,
    /// The client's MSISDN (`sms=`), sent where the binding has S.
    pub sms: Option<String>,
}

impl RegParams {
    /// 1.1 moved queue mode out of the binding into its own `Q` parameter.
    fn binding_query(&self) -> Vec<String> {
        match self.version {
            Version::V1_0 => vec![format!("b={}", self.binding)],
            Version::V1_1 => {
                let letters: String = self.binding.chars().filter(|c| *c != 'Q').collect();
                let mut v = vec![format!("b={letters}")];
                if self.binding.contains('Q') {
                    v.push("Q".to_string());
                }
                v
            }
        }
    }

    pub fn register_query(&self) -> Vec<String> {
        let mut q = vec![
            format!("ep={}", self.endpoint),
            format!("lt={}", self.lifetime),
            format!("lwm2m={}", self.version.as_str()),
        ];
        q.extend(self.binding_query());
        q.extend(self.sms_query());
        q
    }

    fn sms_query(&self) -> Option<String> {
        let n = self.sms.as_ref().filter(|_| self.binding.contains('S'))?;
        Some(format!("sms={n}"))
    }

    /// Only what changed since the last Register/Update (spec 5.3.2).
    pub fn update_query(&self, before: &RegParams) -> Vec<String> {
        let mut q = Vec::new();
        if self.lifetime != before.lifetime {
            q.push(format!("lt={}", self.lifetime));
        }
        if self.binding != before.binding {
            q.extend(self.binding_query());
        }
        if self.sms_query() != before.sms_query() {
            q.extend(self.sms_query());
        }
        q
    }
}

/// The Register payload: `</>;rt="oma.lwm2m";ct=…` and every object and instance
/// except Security, with `ver=` where the object version is not 1.0.
pub fn object_links(reg: &Registry, tree: &Tree, version: Version, format: Format) -> String {
    let mut lf = LinkFormat::default();
    let mut root = Link::new("/").attr("rt", "\"oma.lwm2m\"");
    if version == Version::V1_1 || format != Format::Tlv {
        root = root.attr("ct", format.number().to_string());
    }
    lf.push(root);
    for (obj, insts) in &tree.objects {
        if *obj == 0 {
            continue;
        }
        let ver = reg.get(*obj).map(|d| d.version.as_str()).unwrap_or("1.0");
        // A 1.0 server knows objects by their 1.0 definition; versions are a 1.1 notion.
        let show_ver = ver != "1.0" && (version == Version::V1_1 || *obj >= 25);
        if insts.is_empty() || show_ver {
            let mut l = Link::new(format!("/{obj}"));
            if show_ver {
                l = l.attr("ver", ver);
            }
            lf.push(l);
        }
        for i in insts.keys() {
            lf.push(Link::new(format!("/{obj}/{i}")));
        }
    }
    lf.render()
}

/// How long before expiry the Update goes out: enough for a full CoAP retransmission
/// sequence (93 s by default) where the lifetime allows, never more than half of it.
pub fn update_margin(lifetime: Duration, max_transmit_wait: Duration) -> Duration {
    let tenth = lifetime / 10;
    tenth.max(max_transmit_wait.min(lifetime / 2))
}

/// Retry policy (1.1 Server resources 17–20 when set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retry_count: u32,
    pub retry_timer: Duration,
    pub sequence_delay: Duration,
    /// None: keep trying for ever (a gateway that gives up needs a truck roll).
    pub sequence_retry_count: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retry_count: 5,
            retry_timer: Duration::from_secs(10),
            sequence_delay: Duration::from_secs(300),
            sequence_retry_count: None,
        }
    }
}

impl RetryPolicy {
    pub fn from_server(tree: &Tree, inst: u16) -> Self {
        let d = Self::default();
        let get = |r| tree.get_i64(1, inst, r).and_then(|v| u64::try_from(v).ok());
        Self {
            retry_count: get(17)
                .map(|v| v.clamp(1, 1000) as u32)
                .unwrap_or(d.retry_count),
            retry_timer: get(18).map(Duration::from_secs).unwrap_or(d.retry_timer),
            sequence_delay: get(19).map(Duration::from_secs).unwrap_or(d.sequence_delay),
            sequence_retry_count: get(20).map(|v| v.max(1) as u32).or(d.sequence_retry_count),
        }
    }

    /// Delay before attempt number `failures + 1`, or None when it is time to give up.
    pub fn delay(&self, failures: u32) -> Option<Duration> {
        if failures == 0 {
            return Some(Duration::ZERO);
        }
        let sequence = (failures - 1) / self.retry_count;
        let within = (failures - 1) % self.retry_count;
        if let Some(max) = self.sequence_retry_count {
            if sequence + 1 >= max && within + 1 == self.retry_count {
                return None;
            }
        }
        if within + 1 == self.retry_count {
            return Some(self.sequence_delay);
        }
        Some(self.retry_timer * 2u32.saturating_pow(within).min(1 << 16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn params(v: Version, b: &str) -> RegParams {
        RegParams {
            endpoint: "gw".into(),
            lifetime: 300,
            version: v,
            binding: b.into(),
            sms: None,
        }
    }

    #[test]
    fn the_sms_number_goes_with_an_sms_binding_only() {
        let mut p = params(Version::V1_0, "UQS");
        p.sms = Some("+447700900123".into());
        assert_eq!(
            p.register_query(),
            ["ep=gw", "lt=300", "lwm2m=1.0", "b=UQS", "sms=+447700900123"]
        );
        let mut u = params(Version::V1_0, "U");
        u.sms = p.sms.clone();
        assert!(!u.register_query().iter().any(|q| q.starts_with("sms=")));
        let before = params(Version::V1_0, "UQS");
        assert_eq!(p.update_query(&before), ["sms=+447700900123"]);
        assert!(p.update_query(&p).is_empty());
    }

    #[test]
    fn register_queries() {
        assert_eq!(
            params(Version::V1_1, "UQ").register_query(),
            ["ep=gw", "lt=300", "lwm2m=1.1", "b=U", "Q"]
        );
        assert_eq!(
            params(Version::V1_0, "UQ").register_query(),
            ["ep=gw", "lt=300", "lwm2m=1.0", "b=UQ"]
        );
    }

    #[test]
    fn update_sends_only_changes() {
        let a = params(Version::V1_1, "U");
        let mut b = a.clone();
        assert!(b.update_query(&a).is_empty());
        b.lifetime = 60;
        assert_eq!(b.update_query(&a), ["lt=60"]);
    }

    #[test]
    fn payload_lists_instances_but_not_security() {
        let reg = Registry::builtin();
        let mut t = Tree::default();
        t.set(0, 0, 0, Value::String("coap://x".into()));
        t.set(1, 0, 0, Value::Integer(1));
        t.set(3, 0, 0, Value::String("x".into()));
        t.objects.insert(5, Default::default());
        assert_eq!(
            object_links(&reg, &t, Version::V1_1, Format::SenmlCbor),
            "</>;rt=\"oma.lwm2m\";ct=112,</1>;ver=1.1,</1/0>,</3/0>,</5>"
        );
        assert_eq!(
            object_links(&reg, &t, Version::V1_0, Format::Tlv),
            "</>;rt=\"oma.lwm2m\",</1/0>,</3/0>,</5>"
        );
    }

    #[test]
    fn update_margin_leaves_room_for_retransmissions() {
        let w = Duration::from_secs(93);
        assert_eq!(
            update_margin(Duration::from_secs(300), w),
            Duration::from_secs(93)
        );
        assert_eq!(
            update_margin(Duration::from_secs(60), w),
            Duration::from_secs(30)
        );
        assert_eq!(
            update_margin(Duration::from_secs(86400), w),
            Duration::from_secs(8640)
        );
    }

    #[test]
    fn retry_policy() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (0..7).map(|f| p.delay(f).unwrap().as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 300, 10]);
        let once = RetryPolicy {
            sequence_retry_count: Some(1),
            ..p
        };
        assert_eq!(once.delay(5), None);
    }
}
