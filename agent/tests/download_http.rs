//! Package downloads against a real nginx (ranges, If-Range, ETags, redirects,
//! TLS with a test CA made by the openssl CLI), and against a small TCP server
//! that stalls. Without nginx these tests skip locally and fail under CI.

// For its test PKI (a CA, a server certificate for localhost and 127.0.0.1).
mod dtls_support;

use dtls_support::Pki;
use lwgate::download::{DownloadConfig, DownloadError, Downloader, Progress, Resume};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const PACKAGE: usize = 3 << 20;

/// The nginx binary; None (a skip) when missing, except under CI.
fn nginx_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = "nginx is missing: install the Debian package nginx (apt-get install -y nginx)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("skipping: {msg}");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An nginx of this test alone: single process as the current user, everything
/// under a temp dir, killed by its pid when dropped.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
}

impl Nginx {
    fn start(pki: Option<&Pki>) -> Option<Nginx> {
        let bin = nginx_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let tls = pki.map_or(String::new(), |p| {
            format!(
                // 127.0.0.2 is not in the certificate.
                "listen 127.0.0.1:{tls_port} ssl;\nlisten 127.0.0.2:{tls_port} ssl;\n\
                 ssl_certificate {};\nssl_certificate_key {};",
                p.server_cert.display(),
                p.server_key.display()
            )
        });
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    default_type application/octet-stream;
    log_format lw '$status "$request" range="$http_range" if_range="$http_if_range" sent=$body_bytes_sent';
    access_log {d}/access.log lw;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        {tls}
        root {d}/www;
        location /slow/ {{ alias {d}/www/; limit_rate 1m; }}
        location = /moved {{ return 302 /fw.bin; }}
        location = /loop {{ return 302 /loop; }}
        location = /busy {{ return 503; }}
        location = /to-http {{ return 302 http://127.0.0.1:{port}/fw.bin; }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let out = std::fs::File::create(dir.path().join("nginx.out")).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start nginx");
        let mut n = Nginx {
            child,
            dir,
            port,
            tls_port,
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let gone = n.child.try_wait().unwrap().is_some();
            assert!(
                !gone && t0.elapsed() < Duration::from_secs(5),
                "nginx did not start: {}{}",
                n.read("nginx.out"),
                n.read("error.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(n)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Puts `data` at /fw.bin; a new size gives it a new ETag even within the
    /// second (nginx's ETag is mtime-size).
    fn publish(&self, data: &[u8]) {
        std::fs::write(self.dir.path().join("www/fw.bin"), data).unwrap();
    }

    /// The access log once it has `n` lines: nginx writes a request's line after
    /// its last byte, maybe after the client has it.
    fn access_log(&self, n: usize) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let lines: Vec<String> = self.read("access.log").lines().map(String::from).collect();
            if lines.len() >= n || t0.elapsed() > Duration::from_secs(5) {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn package(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A header value as nginx's access log shows it.
fn logged(v: &str) -> String {
    v.replace('"', "\\x22")
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn sha256_file(p: &Path) -> String {
    sha256(&std::fs::read(p).unwrap())
}

fn config(dir: &Path) -> DownloadConfig {
    let mut c = DownloadConfig::new(dir.join("download"));
    c.reserve = 0;
    c.connect_timeout = Duration::from_secs(5);
    c.idle_timeout = Duration::from_secs(5);
    c.progress_interval = Duration::from_millis(10);
    c
}

fn progress_channel() -> (watch::Sender<Progress>, watch::Receiver<Progress>) {
    watch::channel(Progress {
        bytes: 0,
        total: None,
        rate: 0,
        resume: Resume::new(""),
    })
}

/// Fetches until at least `stop_at` bytes are on disk, then cancels.
async fn fetch_until(
    dl: &Downloader,
    name: &str,
    state: &mut Resume,
    stop_at: u64,
) -> Result<lwgate::download::Done, DownloadError> {
    let (tx, mut rx) = progress_channel();
    let cancel = CancellationToken::new();
    let fetch = dl.fetch(name, state, Some(&tx), Some(&cancel));
    let stop = async {
        while rx.changed().await.is_ok() {
            if rx.borrow().bytes >= stop_at {
                cancel.cancel();
            }
        }
    };
    tokio::select! {
        r = fetch => r,
        () = stop => unreachable!("the sender outlives the fetch"),
    }
}

#[tokio::test]
async fn full_download_with_progress() {
    let Some(srv) = Nginx::start(None) else {
        return;
    };
    let data = package(PACKAGE, 1);
    srv.publish(&data);
    let tmp = tempfile::tempdir().unwrap();
    let dl = Downloader::new(config(tmp.path())).unwrap();
    let mut state = Resume::new(srv.url("/fw.bin"));
    let (tx, rx) = progress_channel();
    let done = dl
        .fetch("fw.part", &mut state, Some(&tx), None)
        .await
        .unwrap();
    assert_eq!(done.bytes, PACKAGE as u64);
    assert_eq!(done.fetched, PACKAGE as u64);
    assert_eq!(sha256_file(&done.path), sha256(&data));
    assert_eq!(done.path, tmp.path().join("download/fw.part"));
    let last = rx.borrow().clone();
    assert_eq!(last.bytes, PACKAGE as u64);
    assert_eq!(last.total, Some(PACKAGE as u64));
    assert_eq!(last.resume, state);
    assert_eq!(state.bytes, PACKAGE as u64);
    assert!(
        state.etag.is_some() && state.last_modified.is_some(),
        "{state:?}"
    );
    let log = srv.access_log(1);
    assert!(
        log[0].starts_with("200 ") && log[0].contains("range=\"-\""),
        "{log:?}"
    );
}

#[tokio::test]
async fn resumes_after_cancel_drop_and_restart() {
    let Some(srv) = Nginx::start(None) else {
        return;
    };
    let data = package(PACKAGE, 2);
    srv.publish(&data);
    let tmp = tempfile::tempdir().unwrap();
    let dl = Downloader::new(config(tmp.path())).unwrap();
    let mut state = Resume::new(srv.url("/slow/fw.bin"));

    // The server writes an empty URI: cancelled, the partial file stays.
    let e = fetch_until(&dl, "fw.part", &mut state, 256 << 10)
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::Cancelled { .. }), "{e}");
    assert_eq!(e.update_result(), 0);
    let path = dl.path_for("fw.part").unwrap();
    let first = state.bytes;
    assert!(first >= 256 << 10 && first < PACKAGE as u64, "{first}");
    // A write in flight at the cancellation may still land: state counts only
    // the bytes the OS had, and the next fetch drops the rest.
    assert!(std::fs::metadata(&path).unwrap().len() >= first);

    // The link drops: the future is dropped mid-body, state still says how far.
    let r = tokio::time::timeout(
        Duration::from_millis(500),
        dl.fetch("fw.part", &mut state, None, None),
    )
    .await;
    assert!(r.is_err(), "finished within 500 ms at 1 MB/s?");
    let second = state.bytes;
    assert!(second > first, "{first} -> {second}");

    // The agent restarts: the state comes back from its store.
    let stored = serde_json::to_string(&state).unwrap();
    let mut state: Resume = serde_json::from_str(&stored).unwrap();
    let dl = Downloader::new(config(tmp.path())).unwrap();
    let done = dl.fetch("fw.part", &mut state, None, None).await.unwrap();
    assert_eq!(done.bytes, PACKAGE as u64);
    assert!(done.fetched <= PACKAGE as u64 - second, "{done:?}");
    assert_eq!(sha256_file(&path), sha256(&data));

    let log = srv.access_log(3);
    assert!(log[0].starts_with("200 "), "{log:?}");
    let etag = logged(state.etag.as_deref().unwrap());
    for (line, from) in [(&log[1], first), (&log[2], done.bytes - done.fetched)] {
        assert!(line.starts_with("206 "), "{log:?}");
        assert!(
            line.contains(&format!("range=\"bytes={from}-\"")),
            "{log:?}"
        );
        assert!(line.contains(&format!("if_range=\"{etag}\"")), "{log:?}");
    }
}

#[tokio::test]
async fn changed_resource_starts_over() {
    let Some(srv) = Nginx::start(None) else {
        return;
    };
    srv.publish(&package(PACKAGE, 3));
    let tmp = tempfile::tempdir().unwrap();
    let dl = Downloader::new(config(tmp.path())).unwrap();
    let mut state = Resume::new(srv.url("/slow/fw.bin"));
    fetch_until(&dl, "fw.part", &mut state, 128 << 10)
        .await
        .unwrap_err();
    let old_etag = state.etag.clone().unwrap();

    let new = package(PACKAGE / 2 + 7, 4);
    srv.publish(&new);
    let done = dl.fetch("fw.part", &mut state, None, None).await.unwrap();
    assert_eq!(done.bytes, new.len() as u64);
    assert_eq!(done.fetched, new.len() as u64);
    assert_eq!(sha256_file(&done.path), sha256(&new));
    assert_ne!(state.etag.as_deref(), Some(old_etag.as_str()));

    // The range was asked with the old ETag; nginx answered with the whole new file.
    let log = srv.access_log(2);
    assert!(log[1].starts_with("200 "), "{log:?}");
    let old_etag = logged(&old_etag);
    assert!(
        log[1].contains(&format!("if_range=\"{old_etag}\"")),
        "{log:?}"
    );
}

#[tokio::test]
async fn complete_file_is_not_fetched_again() {
    let Some(srv) = Nginx::start(None) else {
        return;
    };
    let data = package(100_000, 5);
    srv.publish(&data);
    let tmp = tempfile::tempdir().unwrap();
    let dl = Downloader::new(config(tmp.path())).unwrap();
    let mut state = Resume::new(srv.url("/fw.bin"));
    dl.fetch("fw.part", &mut state, None, None).await.unwrap();
    // E.g. a restart after the last byte but before the caller recorded success.
    let done = dl.fetch("fw.part", &mut state, None, None).await.unwrap();
    assert_eq!((done.bytes, done.fetched), (100_000, 0));
    assert_eq!(sha256_file(&done.path), sha256(&data));
    let log = srv.access_log(2);
    assert!(log[1].starts_with("416 "), "{log:?}");
}

#[tokio::test]
async fn redirects_and_http_errors() {
    let Some(srv) = Nginx::start(None) else {
        return;
    };
    let data = package(200_000, 6);
    srv.publish(&data);
    let tmp = tempfile::tempdir().unwrap();
    let dl = Downloader::new(config(tmp.path())).unwrap();

    let mut state = Resume::new(srv.url("/moved"));
    let done = dl.fetch("a.part", &mut state, None, None).await.unwrap();
    assert_eq!(sha256_file(&done.path), sha256(&data));
    assert_eq!(state.url, srv.url("/moved"), "the Package URI is kept");

    let e = dl
        .fetch("b.part", &mut Resume::new(srv.url("/loop")), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, DownloadError::TooManyRedirects { limit: 5, .. }),
        "{e}"
    );
    assert_eq!(e.update_result(), 7);

    let e = dl
        .fetch(
            "c.part",
            &mut Resume::new(srv.url("/missing.bin")),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::Http { status: 404, .. }), "{e}");
    assert_eq!(e.update_result(), 7);
    assert!(!e.is_retryable());
    assert!(!dl.path_for("c.part").unwrap().exists());

    let e = dl
        .fetch("d.part", &mut Resume::new(srv.url("/busy")), None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::Http { status: 503, .. }), "{e}");
    assert_eq!(e.update_result(), 4);
    assert!(e.is_retryable());
}

#[tokio::test]
async fn size_limit_and_free_space() {
    let Some(srv) = Nginx::start(None) else {
        return;
    };
    srv.publish(&package(PACKAGE, 7));
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.max_size = Some(PACKAGE as u64 - 1);
    let dl = Downloader::new(c).unwrap();
    let e = dl
        .fetch("fw.part", &mut Resume::new(srv.url("/fw.bin")), None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::TooLarge { .. }), "{e}");
    assert_eq!(e.update_result(), 2);
    assert!(
        !dl.path_for("fw.part").unwrap().exists(),
        "refused before writing"
    );

    // A reserve larger than the disk: the package never fits.
    let mut c = config(tmp.path());
    c.reserve = u64::MAX / 2;
    let dl = Downloader::new(c).unwrap();
    let e = dl
        .fetch("fw.part", &mut Resume::new(srv.url("/fw.bin")), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, DownloadError::NoSpace { needed, .. } if needed == PACKAGE as u64),
        "{e}"
    );
    assert_eq!(e.update_result(), 2);
    assert!(
        !dl.path_for("fw.part").unwrap().exists(),
        "refused before writing"
    );
}

#[tokio::test]
async fn https_with_a_configured_ca() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(pki_dir.path());
    let Some(srv) = Nginx::start(Some(&pki)) else {
        return;
    };
    let data = package(500_000, 8);
    srv.publish(&data);
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.ca_file = Some(pki.ca_cert.clone());
    let dl = Downloader::new(c).unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{}/fw.bin", srv.tls_port);
        let done = dl
            .fetch("fw.part", &mut Resume::new(url), None, None)
            .await
            .unwrap();
        assert_eq!(sha256_file(&done.path), sha256(&data), "{host}");
    }

    // https -> http on a redirect is refused.
    let url = format!("https://127.0.0.1:{}/to-http", srv.tls_port);
    let e = dl
        .fetch("fw.part", &mut Resume::new(url), None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::InsecureRedirect { .. }), "{e}");
    assert_eq!(e.update_result(), 9);

    // The right CA, but the certificate is not for this address.
    let url = format!("https://127.0.0.2:{}/fw.bin", srv.tls_port);
    let e = dl
        .fetch("fw.part", &mut Resume::new(url), None, None)
        .await
        .unwrap_err();
    println!("{e}");
    assert!(matches!(e, DownloadError::Untrusted { .. }), "{e}");
    assert!(e.to_string().contains("mismatch"), "{e}");

    // Only the system's trust store, or another CA: the server is not trusted.
    let mut other = config(tmp.path());
    other.ca_file = Some(pki.other_ca_cert.clone());
    for c in [config(tmp.path()), other] {
        let dl = Downloader::new(c).unwrap();
        let url = format!("https://127.0.0.1:{}/fw.bin", srv.tls_port);
        let e = dl
            .fetch("untrusted.part", &mut Resume::new(url), None, None)
            .await
            .unwrap_err();
        assert!(matches!(e, DownloadError::Untrusted { .. }), "{e}");
        println!("{e}");
        assert!(e.to_string().contains("certificate verify failed"), "{e}");
        assert_eq!(e.update_result(), 7);
        assert!(!e.is_retryable());
    }
}

/// A server that answers the first request with a 200 of `len` bytes but sends
/// only `sent` of them (or not even its headers), then holds the connection
/// open without a word until the client gives up.
fn stalling_server(headers: bool, len: usize, sent: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut b = [0; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "client closed before its request ended");
            req.extend_from_slice(&b[..n]);
        }
        if headers {
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"stall-1\"\r\n\r\n");
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&vec![0x5a; sent]).unwrap();
        }
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.read(&mut b);
    });
    port
}

#[tokio::test]
async fn stalled_server_is_a_lost_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.idle_timeout = Duration::from_secs(1);
    let dl = Downloader::new(c).unwrap();

    for (headers, sent) in [(true, 50_000), (false, 0)] {
        let port = stalling_server(headers, 100_000, sent);
        let mut state = Resume::new(format!("http://127.0.0.1:{port}/fw.bin"));
        let t0 = Instant::now();
        let e = dl
            .fetch("stall.part", &mut state, None, None)
            .await
            .unwrap_err();
        let took = t0.elapsed();
        println!("{took:?}: {e}");
        assert!(matches!(e, DownloadError::ConnectionLost { .. }), "{e}");
        assert!(e.is_retryable());
        assert_eq!(e.update_result(), 4);
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert_eq!(state.bytes, sent as u64, "{e}");
        if headers {
            assert_eq!(state.etag.as_deref(), Some("\"stall-1\""));
        }
    }

    // Nobody listens: also worth another try later.
    let port = free_port();
    let e = dl
        .fetch(
            "refused.part",
            &mut Resume::new(format!("http://127.0.0.1:{port}/fw.bin")),
            None,
            None,
        )
        .await
        .unwrap_err();
    println!("{e}");
    assert!(matches!(e, DownloadError::ConnectionLost { .. }), "{e}");
    assert!(e.is_retryable());
}
