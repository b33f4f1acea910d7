//! Progress of a download for the caller (a watch channel, e.g. to persist the
//! resume point or to show it) and for the journal, both throttled: a fast link
//! delivers thousands of chunks a second.

use super::Resume;
use std::time::{Duration, Instant};

/// A snapshot of a running download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the package on disk, including those of earlier attempts.
    pub bytes: u64,
    /// The package's full size, when the server told it.
    pub total: Option<u64>,
    /// Bytes per second since the previous snapshot.
    pub rate: u64,
    /// What to persist so that a later attempt continues from `bytes`.
    pub resume: Resume,
}

/// Decides when the next snapshot is due and what rate it shows.
pub(super) struct Meter {
    interval: Duration,
    started: Instant,
    first: u64,
    last_at: Instant,
    last_bytes: u64,
}

impl Meter {
    pub(super) fn new(interval: Duration, bytes: u64, now: Instant) -> Self {
        Meter {
            interval,
            started: now,
            first: bytes,
            last_at: now,
            last_bytes: bytes,
        }
    }

    /// The rate since the last snapshot, if one is due at `now`.
    pub(super) fn tick(&mut self, bytes: u64, now: Instant) -> Option<u64> {
        let since = now.saturating_duration_since(self.last_at);
        if since < self.interval {
            return None;
        }
        let r = rate(bytes.saturating_sub(self.last_bytes), since);
        self.last_at = now;
        self.last_bytes = bytes;
        Some(r)
    }

    /// Bytes fetched by this attempt and its average rate.
    pub(super) fn summary(&self, bytes: u64, now: Instant) -> (u64, u64) {
        let done = bytes.saturating_sub(self.first);
        (
            done,
            rate(done, now.saturating_duration_since(self.started)),
        )
    }
}

fn rate(bytes: u64, over: Duration) -> u64 {
    let ms = over.as_millis().max(1);
    u64::try_from(u128::from(bytes) * 1000 / ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled() {
        let t0 = Instant::now();
        let mut m = Meter::new(Duration::from_secs(2), 100, t0);
        assert_eq!(m.tick(200, t0 + Duration::from_millis(500)), None);
        assert_eq!(m.tick(4100, t0 + Duration::from_secs(2)), Some(2000));
        assert_eq!(m.tick(4200, t0 + Duration::from_secs(3)), None);
        assert_eq!(m.tick(5100, t0 + Duration::from_secs(5)), Some(333));
        assert_eq!(
            m.summary(10_100, t0 + Duration::from_secs(10)),
            (10_000, 1000)
        );
    }
}
