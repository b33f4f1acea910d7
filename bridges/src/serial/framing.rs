//! Frames cut from a serial byte stream, without I/O: by delimiter, fixed length
//! or start/end bytes; a frame over the limit is dropped and the framer waits for
//! the next boundary (never holding more than the limit plus one boundary); a
//! partial frame older than the inter-frame timeout is dropped.

use std::time::{Duration, Instant};

use super::config::Framing;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub overlong: u64,
    pub timed_out: u64,
    /// Bytes outside start/end frames.
    pub noise: u64,
}

pub struct Framer {
    mode: Framing,
    max: usize,
    timeout: Duration,
    buf: Vec<u8>,
    /// Inside an overlong frame: bytes are thrown away until the next boundary.
    skipping: bool,
    /// `Between`: a start was seen.
    open: bool,
    since: Option<Instant>,
    pub dropped: Dropped,
}

impl Framer {
    pub fn new(mode: Framing, max: usize, timeout: Duration) -> Self {
        Framer {
            mode,
            max,
            timeout,
            buf: Vec::new(),
            skipping: false,
            open: false,
            since: None,
            dropped: Dropped::default(),
        }
    }

    /// Bytes in, complete frames out.
    pub fn push(&mut self, bytes: &[u8], now: Instant) -> Vec<Vec<u8>> {
        self.expire(now);
        let mut out = Vec::new();
        for &b in bytes {
            if self.since.is_none() {
                self.since = Some(now);
            }
            match self.mode.clone() {
                Framing::Fixed(n) => {
                    self.buf.push(b);
                    if self.buf.len() == n {
                        out.push(std::mem::take(&mut self.buf));
                        self.since = None;
                    }
                }
                Framing::Delimiter(d) => {
                    self.buf.push(b);
                    if self.buf.ends_with(&d) {
                        self.buf.truncate(self.buf.len() - d.len());
                        if self.skipping {
                            self.skipping = false;
                        } else {
                            out.push(std::mem::take(&mut self.buf));
                        }
                        self.buf.clear();
                        self.since = None;
                    } else if self.buf.len() > self.max + d.len() {
                        if !self.skipping {
                            self.dropped.overlong += 1;
                            self.skipping = true;
                        }
                        // Keep only what could still be the start of a delimiter.
                        let keep = d.len().saturating_sub(1);
                        let cut = self.buf.len() - keep;
                        self.buf.drain(..cut);
                    }
                }
                Framing::Between(s, e) => {
                    self.buf.push(b);
                    if !self.open {
                        if self.buf.ends_with(&s) {
                            self.dropped.noise += (self.buf.len() - s.len()) as u64;
                            self.buf.clear();
                            self.open = true;
                            self.since = Some(now);
                        } else if self.buf.len() >= s.len() {
                            let cut = self.buf.len() + 1 - s.len();
                            self.dropped.noise += cut as u64;
                            self.buf.drain(..cut);
                        }
                    } else if self.buf.ends_with(&e) {
                        self.buf.truncate(self.buf.len() - e.len());
                        out.push(std::mem::take(&mut self.buf));
                        self.open = false;
                        self.since = None;
                    } else if self.buf.len() > self.max + e.len() {
                        self.dropped.overlong += 1;
                        self.buf.clear();
                        self.open = false;
                        self.since = None;
                    }
                }
            }
        }
        out
    }

    /// Drops a partial frame older than the timeout.
    pub fn expire(&mut self, now: Instant) {
        if let Some(t) = self.since {
            if now.saturating_duration_since(t) >= self.timeout {
                if !self.buf.is_empty() && !self.skipping {
                    self.dropped.timed_out += 1;
                }
                self.buf.clear();
                self.skipping = false;
                self.open = false;
                self.since = None;
            }
        }
    }

    pub fn held(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize) -> Framer {
        Framer::new(
            Framing::Delimiter(b"\r\n".to_vec()),
            max,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn lines_are_cut_at_the_delimiter() {
        let mut f = lines(64);
        let t = Instant::now();
        assert_eq!(f.push(b"T=21.5\r\nH=4", t), vec![b"T=21.5".to_vec()]);
        assert_eq!(f.push(b"0\r\n", t), vec![b"H=40".to_vec()]);
    }

    #[test]
    fn an_overlong_line_is_dropped_and_the_next_one_kept() {
        let mut f = lines(8);
        let t = Instant::now();
        let mut long = vec![b'x'; 100];
        long.extend_from_slice(b"\r\nok\r\n");
        assert_eq!(f.push(&long, t), vec![b"ok".to_vec()]);
        assert_eq!(f.dropped.overlong, 1);
    }

    #[test]
    fn a_stale_partial_frame_is_dropped() {
        let mut f = lines(64);
        let t = Instant::now();
        f.push(b"garbage", t);
        assert_eq!(
            f.push(b"T=1\r\n", t + Duration::from_secs(2)),
            vec![b"T=1".to_vec()]
        );
        assert_eq!(f.dropped.timed_out, 1);
    }

    #[test]
    fn start_end_and_fixed_frames() {
        let mut f = Framer::new(
            Framing::Between(b"\x02".to_vec(), b"\x03".to_vec()),
            16,
            Duration::from_secs(1),
        );
        let t = Instant::now();
        assert_eq!(f.push(b"zz\x02abc\x03\x02d", t), vec![b"abc".to_vec()]);
        assert_eq!(f.push(b"e\x03", t), vec![b"de".to_vec()]);
        assert_eq!(f.dropped.noise, 2);
        let mut f = Framer::new(Framing::Fixed(3), 16, Duration::from_secs(1));
        assert_eq!(
            f.push(b"abcdefg", t),
            vec![b"abc".to_vec(), b"def".to_vec()]
        );
    }

    proptest::proptest! {
        #[test]
        fn splitting_never_changes_the_frames_and_the_buffer_stays_bounded(
            data in proptest::collection::vec(proptest::prop_oneof![proptest::prelude::any::<u8>(), proptest::strategy::Just(b'\r'), proptest::strategy::Just(b'\n')], 0..400),
            cut in 0usize..400,
        ) {
            let t = Instant::now();
            let mut whole = lines(16);
            let a = whole.push(&data, t);
            let mut parts = lines(16);
            let c = cut.min(data.len());
            let mut b = parts.push(&data[..c], t);
            proptest::prop_assert!(parts.held() <= 16 + 2);
            b.extend(parts.push(&data[c..], t));
            proptest::prop_assert!(parts.held() <= 16 + 2);
            proptest::prop_assert_eq!(a.clone(), b);
            for frame in a {
                proptest::prop_assert!(frame.len() <= 16 + 1);
            }
        }
    }
}
