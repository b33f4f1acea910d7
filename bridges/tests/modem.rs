//! The AT-port modem bridge against tests/fixtures/modem/fake_modem.py on a socat
//! pty pair: stored (+CMTI) and direct (+CMT + AT+CNMA) delivery, +CMTI in the middle
//! of a listing, messages stored while the bridge was away, the concatenated
//! vector, sending, the SIM PIN, and the port going away and coming back.
//!
//! Needs socat and a Python 3 (LWGATE_PYTHON, else python3; only the standard
//! library). Without socat the tests are skipped, unless CI is set.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwgate_bridges::modem::concat::{Key, Limits, Outcome, Reassembler};
use lwgate_bridges::modem::pdu::{decode_hex, Pdu};
use lwgate_bridges::modem::{
    Delivery, Link, Modem, ModemConfig, ModemEvent, ModemHandle, ModemState, PinSource,
    Registration, SendError, Sms,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

const SINGLE: &str =
    "0791447700090000040C914477000910320004523041010300000E44023A7FA1B2C3D4B13101300138";
const SINGLE_COAP: [u8; 14] = [
    0x44, 0x02, 0x3A, 0x7F, 0xA1, 0xB2, 0xC3, 0xD4, 0xB1, 0x31, 0x01, 0x30, 0x01, 0x38,
];

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

fn socat_found() -> bool {
    let found = std::process::Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "the modem tests need socat (apt install socat)"
        );
        eprintln!("SKIPPED: socat is not installed (apt install socat); CI would fail here");
    }
    found
}

/// socat's pty pair and the fake modem on one end of it; the bridge opens `tty`.
struct Rig {
    dir: PathBuf,
    tty: PathBuf,
    fifo: PathBuf,
    env: Vec<(String, String)>,
    socat: Option<Child>,
    modem: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Rig {
    async fn new(name: &str, env: &[(&str, &str)]) -> Option<Rig> {
        if !socat_found() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("lwgate-modem-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut rig = Rig {
            tty: dir.join("ttyAGENT"),
            fifo: dir.join("inject.fifo"),
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            socat: None,
            modem: None,
            log: Arc::default(),
        };
        rig.up().await;
        Some(rig)
    }

    async fn up(&mut self) {
        let modem_tty = self.dir.join("ttyMODEM");
        let socat = tokio::process::Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", modem_tty.display()))
            .arg(format!("pty,raw,echo=0,link={}", self.tty.display()))
            .kill_on_drop(true)
            .spawn()
            .expect("start socat");
        for _ in 0..100 {
            if modem_tty.exists() && self.tty.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(self.tty.exists(), "socat made no ptys");
        let mut modem = tokio::process::Command::new(python())
            .arg(fixture("fake_modem.py"))
            .arg(&modem_tty)
            .arg(&self.fifo)
            .arg(fixture("canned.txt"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start fake_modem.py");
        let mut lines = BufReader::new(modem.stderr.take().unwrap()).lines();
        let log = Arc::clone(&self.log);
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("{l}");
                log.lock().unwrap().push(l);
            }
        });
        self.socat = Some(socat);
        self.modem = Some(modem);
        self.wait_log("MODEM ready", Duration::from_secs(10)).await;
    }

    /// Both processes gone and the ptys with them.
    async fn down(&mut self) {
        for child in [self.modem.take(), self.socat.take()].into_iter().flatten() {
            let mut child = child;
            if let Some(pid) = child.id() {
                // TERM, so that socat removes its links.
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        let _ = std::fs::remove_file(&self.tty);
        let _ = std::fs::remove_file(self.dir.join("ttyMODEM"));
    }

    fn inject(&self, line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }

    fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    async fn wait_log(&self, needle: &str, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        while self.count(needle) == 0 {
            assert!(
                tokio::time::Instant::now() < until,
                "the fake modem never logged {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn config(&self) -> ModemConfig {
        let mut c = ModemConfig::at(self.tty.to_str().unwrap());
        c.reconnect_max = 1;
        c
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Events = mpsc::Receiver<ModemEvent>;

async fn next<T>(
    rx: &mut Events,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(ModemEvent) -> Option<T>,
) -> T {
    let until = tokio::time::Instant::now() + within;
    loop {
        let e = tokio::time::timeout_at(until, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
            .expect("the modem task ended");
        eprintln!("event: {e:?}");
        if let Some(t) = pick(e) {
            return t;
        }
    }
}

async fn ready(rx: &mut Events) -> ModemState {
    next(rx, Duration::from_secs(20), "Ready state", |e| match e {
        ModemEvent::State(s) if s.link == Link::Ready => Some(s),
        _ => None,
    })
    .await
}

async fn down(rx: &mut Events, within: Duration) -> String {
    next(rx, within, "Down state", |e| match e {
        ModemEvent::State(ModemState {
            link: Link::Down { reason },
            ..
        }) => Some(reason),
        _ => None,
    })
    .await
}

async fn sms(rx: &mut Events) -> Sms {
    next(rx, Duration::from_secs(10), "SMS", |e| match e {
        ModemEvent::Sms(s) => Some(s),
        ModemEvent::Discarded { reason, .. } => panic!("discarded: {reason}"),
        _ => None,
    })
    .await
}

/// No SMS for `d`.
async fn quiet(rx: &mut Events, d: Duration) {
    let until = tokio::time::Instant::now() + d;
    while let Ok(Some(e)) = tokio::time::timeout_at(until, rx.recv()).await {
        assert!(!matches!(e, ModemEvent::Sms(_)), "unexpected {e:?}");
    }
}

#[tokio::test]
async fn stored_delivery_reads_then_deletes() {
    let Some(rig) = Rig::new("stored", &[]).await else {
        return;
    };
    let (_modem, mut rx) = Modem::spawn(rig.config());
    let s = ready(&mut rx).await;
    assert_eq!(s.own_number.as_deref(), Some("+447700900999"));
    assert_eq!(s.operator.as_deref(), Some("Fake Net"));
    assert_eq!(s.signal_dbm, Some(-73));
    assert_eq!(s.registration, Some(Registration::Home));
    assert_eq!(rig.count("AT+CNMI=2,1,0,0,0"), 1);
    assert_eq!(rig.count("AT+CPMS=\"SM\",\"SM\",\"SM\""), 1);

    rig.inject(SINGLE);
    let m = sms(&mut rx).await;
    assert_eq!(m.sender, "+447700900123");
    assert_eq!(m.data, SINGLE_COAP);
    assert_eq!((m.time, m.parts, m.text), (1_741_948_200.0, 1, None));
    rig.wait_log("<< 'AT+CMGR=0'", Duration::from_secs(5)).await;
    rig.wait_log("<< 'AT+CMGD=0'", Duration::from_secs(5)).await;
    // Read before deleted.
    let log = rig.log.lock().unwrap().clone();
    let read = log.iter().position(|l| l.contains("AT+CMGR=0")).unwrap();
    let deleted = log.iter().position(|l| l.contains("AT+CMGD=0")).unwrap();
    assert!(read < deleted);
}

#[tokio::test]
async fn direct_delivery_is_acknowledged_in_time() {
    let Some(rig) = Rig::new("direct", &[]).await else {
        return;
    };
    let mut config = rig.config();
    config.delivery = Delivery::Direct;
    let (_modem, mut rx) = Modem::spawn(config);
    ready(&mut rx).await;
    assert_eq!(rig.count("AT+CNMI=2,2,0,0,0"), 1);
    rig.inject(SINGLE);
    let m = sms(&mut rx).await;
    assert_eq!(m.data, SINGLE_COAP);
    rig.wait_log("<< 'AT+CNMA'", Duration::from_secs(2)).await;
    // Past the fake modem's 5 s: had the acknowledgement not counted, routing
    // would now be off and the next message stored silently.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(rig.count("no +CNMA in time"), 0);
    assert_eq!(rig.count("+CMS ERROR: 340"), 0);
    rig.inject(SINGLE);
    assert_eq!(sms(&mut rx).await.data, SINGLE_COAP);
    assert_eq!(rig.count("AT+CMGD"), 0, "nothing stored, nothing deleted");
}

#[tokio::test]
async fn messages_stored_while_away_are_drained_and_deleted() {
    let Some(rig) = Rig::new("drain", &[]).await else {
        return;
    };
    // Before the bridge runs: stored without announcement.
    let parts = concat_parts();
    rig.inject(&parts[1]);
    rig.inject(SINGLE);
    rig.inject(&parts[0]);
    rig.wait_log("<-network", Duration::from_secs(2)).await;
    while rig.count("<-network") < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (modem, mut rx) = Modem::spawn(rig.config());
    ready(&mut rx).await;
    let mut got = [sms(&mut rx).await, sms(&mut rx).await];
    got.sort_by_key(|s| s.parts);
    assert_eq!(got[0].data, SINGLE_COAP);
    assert_eq!((got[1].parts, got[1].data.len()), (2, 184));
    assert_eq!(&got[1].data[..2], &[0x44, 0x03]);
    for i in 0..3 {
        rig.wait_log(&format!("<< 'AT+CMGD={i}'"), Duration::from_secs(5))
            .await;
    }
    assert_eq!(rig.count("AT+CMGL=4"), 1);

    // A restart finds nothing left to deliver.
    drop(modem);
    drop(rx);
    let (_modem, mut rx) = Modem::spawn(rig.config());
    ready(&mut rx).await;
    while rig.count("AT+CMGL=4") < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    quiet(&mut rx, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_cmti_inside_the_listing_is_read_too() {
    let Some(rig) = Rig::new("interleave", &[]).await else {
        return;
    };
    let parts = concat_parts();
    rig.inject(&parts[0]);
    rig.inject(&parts[1]);
    // Arrives (+CMTI) between the two entries of the start-up listing.
    rig.inject(&format!("LATE:{SINGLE}"));
    while rig.count("<-network") < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_modem, mut rx) = Modem::spawn(rig.config());
    ready(&mut rx).await;
    let mut got = [sms(&mut rx).await, sms(&mut rx).await];
    got.sort_by_key(|s| s.parts);
    assert_eq!(got[0].data, SINGLE_COAP);
    assert_eq!(got[1].data.len(), 184);
    let listing = rig.lines("MODEM >> '\\r\\n+CMGL: 0");
    assert!(listing[0].contains("+CMTI: \"SM\",2"), "{listing:?}");
    rig.wait_log("<< 'AT+CMGR=2'", Duration::from_secs(5)).await;
    for i in 0..3 {
        rig.wait_log(&format!("<< 'AT+CMGD={i}'"), Duration::from_secs(5))
            .await;
    }
    quiet(&mut rx, Duration::from_millis(500)).await;
}

/// The PDUs the fake modem took after `> `, decoded.
fn submitted(rig: &Rig) -> Vec<lwgate_bridges::modem::pdu::Submit> {
    rig.lines("<Ctrl-Z>")
        .iter()
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

async fn sent_ok(modem: &ModemHandle, number: &str, data: &[u8]) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(20), modem.send(number, data))
        .await
        .expect("send answered")
        .expect("sent")
        .references
}

#[tokio::test]
async fn sending_single_and_concatenated() {
    let Some(rig) = Rig::new("send", &[]).await else {
        return;
    };
    let (modem, mut rx) = Modem::spawn(rig.config());
    ready(&mut rx).await;
    assert_eq!(sent_ok(&modem, "+447700900123", &SINGLE_COAP).await, [1]);
    let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(sent_ok(&modem, "07700900123", &big).await, [2, 3, 4]);

    let subs = submitted(&rig);
    assert_eq!(subs.len(), 4);
    assert_eq!(subs[0].destination.to_string(), "+447700900123");
    assert_eq!(subs[0].user_data.body, SINGLE_COAP);
    assert_eq!(subs[0].dcs.raw, 0x04);
    let mut r = Reassembler::new(Limits::default());
    let mut whole = None;
    for s in &subs[1..] {
        assert_eq!(s.destination.to_string(), "07700900123");
        let c = s.concat().unwrap();
        let key = Key {
            sender: s.destination.to_string(),
            reference: c.reference,
            total: c.total,
        };
        if let Outcome::Complete(w) = r.push(0.0, key, c.seq, 0.0, s.user_data.body.clone(), ()) {
            whole = Some(w.data);
        }
    }
    assert_eq!(whole.unwrap(), big);

    assert!(matches!(
        modem.send("not a number", b"x").await,
        Err(SendError::Invalid(_))
    ));
}

#[tokio::test]
async fn the_pin_is_entered_once() {
    let Some(rig) = Rig::new("pin", &[("FAKE_MODEM_PIN", "2468")]).await else {
        return;
    };
    let mut config = rig.config();
    config.pin = Some(PinSource::Value(
        lwgate_bridges::modem::Pin::parse("2468").unwrap(),
    ));
    let (modem, mut rx) = Modem::spawn(config);
    ready(&mut rx).await;
    assert_eq!(rig.count("AT+CPIN=\"2468\""), 1);
    rig.inject(SINGLE);
    assert_eq!(sms(&mut rx).await.data, SINGLE_COAP);
    drop(modem);
}

#[tokio::test]
async fn a_wrong_pin_is_never_retried() {
    let Some(rig) = Rig::new("badpin", &[("FAKE_MODEM_PIN", "2468")]).await else {
        return;
    };
    let mut config = rig.config();
    config.pin = Some(PinSource::Value(
        lwgate_bridges::modem::Pin::parse("1111").unwrap(),
    ));
    let (modem, mut rx) = Modem::spawn(config);
    let reason = down(&mut rx, Duration::from_secs(20)).await;
    assert!(reason.contains("refused the configured PIN"), "{reason}");
    assert!(!reason.contains("1111"), "{reason}");
    assert!(reason.contains("not tried again"), "{reason}");
    // Reopened (each second) and the SIM asked again: still one try, and the
    // same reason is not said again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.count("AT+CPIN=\""), 1);
    assert!(rig.count("AT+CPIN?") >= 3);
    while let Ok(e) = rx.try_recv() {
        assert!(!matches!(e, ModemEvent::State(_)), "{e:?}");
    }
    // Sending meanwhile says why not.
    let e = modem.send("+1555", b"x").await.unwrap_err();
    assert!(
        matches!(&e, SendError::Unavailable(r) if r.contains("PIN")),
        "{e}"
    );
}

#[tokio::test]
async fn the_port_goes_away_and_comes_back() {
    let Some(mut rig) = Rig::new("vanish", &[]).await else {
        return;
    };
    let (modem, mut rx) = Modem::spawn(rig.config());
    ready(&mut rx).await;
    rig.down().await;
    let reason = down(&mut rx, Duration::from_secs(10)).await;
    assert!(reason.contains(rig.tty.to_str().unwrap()), "{reason}");
    let e = modem.send("+1555", b"x").await.unwrap_err();
    assert!(matches!(e, SendError::Unavailable(_)), "{e}");
    // Still gone at the next try: said once more only if the reason changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.up().await;
    ready(&mut rx).await;
    rig.inject(SINGLE);
    assert_eq!(sms(&mut rx).await.data, SINGLE_COAP);
}
