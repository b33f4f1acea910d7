//! The SQLite state database.
//!
//! WAL with synchronous=FULL: a commit is on disk when it returns, which is what
//! "acknowledged" must mean for stored notifications. Schema changes are numbered
//! migrations tracked in `PRAGMA user_version`, applied in one transaction each.

pub mod batch;
mod migrations;
mod state;

/// Meta key of an end device's /prefix/5 snapshot, followed by its prefix.
pub const DEVICE_FIRMWARE_KEY: &str = "firmware:";

use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};

pub use migrations::SCHEMA_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `reason` says what is wrong in words an operator can act on (the SQLite
    /// error alone repeats itself and names no fix).
    #[error("{path}: cannot open the state database ([store] path): {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: schema version {found} is newer than this lwgate understands ({max}); was it downgraded?")]
    TooNew { path: PathBuf, found: i64, max: i64 },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database: cannot encode a record: {0}")]
    Encode(String),
}

/// One sentence for a failure to open, with what to do about it.
fn open_failure(path: &Path, e: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let code = e.sqlite_error_code();
    let reason = match code {
        Some(C::NotADatabase) => "the file is not an SQLite database (or it is damaged); \
             move it away and lwgate starts with an empty one, or correct [store] path"
            .to_string(),
        Some(C::DatabaseCorrupt) => "the database is damaged; move it away and lwgate \
             starts with an empty one (stored notifications and registrations are lost)"
            .to_string(),
        Some(C::ReadOnly) | Some(C::PermissionDenied) => {
            "permission denied: the user lwgate runs as must be able to write the file \
             and its directory"
                .to_string()
        }
        Some(C::CannotOpen) => "cannot open the file: check that its directory exists and \
             that the user lwgate runs as may write there"
            .to_string(),
        Some(C::DatabaseBusy) | Some(C::DatabaseLocked) => {
            "the database is locked by another process (is another lwgate running with \
             this [store] path?)"
                .to_string()
        }
        _ => match e {
            rusqlite::Error::SqliteFailure(f, Some(msg)) => format!("{msg} ({f})"),
            other => other.to_string(),
        },
    };
    StoreError::Open {
        path: path.to_path_buf(),
        reason,
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |e| open_failure(path, &e);
        if path.is_dir() {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                reason: "it is a directory; [store] path must name the database file itself \
                         (lwgate creates it)"
                    .into(),
            });
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(open_err)?;
        // lwgate is the database's only user: an exclusive lock keeps a second
        // daemon on the same file out (it fails at start, saying so), spares a lock
        // call per transaction, and keeps the WAL index in the heap (no -shm file).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // The state is small: 256 KiB of page cache instead of SQLite's 2 MiB.
        conn.pragma_update(None, "cache_size", -256)
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        migrations::apply(&mut conn, path)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// An end device's stored /prefix/5 snapshot.
    pub fn device_firmware(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        self.get_meta(&format!("{DEVICE_FIRMWARE_KEY}{prefix}"))
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Counts daemon starts; `lwgate status` shows it so crash loops are visible.
    pub fn record_start(&self) -> Result<u64, StoreError> {
        let n = self
            .get_meta("starts")?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        // Without fsyncs of its own (three, on the way to the first Register: the
        // new WAL's header, its directory entry, the commit): the count outlives a
        // crash of the daemon (it is in the WAL, in the kernel's cache), and the
        // next commit, FULL, makes it durable against a power cut too. A power cut
        // before that loses this count, nothing else (the WAL's checksums end the
        // log at the last whole commit). No checkpoint meanwhile: one would copy
        // these unsynced frames into the database file.
        let checkpoint: i64 = self
            .conn
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        self.conn.pragma_update(None, "synchronous", "OFF")?;
        let written = self.set_meta("starts", &n.to_string());
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.conn
            .pragma_update(None, "wal_autocheckpoint", checkpoint)?;
        written?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            assert_eq!(s.record_start().unwrap(), 1);
            let mode: String = s
                .conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = s
                .conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap();
            assert_eq!(sync, 2, "synchronous=FULL");
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.record_start().unwrap(), 2);
    }

    #[test]
    fn a_second_user_of_the_same_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let first = Store::open(&path).unwrap();
        first.set_meta("k", "v").unwrap();
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("another lwgate"), "{e}");
        drop(first);
        assert_eq!(
            Store::open(&path)
                .unwrap()
                .get_meta("k")
                .unwrap()
                .as_deref(),
            Some("v")
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer than this lwgate understands"), "{e}");
    }

    #[test]
    fn unopenable_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = Store::open(&file.join("state.db"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("file"), "{e}");
    }
}
