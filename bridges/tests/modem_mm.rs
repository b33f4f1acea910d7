//! The ModemManager backend against the real ModemManager (Debian 12's 1.20) in its
//! test mode on a private D-Bus session bus, driving tests/fixtures/modem/fake_modem.py
//! (listening on the Unix socket ModemManager's test profile names) with
//! the replies in tests/fixtures/modem/mm/canned.txt: a message stored before we
//! start, a new one (+CMTI), a concatenated one joined by ModemManager, a send,
//! the status (operator, signal, registration, cell), ModemManager killed and
//! started again, a disabled modem (ours to enable or not), a modem chosen by IMEI.
//!
//! Needs ModemManager and dbus-daemon (apt install modemmanager dbus-daemon) and a
//! Python 3 (LWGATE_PYTHON, else python3). Without them the test is skipped,
//! unless CI is set.
#![cfg(feature = "modemmanager")]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwgate_bridges::modem::pdu::{decode_deliver, decode_hex, Pdu};
use lwgate_bridges::modem::{
    Alphabet, Bus, Link, Modem, ModemConfig, ModemEvent, ModemSelector, ModemState, Registration,
    SendError, Sms,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

const SINGLE: &str =
    "0791447700090000040C914477000910320004523041010300000E44023A7FA1B2C3D4B13101300138";
const SINGLE_COAP: [u8; 14] = [
    0x44, 0x02, 0x3A, 0x7F, 0xA1, 0xB2, 0xC3, 0xD4, 0xB1, 0x31, 0x01, 0x30, 0x01, 0x38,
];
/// "hello" in the GSM 7-bit alphabet, from the same sender at the same time.
const TEXT: &str = "0791447700090000040C9144770009103200005230410103000005E8329BFD06";
/// Its service centre time stamp, 2025-03-14 10:30:00 +00.
const SINGLE_TIME: f64 = 1_741_948_200.0;
const SENDER: &str = "+447700900123";
const IMEI: &str = "490154203237518";
const MM: &str = "org.freedesktop.ModemManager1";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/modem")
        .join(name)
}

fn concat_parts() -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("vectors.json")).unwrap()).unwrap();
    v["concat_2part_put_5_0_1"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pdu"].as_str().unwrap().to_string())
        .collect()
}

fn python() -> PathBuf {
    std::env::var_os("LWGATE_PYTHON").map_or_else(|| "python3".into(), PathBuf::from)
}

fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The tools, or why the test cannot run (a failure under CI).
fn tools_found() -> bool {
    let missing: Vec<&str> = [
        ("ModemManager", "--version", "modemmanager"),
        ("dbus-daemon", "--version", "dbus-daemon"),
    ]
    .into_iter()
    .filter(|(p, a, _)| !runs(p, a))
    .map(|(_, _, package)| package)
    .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "the ModemManager test needs {} (apt install {})",
        missing.join(", "),
        missing.join(" ")
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("SKIPPED: {why}; CI would fail here");
    false
}

async fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + within;
    while !ok() {
        assert!(tokio::time::Instant::now() < until, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private bus, the fake modem on a Unix socket, ModemManager.
struct Rig {
    dir: PathBuf,
    fifo: PathBuf,
    children: Vec<Child>,
    mm: Option<Child>,
    mm_runs: usize,
    log: Arc<Mutex<Vec<String>>>,
    bus: zbus::Connection,
}

fn spawn(cmd: &mut Command, what: &str) -> Child {
    cmd.kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"))
}

impl Rig {
    async fn new() -> Option<Rig> {
        if !tools_found() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("lwgate-mm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut children = Vec::new();

        let mut dbus = spawn(
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--print-address=1"])
                .stdout(Stdio::piped()),
            "dbus-daemon",
        );
        let mut out = BufReader::new(dbus.stdout.take().unwrap()).lines();
        let address = tokio::time::timeout(Duration::from_secs(10), out.next_line())
            .await
            .expect("dbus-daemon said its address")
            .unwrap()
            .expect("dbus-daemon said its address");
        children.push(dbus);
        // The process's session bus: ModemManager's, the backend's (bus = "session")
        // and ours. One test in this file, so no other test sees it.
        std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);

        let fifo = dir.join("inject.fifo");
        let mut modem = spawn(
            Command::new(python())
                .arg(fixture("fake_modem.py"))
                .arg(format!("unix:{}", dir.join("mm.sock").display()))
                .arg(&fifo)
                .arg(fixture("mm/canned.txt"))
                .env("FAKE_MODEM_OPERATOR", "00101,Fake Telecom")
                .stderr(Stdio::piped()),
            "fake_modem.py",
        );
        let log = Arc::<Mutex<Vec<String>>>::default();
        let mut lines = BufReader::new(modem.stderr.take().unwrap()).lines();
        let l = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                l.lock().unwrap().push(line);
            }
        });
        children.push(modem);
        let sock = dir.join("mm.sock");
        wait_for("the Unix socket", Duration::from_secs(5), || sock.exists()).await;
        let bus = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .await
            .expect("connect to the private bus");
        let rig = Rig {
            dir,
            fifo,
            children,
            mm: None,
            mm_runs: 0,
            log,
            bus,
        };
        wait_for("the fake modem", Duration::from_secs(10), || {
            rig.count("MODEM ready") > 0
        })
        .await;
        Some(rig)
    }

    fn inject(&self, pdu: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .unwrap();
        writeln!(f, "{pdu}").unwrap();
    }

    fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    async fn call<B, R>(&self, path: &str, iface: &str, method: &str, body: &B) -> zbus::Result<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: serde::de::DeserializeOwned + zbus::zvariant::Type,
    {
        let m = self
            .bus
            .call_method(Some(MM), path, Some(iface), method, body)
            .await?;
        m.body().deserialize()
    }

    /// ModemManager started, given the fake modem, and the modem's path once it
    /// exports it.
    async fn start_mm(&mut self) -> String {
        self.mm_runs += 1;
        let log = std::fs::File::create(self.dir.join(format!("mm{}.log", self.mm_runs))).unwrap();
        self.mm = Some(spawn(
            Command::new("ModemManager")
                .args([
                    "--test-session",
                    "--test-enable",
                    "--test-no-udev",
                    "--log-level=DEBUG",
                ])
                .stdout(log.try_clone().unwrap())
                .stderr(log),
            "ModemManager",
        ));
        let sock = self.dir.join("mm.sock");
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r: zbus::Result<()> = self
                .call(
                    "/org/freedesktop/ModemManager1",
                    "org.freedesktop.ModemManager1.Test",
                    "SetProfile",
                    &("fake0", "generic", vec![sock.to_str().unwrap()]),
                )
                .await;
            match r {
                Ok(()) => break,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < until, "SetProfile: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(p) = self.modem_path().await {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "ModemManager exported no modem (see {})",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn modem_path(&self) -> Option<String> {
        type Managed = std::collections::HashMap<
            OwnedObjectPath,
            std::collections::HashMap<String, std::collections::HashMap<String, OwnedValue>>,
        >;
        let m: Managed = self
            .call(
                "/org/freedesktop/ModemManager1",
                "org.freedesktop.DBus.ObjectManager",
                "GetManagedObjects",
                &(),
            )
            .await
            .ok()?;
        m.into_iter()
            .find(|(_, i)| i.contains_key("org.freedesktop.ModemManager1.Modem"))
            .map(|(p, _)| p.as_str().to_string())
    }

    async fn kill_mm(&mut self) {
        let mut mm = self.mm.take().expect("ModemManager runs");
        mm.kill().await.unwrap();
        let _ = mm.wait().await;
    }

    /// What NetworkManager would do (again while ModemManager is still busy with
    /// the modem: it cancels an Enable then).
    async fn enable(&self, modem: &str) {
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r: zbus::Result<()> = self
                .call(
                    modem,
                    "org.freedesktop.ModemManager1.Modem",
                    "Enable",
                    &(true,),
                )
                .await;
            match r {
                Ok(()) => return,
                Err(e) => {
                    eprintln!("Enable: {e}");
                    assert!(tokio::time::Instant::now() < until, "Enable: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn listed(&self, modem: &str) -> usize {
        let r: zbus::Result<Vec<OwnedObjectPath>> = self
            .call(
                modem,
                "org.freedesktop.ModemManager1.Modem.Messaging",
                "List",
                &(),
            )
            .await;
        r.map_or(usize::MAX, |l| l.len())
    }

    async fn wait_listed(&self, modem: &str, n: usize) {
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.listed(modem).await != n {
            assert!(
                tokio::time::Instant::now() < until,
                "ModemManager never held {n} messages"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The PDUs the fake modem took after `> `, decoded.
    fn submitted(&self) -> Vec<lwgate_bridges::modem::pdu::Submit> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("<Ctrl-Z>"))
            .map(|l| {
                let hex = l
                    .split("<< '")
                    .nth(1)
                    .unwrap()
                    .split("<Ctrl-Z>")
                    .next()
                    .unwrap();
                match decode_hex(hex).unwrap() {
                    Pdu::Submit(s) => s,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    fn config(&self) -> ModemConfig {
        let mut c = ModemConfig::modemmanager();
        c.bus = Bus::Session;
        c.reconnect_max = 1;
        c.status_interval = 5;
        c
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- fake modem ---");
            for l in self.log.lock().unwrap().iter().rev().take(150).rev() {
                eprintln!("{l}");
            }
            for i in 1..=self.mm_runs {
                let text = std::fs::read_to_string(self.dir.join(format!("mm{i}.log")))
                    .unwrap_or_default();
                eprintln!("--- ModemManager run {i} (last lines) ---");
                let lines: Vec<&str> = text.lines().collect();
                for l in &lines[lines.len().saturating_sub(150)..] {
                    eprintln!("{l}");
                }
            }
        }
        for c in &mut self.children {
            let _ = c.start_kill();
        }
        if let Some(mm) = &mut self.mm {
            let _ = mm.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The events, with messages that came while a test waited for something else
/// kept for it (states are only ever looked for as they come).
struct Events {
    rx: mpsc::Receiver<ModemEvent>,
    kept: VecDeque<ModemEvent>,
}

impl Events {
    fn new(rx: mpsc::Receiver<ModemEvent>) -> Events {
        Events {
            rx,
            kept: VecDeque::new(),
        }
    }
}

async fn next<T>(
    ev: &mut Events,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(&ModemEvent) -> Option<T>,
) -> T {
    if let Some(i) = ev.kept.iter().position(|e| pick(e).is_some()) {
        let e = ev.kept.remove(i).unwrap();
        return pick(&e).unwrap();
    }
    let until = tokio::time::Instant::now() + within;
    loop {
        let e = tokio::time::timeout_at(until, ev.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
            .expect("the modem task ended");
        eprintln!("event: {e:?}");
        if let Some(t) = pick(&e) {
            return t;
        }
        if !matches!(e, ModemEvent::State(_)) {
            ev.kept.push_back(e);
        }
    }
}

async fn state_where(
    rx: &mut Events,
    within: Duration,
    what: &str,
    ok: impl Fn(&ModemState) -> bool,
) -> ModemState {
    next(rx, within, what, |e| match e {
        ModemEvent::State(s) if ok(s) => Some(s.clone()),
        _ => None,
    })
    .await
}

async fn ready(rx: &mut Events) -> ModemState {
    state_where(rx, Duration::from_secs(60), "Ready state", |s| {
        s.link == Link::Ready
    })
    .await
}

async fn down(rx: &mut Events, what: &str) -> String {
    let s = state_where(
        rx,
        Duration::from_secs(60),
        what,
        |s| matches!(&s.link, Link::Down { reason } if reason.contains(what)),
    )
    .await;
    match s.link {
        Link::Down { reason } => reason,
        _ => unreachable!(),
    }
}

async fn sms(rx: &mut Events) -> Sms {
    next(rx, Duration::from_secs(20), "SMS", |e| match e {
        ModemEvent::Sms(s) => Some(s.clone()),
        ModemEvent::Discarded { reason, .. } => panic!("discarded: {reason}"),
        _ => None,
    })
    .await
}

fn the_single(s: &Sms) {
    assert_eq!(s.data, SINGLE_COAP);
    assert_eq!(s.sender, SENDER);
    assert_eq!(s.time, SINGLE_TIME);
    assert_eq!(
        (s.alphabet, s.parts, s.text.as_deref()),
        (Alphabet::Eight, 1, None)
    );
}

#[tokio::test]
async fn modemmanager_backend() {
    let Some(mut rig) = Rig::new().await else {
        return;
    };
    // Stored on the modem before ModemManager or we look.
    rig.inject(SINGLE);
    let modem_path = rig.start_mm().await;
    // Its owner enables it, and ModemManager reads the storage.
    rig.enable(&modem_path).await;
    rig.wait_listed(&modem_path, 1).await;

    let (modem, rx) = Modem::spawn(rig.config());
    let mut rx = Events::new(rx);
    // Ready, and registered a moment after it was enabled: said as it changes.
    let s = state_where(&mut rx, Duration::from_secs(30), "registered", |s| {
        s.link == Link::Ready
            && s.operator.is_some()
            && s.cell_id.is_some()
            && s.signal_percent.is_some_and(|p| p > 0)
    })
    .await;
    assert_eq!(s.port, modem_path);
    assert_eq!(s.operator.as_deref(), Some("Fake Telecom"));
    assert_eq!(s.registration, Some(Registration::Home));
    assert_eq!(s.own_number.as_deref(), Some(SENDER));
    // +CIND's "signal" indicator: 4 of 0–5.
    assert_eq!(s.signal_percent, Some(80));
    // The serving cell (+CREG: 2,1,"1A2B","00C0FFEE" in network 00101).
    assert_eq!((s.cell_id, s.lac), (Some(0x00C0_FFEE), Some(0x1A2B)));
    assert_eq!((s.mcc, s.mnc), (Some(1), Some(1)));

    // The stored one: handed over, then deleted from ModemManager and the modem.
    the_single(&sms(&mut rx).await);
    rig.wait_listed(&modem_path, 0).await;
    wait_for("AT+CMGD=0", Duration::from_secs(10), || {
        rig.count("<< 'AT+CMGD=0'") > 0
    })
    .await;

    // A new one, announced with +CMTI.
    rig.inject(SINGLE);
    the_single(&sms(&mut rx).await);
    rig.wait_listed(&modem_path, 0).await;

    // Two parts, joined by ModemManager.
    let parts = concat_parts();
    let whole: Vec<u8> = parts
        .iter()
        .flat_map(|p| decode_deliver(p).unwrap().user_data.body)
        .collect();
    for p in &parts {
        rig.inject(p);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let s = sms(&mut rx).await;
    assert_eq!(s.data, whole);
    assert_eq!((s.parts, s.sender.as_str()), (2, SENDER));
    rig.wait_listed(&modem_path, 0).await;

    // Text: ModemManager gives it as UTF-8, we give septets (as the AT backend).
    rig.inject(TEXT);
    let s = sms(&mut rx).await;
    assert_eq!(
        (s.alphabet, s.text.as_deref()),
        (Alphabet::Gsm7, Some("hello"))
    );
    assert_eq!((s.data.as_slice(), s.time), (&b"hello"[..], SINGLE_TIME));
    rig.wait_listed(&modem_path, 0).await;

    // A send: the PDU the modem got after AT+CMGS.
    let sent = tokio::time::timeout(
        Duration::from_secs(30),
        modem.send("+447700900999", &SINGLE_COAP),
    )
    .await
    .expect("send answered")
    .expect("sent");
    assert_eq!(sent.references.len(), 1);
    let submitted = rig.submitted();
    let last = submitted.last().expect("a PDU after AT+CMGS");
    assert_eq!(last.destination.to_string(), "+447700900999");
    assert_eq!(last.user_data.body, SINGLE_COAP);
    // The sent message does not stay in ModemManager's list.
    rig.wait_listed(&modem_path, 0).await;
    // Longer than one SMS: ModemManager splits it (concatenation headers).
    let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let before = rig.submitted().len();
    tokio::time::timeout(Duration::from_secs(30), modem.send("+447700900999", &big))
        .await
        .expect("send answered")
        .expect("sent");
    let out: Vec<_> = rig.submitted().into_iter().skip(before).collect();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|p| p.concat().is_some_and(|c| c.total == 3)));
    let joined: Vec<u8> = out.iter().flat_map(|p| p.user_data.body.clone()).collect();
    assert_eq!(joined, big);
    rig.wait_listed(&modem_path, 0).await;

    // Refused by the network: the error, and nothing left behind.
    rig.inject("CMGS_ERROR:500");
    wait_for("CMGS_ERROR", Duration::from_secs(5), || {
        rig.count("<-network 'CMGS_ERROR:500") > 0
    })
    .await;
    let r = modem.send("+447700900999", &SINGLE_COAP).await;
    let Err(SendError::Failed(why)) = r else {
        panic!("{r:?}")
    };
    assert!(why.contains("ModemManager did not send the SMS"), "{why}");
    rig.inject("CMGS_ERROR:");
    rig.wait_listed(&modem_path, 0).await;

    // ModemManager goes away.
    rig.kill_mm().await;
    down(&mut rx, "ModemManager is not running").await;
    let r = modem.send("+447700900999", &SINGLE_COAP).await;
    assert!(matches!(r, Err(SendError::Unavailable(_))), "{r:?}");

    // Back: the modem is disabled, and not ours to enable.
    let modem_path = rig.start_mm().await;
    let why = down(&mut rx, "modem disabled").await;
    assert!(why.contains("modem.enable"), "{why}");
    rig.enable(&modem_path).await;
    let s = ready(&mut rx).await;
    assert_eq!(s.port, modem_path);
    rig.inject(SINGLE);
    the_single(&sms(&mut rx).await);
    // Deleted before ModemManager goes again (else it is delivered again: at least
    // once, never lost).
    rig.wait_listed(&modem_path, 0).await;
    drop((modem, rx));

    // Chosen by IMEI and enabled by us, after another restart.
    rig.kill_mm().await;
    let modem_path = rig.start_mm().await;
    let mut config = rig.config();
    config.enable = true;
    config.concat_timeout = 10;
    config.modem = ModemSelector::Equipment(IMEI.into());
    let (_modem, rx) = Modem::spawn(config.clone());
    let mut rx = Events::new(rx);
    assert_eq!(ready(&mut rx).await.port, modem_path);
    rig.inject(SINGLE);
    the_single(&sms(&mut rx).await);
    // ModemManager 1.20 can lose a +CMTI that comes while it deletes another
    // message (it locks the storage, sends AT+CPMS, and never reads the new one).
    rig.wait_listed(&modem_path, 0).await;

    // The first part of two, and never the second: ModemManager would keep it.
    rig.inject(&parts[0]);
    let (sender, why) = next(&mut rx, Duration::from_secs(40), "Discarded", |e| match e {
        ModemEvent::Discarded { sender, reason } => Some((sender.clone(), reason.clone())),
        ModemEvent::Sms(s) => panic!("delivered {s:?}"),
        _ => None,
    })
    .await;
    assert_eq!(sender.as_deref(), Some(SENDER));
    assert!(why.contains("incomplete after 10 s"), "{why}");
    rig.wait_listed(&modem_path, 0).await;

    // A modem that is not there is named in the reason.
    config.modem = ModemSelector::Equipment("356938035643809".into());
    let (_other, rx) = Modem::spawn(config);
    let mut rx = Events::new(rx);
    let why = down(&mut rx, "no modem is 356938035643809").await;
    assert!(why.contains(IMEI), "{why}");
}
