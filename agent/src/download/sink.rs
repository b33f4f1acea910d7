//! The package file as its bytes arrive, for HTTP and CoAP downloads alike:
//! written and checked (SHA-256 always, the minisign signature when it is
//! known before the download) on a blocking thread of its own, so the runtime
//! thread only receives, the hash costs no time after the last byte, and the
//! image is never held in memory (a few 64 KiB buffers in flight).
//!
//! A resumed download has its stored part read back and hashed once, when
//! [`Sink::cut`] keeps it. The worker holds an exclusive `flock` on the file for
//! as long as it lives: a sink opened after a cancelled one waits for the old
//! worker to stop, so a stale write can never land in the new attempt's bytes.

use crate::lwm2m::firmware::verify::{ImageVerifier, Policy, Verified, VerifyError};
use hyper::body::Bytes;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Bytes gathered before they go to the worker: one trip per block of a CoAP
/// download (1 KiB) or per chunk of an HTTP body would cost more than the write.
const BUFFER: usize = 64 << 10;
/// A chunk this large goes to the worker as it is, not copied into a buffer.
const WHOLE: usize = 16 << 10;
/// Buffers queued for the worker before a writer waits.
const QUEUE: usize = 4;
/// Writeback of the file is started every this many bytes, so the sync that
/// makes a finished package durable has little left to wait for.
const WRITE_BEHIND: u64 = 1 << 20;

/// The end of a download: every byte on disk and synced, and the check's verdict.
#[derive(Debug)]
pub struct Finished {
    pub bytes: u64,
    pub check: Result<Verified, VerifyError>,
}

enum Cmd {
    Data(Bytes),
    Cut(u64, oneshot::Sender<io::Result<()>>),
    Settle(oneshot::Sender<io::Result<()>>),
    Finish(oneshot::Sender<io::Result<Finished>>),
}

#[derive(Default)]
struct Shared {
    /// Bytes the OS has (a cancelled download's resume point never counts more).
    written: AtomicU64,
    failed: AtomicBool,
    /// The sink was dropped: what is still queued is not written.
    abandoned: AtomicBool,
}

pub struct Sink {
    tx: mpsc::Sender<Cmd>,
    buf: Vec<u8>,
    /// Bytes the file will have once the buffer and the queue are written.
    len: u64,
    shared: Arc<Shared>,
    path: PathBuf,
    /// A cut has said what to keep (and the kept bytes are hashed).
    kept: bool,
}

fn gone() -> io::Error {
    io::Error::other("the package writer stopped")
}

impl Sink {
    /// Opens (creating) `path` and says how many bytes it holds; nothing is
    /// cut or hashed until [`Sink::cut`] says what to keep. `policy` is what the
    /// bytes are checked against as they come.
    pub async fn open(path: &Path, policy: Policy) -> io::Result<(Sink, u64)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let worker_shared = shared.clone();
        let p = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .and_then(|f| {
                    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))
                })
                .and_then(|f| f.metadata().map(|m| (f, m.len())));
            match file {
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
                Ok((f, on_disk)) => {
                    let _ = ready_tx.send(Ok(on_disk));
                    Worker::new(f, on_disk, &policy, &worker_shared).run(rx);
                }
            }
        });
        let on_disk = ready_rx.await.map_err(|_| gone())??;
        shared.written.store(on_disk, Ordering::Release);
        Ok((
            Sink {
                tx,
                buf: Vec::with_capacity(BUFFER),
                len: on_disk,
                shared,
                path: path.to_owned(),
                kept: false,
            },
            on_disk,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length once everything given is written.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the OS has: what a resume point may claim.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Appends `data` (after all the file holds, if no cut came first).
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.kept {
            self.cut(self.len).await?;
        }
        self.buf.extend_from_slice(data);
        self.len += data.len() as u64;
        if self.buf.len() >= BUFFER {
            self.drain().await?;
            if self.shared.failed.load(Ordering::Acquire) {
                // Say the worker's error now, not at the end of the download.
                self.settle().await?;
            }
        }
        Ok(())
    }

    /// [`Sink::write`] of a chunk the caller owns: a large one is handed to
    /// the worker without a copy (an HTTP body's chunks are).
    pub async fn write_bytes(&mut self, data: Bytes) -> io::Result<()> {
        if data.len() < WHOLE || !self.buf.is_empty() || !self.kept {
            return self.write(&data).await;
        }
        self.len += data.len() as u64;
        self.tx.send(Cmd::Data(data)).await.map_err(|_| gone())?;
        if self.shared.failed.load(Ordering::Acquire) {
            self.settle().await?;
        }
        Ok(())
    }

    async fn drain(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(BUFFER));
        self.tx
            .send(Cmd::Data(full.into()))
            .await
            .map_err(|_| gone())
    }

    async fn ask<T>(
        &mut self,
        cmd: impl FnOnce(oneshot::Sender<io::Result<T>>) -> Cmd,
    ) -> io::Result<T> {
        self.drain().await?;
        let (tx, rx) = oneshot::channel();
        self.tx.send(cmd(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Keeps the first `len` bytes of the file (at most what it holds) and
    /// continues after them; the kept bytes are hashed from the file.
    pub async fn cut(&mut self, len: u64) -> io::Result<()> {
        if self.kept && len == self.len {
            return Ok(());
        }
        self.ask(|tx| Cmd::Cut(len, tx)).await?;
        self.len = len;
        self.kept = true;
        Ok(())
    }

    /// Waits until the OS has every byte given so far.
    pub async fn settle(&mut self) -> io::Result<()> {
        self.ask(Cmd::Settle).await
    }

    /// Makes the file durable and gives the check's verdict.
    pub async fn finish(mut self) -> io::Result<Finished> {
        if !self.kept {
            self.cut(self.len).await?;
        }
        self.ask(Cmd::Finish).await
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.abandoned.store(true, Ordering::Release);
    }
}

/// An io::Error kept by the worker, handed out again to each later request.
fn again(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

struct Worker<'p> {
    file: Flock<File>,
    pos: u64,
    /// Writeback has been started up to here.
    flushed: u64,
    policy: &'p Policy,
    check: ImageVerifier<'p>,
    /// The policy could not start (a key that did not sign this signature):
    /// the verdict, whatever the bytes.
    refused: Option<VerifyError>,
    error: Option<io::Error>,
    shared: &'p Shared,
}

impl<'p> Worker<'p> {
    fn new(file: Flock<File>, pos: u64, policy: &'p Policy, shared: &'p Shared) -> Self {
        let (check, refused) = Self::fresh(policy);
        Worker {
            file,
            pos,
            flushed: pos,
            policy,
            check,
            refused,
            error: None,
            shared,
        }
    }

    fn fresh(policy: &'p Policy) -> (ImageVerifier<'p>, Option<VerifyError>) {
        match ImageVerifier::new(policy) {
            Ok(v) => (v, None),
            Err(e) => (ImageVerifier::digest_only(), Some(e)),
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while let Some(cmd) = rx.blocking_recv() {
            if self.shared.abandoned.load(Ordering::Acquire) {
                return;
            }
            match cmd {
                Cmd::Data(d) => {
                    if self.error.is_none() {
                        if let Err(e) = self.file.write_all(&d) {
                            self.shared.failed.store(true, Ordering::Release);
                            self.error = Some(e);
                            continue;
                        }
                        self.check.update(&d);
                        self.pos += d.len() as u64;
                        self.shared.written.store(self.pos, Ordering::Release);
                        self.write_behind();
                    }
                }
                Cmd::Cut(len, reply) => {
                    let r = self.failed().and_then(|()| self.cut(len));
                    let _ = reply.send(r);
                }
                // Plain write(2)s: once made, the OS has the bytes.
                Cmd::Settle(reply) => {
                    let _ = reply.send(self.failed());
                }
                Cmd::Finish(reply) => {
                    let _ = reply.send(self.finish());
                    return;
                }
            }
        }
    }

    /// Starts the writeback of what was written since the last call (it does
    /// not wait for it): the final sync then finds most of the file on disk
    /// already. Advisory; an error shows at that sync.
    fn write_behind(&mut self) {
        if self.pos < self.flushed + WRITE_BEHIND {
            return;
        }
        use std::os::fd::AsRawFd;
        let (from, len) = (self.flushed, self.pos - self.flushed);
        // SAFETY: a plain syscall on our own open descriptor, no memory passed.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                i64::try_from(from).unwrap_or(i64::MAX),
                i64::try_from(len).unwrap_or(0),
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.flushed = self.pos;
    }

    fn failed(&self) -> io::Result<()> {
        self.error.as_ref().map_or(Ok(()), |e| Err(again(e)))
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        let on_disk = self.file.metadata()?.len();
        if len > on_disk {
            // It shrank under us: someone else touches our file.
            return Err(io::Error::other(format!(
                "{on_disk} bytes on disk, {len} expected"
            )));
        }
        self.file.set_len(len)?;
        if len < self.check.bytes() {
            (self.check, self.refused) = Self::fresh(self.policy);
        }
        let mut at = self.check.bytes();
        if at < len {
            self.file.seek(SeekFrom::Start(at))?;
            let mut buf = vec![0u8; BUFFER];
            while at < len {
                let want = usize::try_from(len - at).unwrap_or(BUFFER).min(BUFFER);
                let n = self.file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::other("the file ended while read back"));
                }
                self.check.update(&buf[..n]);
                at += n as u64;
            }
        }
        self.file.seek(SeekFrom::Start(len))?;
        self.pos = len;
        self.flushed = self.flushed.min(len);
        self.shared.written.store(len, Ordering::Release);
        Ok(())
    }

    fn finish(self) -> io::Result<Finished> {
        self.failed()?;
        self.file.set_len(self.pos)?;
        self.file.sync_all()?;
        let check = match self.refused {
            Some(e) => Err(e),
            None => self.check.finish(),
        };
        Ok(Finished {
            bytes: self.pos,
            check,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lwm2m::firmware::verify::parse_sha256;

    fn sha(data: &[u8]) -> String {
        hex::encode(openssl::sha::sha256(data))
    }

    #[tokio::test]
    async fn hashes_what_it_writes_and_what_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("package");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();

        let (mut s, on_disk) = Sink::open(&p, Policy::default()).await.unwrap();
        assert_eq!(on_disk, 0);
        for c in data[..150_000].chunks(1000) {
            s.write(c).await.unwrap();
        }
        s.settle().await.unwrap();
        assert_eq!(s.written(), 150_000);
        drop(s);

        // A resume keeps 100 000 bytes (read back and hashed once) and adds the rest.
        let policy = Policy {
            sha256: Some(parse_sha256(&sha(&data)).unwrap()),
            signature: None,
        };
        let (mut s, on_disk) = Sink::open(&p, policy.clone()).await.unwrap();
        assert_eq!(on_disk, 150_000);
        s.cut(100_000).await.unwrap();
        assert_eq!(s.written(), 100_000);
        for c in data[100_000..].chunks(4096) {
            s.write(c).await.unwrap();
        }
        let f = s.finish().await.unwrap();
        assert_eq!(f.bytes, data.len() as u64);
        assert_eq!(f.check.unwrap().sha256, sha(&data));
        assert_eq!(std::fs::read(&p).unwrap(), data);

        // A cut back to 0 (the resource changed) starts the hash over.
        let (mut s, _) = Sink::open(&p, policy.clone()).await.unwrap();
        s.cut(data.len() as u64).await.unwrap();
        s.cut(0).await.unwrap();
        s.write(b"other").await.unwrap();
        let f = s.finish().await.unwrap();
        assert!(
            matches!(f.check, Err(VerifyError::DigestMismatch { ref actual, .. }) if *actual == sha(b"other")),
            "{:?}",
            f.check
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"other");
    }

    #[tokio::test]
    async fn a_second_sink_waits_for_the_first_to_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("package");
        let (mut a, _) = Sink::open(&p, Policy::default()).await.unwrap();
        a.write(&[1; 10]).await.unwrap();
        a.settle().await.unwrap();
        let second = tokio::spawn({
            let p = p.clone();
            async move { Sink::open(&p, Policy::default()).await.map(|(_, n)| n) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the lock is held");
        drop(a);
        assert_eq!(second.await.unwrap().unwrap(), 10);
    }

    #[tokio::test]
    async fn cannot_keep_more_than_the_file_has() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("package");
        std::fs::write(&p, b"abc").unwrap();
        let (mut s, on_disk) = Sink::open(&p, Policy::default()).await.unwrap();
        assert_eq!(on_disk, 3);
        s.cut(1).await.unwrap();
        // Another writer grew nothing: 1 byte now, 2 asked.
        assert!(s.cut(2).await.is_err());
    }
}
