//! Reassembly of concatenated SMS, without I/O: parts in (with the time as a
//! parameter), whole messages out. A message is known by its sender, reference and
//! number of parts (TS 23.040 9.2.3.24.1); memory is bounded by the number of
//! messages pending and the size of each, and a message whose parts stop coming is
//! dropped after a timeout.
//!
//! Each part carries a tag of the caller's (the modem's storage index): what is
//! finished with, whole or dropped, comes back with its tags so that the caller can
//! delete exactly those parts from the modem.

/// A message is known by these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub sender: String,
    pub reference: u16,
    pub total: u8,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Messages waiting for parts at once; a new one beyond this drops the oldest.
    pub max_pending: usize,
    /// User data octets of one message.
    pub max_bytes: usize,
    /// Seconds from a message's first part to its last.
    pub timeout: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pending: 16,
            max_bytes: 16 * 1024,
            timeout: 180.0,
        }
    }
}

/// A message put together.
#[derive(Debug, Clone, PartialEq)]
pub struct Whole<T> {
    pub key: Key,
    pub data: Vec<u8>,
    /// The earliest of the parts' times.
    pub time: f64,
    /// In part order.
    pub tags: Vec<T>,
}

/// A message given up on, with the parts it had.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped<T> {
    pub key: Key,
    pub received: usize,
    pub reason: String,
    pub tags: Vec<T>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    Complete(Whole<T>),
    /// Kept until the other parts come; a message that had to make room for it is
    /// in `evicted`.
    Pending {
        evicted: Option<Dropped<T>>,
    },
    /// That part is already here: the tag is the caller's to throw away.
    Duplicate(T),
    /// This part cannot belong to a message (sequence number out of range), or the
    /// message grew past `max_bytes`: everything of it is dropped.
    Refused(Dropped<T>),
}

struct Part<T> {
    data: Vec<u8>,
    tag: T,
}

struct Pending<T> {
    key: Key,
    first: f64,
    time: f64,
    bytes: usize,
    parts: Vec<Option<Part<T>>>,
}

impl<T> Pending<T> {
    fn received(&self) -> usize {
        self.parts.iter().filter(|p| p.is_some()).count()
    }

    fn into_dropped(self, reason: String) -> Dropped<T> {
        let received = self.received();
        Dropped {
            key: self.key,
            received,
            reason,
            tags: self.parts.into_iter().flatten().map(|p| p.tag).collect(),
        }
    }
}

pub struct Reassembler<T> {
    limits: Limits,
    pending: Vec<Pending<T>>,
}

impl<T> Reassembler<T> {
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            pending: Vec::new(),
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Part `seq` (from 1) of the message `key`, received at `now`, sent at `time`.
    pub fn push(
        &mut self,
        now: f64,
        key: Key,
        seq: u8,
        time: f64,
        data: Vec<u8>,
        tag: T,
    ) -> Outcome<T> {
        if seq == 0 || seq > key.total {
            return Outcome::Refused(Dropped {
                reason: format!("part {seq} of a message of {} parts", key.total),
                key,
                received: 1,
                tags: vec![tag],
            });
        }
        let at = match self.pending.iter().position(|p| p.key == key) {
            Some(at) => at,
            None => {
                let evicted = if self.pending.len() >= self.limits.max_pending {
                    self.oldest().map(|i| {
                        self.pending.remove(i).into_dropped(format!(
                            "{} other messages were waiting for parts",
                            self.limits.max_pending
                        ))
                    })
                } else {
                    None
                };
                self.pending.push(Pending {
                    parts: (0..key.total).map(|_| None).collect(),
                    key,
                    first: now,
                    time,
                    bytes: 0,
                });
                let at = self.pending.len() - 1;
                return match self.insert(at, seq, time, data, tag) {
                    Outcome::Pending { .. } => Outcome::Pending { evicted },
                    other => other,
                };
            }
        };
        self.insert(at, seq, time, data, tag)
    }

    fn insert(&mut self, at: usize, seq: u8, time: f64, data: Vec<u8>, tag: T) -> Outcome<T> {
        let max_bytes = self.limits.max_bytes;
        let p = &mut self.pending[at];
        let slot = &mut p.parts[usize::from(seq - 1)];
        if slot.is_some() {
            return Outcome::Duplicate(tag);
        }
        p.bytes += data.len();
        p.time = p.time.min(time);
        *slot = Some(Part { data, tag });
        if p.bytes > max_bytes {
            let reason = format!("longer than {max_bytes} octets");
            return Outcome::Refused(self.pending.remove(at).into_dropped(reason));
        }
        if p.parts.iter().any(Option::is_none) {
            return Outcome::Pending { evicted: None };
        }
        let p = self.pending.remove(at);
        let mut data = Vec::with_capacity(p.bytes);
        let mut tags = Vec::with_capacity(p.parts.len());
        for part in p.parts.into_iter().flatten() {
            data.extend(part.data);
            tags.push(part.tag);
        }
        Outcome::Complete(Whole {
            key: p.key,
            data,
            time: p.time,
            tags,
        })
    }

    fn oldest(&self) -> Option<usize> {
        (0..self.pending.len())
            .min_by(|a, b| self.pending[*a].first.total_cmp(&self.pending[*b].first))
    }

    /// Messages whose first part came `timeout` or more before `now`.
    pub fn expire(&mut self, now: f64) -> Vec<Dropped<T>> {
        let timeout = self.limits.timeout;
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if now - self.pending[i].first >= timeout {
                let p = self.pending.remove(i);
                let reason = format!(
                    "{} of {} parts came within {timeout} s",
                    p.received(),
                    p.key.total
                );
                out.push(p.into_dropped(reason));
            } else {
                i += 1;
            }
        }
        out
    }

    /// The tags of every part held.
    pub fn tags(&self) -> impl Iterator<Item = &T> {
        self.pending
            .iter()
            .flat_map(|p| p.parts.iter().flatten().map(|part| &part.tag))
    }

    /// When the next message times out.
    pub fn deadline(&self) -> Option<f64> {
        self.pending
            .iter()
            .map(|p| p.first + self.limits.timeout)
            .min_by(f64::total_cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sender: &str, reference: u16, total: u8) -> Key {
        Key {
            sender: sender.into(),
            reference,
            total,
        }
    }

    #[test]
    fn parts_in_any_order_make_the_message() {
        let mut r = Reassembler::new(Limits::default());
        let k = key("+1", 7, 3);
        assert!(matches!(
            r.push(0.0, k.clone(), 3, 30.0, b"ghi".to_vec(), 3),
            Outcome::Pending { evicted: None }
        ));
        assert!(matches!(
            r.push(1.0, k.clone(), 1, 10.0, b"abc".to_vec(), 1),
            Outcome::Pending { .. }
        ));
        assert_eq!(
            r.push(2.0, k.clone(), 1, 10.0, b"abc".to_vec(), 9),
            Outcome::Duplicate(9)
        );
        let Outcome::Complete(w) = r.push(3.0, k.clone(), 2, 20.0, b"def".to_vec(), 2) else {
            panic!()
        };
        assert_eq!(w.data, b"abcdefghi");
        assert_eq!(w.tags, vec![1, 2, 3]);
        assert_eq!(w.time, 10.0);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn same_reference_from_two_senders_or_totals_are_two_messages() {
        let mut r = Reassembler::new(Limits::default());
        r.push(0.0, key("+1", 7, 2), 1, 0.0, vec![1], ());
        r.push(0.0, key("+2", 7, 2), 1, 0.0, vec![2], ());
        r.push(0.0, key("+1", 7, 3), 1, 0.0, vec![3], ());
        assert_eq!(r.pending(), 3);
        let Outcome::Complete(w) = r.push(0.0, key("+2", 7, 2), 2, 0.0, vec![4], ()) else {
            panic!()
        };
        assert_eq!(w.data, vec![2, 4]);
    }

    #[test]
    fn limits() {
        let mut r = Reassembler::new(Limits {
            max_pending: 2,
            max_bytes: 5,
            timeout: 10.0,
        });
        r.push(0.0, key("+1", 1, 2), 1, 0.0, vec![0], 'a');
        r.push(1.0, key("+1", 2, 2), 1, 0.0, vec![0], 'b');
        let Outcome::Pending {
            evicted: Some(d), ..
        } = r.push(2.0, key("+1", 3, 2), 1, 0.0, vec![0], 'c')
        else {
            panic!()
        };
        assert_eq!((d.key.reference, d.tags), (1, vec!['a']));
        let Outcome::Refused(d) = r.push(2.0, key("+1", 3, 2), 2, 0.0, vec![0; 5], 'd') else {
            panic!()
        };
        assert_eq!(d.tags, vec!['c', 'd']);
        assert!(matches!(
            r.push(2.0, key("+1", 3, 2), 3, 0.0, vec![0], 'e'),
            Outcome::Refused(_)
        ));
        assert_eq!(r.deadline(), Some(11.0));
        assert!(r.expire(10.9).is_empty());
        let gone = r.expire(11.0);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].tags, vec!['b']);
        assert_eq!(gone[0].reason, "1 of 2 parts came within 10 s");
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn one_part_of_one_is_complete_at_once() {
        let mut r = Reassembler::new(Limits::default());
        assert!(matches!(
            r.push(0.0, key("+1", 1, 1), 1, 0.0, vec![5], ()),
            Outcome::Complete(_)
        ));
    }
}
