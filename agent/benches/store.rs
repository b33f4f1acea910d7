//! Store-and-forward figures (run: scripts/bench/store):
//! 1. durable appends of stored notifications through lwgate's store, single and
//!    grouped, as a ratio to raw rusqlite doing the same inserts with the same
//!    settings (WAL, synchronous=FULL) in the same run;
//! 2. replay of 100,000 stored notifications to a server on loopback: the real
//!    client core and store, a minimal acknowledging server, records counted on
//!    the server side;
//! 3. live confirmable notifications, each written to the store before it is sent
//!    and deleted by its ACK, against the same without the write (storing off).

use lwgate::codec::{self, Format};
use lwgate::lwm2m::factory::{self, Account, DeviceInfo};
use lwgate::lwm2m::persist::{
    Persist, QueuedNote, Restored, StoredObservation, StoredRegistration,
};
use lwgate::lwm2m::{Client, ClientConfig, Version};
use lwgate::model::{Path, Registry, Value};
use lwgate::store::batch::Batcher;
use lwgate::store::Store;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn note(id: u64) -> QueuedNote {
    let recs = [(
        Path::new(&[3, 0, 13]),
        Value::Time(1_800_000_000 + id as i64),
    )];
    QueuedNote {
        id,
        ssid: 101,
        token: vec![0xAB; 8],
        path: Path::new(&[3, 0, 13]),
        time: 1_800_000_000.0 + id as f64,
        values: codec::encode_absolute(Format::SenmlCbor, &recs, None).unwrap_or_default(),
    }
}

fn raw_open(path: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("sync");
    c.execute_batch(
        "CREATE TABLE queue (id INTEGER PRIMARY KEY, ssid INTEGER NOT NULL, token BLOB NOT NULL,
         path TEXT NOT NULL, time REAL NOT NULL, value BLOB NOT NULL) STRICT;",
    )
    .expect("schema");
    c
}

fn raw_append(c: &mut rusqlite::Connection, notes: &[QueuedNote]) {
    let tx = c.transaction().expect("tx");
    {
        let mut st = tx
            .prepare_cached("INSERT OR REPLACE INTO queue (id, ssid, token, path, time, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .expect("prepare");
        for n in notes {
            st.execute(rusqlite::params![
                n.id as i64,
                n.ssid,
                n.token,
                n.path.to_string(),
                n.time,
                n.values
            ])
            .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

/// Appends `total` notes in transactions of `group`; returns appends per second.
fn lwgate_rate(dir: &std::path::Path, total: u64, group: u64) -> f64 {
    let mut s = Store::open(&dir.join(format!("lwgate-{group}.db"))).expect("store");
    let t = Instant::now();
    let mut id = 1;
    while id <= total {
        let ops: Vec<Persist> = (id..(id + group).min(total + 1))
            .map(|i| Persist::Enqueue(note(i)))
            .collect();
        s.apply(&ops).expect("apply");
        id += group;
    }
    total as f64 / t.elapsed().as_secs_f64()
}

fn raw_rate(dir: &std::path::Path, total: u64, group: u64) -> f64 {
    let mut c = raw_open(&dir.join(format!("raw-{group}.db")));
    let t = Instant::now();
    let mut id = 1;
    while id <= total {
        let notes: Vec<QueuedNote> = (id..(id + group).min(total + 1)).map(note).collect();
        raw_append(&mut c, &notes);
        id += group;
    }
    total as f64 / t.elapsed().as_secs_f64()
}

fn appends() {
    let dir = tempfile::tempdir().expect("tmp");
    for (label, total, group) in [
        ("single (1 per commit)", 1_000u64, 1u64),
        ("grouped (1000 per commit)", 100_000, 1000),
    ] {
        // Interleaved best-of-3 so disk noise hits both sides alike.
        let mut best = (0f64, 0f64);
        for round in 0..3 {
            let sub = dir.path().join(format!("{group}-{round}"));
            std::fs::create_dir_all(&sub).expect("dir");
            best.1 = best.1.max(raw_rate(&sub, total, group));
            best.0 = best.0.max(lwgate_rate(&sub, total, group));
        }
        println!(
            "durable appends, {label:<26} lwgate {:>9.0}/s   raw rusqlite {:>9.0}/s   ratio {:.2}",
            best.0,
            best.1,
            best.0 / best.1
        );
    }
}

/// A minimal server: acknowledges every confirmable message (2.04 to requests, empty
/// ACK to notifications) and counts the SenML records it receives.
fn server(sock: UdpSocket, expect: usize) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut records = 0usize;
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        while records < expect {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                break;
            };
            let m = &buf[..n];
            if n < 4 {
                continue;
            }
            let (ty, tkl, code, mid) = ((m[0] >> 4) & 3, (m[0] & 15) as usize, m[1], [m[2], m[3]]);
            if ty == 0 {
                let reply = if code >> 5 == 0 {
                    let mut r = vec![0x60 | tkl as u8, 0x44, mid[0], mid[1]];
                    r.extend_from_slice(&m[4..4 + tkl]);
                    r
                } else {
                    vec![0x60, 0x00, mid[0], mid[1]]
                };
                let _ = sock.send_to(&reply, peer);
            }
            if code == 0x45 {
                if let Some(body) = payload(m, tkl) {
                    if let Ok(ciborium::Value::Array(a)) =
                        ciborium::from_reader::<ciborium::Value, _>(body)
                    {
                        records += a.len();
                    }
                }
            }
        }
        records
    })
}

/// The payload after the options (RFC 7252 3.1), parsed here rather than by our codec.
fn payload(m: &[u8], tkl: usize) -> Option<&[u8]> {
    let mut i = 4 + tkl;
    while i < m.len() {
        if m[i] == 0xFF {
            return Some(&m[i + 1..]);
        }
        let (d, l) = (m[i] >> 4, m[i] & 15);
        i += 1;
        for nib in [d, l] {
            i += match nib {
                13 => 1,
                14 => 2,
                15 => return None,
                _ => 0,
            };
        }
        let len_at = i - match l {
            13 => 1,
            14 => 2,
            _ => 0,
        };
        let len = match l {
            13 => usize::from(m[len_at]) + 13,
            14 => usize::from(u16::from_be_bytes([m[len_at], m[len_at + 1]])) + 269,
            n => usize::from(n),
        };
        i += len;
    }
    None
}

/// A client resumed from `restored` with a registration at a server on `port` and
/// an observation of /3/0/13 in SenML CBOR; `storing` is /1/0/6.
fn resumed_client(port: u16, mut restored: Restored, storing: bool) -> Client {
    let acc = Account {
        uri: format!("coap://127.0.0.1:{port}"),
        ssid: 101,
        lifetime: 86_400,
        binding: "U".into(),
        notification_storing: storing,
        sms_number: None,
    };
    let trees = factory::trees(&[acc], &DeviceInfo::default());
    let cfg = ClientConfig {
        // CON either way, so the two live runs differ only in the write-ahead.
        confirmable_notifications: [(101, true)].into(),
        ..Default::default()
    };
    let mut c = Client::new(cfg, Registry::builtin(), trees, Instant::now(), 1);
    // No minimum period: every change is a notification.
    c.trees.gateway.set(1, 0, 2, Value::Integer(0));
    c.set_wall_clock(1_900_000_000.0);
    restored.registrations.push(StoredRegistration {
        ssid: 101,
        location: vec!["rd".into(), "1".into()],
        version: Version::V1_1,
        lifetime: 86_400,
        binding: "U".into(),
        objects: String::new(),
        expires: 2_000_000_000,
    });
    restored.observations.push(StoredObservation {
        ssid: 101,
        token: vec![0xAB; 8],
        path: Path::new(&[3, 0, 13]),
        composite: Vec::new(),
        format: 112,
        accept: Some(112),
        seq: 1,
    });
    c.restore(restored);
    c
}

/// Drives `c` as the daemon does (commit what must be durable, then transmit) until
/// `done` holds or 120 s pass; `tick` runs once per loop turn. Returns the seconds.
fn drive(
    c: &mut Client,
    store: &mut Store,
    port: u16,
    mut tick: impl FnMut(&mut Client) -> bool,
) -> f64 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut batch = Batcher::default();
    let mut buf = [0u8; 2048];
    let t = Instant::now();
    c.handle_timeout(Instant::now());
    while !tick(c) && t.elapsed() < Duration::from_secs(120) {
        let ops: Vec<Persist> = std::iter::from_fn(|| c.poll_persist()).collect();
        if let Some(ops) = batch.push(ops, Instant::now()) {
            store.apply(&ops).expect("apply");
        }
        while let Some((_, b)) = c.poll_transmit() {
            let _ = sock.send(&b);
        }
        match sock.recv(&mut buf) {
            Ok(n) => c.handle_datagram(Instant::now(), 101, &buf[..n]),
            Err(_) => c.handle_timeout(Instant::now()),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let rest: Vec<Persist> = std::iter::from_fn(|| c.poll_persist()).collect();
    batch.push(rest, Instant::now());
    if let Some(ops) = batch.take() {
        store.apply(&ops).expect("apply");
    }
    secs
}

fn replay() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(&dir.path().join("replay.db")).expect("store");
    let ops: Vec<Persist> = (1..=N).map(|i| Persist::Enqueue(note(i))).collect();
    store.apply(&ops).expect("fill");
    let srv = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = srv.local_addr().expect("addr").port();
    let counter = server(srv, N as usize);
    let restored = store.load().expect("load");
    let mut c = resumed_client(port, restored, true);
    let secs = drive(&mut c, &mut store, port, |c| c.queued() == 0);
    let received = counter.join().unwrap_or(0);
    let left = store.load().map(|r| r.queue.len()).unwrap_or(usize::MAX);
    println!(
        "replay of {N} stored notifications on loopback: {:.2} s, {:.0} notifications/s, server received {received}, left in store {left}",
        secs,
        N as f64 / secs
    );
}

/// Live confirmable notifications, one value change each, each acknowledged before
/// the next (NSTART=1): with storing on every one is committed before it is sent.
fn live_rate(storing: bool) -> (f64, usize, usize) {
    const N: i64 = 5_000;
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(&dir.path().join("live.db")).expect("store");
    let srv = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = srv.local_addr().expect("addr").port();
    let counter = server(srv, N as usize);
    let mut c = resumed_client(port, Restored::default(), storing);
    let mut v = 0i64;
    let secs = drive(&mut c, &mut store, port, |c| {
        // The next value once the previous notification was acknowledged.
        let st = &c.status(Instant::now())[0];
        if st.queued == 0 && st.registered {
            if v == N {
                return true;
            }
            v += 1;
            c.trees.gateway.set(3, 0, 13, Value::Time(v));
            c.values_changed(Instant::now());
        }
        false
    });
    let received = counter.join().unwrap_or(0);
    let left = store.load().map(|r| r.queue.len()).unwrap_or(usize::MAX);
    (N as f64 / secs, received, left)
}

fn live() {
    let (ahead, got_a, left_a) = live_rate(true);
    let (plain, got_p, _) = live_rate(false);
    println!(
        "live confirmable notifications on loopback, each acknowledged: written ahead {ahead:.0}/s (server received {got_a}, left in store {left_a}), not written {plain:.0}/s (received {got_p}) = {:.2}x",
        ahead / plain
    );
}

fn main() {
    appends();
    replay();
    live();
}
