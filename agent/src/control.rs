//! The Unix control socket: one request line in, one JSON line out.
//!
//! Line-oriented so an operator can also poke it with `socat - UNIX:/run/lwgate/control.sock`.

use crate::status::Status;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: another lwgate is already running and answering on this control socket")]
    InUse { path: PathBuf },
    #[error("{path}: cannot create the control socket: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot connect to the control socket ({source}); is lwgate running? (systemctl status lwgate)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Protocol { path: PathBuf, what: String },
}

pub type SharedStatus = Arc<RwLock<Status>>;

/// Requests that need the daemon's main loop, with the channel for its answer.
#[derive(Debug)]
pub enum Command {
    /// Send (LwM2M 1.1) the current values of `paths` to server `ssid` (0: the first).
    Send {
        /// None: the first server.
        ssid: Option<u16>,
        paths: Vec<String>,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// Binds the socket, replacing a stale one left by a crash but never a live one.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse {
                path: path.to_path_buf(),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    // Owner and group only: the status names servers and devices.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|source| {
        ControlError::Bind {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

/// Serves requests until the task is dropped.
pub async fn serve(
    listener: UnixListener,
    status: SharedStatus,
    commands: tokio::sync::mpsc::Sender<Command>,
) {
    // The uptime is counted here, at each request: the daemon does not wake up
    // every second to keep it current in the snapshot.
    let started = std::time::Instant::now();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let status = status.clone();
                let commands = commands.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, status, commands, started).await {
                        tracing::debug!("control connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(
    stream: UnixStream,
    status: SharedStatus,
    commands: tokio::sync::mpsc::Sender<Command>,
    started: std::time::Instant,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    // A client that never sends a line must not hold a task forever.
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(r.take(1024)).read_line(&mut line),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let reply = match (n, line.trim()) {
        (0, _) => return Ok(()),
        (_, "status") => {
            let mut snapshot = match status.read() {
                Ok(s) => s.clone(),
                Err(p) => p.into_inner().clone(),
            };
            snapshot.uptime_s = started.elapsed().as_secs();
            serde_json::to_string(&snapshot).unwrap_or_else(|e| error_json(&e.to_string()))
        }
        (_, line) if line.starts_with("send ") => send(line, &commands).await,
        (_, other) => error_json(&format!("unknown request {other:?}; try \"status\"")),
    };
    w.write_all(reply.as_bytes()).await?;
    w.write_all(b"\n").await?;
    w.shutdown().await
}

/// `send SSID PATH...`; SSID `-` (or 0, which no server has) is the first server.
async fn send(line: &str, commands: &tokio::sync::mpsc::Sender<Command>) -> String {
    let mut words = line.split_whitespace().skip(1);
    let ssid = match words.next() {
        Some("-") | Some("0") => None,
        Some(w) => match w.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => return error_json("usage: send SSID|- PATH..."),
        },
        None => return error_json("usage: send SSID|- PATH..."),
    };
    let paths: Vec<String> = words.map(str::to_string).collect();
    if paths.is_empty() {
        return error_json("usage: send SSID PATH...");
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    if commands
        .send(Command::Send { ssid, paths, reply })
        .await
        .is_err()
    {
        return error_json("the daemon is stopping");
    }
    match tokio::time::timeout(Duration::from_secs(5), answer).await {
        Ok(Ok(Ok(()))) => serde_json::json!({ "ok": true }).to_string(),
        Ok(Ok(Err(e))) => error_json(&e),
        _ => error_json("the daemon did not answer"),
    }
}

fn error_json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

use tokio::io::AsyncReadExt as _;

/// Client side, used by `lwgate status`: returns the raw JSON line.
pub async fn request(path: &Path, what: &str) -> Result<String, ControlError> {
    let mut s = UnixStream::connect(path)
        .await
        .map_err(|source| ControlError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    let proto = |what: String| ControlError::Protocol {
        path: path.to_path_buf(),
        what,
    };
    let io = async {
        s.write_all(format!("{what}\n").as_bytes()).await?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(|_| proto("the daemon did not answer within 10 s".into()))?
        .map_err(|e| proto(format!("reading the answer failed: {e}")))?;
    let line = buf.trim();
    if line.is_empty() {
        return Err(proto("empty answer".into()));
    }
    Ok(line.to_string())
}
