//! The client's durable state: applying `Persist` operations in one transaction
//! (a group commit per driver event) and loading them back at start.

use super::{Store, StoreError};
use crate::lwm2m::persist::{Persist, QueuedNote, Restored, StoredObservation, StoredRegistration};
use crate::lwm2m::Version;
use crate::model::Path;
use rusqlite::{params, OptionalExtension};

fn version_str(v: Version) -> &'static str {
    v.as_str()
}

fn parse_version(s: &str) -> Version {
    if s == "1.0" {
        Version::V1_0
    } else {
        Version::V1_1
    }
}

impl Store {
    /// Applies the operations in order, in one transaction: on return they are on disk.
    pub fn apply(&mut self, ops: &[Persist]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut enqueue = tx.prepare_cached(
                "INSERT OR REPLACE INTO queue (id, ssid, token, path, time, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut dequeue = tx.prepare_cached("DELETE FROM queue WHERE id = ?1")?;
            let mut observation = tx.prepare_cached(
                "INSERT OR REPLACE INTO observation (ssid, token, path, format, accept, seq, composite) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for op in ops {
                match op {
                    Persist::Enqueue(n) => {
                        enqueue.execute(params![
                            n.id as i64,
                            n.ssid,
                            n.token,
                            n.path.to_string(),
                            n.time,
                            n.values
                        ])?;
                    }
                    Persist::Dequeue { ids } => {
                        for id in ids {
                            dequeue.execute([*id as i64])?;
                        }
                    }
                    Persist::Observation(o) => {
                        let composite: Vec<String> =
                            o.composite.iter().map(Path::to_string).collect();
                        observation.execute(params![
                            o.ssid,
                            o.token,
                            o.path.to_string(),
                            o.format,
                            o.accept,
                            o.seq,
                            composite.join(" ")
                        ])?;
                    }
                    Persist::ForgetObservation { ssid, token } => {
                        tx.execute(
                            "DELETE FROM observation WHERE ssid = ?1 AND token = ?2",
                            params![ssid, token],
                        )?;
                    }
                    Persist::ForgetObservations { ssid } => {
                        tx.execute("DELETE FROM observation WHERE ssid = ?1", [ssid])?;
                    }
                    Persist::Registration(r) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO registration (ssid, location, version, lifetime, binding, objects, expires)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![r.ssid, r.location.join("/"), version_str(r.version), r.lifetime, r.binding, r.objects, r.expires],
                        )?;
                    }
                    Persist::ForgetRegistration { ssid } => {
                        tx.execute("DELETE FROM registration WHERE ssid = ?1", [ssid])?;
                    }
                    Persist::Attributes { ssid, path, attrs } => {
                        let v = serde_json::to_string(attrs)
                            .map_err(|e| StoreError::Encode(e.to_string()))?;
                        tx.execute(
                            "INSERT OR REPLACE INTO attribute (ssid, path, value) VALUES (?1, ?2, ?3)",
                            params![ssid, path.to_string(), v],
                        )?;
                    }
                    Persist::ForgetAttributes { ssid, path } => {
                        tx.execute(
                            "DELETE FROM attribute WHERE ssid = ?1 AND path = ?2",
                            params![ssid, path.to_string()],
                        )?;
                    }
                    Persist::Instance {
                        obj,
                        inst,
                        data,
                        factory,
                    } => {
                        if data.is_none() && factory.is_empty() {
                            tx.execute(
                                "DELETE FROM instance WHERE obj = ?1 AND inst = ?2",
                                params![obj, inst],
                            )?;
                        } else {
                            tx.execute(
                                "INSERT OR REPLACE INTO instance (obj, inst, value, factory) VALUES (?1, ?2, ?3, ?4)",
                                params![obj, inst, data, factory],
                            )?;
                        }
                    }
                    Persist::Firmware(json) => {
                        tx.execute(
                            "INSERT INTO meta(key, value) VALUES ('firmware', ?1)
                             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                            [json],
                        )?;
                    }
                    Persist::DeviceFirmware { prefix, json } => {
                        tx.execute(
                            "INSERT INTO meta(key, value) VALUES (?1, ?2)
                             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                            [
                                format!("{}{prefix}", crate::store::DEVICE_FIRMWARE_KEY),
                                json.clone(),
                            ],
                        )?;
                    }
                    Persist::Software(json) => {
                        tx.execute(
                            "INSERT INTO meta(key, value) VALUES ('software', ?1)
                             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                            [json],
                        )?;
                    }
                    Persist::Counters {
                        ssid,
                        dropped,
                        last_delivery,
                    } => {
                        tx.execute(
                            "INSERT OR REPLACE INTO counter (ssid, dropped, last_delivery) VALUES (?1, ?2, ?3)",
                            params![ssid, *dropped as i64, last_delivery],
                        )?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Everything a restarted client needs. Rows that no longer parse are skipped
    /// (and reported), never fatal.
    pub fn load(&self) -> Result<Restored, StoreError> {
        let mut r = Restored::default();
        let mut stmt = self.conn.prepare(
            "SELECT ssid, location, version, lifetime, binding, objects, expires FROM registration",
        )?;
        let rows = stmt.query_map([], |row| {
            let loc: String = row.get(1)?;
            let v: String = row.get(2)?;
            Ok(StoredRegistration {
                ssid: row.get(0)?,
                location: loc
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                version: parse_version(&v),
                lifetime: row.get(3)?,
                binding: row.get(4)?,
                objects: row.get(5)?,
                expires: row.get(6)?,
            })
        })?;
        for row in rows {
            r.registrations.push(row?);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT ssid, token, path, format, accept, seq, composite FROM observation")?;
        let rows = stmt.query_map([], |row| {
            let p: String = row.get(2)?;
            let c: String = row.get(6)?;
            Ok((
                p,
                row.get(0)?,
                row.get(1)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                c,
            ))
        })?;
        for row in rows {
            let (p, ssid, token, format, accept, seq, c) = row?;
            let composite: Result<Vec<Path>, _> = c.split_whitespace().map(Path::parse).collect();
            match (Path::parse(&p), composite) {
                (Ok(path), Ok(composite)) => r.observations.push(StoredObservation {
                    ssid,
                    token,
                    path,
                    composite,
                    format,
                    accept,
                    seq,
                }),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("stored observation of {p:?} skipped: {e}")
                }
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT ssid, path, value FROM attribute")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, u16>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (ssid, p, v) = row?;
            match (Path::parse(&p), serde_json::from_str(&v)) {
                (Ok(path), Ok(attrs)) => r.attributes.push((ssid, path, attrs)),
                _ => tracing::warn!("stored attributes of {p:?} skipped"),
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, ssid, token, path, time, value FROM queue ORDER BY id")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, u16>(1)?,
                row.get(2)?,
                row.get::<_, String>(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?;
        for row in rows {
            let (id, ssid, token, p, time, values) = row?;
            match Path::parse(&p) {
                Ok(path) => r.queue.push(QueuedNote {
                    id: id as u64,
                    ssid,
                    token,
                    path,
                    time,
                    values,
                }),
                Err(e) => tracing::warn!("stored notification for {p:?} skipped: {e}"),
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT obj, inst, value, factory FROM instance ORDER BY obj, inst")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
        for row in rows {
            r.instances.push(row?);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT ssid, dropped, last_delivery FROM counter")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, u16>(0)?,
                row.get::<_, i64>(1)? as u64,
                row.get(2)?,
            ))
        })?;
        for row in rows {
            r.counters.push(row?);
        }
        r.firmware = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'firmware'", [], |row| {
                row.get(0)
            })
            .optional()?;
        r.software = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'software'", [], |row| {
                row.get(0)
            })
            .optional()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lwm2m::attrs::Attributes;

    #[test]
    fn applied_state_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let note = |id| QueuedNote {
            id,
            ssid: 101,
            token: vec![1, 2],
            path: Path::new(&[3, 0, 13]),
            time: 1000.5 + id as f64,
            values: vec![0x80],
        };
        {
            let mut s = Store::open(&path).unwrap();
            s.apply(&[
                Persist::Registration(StoredRegistration {
                    ssid: 101,
                    location: vec!["rd".into(), "7".into()],
                    version: Version::V1_0,
                    lifetime: 300,
                    binding: "U".into(),
                    objects: "</3/0>".into(),
                    expires: 9999,
                }),
                Persist::Observation(StoredObservation {
                    ssid: 101,
                    token: vec![1, 2],
                    path: Path::new(&[3, 0, 13]),
                    composite: vec![Path::new(&[3, 0, 13]), Path::new(&[1, 0, 1])],
                    format: 110,
                    accept: Some(110),
                    seq: 41,
                }),
                Persist::Attributes {
                    ssid: 101,
                    path: Path::new(&[3, 0, 13]),
                    attrs: Attributes {
                        pmin: Some(1),
                        ..Default::default()
                    },
                },
                Persist::Enqueue(note(3)),
                Persist::Enqueue(note(1)),
                Persist::Enqueue(note(2)),
                Persist::Dequeue { ids: vec![2] },
                Persist::Counters {
                    ssid: 101,
                    dropped: 4,
                    last_delivery: Some(77),
                },
            ])
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let r = s.load().unwrap();
        assert_eq!(r.registrations[0].location, vec!["rd", "7"]);
        assert_eq!(r.registrations[0].version, Version::V1_0);
        assert_eq!(r.observations[0].seq, 41);
        assert_eq!(r.attributes[0].2.pmin, Some(1));
        assert_eq!(r.queue.iter().map(|n| n.id).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(r.queue[0], note(1));
        assert_eq!(r.counters, vec![(101, 4, Some(77))]);
    }
}
