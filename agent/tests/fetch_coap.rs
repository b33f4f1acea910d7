//! The CoAP firmware downloader against real servers: aiocoap's file server
//! (PyPI aiocoap, in the project's .venv) and libcoap's example server
//! (Debian libcoap3-bin), over UDP and PSK DTLS, with a lossy relay, a server
//! killed mid-download, error answers and size limits.
//!
//! A missing tool skips a test with a message, and fails it when `CI` is set.

mod dtls_support;

use dtls_support::{free_port, free_port_pair, Peer};
use lwgate::coap::TxParams;
use lwgate::dtls::DtlsConfig;
use lwgate::fetch::{fetch, FetchConfig, FetchError, Fetched, Progress, Resume};
use sha2::{Digest, Sha256};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const PSK: &str = "lwgate-fw-secret";

fn missing(what: &str, how: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing: {how}");
    }
    eprintln!("SKIPPED: {what} is missing ({how})");
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A Debian tool, or None (skip) with a message.
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = on_path(name);
    if found.is_none() {
        missing(name, &format!("apt-get install {package}"));
    }
    found
}

/// aiocoap's file server from the workspace's .venv (scripts/setup), or PATH.
fn fileserver_bin() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/aiocoap-fileserver");
    let found = venv
        .is_file()
        .then_some(venv)
        .or_else(|| on_path("aiocoap-fileserver"));
    if found.is_none() {
        missing(
            "aiocoap-fileserver",
            "python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt",
        );
    }
    found
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // xorshift: incompressible enough, and reproducible.
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn file_sha(p: &Path) -> Vec<u8> {
    sha(&std::fs::read(p).unwrap())
}

/// Quick retransmissions: loopback answers in microseconds, and the fault
/// tests wait for timeouts.
fn fast() -> FetchConfig {
    FetchConfig {
        tx: TxParams {
            ack_timeout: Duration::from_millis(100),
            ack_random_factor: 1.5,
            max_retransmit: 3,
        },
        retry_backoff: Duration::from_millis(100),
        block_retries: 2,
        ..FetchConfig::default()
    }
}

fn blocks(len: usize, size: usize) -> u64 {
    len.div_ceil(size) as u64
}

/// aiocoap's file server on a directory of its own.
struct FileServer {
    _peer: Peer,
    port: u16,
    root: PathBuf,
}

fn file_server(dir: &Path) -> Option<FileServer> {
    let bin = fileserver_bin()?;
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    let port = free_port();
    let peer = Peer::spawn(
        "aiocoap-fileserver",
        Command::new(bin)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg(&root),
        port,
        dir,
    );
    Some(FileServer {
        _peer: peer,
        port,
        root,
    })
}

/// libcoap's server: plain CoAP on `port`, PSK DTLS on `port + 1`.
struct Libcoap {
    peer: Peer,
    port: u16,
}

fn libcoap(dir: &Path) -> Option<Libcoap> {
    let bin = tool("coap-server-openssl", "libcoap3-bin")?;
    let p = free_port_pair();
    let peer = Peer::spawn(
        "coap-server-openssl",
        Command::new(bin).args([
            "-A",
            "127.0.0.1",
            "-p",
            &p.to_string(),
            "-k",
            PSK,
            "-h",
            "hint",
        ]),
        p + 1,
        dir,
    );
    Some(Libcoap { peer, port: p })
}

/// Puts `data` to libcoap's /example_data with its own client.
fn libcoap_put(server: &Libcoap, data: &[u8], dir: &Path) -> Option<()> {
    let client = tool("coap-client-notls", "libcoap3-bin")?;
    let f = dir.join("put.bin");
    std::fs::write(&f, data).unwrap();
    let uri = format!("coap://127.0.0.1:{}/example_data", server.port);
    let out = Command::new(client)
        .args(["-m", "put", "-b", "1024", "-B", "60", "-f"])
        .arg(&f)
        .arg(&uri)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "coap-client put: {}{}",
        String::from_utf8_lossy(&out.stderr),
        server.peer.output()
    );
    Some(())
}

/// A UDP relay on loopback that drops every `nth` datagram (either way).
struct LossyRelay {
    port: u16,
    stop: Arc<AtomicBool>,
    pub dropped: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LossyRelay {
    fn start(server_port: u16, nth: usize) -> LossyRelay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(("127.0.0.1", server_port)).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        }
        let port = front.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let lose = {
            let (count, dropped) = (count.clone(), dropped.clone());
            move || {
                let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                let lost = n % nth == 0;
                if lost {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                lost
            }
        };
        let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        let up = {
            let (stop, client, lose) = (stop.clone(), client.clone(), lose.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        if !lose() {
                            let _ = back.send(&buf[..n]);
                        }
                    }
                }
            })
        };
        let down = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back2.recv(&mut buf) {
                        let to = *client.lock().unwrap();
                        if let (Some(to), false) = (to, lose()) {
                            let _ = front2.send_to(&buf[..n], to);
                        }
                    }
                }
            })
        };
        LossyRelay {
            port,
            stop,
            dropped,
            threads: vec![up, down],
        }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

async fn get(uri: &str, out: &Path, cfg: &FetchConfig) -> Result<Fetched, FetchError> {
    fetch(uri, out, cfg, None, None).await
}

#[tokio::test(flavor = "current_thread")]
async fn aiocoap_whole_file_and_smaller_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = file_server(dir.path()) else {
        return;
    };
    let data = random_bytes(3_000_000, 1);
    std::fs::write(srv.root.join("fw.bin"), &data).unwrap();
    let uri = format!("coap://127.0.0.1:{}/fw.bin", srv.port);
    let out = dir.path().join("got.bin");
    let (tx, rx) = watch::channel(Progress {
        bytes: 0,
        total: None,
        bytes_per_sec: 0.0,
        resume: Resume {
            uri: String::new(),
            etag: None,
            bytes: 0,
            block_size: 0,
        },
    });
    let f = fetch(&uri, &out, &FetchConfig::default(), None, Some(&tx))
        .await
        .unwrap();
    assert_eq!(file_sha(&out), sha(&data));
    assert_eq!(f.bytes, data.len() as u64);
    assert_eq!(f.blocks, blocks(data.len(), 1024));
    assert_eq!(f.block_size, 1024);
    assert!(f.etag.is_some(), "aiocoap sends an ETag with Block2");
    let last = rx.borrow().clone();
    assert_eq!(last.bytes, data.len() as u64);
    assert_eq!(last.resume.uri, uri);
    println!(
        "aiocoap, 1024-byte blocks: {} bytes in {:.2} s",
        f.bytes,
        f.elapsed.as_secs_f64()
    );

    let cfg = FetchConfig {
        block_size: 256,
        ..FetchConfig::default()
    };
    let f = get(&uri, &out, &cfg).await.unwrap();
    assert_eq!(file_sha(&out), sha(&data));
    assert_eq!(f.block_size, 256);
    assert_eq!(f.blocks, blocks(data.len(), 256));
}

#[tokio::test(flavor = "current_thread")]
async fn aiocoap_resume_fetches_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = file_server(dir.path()) else {
        return;
    };
    let data = random_bytes(3_000_000, 2);
    std::fs::write(srv.root.join("fw.bin"), &data).unwrap();
    let uri = format!("coap://127.0.0.1:{}/fw.bin", srv.port);
    let out = dir.path().join("got.bin");
    let first = get(&uri, &out, &FetchConfig::default()).await.unwrap();
    // As if the first attempt had stopped at byte 1,500,000 (not a block
    // boundary): the file cut there, the Resume stored with it.
    let file = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    file.set_len(1_500_000).unwrap();
    drop(file);
    let resume = Resume {
        uri: uri.clone(),
        etag: first.etag.clone(),
        bytes: 1_500_000,
        block_size: 1024,
    };
    let json = serde_json::to_string(&resume).unwrap();
    let resume: Resume = serde_json::from_str(&json).unwrap();
    let f = fetch(&uri, &out, &FetchConfig::default(), Some(&resume), None)
        .await
        .unwrap();
    assert_eq!(file_sha(&out), sha(&data));
    assert_eq!(f.restarts, 0);
    let from = 1_500_000 / 1024; // the block holding byte 1,500,000
    assert_eq!(f.blocks, blocks(data.len(), 1024) - from);
    println!(
        "resumed at byte 1500000: {} of {} blocks fetched",
        f.blocks,
        blocks(data.len(), 1024)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn aiocoap_cancelled_then_changed_on_the_server_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = file_server(dir.path()) else {
        return;
    };
    let old = random_bytes(3_000_000, 3);
    std::fs::write(srv.root.join("fw.bin"), &old).unwrap();
    let uri = format!("coap://127.0.0.1:{}/fw.bin", srv.port);
    let out = dir.path().join("got.bin");
    let cfg = FetchConfig {
        progress_every: Duration::ZERO,
        ..FetchConfig::default()
    };
    let (tx, mut rx) = watch::channel(Progress {
        bytes: 0,
        total: None,
        bytes_per_sec: 0.0,
        resume: Resume {
            uri: String::new(),
            etag: None,
            bytes: 0,
            block_size: 0,
        },
    });
    // Cancelled by dropping the future once a megabyte is in.
    tokio::select! {
        r = fetch(&uri, &out, &cfg, None, Some(&tx)) => panic!("not cancelled: {r:?}"),
        _ = async {
            while rx.borrow_and_update().bytes < 1_000_000 {
                rx.changed().await.unwrap();
            }
        } => {}
    }
    let resume = rx.borrow().resume.clone();
    assert!(resume.bytes >= 1_000_000);
    assert!(resume.etag.is_some());
    // A write in flight when the future was dropped may still land after
    // what Progress reported: the file holds at least that, all of it right.
    let kept = std::fs::read(&out).unwrap();
    assert!(
        kept.len() as u64 >= resume.bytes,
        "the partial file stays: {}",
        kept.len()
    );
    assert_eq!(kept[..], old[..kept.len()]);

    // Resuming the same version continues; a new version (another ETag)
    // starts over.
    let new = random_bytes(2_500_000, 4);
    std::fs::write(srv.root.join("fw.bin"), &new).unwrap();
    let f = fetch(&uri, &out, &cfg, Some(&resume), None).await.unwrap();
    assert_eq!(file_sha(&out), sha(&new));
    assert_eq!(f.restarts, 1);
    assert_eq!(f.blocks, blocks(new.len(), 1024));
    assert_ne!(f.etag, resume.etag);
}

#[tokio::test(flavor = "current_thread")]
async fn aiocoap_not_found_and_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = file_server(dir.path()) else {
        return;
    };
    let data = random_bytes(3_000_000, 5);
    std::fs::write(srv.root.join("fw.bin"), &data).unwrap();
    let out = dir.path().join("got.bin");
    let e = get(
        &format!("coap://127.0.0.1:{}/nothing.bin", srv.port),
        &out,
        &FetchConfig::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(e, FetchError::Server { code: 0x84 });
    assert_eq!(e.update_result(), 7);

    // aiocoap gives no Size2: the limit stops the block that would pass it.
    let cfg = FetchConfig {
        max_bytes: Some(1_000_000),
        ..FetchConfig::default()
    };
    let e = get(&format!("coap://127.0.0.1:{}/fw.bin", srv.port), &out, &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::TooLarge {
                limit: 1_000_000,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.update_result(), 2);
    assert!(std::fs::metadata(&out).unwrap().len() <= 1_000_000);
}

#[tokio::test(flavor = "current_thread")]
async fn libcoap_over_coap_and_coaps_psk() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = libcoap(dir.path()) else {
        return;
    };
    let data = random_bytes(1_000_000, 6);
    if libcoap_put(&srv, &data, dir.path()).is_none() {
        return;
    }
    let out = dir.path().join("got.bin");
    let f = get(
        &format!("coap://127.0.0.1:{}/example_data", srv.port),
        &out,
        &FetchConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(file_sha(&out), sha(&data));
    println!(
        "libcoap over UDP: {} bytes in {:.2} s",
        f.bytes,
        f.elapsed.as_secs_f64()
    );

    let uri = format!("coaps://127.0.0.1:{}/example_data", srv.port + 1);
    let e = get(&uri, &out, &FetchConfig::default()).await.unwrap_err();
    assert_eq!(e, FetchError::NoCredentials);
    assert_eq!(e.update_result(), 9);
    let cfg = FetchConfig {
        dtls: Some(DtlsConfig::psk("lwgate-fw", PSK.as_bytes().to_vec())),
        ..FetchConfig::default()
    };
    let f = get(&uri, &out, &cfg).await.unwrap();
    assert_eq!(file_sha(&out), sha(&data));
    println!(
        "libcoap over DTLS (PSK): {} bytes in {:.2} s",
        f.bytes,
        f.elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn libcoap_size2_limits_stop_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = libcoap(dir.path()) else {
        return;
    };
    let data = random_bytes(1_048_576, 7);
    if libcoap_put(&srv, &data, dir.path()).is_none() {
        return;
    }
    let uri = format!("coap://127.0.0.1:{}/example_data", srv.port);
    let out = dir.path().join("got.bin");
    let cfg = FetchConfig {
        max_bytes: Some(512 * 1024),
        ..FetchConfig::default()
    };
    let e = get(&uri, &out, &cfg).await.unwrap_err();
    assert_eq!(
        e,
        FetchError::TooLarge {
            size: 1_048_576,
            limit: 512 * 1024
        }
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);

    // The free space (statvfs) less what must stay free leaves 256 KiB.
    let vfs = nix::sys::statvfs::statvfs(dir.path()).unwrap();
    #[allow(clippy::useless_conversion)]
    let available = u64::from(vfs.blocks_available()) * u64::from(vfs.fragment_size());
    let cfg = FetchConfig {
        keep_free: available - 256 * 1024,
        ..FetchConfig::default()
    };
    let e = get(&uri, &out, &cfg).await.unwrap_err();
    assert!(matches!(e, FetchError::NoSpace { .. }), "{e}");
    assert_eq!(e.update_result(), 2);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn lossy_relay_loses_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = libcoap(dir.path()) else {
        return;
    };
    let data = random_bytes(300_000, 8);
    if libcoap_put(&srv, &data, dir.path()).is_none() {
        return;
    }
    let out = dir.path().join("got.bin");
    let relay = LossyRelay::start(srv.port, 7);
    let uri = format!("coap://127.0.0.1:{}/example_data", relay.port);
    let f = get(&uri, &out, &fast()).await.unwrap();
    assert_eq!(file_sha(&out), sha(&data));
    let lost = relay.dropped.load(Ordering::Relaxed);
    assert!(lost > 50, "the relay dropped {lost}");
    println!(
        "UDP through the relay: {lost} datagrams dropped, {} retries",
        f.retries
    );
    drop(relay);

    let relay = LossyRelay::start(srv.port + 1, 7);
    let cfg = FetchConfig {
        dtls: Some(DtlsConfig::psk("lwgate-fw", PSK.as_bytes().to_vec())),
        ..fast()
    };
    let uri = format!("coaps://127.0.0.1:{}/example_data", relay.port);
    let f = get(&uri, &out, &cfg).await.unwrap();
    assert_eq!(file_sha(&out), sha(&data));
    println!(
        "DTLS through the relay: {} datagrams dropped, {} retries",
        relay.dropped.load(Ordering::Relaxed),
        f.retries
    );
}

#[tokio::test(flavor = "current_thread")]
async fn server_killed_mid_download_is_connection_lost() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = libcoap(dir.path()) else {
        return;
    };
    let data = random_bytes(1_000_000, 9);
    if libcoap_put(&srv, &data, dir.path()).is_none() {
        return;
    }
    let uri = format!("coap://127.0.0.1:{}/example_data", srv.port);
    let out = dir.path().join("got.bin");
    let cfg = FetchConfig {
        progress_every: Duration::ZERO,
        ..fast()
    };
    let (tx, mut rx) = watch::channel(Progress {
        bytes: 0,
        total: None,
        bytes_per_sec: 0.0,
        resume: Resume {
            uri: String::new(),
            etag: None,
            bytes: 0,
            block_size: 0,
        },
    });
    let Libcoap { peer, .. } = srv;
    let killer = async move {
        while rx.borrow_and_update().bytes < 200_000 {
            rx.changed().await.unwrap();
        }
        drop(peer); // kills the server (its own pid)
        Instant::now()
    };
    // Every attempt waits out MAX_TRANSMIT_WAIT; attempts 1 + block_retries,
    // with the back-off between them. The outer bound only keeps a hang from
    // running for ever.
    let tx_wait = cfg.tx.max_transmit_wait().as_secs_f64();
    let bound = (tx_wait * f64::from(cfg.block_retries + 1)) + 1.0;
    let run = tokio::time::timeout(Duration::from_secs_f64(bound * 4.0 + 10.0), async {
        tokio::join!(fetch(&uri, &out, &cfg, None, Some(&tx)), killer)
    });
    let (r, killed_at) = run.await.expect("the download ended");
    let e = r.unwrap_err();
    assert!(matches!(e, FetchError::ConnectionLost(_)), "{e}");
    assert_eq!(e.update_result(), 4);
    println!(
        "killed server: {e} after {:.1} s (bound {bound:.1} s)",
        killed_at.elapsed().as_secs_f64()
    );
    let kept = std::fs::metadata(&out).unwrap().len();
    assert!(kept >= 200_000, "the partial file stays: {kept}");
}

/// Throughput for a 16 MiB package from libcoap's server: ours against
/// `coap-client -b 1024` on the same server in the same run. Printed, not
/// asserted (run with --nocapture; scripts may parse the `throughput:` lines).
#[tokio::test(flavor = "current_thread")]
async fn bench_16_mib_against_coap_client() {
    let dir = tempfile::tempdir().unwrap();
    let Some(srv) = libcoap(dir.path()) else {
        return;
    };
    let Some(client) = tool("coap-client-notls", "libcoap3-bin") else {
        return;
    };
    let data = random_bytes(16 << 20, 10);
    if libcoap_put(&srv, &data, dir.path()).is_none() {
        return;
    }
    let uri = format!("coap://127.0.0.1:{}/example_data", srv.port);
    let out = dir.path().join("got.bin");
    let f = get(&uri, &out, &FetchConfig::default()).await.unwrap();
    assert_eq!(file_sha(&out), sha(&data));
    let ours = f.bytes as f64 / f.elapsed.as_secs_f64();

    let theirs_out = dir.path().join("coap-client.bin");
    let t0 = Instant::now();
    let st = Command::new(client)
        .args(["-m", "get", "-b", "1024", "-B", "120", "-o"])
        .arg(&theirs_out)
        .arg(&uri)
        .status()
        .unwrap();
    let took = t0.elapsed();
    assert!(st.success());
    assert_eq!(file_sha(&theirs_out), sha(&data));
    let theirs = data.len() as f64 / took.as_secs_f64();
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "throughput: lwgate fetch ({build} build) {:.0} KiB/s ({:.2} s), coap-client -b 1024 {:.0} KiB/s ({:.2} s), 16 MiB from coap-server",
        ours / 1024.0,
        f.elapsed.as_secs_f64(),
        theirs / 1024.0,
        took.as_secs_f64()
    );
}
