//! A Block2 download (RFC 7959 §2.4) as a machine without I/O: it says which
//! block to ask for next and what to do with each response (write it at an
//! offset, start over, finish), and counts failed attempts. The driver owns
//! the socket, the clock and the file, and keeps the file exactly
//! [`Block2Download::offset`] bytes long between steps.
//!
//! Invariant: the offset is a multiple of the block size asked for. The size
//! only ever shrinks (the server's late negotiation), and every block but the
//! last is full, so the invariant holds across size changes.

use super::error::FetchError;
use super::Resume;
use crate::coap::block::BlockOpt;
use std::time::Duration;

/// Block numbers are 20 bits (RFC 7959 §2.2).
const MAX_NUM: u64 = (1 << 20) - 1;
/// Back-off between attempts stops doubling here.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const CONTENT: u8 = 0x45;
const SERVICE_UNAVAILABLE: u8 = 0xA3;

/// What bounds a download; see `FetchConfig` for the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Preferred block size exponent (0..=6: 16..1024 bytes).
    pub szx: u8,
    pub max_bytes: Option<u64>,
    /// Attempts at one block after the first has failed.
    pub retries: u32,
    /// Wait before the first retry; doubles with each further one.
    pub backoff: Duration,
    /// New passes from block 0 after the resource changed.
    pub max_restarts: u32,
}

/// The next GET's Block2 option, and whether to ask for Size2 (RFC 7959 §4:
/// Size2 = 0 in the request; only the first of a pass needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRequest {
    pub num: u32,
    pub szx: u8,
    pub ask_size: bool,
}

impl BlockRequest {
    pub fn option(self) -> BlockOpt {
        BlockOpt {
            num: self.num,
            more: false,
            szx: self.szx,
        }
    }
}

/// The parts of a response the machine judges.
#[derive(Debug, Clone, Copy)]
pub struct BlockResponse<'a> {
    /// Code byte (class << 5 | detail).
    pub code: u8,
    /// None: no Block2 option; Some(None): present but malformed.
    pub block2: Option<Option<BlockOpt>>,
    pub etag: Option<&'a [u8]>,
    pub size2: Option<u64>,
    pub payload_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Cut the file to `at` bytes, write the payload there, then ask for
    /// `next_request()`; when `last`, the download is complete.
    Write { at: u64, last: bool },
    /// The resource changed under us: cut the file to 0 and ask for
    /// `next_request()` (block 0 again). This response's payload is dropped.
    Restart,
    /// The server is busy (5.03): wait this long and ask for the same block.
    Wait(Duration),
}

#[derive(Debug, Clone)]
pub struct Block2Download {
    limits: Limits,
    szx: u8,
    /// Bytes of this pass in the file; the next block starts here.
    offset: u64,
    /// This pass's ETag once known: None before its first response (unless
    /// resumed), Some(None) when the server sends none.
    etag: Option<Option<Vec<u8>>>,
    /// The server's latest Size2 estimate.
    total: Option<u64>,
    ask_size: bool,
    restarts: u32,
    /// Failed attempts at the current block, in a row.
    failures: u32,
    done: bool,
}

/// The largest exponent in 0..=6 whose size is at most `size`.
pub fn szx_for(size: usize) -> u8 {
    BlockOpt::szx_for(size)
}

fn size_of(szx: u8) -> u64 {
    1u64 << (szx + 4)
}

impl Block2Download {
    pub fn new(limits: Limits) -> Self {
        let szx = limits.szx.min(6);
        Self {
            limits,
            szx,
            offset: 0,
            etag: None,
            total: None,
            ask_size: true,
            restarts: 0,
            failures: 0,
            done: false,
        }
    }

    /// Continues a download that `file_len` bytes of the file hold, from the
    /// block containing byte `resume.bytes` (or the file's end, if shorter: a
    /// persisted count may run ahead of the data that reached the disk). When
    /// that byte starts a block, the block before it is fetched again: it
    /// exists even when the file was complete, and its ETag is checked all the
    /// same. The caller cuts the file to [`Self::offset`]. Another URI, or
    /// nothing to keep, starts from 0.
    pub fn resume(limits: Limits, uri: &str, resume: &Resume, file_len: u64) -> Self {
        let mut d = Self::new(limits);
        if resume.uri != uri {
            return d;
        }
        d.szx = d.szx.min(szx_for(resume.block_size));
        let have = resume.bytes.min(file_len);
        let size = size_of(d.szx);
        let mut start = have / size * size;
        if start == have {
            start = start.saturating_sub(size);
        }
        if start > 0 {
            d.offset = start;
            d.etag = Some(resume.etag.clone());
        }
        d
    }

    /// Bytes of the resource in the file, from its start.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The server's estimate of the whole size (Size2), when it gave one.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    pub fn block_size(&self) -> usize {
        1usize << (self.szx + 4)
    }

    pub fn etag(&self) -> Option<&[u8]> {
        self.etag.as_ref().and_then(|e| e.as_deref())
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// What the caller stores to continue later with [`Self::resume`].
    pub fn snapshot(&self, uri: &str) -> Resume {
        Resume {
            uri: uri.to_string(),
            etag: self.etag().map(<[u8]>::to_vec),
            bytes: self.offset,
            block_size: self.block_size(),
        }
    }

    pub fn next_request(&self) -> Result<BlockRequest, FetchError> {
        let num = self.offset / size_of(self.szx);
        if num > MAX_NUM {
            return Err(FetchError::TooLarge {
                size: self.offset,
                limit: (MAX_NUM + 1) * size_of(self.szx),
            });
        }
        Ok(BlockRequest {
            num: num as u32,
            szx: self.szx,
            ask_size: self.ask_size,
        })
    }

    /// Judges the response to `next_request()`.
    pub fn on_response(&mut self, r: &BlockResponse<'_>) -> Result<Step, FetchError> {
        if self.done {
            return Err(FetchError::Protocol(
                "a response after the last block".into(),
            ));
        }
        if r.code == SERVICE_UNAVAILABLE {
            return self
                .on_failed_attempt("the server is busy (5.03)")
                .map(Step::Wait);
        }
        if r.code >= 0x80 {
            return Err(FetchError::Server { code: r.code });
        }
        if r.code != CONTENT {
            return Err(FetchError::Protocol(format!(
                "{} to a GET (2.05 expected)",
                crate::coap::message::code_text(r.code)
            )));
        }
        self.failures = 0;
        let len = r.payload_len as u64;
        let Some(block) = r.block2 else {
            // No Block2: the whole representation in one response (RFC 7959
            // §2.2 lets a server ignore the option; aiocoap omits it for a body
            // that fits one block).
            self.check_size(r.size2, len)?;
            self.etag = Some(r.etag.map(<[u8]>::to_vec));
            self.offset = len;
            self.done = true;
            return Ok(Step::Write { at: 0, last: true });
        };
        let Some(b) = block else {
            return Err(FetchError::Protocol("a malformed Block2 option".into()));
        };
        let size = size_of(b.szx);
        let at = u64::from(b.num) * size;
        if at != self.offset {
            return Err(FetchError::Protocol(format!(
                "block {} of {} bytes (byte {at}) where byte {} was asked for",
                b.num, size, self.offset
            )));
        }
        if len > size || (b.more && len != size) {
            return Err(FetchError::Protocol(format!(
                "block {} of {size} bytes carries {len}{}",
                b.num,
                if b.more { " and says more follow" } else { "" }
            )));
        }
        let etag = r.etag.map(<[u8]>::to_vec);
        match &self.etag {
            Some(known) if *known != etag => return self.restart(),
            Some(_) => {}
            None => self.etag = Some(etag),
        }
        self.check_size(r.size2, at + len)?;
        self.ask_size = false;
        // A larger block than asked for keeps our size: the next offset is a
        // multiple of it all the same.
        self.szx = self.szx.min(b.szx);
        self.offset = at + len;
        self.done = !b.more;
        Ok(Step::Write {
            at,
            last: self.done,
        })
    }

    /// The request timed out (or its DTLS session failed): how long to wait
    /// before asking again, or the end when the retries are spent.
    pub fn on_failed_attempt(&mut self, why: &str) -> Result<Duration, FetchError> {
        self.failures += 1;
        if self.failures > self.limits.retries {
            return Err(FetchError::ConnectionLost(format!(
                "{why}; {} attempts at byte {}",
                self.failures, self.offset
            )));
        }
        let doubling = 1u32 << (self.failures - 1).min(16);
        Ok(self
            .limits
            .backoff
            .saturating_mul(doubling)
            .min(MAX_BACKOFF))
    }

    fn restart(&mut self) -> Result<Step, FetchError> {
        self.restarts += 1;
        if self.restarts > self.limits.max_restarts {
            return Err(FetchError::Unstable(self.restarts));
        }
        self.offset = 0;
        self.etag = None;
        self.total = None;
        self.ask_size = true;
        Ok(Step::Restart)
    }

    /// `size2` updates the estimate; the estimate or the bytes so far must fit
    /// the limit (before anything of a too large package is written).
    fn check_size(&mut self, size2: Option<u64>, end: u64) -> Result<(), FetchError> {
        if size2.is_some() {
            self.total = size2;
        }
        let Some(limit) = self.limits.max_bytes else {
            return Ok(());
        };
        let size = self.total.unwrap_or(0).max(end);
        if size > limit {
            return Err(FetchError::TooLarge { size, limit });
        }
        Ok(())
    }
}

/// Whether the file system has room for the rest: `total - offset` bytes when
/// the size is known, else the next block; `keep_free` bytes must stay free.
pub fn check_space(
    total: Option<u64>,
    offset: u64,
    next_block: u64,
    available: u64,
    keep_free: u64,
) -> Result<(), FetchError> {
    let rest = total.map_or(next_block, |t| t.saturating_sub(offset));
    let needed = rest.saturating_add(keep_free);
    if available < needed {
        return Err(FetchError::NoSpace { needed, available });
    }
    Ok(())
}

#[cfg(test)]
#[path = "block2_tests.rs"]
mod tests;
