//! Numbered schema migrations. Append only: never edit a migration that has shipped.

use super::StoreError;
use rusqlite::Connection;
use std::path::Path;

const MIGRATIONS: &[&str] = &[
    // 1: key/value facts about this installation (start counter, …).
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;",
    // 2: what survives kill -9: registrations, observations, attributes, the
    // per-server notification queues and their counters.
    "CREATE TABLE registration (
        ssid INTEGER PRIMARY KEY, location TEXT NOT NULL, version TEXT NOT NULL,
        lifetime INTEGER NOT NULL, binding TEXT NOT NULL, objects TEXT NOT NULL,
        expires INTEGER NOT NULL) STRICT;
     CREATE TABLE observation (
        ssid INTEGER NOT NULL, token BLOB NOT NULL, path TEXT NOT NULL,
        format INTEGER NOT NULL, accept INTEGER, seq INTEGER NOT NULL,
        composite TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (ssid, token)) STRICT;
     CREATE TABLE attribute (
        ssid INTEGER NOT NULL, path TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (ssid, path)) STRICT;
     CREATE TABLE queue (
        id INTEGER PRIMARY KEY, ssid INTEGER NOT NULL, token BLOB NOT NULL,
        path TEXT NOT NULL, time REAL NOT NULL, value BLOB NOT NULL) STRICT;
     CREATE TABLE counter (
        ssid INTEGER PRIMARY KEY, dropped INTEGER NOT NULL, last_delivery INTEGER) STRICT;
     CREATE TABLE instance (
        obj INTEGER NOT NULL, inst INTEGER NOT NULL, value BLOB, factory BLOB NOT NULL,
        PRIMARY KEY (obj, inst)) STRICT;",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn apply(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: current,
            max: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
