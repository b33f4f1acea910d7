//! What the DTLS integration tests share: real peers started as child processes
//! (libcoap's servers on OpenSSL and GnuTLS, `openssl s_server`, `gnutls-serv`), a
//! test PKI made with the `openssl` CLI, and a small driver that runs a
//! `DtlsSession` over a real UDP socket. A missing tool fails the test loudly.
#![allow(dead_code)]

use lwgate::dtls::{DtlsSession, DtlsState};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MTU: usize = lwgate::dtls::DEFAULT_MTU as usize;

/// Fails loudly, naming the Debian package, when a peer program is missing.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} (apt-get install -y {package})"
    );
}

/// A UDP port pair (p, p+1) free on loopback (libcoap listens for DTLS on p+1).
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65_000 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free UDP port pair on loopback");
}

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether some socket is bound to UDP `port` (IPv4 or IPv6), from /proc.
fn udp_bound(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .map(|s| {
                s.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| format!("{a} ").contains(&needle))
                })
            })
            .unwrap_or(false)
    })
}

/// A peer process, killed (by its own pid) when dropped; its output goes to a
/// log file shown when a test wants it.
pub struct Peer {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub name: String,
}

impl Peer {
    pub fn spawn(name: &str, cmd: &mut Command, port: u16, dir: &Path) -> Peer {
        let log = dir.join(format!("{name}-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let p = Peer {
            child,
            port,
            log,
            name: name.into(),
        };
        let t0 = Instant::now();
        while !udp_bound(port) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{name} did not bind UDP port {port}: {}",
                p.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// libcoap's server (`coap-server-openssl` or `coap-server-gnutls`) with PSK.
pub fn coap_server_psk(bin: &str, key: &str, dir: &Path) -> Peer {
    require(bin, "libcoap3-bin");
    let p = free_port_pair();
    Peer::spawn(
        bin,
        Command::new(bin).args([
            "-A",
            "127.0.0.1",
            "-p",
            &p.to_string(),
            "-k",
            key,
            "-h",
            "hint",
        ]),
        p + 1,
        dir,
    )
}

/// libcoap's server with the test PKI's server certificate, checking ours.
pub fn coap_server_pki(bin: &str, pki: &Pki, dir: &Path) -> Peer {
    require(bin, "libcoap3-bin");
    let p = free_port_pair();
    Peer::spawn(
        bin,
        Command::new(bin)
            .args(["-A", "127.0.0.1", "-p", &p.to_string()])
            .args([
                "-c".as_ref(),
                pki.server_cert.as_os_str(),
                "-j".as_ref(),
                pki.server_key.as_os_str(),
                "-C".as_ref(),
                pki.ca_cert.as_os_str(),
            ]),
        p + 1,
        dir,
    )
}

/// A test PKI: a CA, a server certificate for localhost/127.0.0.1, a client
/// certificate, and an unrelated CA. All ECDSA P-256, made by the openssl CLI.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca_cert: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        require("openssl", "openssl");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let mut a = vec!["req", "-x509", "-days", "30", "-subj"];
            let subj = format!("/CN=lwgate test {ca}");
            a.push(&subj);
            a.extend(ec);
            let (k, c) = (format!("{ca}.key"), format!("{ca}.pem"));
            a.extend(["-keyout", &k, "-out", &c]);
            openssl(dir, &a);
        }
        let leaf = |name: &str, san: &str| {
            let (k, r, c) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let subj = format!("/CN={name}");
            let mut a = vec!["req", "-subj", &subj];
            a.extend(ec);
            a.extend(["-keyout", &k, "-out", &r]);
            openssl(dir, &a);
            let ext = format!("{name}.ext");
            std::fs::write(dir.join(&ext), format!("subjectAltName={san}\n")).unwrap();
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &r,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "30",
                    "-extfile",
                    &ext,
                    "-out",
                    &c,
                ],
            );
        };
        leaf("server", "DNS:localhost,IP:127.0.0.1");
        leaf("client", "DNS:lwgate-test-client");
        Pki {
            dir: dir.into(),
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca_cert: dir.join("other-ca.pem"),
        }
    }

    pub fn read(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }
}

/// Checks OpenSSL kept datagram boundaries: a datagram holds whole records
/// only, and never more than the MTU.
pub fn assert_whole_records(d: &[u8]) {
    assert!(
        d.len() <= MTU,
        "datagram of {} bytes exceeds the MTU {MTU}",
        d.len()
    );
    let mut i = 0;
    while i < d.len() {
        assert!(
            d.len() - i >= 13,
            "truncated record header at {i} of {}",
            d.len()
        );
        // The ClientHello's record says DTLS 1.0 (0xFEFF), as RFC 6347 allows.
        assert!(
            matches!(d[i + 1..i + 3], [0xFE, 0xFD | 0xFF]),
            "not a DTLS record at {i}"
        );
        let len = usize::from(u16::from_be_bytes([d[i + 11], d[i + 12]]));
        i += 13 + len;
    }
    assert_eq!(i, d.len(), "a record spans past the datagram");
}

/// Drives a session over a UDP socket connected to 127.0.0.1:port.
pub struct Driver {
    pub sock: UdpSocket,
    /// Our first N datagrams are not sent (simulated loss).
    pub drop_out: usize,
    /// The server's first N datagrams are discarded (simulated loss).
    pub drop_in: usize,
    /// The first N datagrams each way that carry an encrypted (epoch 1) record
    /// are lost: the final flights (Finished).
    pub drop_finished_out: usize,
    pub drop_finished_in: usize,
    pub sent: usize,
    pub received: usize,
    pub records_checked: usize,
}

/// With DTLS_TEST_TRACE set, one line per datagram: direction and records
/// (content type, epoch, length).
fn trace(dir: &str, d: &[u8]) {
    if std::env::var_os("DTLS_TEST_TRACE").is_none() {
        return;
    }
    let mut recs = Vec::new();
    let mut i = 0;
    while i + 13 <= d.len() {
        let len = usize::from(u16::from_be_bytes([d[i + 11], d[i + 12]]));
        recs.push(format!(
            "t{} e{} {len}",
            d[i],
            u16::from_be_bytes([d[i + 3], d[i + 4]])
        ));
        i += 13 + len;
    }
    eprintln!("{dir} {} bytes: {}", d.len(), recs.join(", "));
}

/// Whether a datagram holds a record of epoch 1 or later.
pub fn has_encrypted_record(d: &[u8]) -> bool {
    let mut i = 0;
    while i + 13 <= d.len() {
        if d[i + 3..i + 5] != [0, 0] {
            return true;
        }
        i += 13 + usize::from(u16::from_be_bytes([d[i + 11], d[i + 12]]));
    }
    false
}

impl Driver {
    pub fn new(port: u16) -> Driver {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(("127.0.0.1", port)).unwrap();
        Driver {
            sock,
            drop_out: 0,
            drop_in: 0,
            drop_finished_out: 0,
            drop_finished_in: 0,
            sent: 0,
            received: 0,
            records_checked: 0,
        }
    }

    fn flush(&mut self, s: &mut DtlsSession) {
        while let Some(d) = s.poll_transmit() {
            assert_whole_records(&d);
            trace("→", &d);
            self.records_checked += 1;
            self.sent += 1;
            if self.drop_out > 0 {
                self.drop_out -= 1;
                continue;
            }
            if self.drop_finished_out > 0 && has_encrypted_record(&d) {
                self.drop_finished_out -= 1;
                continue;
            }
            // An ICMP error from an earlier datagram may surface here.
            let _ = self.sock.send(&d);
        }
    }

    /// Runs until `done` holds or the session fails or closes, or `limit`
    /// passes; returns the application datagrams received.
    pub fn run(
        &mut self,
        s: &mut DtlsSession,
        limit: Duration,
        mut done: impl FnMut(&DtlsSession, &[Vec<u8>]) -> bool,
    ) -> Vec<Vec<u8>> {
        let t0 = Instant::now();
        let mut app = Vec::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            self.flush(s);
            if done(s, &app) || matches!(s.state(), DtlsState::Failed(_) | DtlsState::Closed) {
                return app;
            }
            let now = Instant::now();
            assert!(
                now - t0 < limit,
                "driver limit {limit:?} passed in {:?}",
                s.state()
            );
            let wait = s
                .poll_timeout()
                .map_or(Duration::from_millis(100), |t| {
                    t.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            self.sock.set_read_timeout(Some(wait)).unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    trace("←", &buf[..n]);
                    self.received += 1;
                    if self.drop_in > 0 {
                        self.drop_in -= 1;
                        continue;
                    }
                    if self.drop_finished_in > 0 && has_encrypted_record(&buf[..n]) {
                        self.drop_finished_in -= 1;
                        continue;
                    }
                    app.extend(s.handle_datagram(&buf[..n], Instant::now()));
                }
                Err(e) => match e.kind() {
                    std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionRefused => {}
                    _ => panic!("recv: {e}"),
                },
            }
            let now = Instant::now();
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }

    /// Runs the handshake to its end (established or failed).
    pub fn handshake(&mut self, s: &mut DtlsSession, limit: Duration) {
        self.run(s, limit, |s, _| s.is_established());
    }
}

/// A CON GET /.well-known/core with a one-byte token.
pub fn coap_get_well_known(mid: u16) -> Vec<u8> {
    let mut m = vec![0x41, 0x01];
    m.extend(mid.to_be_bytes());
    m.push(0x7A);
    m.push(0xBB);
    m.extend(b".well-known");
    m.push(0x04);
    m.extend(b"core");
    m
}

/// The CoAP response code of a datagram as "c.dd".
pub fn coap_code(d: &[u8]) -> String {
    let c = d.get(1).copied().unwrap_or(0);
    format!("{}.{:02}", c >> 5, c & 0x1F)
}

pub fn established(s: &DtlsSession) -> (bool, String) {
    match s.state() {
        DtlsState::Established {
            resumed, cipher, ..
        } => (*resumed, cipher.clone()),
        other => panic!("not established: {other:?}"),
    }
}

pub fn failure(s: &DtlsSession) -> String {
    match s.state() {
        DtlsState::Failed(why) => why.clone(),
        other => panic!("not failed: {other:?}"),
    }
}

/// `gnutls-serv` as a DTLS echo server with a PSK file (`identity:hexkey`).
pub fn gnutls_serv_psk(identity: &str, key: &[u8], dir: &Path) -> Peer {
    require("gnutls-serv", "gnutls-bin");
    let file = dir.join(format!("psk-{identity}.txt"));
    std::fs::write(&file, format!("{identity}:{}\n", hex(key))).unwrap();
    let port = free_port();
    Peer::spawn(
        "gnutls-serv",
        Command::new("gnutls-serv")
            .args(["--udp", "--echo", "-p", &port.to_string(), "--pskpasswd"])
            .arg(&file)
            .args(["--priority", "NORMAL:+PSK:+ECDHE-PSK:+AES-128-CCM-8"]),
        port,
        dir,
    )
}

/// `openssl s_server -dtls1_2` with extra arguments (it serves one client at a
/// time, up to `-naccept`).
pub fn s_server<A: AsRef<std::ffi::OsStr>>(args: &[A], dir: &Path) -> Peer {
    require("openssl", "openssl");
    let port = free_port();
    let accept = format!("127.0.0.1:{port}");
    Peer::spawn(
        "s_server",
        Command::new("openssl")
            .args(["s_server", "-dtls1_2", "-accept", &accept])
            .args(args),
        port,
        dir,
    )
}

/// `openssl s_server` with a PSK for `identity` (and any identity: it only
/// warns), PSK suites only.
pub fn s_server_psk(key: &[u8], identity: &str, dir: &Path) -> Peer {
    let key = hex(key);
    s_server(
        &[
            "-nocert",
            "-psk",
            &key,
            "-psk_identity",
            identity,
            "-cipher",
            "PSK",
        ],
        dir,
    )
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
