//! Group commits. Whatever must not be lost (a stored notification, a registration,
//! a server's write) is committed before the driver goes on; what only records
//! progress (a delivered notification's deletion, counters, sequence numbers) waits
//! for the next commit, at most `MAX_DELAY` or `MAX_OPS` — a deletion only when
//! there is traffic to share a commit with. Losing those in a crash costs a
//! re-sent notification, never a lost one.

use crate::lwm2m::persist::Persist;
use std::time::{Duration, Instant};

pub const MAX_DELAY: Duration = Duration::from_millis(100);
pub const MAX_OPS: usize = 4096;

#[derive(Debug, Default)]
pub struct Batcher {
    pending: Vec<Persist>,
    since: Option<Instant>,
    /// When the last deletion of a delivered notification came.
    last_delete: Option<Instant>,
}

fn deferrable(op: &Persist) -> bool {
    match op {
        Persist::Dequeue { .. } | Persist::Counters { .. } => true,
        // A new observation (sequence 0) is a server's request accepted: on disk
        // before its 2.05 leaves, or a power cut forgets what the server was told.
        // A notification's later sequence number may wait for the group commit.
        Persist::Observation(o) => o.seq != 0,
        _ => false,
    }
}

impl Batcher {
    /// Adds the ops of one event; returns what to commit now, if anything.
    pub fn push(&mut self, ops: Vec<Persist>, now: Instant) -> Option<Vec<Persist>> {
        if ops.is_empty() {
            return self.due(now);
        }
        let urgent = ops.iter().any(|op| !deferrable(op));
        // A delivered notification's deletion waits only to share a commit with
        // the next deletions. When the last one came more than MAX_DELAY ago (one
        // notification a second, say) no other is coming to share it: waiting
        // only leaves a kill -9 right after the ACK room to send the notification
        // again (scripts/soak counted them), so it commits at once, and what
        // waits beside it (a sequence number) with it.
        let deletes = ops.iter().any(|op| matches!(op, Persist::Dequeue { .. }));
        let quiet = deletes
            && self
                .last_delete
                .is_none_or(|t| now.duration_since(t) >= MAX_DELAY);
        if deletes {
            self.last_delete = Some(now);
        }
        if self.pending.is_empty() {
            self.since = Some(now);
        }
        self.pending.extend(ops);
        if urgent || quiet || self.pending.len() >= MAX_OPS {
            return self.take();
        }
        self.due(now)
    }

    /// What is due by time alone.
    pub fn due(&mut self, now: Instant) -> Option<Vec<Persist>> {
        match self.since {
            Some(t) if now.duration_since(t) >= MAX_DELAY => self.take(),
            _ => None,
        }
    }

    /// Everything pending (at shutdown).
    pub fn take(&mut self) -> Option<Vec<Persist>> {
        self.since = None;
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }

    /// When the pending ops must be committed by.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lwm2m::persist::QueuedNote;
    use crate::model::Path;

    fn note() -> Persist {
        Persist::Enqueue(QueuedNote {
            id: 1,
            ssid: 1,
            token: vec![],
            path: Path::root(),
            time: 0.0,
            values: vec![],
        })
    }

    #[test]
    fn stored_notifications_commit_at_once_deletions_wait() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        // Busy: deletions come fast.
        assert!(b
            .push(vec![Persist::Dequeue { ids: vec![0] }], t0)
            .is_some());
        assert_eq!(b.push(vec![Persist::Dequeue { ids: vec![1] }], t0), None);
        assert_eq!(b.deadline(), Some(t0 + MAX_DELAY));
        assert_eq!(b.push(vec![], t0 + Duration::from_millis(50)), None);
        let out = b
            .push(vec![note()], t0 + Duration::from_millis(60))
            .unwrap();
        assert_eq!(
            out.len(),
            2,
            "the pending deletion goes with the urgent append, in order"
        );
        assert!(matches!(out[0], Persist::Dequeue { .. }));
        assert_eq!(b.push(vec![Persist::Dequeue { ids: vec![2] }], t0), None);
        assert!(b.due(t0 + Duration::from_millis(99)).is_none());
        assert!(b.due(t0 + Duration::from_millis(100)).is_some());
    }

    #[test]
    fn a_new_observation_commits_at_once_its_sequence_numbers_wait() {
        let obs = |seq| {
            Persist::Observation(crate::lwm2m::persist::StoredObservation {
                ssid: 1,
                token: vec![1],
                path: Path::root(),
                composite: vec![],
                format: 0,
                accept: None,
                seq,
            })
        };
        let t0 = Instant::now();
        let mut b = Batcher::default();
        assert_eq!(
            b.push(vec![obs(5)], t0),
            None,
            "a notification's sequence waits"
        );
        let out = b.push(vec![obs(0)], t0).unwrap();
        assert_eq!(
            out.len(),
            2,
            "a new observation goes at once, with what waited"
        );
    }

    #[test]
    fn a_deletion_commits_at_once_when_nothing_else_would_share_its_commit() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        let del = |i| vec![Persist::Dequeue { ids: vec![i] }];
        assert!(b.push(del(1), t0).is_some(), "quiet: at once");
        // Another within MAX_DELAY of the last waits for company.
        assert_eq!(b.push(del(2), t0 + Duration::from_millis(40)), None);
        assert_eq!(b.push(del(3), t0 + Duration::from_millis(60)), None);
        let out = b.due(t0 + Duration::from_millis(140)).unwrap();
        assert_eq!(out.len(), 2);
        // A stored notification's commit just before does not hold it back.
        assert!(b
            .push(vec![note()], t0 + Duration::from_millis(500))
            .is_some());
        assert!(b.push(del(9), t0 + Duration::from_millis(501)).is_some());
        // A second later: quiet again.
        assert!(b.push(del(4), t0 + Duration::from_secs(1)).is_some());
        // A sequence number waiting does not hold a quiet deletion back.
        let mut b = Batcher::default();
        let seq = Persist::Observation(crate::lwm2m::persist::StoredObservation {
            ssid: 1,
            token: vec![1],
            path: Path::root(),
            composite: vec![],
            format: 0,
            accept: None,
            seq: 7,
        });
        assert_eq!(b.push(vec![seq], t0), None);
        assert_eq!(
            b.push(del(5), t0 + Duration::from_millis(5))
                .map(|o| o.len()),
            Some(2)
        );
        // Counters alone never force a commit.
        let mut b = Batcher::default();
        let counters = Persist::Counters {
            ssid: 1,
            dropped: 0,
            last_delivery: None,
        };
        assert_eq!(b.push(vec![counters], t0), None);
    }
}
