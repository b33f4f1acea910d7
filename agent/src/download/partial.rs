//! The partial file a download writes into: opened at the offset the resume
//! point allows, written chunk by chunk as the body arrives (never the whole
//! image in memory), made durable when complete. On failure or cancellation it
//! stays on disk for the next attempt; deleting it is the caller's decision.

use super::DownloadError;
use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Bytes of `path` already on disk (0 when it does not exist).
pub(super) async fn existing_len(path: &Path) -> Result<u64, DownloadError> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(file_error(path, e)),
    }
}

pub(super) struct PartialFile {
    // tokio's File writes on the blocking pool: a slow flash write must not
    // stall the runtime thread that also runs the LwM2M sessions.
    file: File,
    path: PathBuf,
    len: u64,
}

impl PartialFile {
    /// Opens (creating) `path` and keeps its first `keep` bytes. Bytes past
    /// `keep` may be from a write that the last Resume did not record: dropped.
    pub(super) async fn open(path: &Path, keep: u64) -> Result<Self, DownloadError> {
        let err = |e| file_error(path, e);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .await
            .map_err(err)?;
        let len = file.metadata().await.map_err(err)?.len();
        if len < keep {
            // It shrank since existing_len(): someone else touches our file.
            return Err(err(std::io::Error::other(format!(
                "{len} bytes on disk, {keep} expected"
            ))));
        }
        file.set_len(keep).await.map_err(err)?;
        file.seek(SeekFrom::Start(keep)).await.map_err(err)?;
        Ok(PartialFile {
            file,
            path: path.to_owned(),
            len: keep,
        })
    }

    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Returns once the OS has the bytes: `len` (and the caller's Resume) never
    /// counts a write still in flight, which a cancellation could lose.
    pub(super) async fn write(&mut self, data: &[u8]) -> Result<(), DownloadError> {
        let err = |e| file_error(&self.path, e);
        self.file.write_all(data).await.map_err(err)?;
        self.file.flush().await.map_err(err)?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Flushes and syncs: the update step after this reads the file, possibly
    /// after a power cut.
    pub(super) async fn finish(mut self) -> Result<u64, DownloadError> {
        let err = |e| file_error(&self.path, e);
        self.file.flush().await.map_err(err)?;
        // A write of an earlier, dropped attempt may still have landed past the
        // end of this one.
        self.file.set_len(self.len).await.map_err(err)?;
        self.file.sync_all().await.map_err(err)?;
        Ok(self.len)
    }
}

/// A full disk is NoSpace (Update Result 2), whatever the check before said.
fn file_error(path: &Path, e: std::io::Error) -> DownloadError {
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => DownloadError::NoSpace {
            dir: path.parent().map(Path::to_owned).unwrap_or_default(),
            needed: 0,
            available: 0,
        },
        _ => DownloadError::File {
            path: path.to_owned(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_recorded_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fw.part");
        assert_eq!(existing_len(&p).await.unwrap(), 0);
        let mut f = PartialFile::open(&p, 0).await.unwrap();
        f.write(b"0123456789").await.unwrap();
        assert_eq!(f.finish().await.unwrap(), 10);
        assert_eq!(existing_len(&p).await.unwrap(), 10);

        let mut f = PartialFile::open(&p, 4).await.unwrap();
        assert_eq!(f.len(), 4);
        f.write(b"ab").await.unwrap();
        f.finish().await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"0123ab");

        assert!(matches!(
            PartialFile::open(&p, 7).await,
            Err(DownloadError::File { .. })
        ));
    }
}
