//! Observations and when to notify (spec 5.1.1 attribute precedence, 5.5).

use super::attrs::Attributes;
use super::dm::AttrStore;
use crate::codec::{Format, Record};
use crate::model::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Observation {
    pub ssid: u16,
    pub token: Vec<u8>,
    pub path: Path,
    /// Observe-Composite: the observed paths (then `path` is the root). Empty otherwise.
    pub composite: Vec<Path>,
    pub accept: Option<u16>,
    pub format: Format,
    /// Observe option value of the last message (24-bit, RFC 7641 4.4).
    pub seq: u32,
    pub last_sent_at: Instant,
    pub last_values: Vec<Record>,
    pub last_con_at: Instant,
    /// Handle of the notification in flight, to match a Reset.
    pub handle: Option<u64>,
    /// When the observed values were last read, and that reading while epmin may
    /// hold it (empty otherwise): epmin/epmax bound how often they are sampled,
    /// independently of how often they are sent.
    pub sampled_at: Instant,
    pub sample: Vec<Record>,
    /// The attributes in force, as of the client's attribute generation: looked up
    /// once, not at every deadline (where a hundred observations made it the
    /// client's busiest work).
    pub attrs_cache: std::cell::Cell<Option<(u64, Attributes)>>,
    /// A change was seen while pmin held it back: the end of pmin is a deadline.
    /// (Without one, the end of pmin is no reason to look again, and a deadline
    /// left in the past would spin the driver.)
    pub held: bool,
    /// The time the device gave the observed value (an end device's or a
    /// gateway-target device's values): the time of any notification of it, also
    /// one sent later when pmin held it back. None: the gateway's own values,
    /// notified with the gateway's clock. A device's event gives it its time
    /// (a poll: the time of the reading, even when the value is the same).
    pub value_time: Option<f64>,
}

/// Attributes in force for an observation: the most specific level wins per
/// attribute (resource instance, resource, instance, object), then the server's
/// default pmin/pmax (spec 5.1.1).
pub fn effective(
    attrs: &AttrStore,
    ssid: u16,
    path: &Path,
    default_pmin: Option<u32>,
    default_pmax: Option<u32>,
) -> Attributes {
    let mut out = Attributes::default();
    let mut p = path.clone();
    loop {
        if let Some(a) = attrs.get(&(ssid, p.clone())) {
            out.pmin = out.pmin.or(a.pmin);
            out.pmax = out.pmax.or(a.pmax);
            out.gt = out.gt.or(a.gt);
            out.lt = out.lt.or(a.lt);
            out.st = out.st.or(a.st);
            out.epmin = out.epmin.or(a.epmin);
            out.epmax = out.epmax.or(a.epmax);
        }
        if p.is_empty() {
            break;
        }
        p = p.parent();
    }
    out.pmin = out.pmin.or(default_pmin);
    out.pmax = out.pmax.or(default_pmax);
    out
}

fn single_number(records: &[Record]) -> Option<f64> {
    match records {
        [(_, v)] => v.as_f64(),
        _ => None,
    }
}

/// Whether to notify now with `current` values.
pub fn should_notify(obs: &Observation, a: &Attributes, now: Instant, current: &[Record]) -> bool {
    let elapsed = now.saturating_duration_since(obs.last_sent_at);
    if let Some(pmin) = a.pmin {
        if elapsed < Duration::from_secs(u64::from(pmin)) {
            return false;
        }
    }
    if let Some(pmax) = a.pmax.filter(|p| *p > 0 && a.pmin.is_none_or(|m| *p >= m)) {
        if elapsed >= Duration::from_secs(u64::from(pmax)) {
            return true;
        }
    }
    changed_enough(obs, a, current)
}

/// Whether `current` differs from what was last sent as the attributes require
/// (any change, or a gt/lt crossing, or an st step).
fn changed_enough(obs: &Observation, a: &Attributes, current: &[Record]) -> bool {
    if current == obs.last_values.as_slice() {
        return false;
    }
    match (single_number(&obs.last_values), single_number(current)) {
        (Some(old), Some(new)) if a.gt.is_some() || a.lt.is_some() || a.st.is_some() => {
            let crossed = |t: f64| (old > t) != (new > t);
            a.gt.is_some_and(crossed)
                || a.lt.is_some_and(|t| (old < t) != (new < t))
                || a.st.is_some_and(|s| (new - old).abs() >= s)
        }
        _ => true,
    }
}

/// A change pmin holds back now (it goes out when pmin ends).
pub fn held_back(obs: &Observation, a: &Attributes, now: Instant, current: &[Record]) -> bool {
    let elapsed = now.saturating_duration_since(obs.last_sent_at);
    a.pmin
        .is_some_and(|p| elapsed < Duration::from_secs(u64::from(p)))
        && changed_enough(obs, a, current)
}

/// epmax in force: ignored unless greater than epmin (spec 5.1.1, like pmax < pmin).
fn epmax(a: &Attributes) -> Option<u32> {
    a.epmax.filter(|e| *e > 0 && a.epmin.is_none_or(|m| *e > m))
}

/// Whether the observed values are to be read now, or the last sample still stands
/// (taken less than epmin ago). Nothing sampled yet: read.
pub fn sample_due(obs: &Observation, a: &Attributes, now: Instant) -> bool {
    obs.sample.is_empty()
        || a.epmin.is_none_or(|m| {
            now.saturating_duration_since(obs.sampled_at) >= Duration::from_secs(u64::from(m))
        })
}

/// When the observation next needs a look even without a value change: pmax, the
/// end of pmin when a change is being held back, or the next sample due by epmax.
pub fn deadline(obs: &Observation, a: &Attributes) -> Option<Instant> {
    let sample = epmax(a).map(|e| obs.sampled_at + Duration::from_secs(u64::from(e)));
    let pmax = a
        .pmax
        .filter(|p| *p > 0 && a.pmin.is_none_or(|m| *p >= m))
        .map(|p| obs.last_sent_at + Duration::from_secs(u64::from(p)));
    let pmin = a
        .pmin
        .filter(|_| obs.held)
        .map(|p| obs.last_sent_at + Duration::from_secs(u64::from(p)));
    [pmin, pmax, sample].into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn obs(now: Instant, v: f64) -> Observation {
        Observation {
            ssid: 1,
            token: vec![1],
            path: Path::new(&[3303, 0, 5700]),
            composite: Vec::new(),
            accept: None,
            format: Format::Text,
            seq: 0,
            last_sent_at: now,
            last_values: vec![(Path::new(&[3303, 0, 5700]), Value::Float(v))],
            last_con_at: now,
            handle: None,
            sampled_at: now,
            sample: vec![(Path::new(&[3303, 0, 5700]), Value::Float(v))],
            attrs_cache: Default::default(),
            held: false,
            value_time: None,
        }
    }

    fn val(v: f64) -> Vec<Record> {
        vec![(Path::new(&[3303, 0, 5700]), Value::Float(v))]
    }

    #[test]
    fn precedence_most_specific_wins_then_server_defaults() {
        let mut store = AttrStore::new();
        store.insert(
            (1, Path::new(&[3303])),
            Attributes {
                pmin: Some(5),
                pmax: Some(100),
                ..Default::default()
            },
        );
        store.insert(
            (1, Path::new(&[3303, 0, 5700])),
            Attributes {
                pmin: Some(1),
                st: Some(0.5),
                ..Default::default()
            },
        );
        store.insert(
            (2, Path::new(&[3303, 0, 5700])),
            Attributes {
                pmin: Some(99),
                ..Default::default()
            },
        );
        let a = effective(&store, 1, &Path::new(&[3303, 0, 5700]), Some(0), Some(3600));
        assert_eq!((a.pmin, a.pmax, a.st), (Some(1), Some(100), Some(0.5)));
        let a = effective(&store, 1, &Path::new(&[3303, 1, 5700]), Some(0), Some(3600));
        assert_eq!((a.pmin, a.pmax), (Some(5), Some(100)));
        let a = effective(&store, 1, &Path::new(&[3]), Some(7), None);
        assert_eq!((a.pmin, a.pmax), (Some(7), None));
    }

    #[test]
    fn epmin_holds_the_sample_epmax_schedules_the_next() {
        let t0 = Instant::now();
        let o = obs(t0, 20.0);
        let a = Attributes {
            epmin: Some(10),
            epmax: Some(30),
            ..Default::default()
        };
        assert!(!sample_due(&o, &a, t0 + Duration::from_secs(9)));
        assert!(sample_due(&o, &a, t0 + Duration::from_secs(10)));
        assert_eq!(deadline(&o, &a), Some(t0 + Duration::from_secs(30)));
        // Nothing sampled yet (a restored observation): read whatever epmin says.
        let fresh = Observation {
            sample: Vec::new(),
            ..o.clone()
        };
        assert!(sample_due(&fresh, &a, t0));
        // epmax not above epmin is ignored; no epmin: every look samples.
        let bad = Attributes {
            epmin: Some(30),
            epmax: Some(30),
            ..Default::default()
        };
        assert_eq!(deadline(&o, &bad), None);
        assert!(sample_due(&o, &Attributes::default(), t0));
    }

    #[test]
    fn pmin_holds_back_pmax_forces() {
        let t0 = Instant::now();
        let o = obs(t0, 20.0);
        let a = Attributes {
            pmin: Some(10),
            pmax: Some(60),
            ..Default::default()
        };
        assert!(!should_notify(
            &o,
            &a,
            t0 + Duration::from_secs(5),
            &val(25.0)
        ));
        assert!(should_notify(
            &o,
            &a,
            t0 + Duration::from_secs(10),
            &val(25.0)
        ));
        assert!(!should_notify(
            &o,
            &a,
            t0 + Duration::from_secs(30),
            &val(20.0)
        ));
        assert!(should_notify(
            &o,
            &a,
            t0 + Duration::from_secs(60),
            &val(20.0)
        ));
        // Nothing held back: the next reason to look is pmax; a change held back
        // by pmin makes the end of pmin one.
        assert_eq!(deadline(&o, &a), Some(t0 + Duration::from_secs(60)));
        assert!(held_back(&o, &a, t0 + Duration::from_secs(5), &val(25.0)));
        assert!(!held_back(&o, &a, t0 + Duration::from_secs(5), &val(20.0)));
        assert!(!held_back(&o, &a, t0 + Duration::from_secs(15), &val(25.0)));
        let held = Observation {
            held: true,
            ..o.clone()
        };
        assert_eq!(deadline(&held, &a), Some(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn step_and_thresholds() {
        let t0 = Instant::now();
        let o = obs(t0, 20.0);
        let st = Attributes {
            st: Some(2.0),
            ..Default::default()
        };
        assert!(!should_notify(&o, &st, t0, &val(21.5)));
        assert!(should_notify(&o, &st, t0, &val(22.0)));
        assert!(should_notify(&o, &st, t0, &val(17.9)));
        let gt = Attributes {
            gt: Some(25.0),
            ..Default::default()
        };
        assert!(!should_notify(&o, &gt, t0, &val(24.0)));
        assert!(should_notify(&o, &gt, t0, &val(26.0)));
        let lt = Attributes {
            lt: Some(18.0),
            ..Default::default()
        };
        assert!(!should_notify(&o, &lt, t0, &val(19.0)));
        assert!(should_notify(&o, &lt, t0, &val(17.0)));
        let none = Attributes::default();
        assert!(should_notify(&o, &none, t0, &val(20.1)));
    }
}
