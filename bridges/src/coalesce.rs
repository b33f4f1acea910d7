//! A device's values held back for its rate limit: at most one Values event per
//! interval; values arriving in between replace the held ones of the same resource
//! (the latest wins, with the latest time), so a flooding device costs the agent
//! one event per interval whatever it sends.

use std::time::{Duration, Instant};

use crate::device::{ResourceId, Value};

#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    held: Option<(f64, Vec<(ResourceId, Value)>)>,
    last: Option<Instant>,
}

impl Coalescer {
    /// Holds values taken at `time`. True when some held ones were replaced (a
    /// value the servers will not see: counted as dropped).
    pub(crate) fn hold(&mut self, time: f64, values: Vec<(ResourceId, Value)>) -> bool {
        match &mut self.held {
            Some((t, held)) => {
                *t = time;
                for (rid, v) in values {
                    match held.iter_mut().find(|(r, _)| *r == rid) {
                        Some(slot) => slot.1 = v,
                        None => held.push((rid, v)),
                    }
                }
                true
            }
            None => {
                self.held = Some((time, values));
                false
            }
        }
    }

    /// The held values, when the interval since the last ones has passed.
    pub(crate) fn take(
        &mut self,
        now: Instant,
        interval: Duration,
    ) -> Option<(f64, Vec<(ResourceId, Value)>)> {
        let due = self
            .last
            .is_none_or(|l| now.saturating_duration_since(l) >= interval);
        if !due || self.held.is_none() {
            return None;
        }
        self.last = Some(now);
        self.held.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_values_go_at_most_once_an_interval() {
        let id = |r| ResourceId {
            object: 3303,
            instance: 0,
            resource: r,
        };
        let mut c = Coalescer::default();
        let t = Instant::now();
        let iv = Duration::from_millis(100);
        assert!(!c.hold(1.0, vec![(id(1), Value::Int(1))]));
        assert_eq!(c.take(t, iv), Some((1.0, vec![(id(1), Value::Int(1))])));
        assert!(!c.hold(2.0, vec![(id(1), Value::Int(2))]));
        assert!(c.hold(3.0, vec![(id(1), Value::Int(3)), (id(2), Value::Int(9))]));
        assert_eq!(c.take(t + Duration::from_millis(50), iv), None);
        assert_eq!(
            c.take(t + iv, iv),
            Some((3.0, vec![(id(1), Value::Int(3)), (id(2), Value::Int(9))]))
        );
        assert_eq!(c.take(t + iv * 3, iv), None, "nothing held");
    }
}
