//! The driver's side of /5 Firmware Update: the package file, downloads
//! (download/ for http and https), the check (lwm2m/firmware/verify.rs), the
//! installer; each reports back to the client as a firmware event on a channel
//! the main loop reads. The decisions are the machine's (lwm2m/firmware/state.rs).

use crate::config::{FirmwareSection, Runner};
use crate::download::{DownloadConfig, DownloadError, Downloader, Progress, Resume};
use crate::lwm2m::firmware::state::{DownloadFailure, Protocol, VerifyFailure};
use crate::lwm2m::firmware::verify::{DetachedSignature, ImageVerifier, Policy, TrustedKey};
use crate::lwm2m::firmware::{Config as MachineConfig, Event, PackageInfo};
use crate::lwm2m::{FirmwareSetup, FirmwareTask};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const PACKAGE: &str = "package";
const SIGNATURE: &str = "package.minisig";
const RESUME: &str = "package.resume.json";
const COAP_RESUME: &str = "package.coap-resume.json";
/// Attempts of one download while the link keeps failing, and the first pause.
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_secs(5);

pub struct FirmwareDriver {
    /// Reports for `Client::firmware_event`: (clock-independent) events.
    pub rx: mpsc::Receiver<Report>,
    tx: mpsc::Sender<Report>,
    cfg: FirmwareSection,
    dir: PathBuf,
    downloader: Option<Arc<Downloader>>,
    /// The download, check or install running.
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    push: Option<std::fs::File>,
    /// Progress for `lwgate status`.
    pub progress: Option<Shown>,
}

/// What a task reports; `Event`s go to the machine as they are.
#[derive(Debug)]
pub enum Report {
    Event(Event),
    /// An installer finished (the driver stamps the machine's clock on it).
    InstallExited {
        success: bool,
        detail: String,
    },
    Progress(Shown),
}

/// A download's progress as `lwgate status` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    pub bytes: u64,
    pub total: Option<u64>,
    /// Bytes per second.
    pub rate: u64,
}

/// What this build can fetch (/5/0/8).
pub fn protocols() -> Vec<Protocol> {
    vec![
        Protocol::Coap,
        Protocol::Coaps,
        Protocol::Http,
        Protocol::Https,
    ]
}

/// /5's setup for the client, when `[firmware]` is configured.
pub fn setup(
    cfg: Option<&FirmwareSection>,
    store: &Path,
    running_version: &str,
) -> Option<FirmwareSetup> {
    let fw = cfg?;
    let dir = package_dir(fw, store);
    Some(FirmwareSetup {
        config: MachineConfig {
            protocols: protocols(),
            max_package_bytes: fw.max_size,
            restart_timeout_ms: u64::from(fw.restart_timeout.0) * 1000,
        },
        running_version: running_version.to_string(),
        package_present: dir.join(PACKAGE).exists(),
    })
}

/// Where the package of `[firmware]` is (for `lwgate install-package`).
pub fn package_path(fw: &FirmwareSection, store: &Path) -> PathBuf {
    package_dir(fw, store).join(PACKAGE)
}

fn package_dir(fw: &FirmwareSection, store: &Path) -> PathBuf {
    fw.dir.clone().unwrap_or_else(|| {
        store
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("firmware")
    })
}

impl FirmwareDriver {
    pub fn new(cfg: Option<&FirmwareSection>, store: &Path) -> Option<Self> {
        let cfg = cfg?.clone();
        let dir = package_dir(&cfg, store);
        let mut dl = DownloadConfig::new(&dir);
        dl.max_size = cfg.max_size;
        dl.ca_file = cfg.ca_file.clone();
        let downloader = match Downloader::new(dl) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::error!("firmware downloads cannot work: {e}");
                None
            }
        };
        let (tx, rx) = mpsc::channel(64);
        Some(Self {
            rx,
            tx,
            cfg,
            dir,
            downloader,
            running: None,
            push: None,
            progress: None,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `dtls`: the credentials for a coaps:// Package URI (those of the LwM2M
    /// server on the same host and port: ThingsBoard's generated CoAP URLs point at
    /// itself), found by the engine.
    pub fn task(&mut self, task: FirmwareTask, dtls: Option<crate::dtls::DtlsConfig>) {
        match task {
            FirmwareTask::Download { id, uri, resume } if uri.starts_with("coap") => {
                self.coap_download(id, uri, resume, dtls)
            }
            FirmwareTask::Download { id, uri, resume } => self.download(id, uri, resume),
            FirmwareTask::Cancel => self.cancel(),
            FirmwareTask::DeletePackage => {
                self.push = None;
                for f in [PACKAGE, SIGNATURE, RESUME, COAP_RESUME] {
                    let _ = std::fs::remove_file(self.path(f));
                }
                self.progress = None;
            }
            FirmwareTask::Verify { id } => self.verify(id),
            FirmwareTask::Install => self.install(),
            FirmwareTask::PushBlock { offset, data } => self.push_block(offset, &data),
        }
    }

    fn cancel(&mut self) {
        if let Some((token, task)) = self.running.take() {
            token.cancel();
            task.abort();
        }
        self.push = None;
    }

    fn spawn<F>(&mut self, work: F)
    where
        F: FnOnce(CancellationToken, mpsc::Sender<Report>) -> tokio::task::JoinHandle<()>,
    {
        self.cancel();
        let token = CancellationToken::new();
        let task = work(token.clone(), self.tx.clone());
        self.running = Some((token, task));
    }

    fn download(&mut self, id: u32, uri: String, resume: bool) {
        let Some(dl) = self.downloader.clone() else {
            let _ = self.tx.try_send(Report::Event(Event::DownloadFailed {
                id,
                failure: DownloadFailure::UnsupportedProtocol,
                detail: "the downloader could not be set up (see the journal)".into(),
            }));
            return;
        };
        let resume_file = self.path(RESUME);
        let mut state = if resume {
            std::fs::read_to_string(&resume_file)
                .ok()
                .and_then(|t| serde_json::from_str::<Resume>(&t).ok())
                .filter(|r| r.url == uri)
                .unwrap_or_else(|| Resume::new(uri.clone()))
        } else {
            let _ = std::fs::remove_file(self.path(PACKAGE));
            Resume::new(uri.clone())
        };
        let signed = self.cfg.public_key.is_some();
        self.spawn(move |cancel, tx| {
            tokio::spawn(async move {
                let (ptx, mut prx) = watch::channel(Progress {
                    bytes: state.bytes,
                    total: None,
                    rate: 0,
                    resume: state.clone(),
                });
                let forward = {
                    let tx = tx.clone();
                    let resume_file = resume_file.clone();
                    tokio::spawn(async move {
                        while prx.changed().await.is_ok() {
                            let p = prx.borrow_and_update().clone();
                            // Where a restart continues from.
                            if let Ok(json) = serde_json::to_string(&p.resume) {
                                let _ = std::fs::write(&resume_file, json);
                            }
                            let _ = tx
                                .send(Report::Event(Event::DownloadProgress {
                                    id,
                                    bytes: p.bytes,
                                    total: p.total,
                                }))
                                .await;
                            let shown = Shown {
                                bytes: p.bytes,
                                total: p.total,
                                rate: p.rate,
                            };
                            let _ = tx.send(Report::Progress(shown)).await;
                        }
                    })
                };
                let mut pause = FIRST_RETRY;
                let mut result = Err(DownloadError::Cancelled { bytes: 0 });
                for attempt in 1..=ATTEMPTS {
                    result = dl.fetch(PACKAGE, &mut state, Some(&ptx), Some(&cancel)).await;
                    if let Ok(json) = serde_json::to_string(&state) {
                        let _ = std::fs::write(&resume_file, json);
                    }
                    match &result {
                        Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                            tracing::warn!(
                                "firmware download: {e}; attempt {attempt} of {ATTEMPTS}, again in {} s (from byte {})",
                                pause.as_secs(),
                                state.bytes
                            );
                            tokio::select! {
                                () = cancel.cancelled() => return,
                                () = tokio::time::sleep(pause) => {}
                            }
                            pause = (pause * 2).min(Duration::from_secs(120));
                        }
                        _ => break,
                    }
                }
                if let (Ok(_), true) = (&result, signed) {
                    // The signature beside the package: URI + ".minisig".
                    let mut sig = Resume::new(format!("{}.minisig", state.url));
                    if let Err(e) = dl.fetch(SIGNATURE, &mut sig, None, Some(&cancel)).await {
                        tracing::warn!("firmware download: no signature: {e}");
                        let _ = std::fs::remove_file(dl.config().dir.join(SIGNATURE));
                    }
                }
                drop(ptx);
                let _ = forward.await;
                let ev = match result {
                    Ok(done) => Event::DownloadFinished {
                        id,
                        bytes: done.bytes,
                    },
                    Err(DownloadError::Cancelled { .. }) => return,
                    Err(e) => Event::DownloadFailed {
                        id,
                        failure: failure_of(&e),
                        detail: e.to_string(),
                    },
                };
                let _ = tx.send(Report::Event(ev)).await;
            })
        });
    }

    fn coap_download(
        &mut self,
        id: u32,
        uri: String,
        resume: bool,
        dtls: Option<crate::dtls::DtlsConfig>,
    ) {
        use crate::fetch::{self, FetchConfig, FetchError};
        let resume_file = self.path(COAP_RESUME);
        let package = self.path(PACKAGE);
        let _ = std::fs::create_dir_all(&self.dir);
        let mut state: Option<fetch::Resume> = if resume {
            std::fs::read_to_string(&resume_file)
                .ok()
                .and_then(|t| serde_json::from_str::<fetch::Resume>(&t).ok())
                .filter(|r| r.uri == uri)
        } else {
            let _ = std::fs::remove_file(&package);
            let _ = std::fs::remove_file(&resume_file);
            None
        };
        let cfg = FetchConfig {
            max_bytes: self.cfg.max_size,
            keep_free: 4 << 20,
            dtls,
            progress_every: Duration::from_secs(5),
            ..FetchConfig::default()
        };
        self.spawn(move |cancel, tx| {
            tokio::spawn(async move {
                let mut pause = FIRST_RETRY;
                let mut attempt = 1;
                let result = loop {
                    let (ptx, mut prx) = watch::channel(fetch::Progress {
                        bytes: 0,
                        total: None,
                        bytes_per_sec: 0.0,
                        resume: state.clone().unwrap_or(fetch::Resume {
                            uri: uri.clone(),
                            etag: None,
                            bytes: 0,
                            block_size: 0,
                        }),
                    });
                    let forward = {
                        let tx = tx.clone();
                        let resume_file = resume_file.clone();
                        tokio::spawn(async move {
                            let mut last = None;
                            while prx.changed().await.is_ok() {
                                let p = prx.borrow_and_update().clone();
                                if let Ok(json) = serde_json::to_string(&p.resume) {
                                    let _ = std::fs::write(&resume_file, json);
                                }
                                let _ = tx
                                    .send(Report::Event(Event::DownloadProgress {
                                        id,
                                        bytes: p.bytes,
                                        total: p.total,
                                    }))
                                    .await;
                                let shown = Shown {
                                    bytes: p.bytes,
                                    total: p.total,
                                    rate: p.bytes_per_sec as u64,
                                };
                                let _ = tx.send(Report::Progress(shown)).await;
                                last = Some(p.resume);
                            }
                            last
                        })
                    };
                    let r = tokio::select! {
                        () = cancel.cancelled() => return,
                        r = fetch::fetch(&uri, &package, &cfg, state.as_ref(), Some(&ptx)) => r,
                    };
                    drop(ptx);
                    if let Ok(Some(last)) = forward.await {
                        state = Some(last);
                    }
                    match r {
                        Err(e) if e.update_result() == 4 && attempt < ATTEMPTS => {
                            tracing::warn!(
                                "firmware download: {e}; attempt {attempt} of {ATTEMPTS}, again in {} s",
                                pause.as_secs()
                            );
                            tokio::select! {
                                () = cancel.cancelled() => return,
                                () = tokio::time::sleep(pause) => {}
                            }
                            pause = (pause * 2).min(Duration::from_secs(120));
                            attempt += 1;
                        }
                        r => break r,
                    }
                };
                let ev = match result {
                    Ok(done) => Event::DownloadFinished {
                        id,
                        bytes: done.bytes,
                    },
                    Err(e) => Event::DownloadFailed {
                        id,
                        failure: match e.update_result() {
                            2 => DownloadFailure::NotEnoughSpace,
                            7 => DownloadFailure::InvalidUri,
                            9 => DownloadFailure::UnsupportedProtocol,
                            _ => DownloadFailure::ConnectionLost,
                        },
                        detail: match e {
                            FetchError::NoCredentials => "no DTLS credentials for this coaps:// host: lwgate uses those of the LwM2M server on the same host and port".into(),
                            e => e.to_string(),
                        },
                    },
                };
                let _ = tx.send(Report::Event(ev)).await;
            })
        });
    }

    fn push_block(&mut self, offset: u64, data: &[u8]) {
        let path = self.path(PACKAGE);
        let r = (|| -> std::io::Result<()> {
            if offset == 0 {
                std::fs::create_dir_all(&self.dir)?;
                for f in [SIGNATURE, RESUME, COAP_RESUME] {
                    let _ = std::fs::remove_file(self.path(f));
                }
                self.push = Some(std::fs::File::create(&path)?);
            }
            let f = self
                .push
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no push under way"))?;
            f.seek(SeekFrom::Start(offset))?;
            f.write_all(data)?;
            Ok(())
        })();
        if let Err(e) = r {
            tracing::error!("firmware push: cannot write {}: {e}", path.display());
            self.push = None;
            let _ = self.tx.try_send(Report::Event(Event::PushAborted));
        }
    }

    fn verify(&mut self, id: u32) {
        self.push = None; // the last block is written: close the file
        let package = self.path(PACKAGE);
        let signature = self.path(SIGNATURE);
        let key = self.cfg.public_key.clone();
        self.spawn(move |_, tx| {
            tokio::task::spawn_blocking(move || {
                let ev = match check(&package, &signature, key.as_deref()) {
                    Ok(info) => Event::VerificationOk { id, info },
                    Err(detail) => {
                        tracing::error!("firmware package refused: {detail}");
                        Event::VerificationFailed {
                            id,
                            failure: VerifyFailure::Integrity,
                            detail,
                        }
                    }
                };
                let _ = tx.blocking_send(Report::Event(ev));
            })
        });
    }

    fn install(&mut self) {
        let package = self.path(PACKAGE);
        let argv: Vec<String> = self
            .cfg
            .install
            .iter()
            .map(|a| a.replace("{file}", &package.display().to_string()))
            .collect();
        let runner = self
            .cfg
            .runner
            .unwrap_or(if std::env::var_os("INVOCATION_ID").is_some() {
                Runner::Systemd
            } else {
                Runner::Direct
            });
        let argv = match runner {
            Runner::Direct => argv,
            // The unit runs the same [firmware] install, as root, outside our sandbox.
            Runner::Systemd => vec![
                "systemctl".into(),
                "start".into(),
                "lwgate-install.service".into(),
            ],
        };
        tracing::info!("firmware update: running {}", argv.join(" "));
        self.spawn(move |_, tx| {
            tokio::spawn(async move {
                let _ = tx
                    .send(Report::Event(Event::InstallStarted { now_ms: 0 }))
                    .await;
                let (success, detail) = run(&argv).await;
                if success {
                    tracing::info!("firmware installer succeeded: {detail}");
                } else {
                    tracing::error!("firmware installer failed: {detail}");
                }
                let _ = tx.send(Report::InstallExited { success, detail }).await;
            })
        });
    }

    /// For `lwgate status`: bytes, total, rate of the download under way.
    pub fn describe_progress(&self) -> Option<String> {
        let p = self.progress.as_ref()?;
        let total = p
            .total
            .map(|t| {
                format!(
                    " of {t} ({:.0} %)",
                    p.bytes as f64 * 100.0 / t.max(1) as f64
                )
            })
            .unwrap_or_default();
        Some(format!("{} bytes{total}, {} B/s", p.bytes, p.rate))
    }
}

/// The package against the configured key (when there is one): its signature
/// beside it, and the name and version its trusted comment gives.
fn check(package: &Path, signature: &Path, key: Option<&Path>) -> Result<PackageInfo, String> {
    let policy = match key {
        None => Policy::default(),
        Some(k) => {
            let key = std::fs::read_to_string(k)
                .map_err(|e| format!("cannot read the public key {}: {e}", k.display()))
                .and_then(|t| TrustedKey::decode(&t).map_err(|e| e.to_string()))?;
            let sig = std::fs::read_to_string(signature)
                .map_err(|_| "the package has no signature (Package URI + .minisig), and [firmware] public_key requires one".to_string())
                .and_then(|t| DetachedSignature::decode(&t).map_err(|e| e.to_string()))?;
            Policy {
                sha256: None,
                signature: Some((key, sig)),
            }
        }
    };
    let mut v = ImageVerifier::new(&policy).map_err(|e| e.to_string())?;
    let mut f =
        std::fs::File::open(package).map_err(|e| format!("cannot open the package: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read the package: {e}"))?;
        if n == 0 {
            break;
        }
        v.update(&buf[..n]);
    }
    let done = v.finish().map_err(|e| e.to_string())?;
    tracing::info!(
        bytes = done.bytes,
        sha256 = %done.sha256,
        "firmware package checked{}",
        if done.trusted_comment.is_some() { " (signature good)" } else { "" }
    );
    Ok(info_of(done.trusted_comment.as_deref()))
}

/// `name=… version=…` words of a trusted comment (what `minisign -t` was given).
fn info_of(comment: Option<&str>) -> PackageInfo {
    let mut info = PackageInfo::default();
    for word in comment.unwrap_or_default().split_whitespace() {
        if let Some(v) = word.strip_prefix("name=") {
            info.name = Some(v.to_string());
        } else if let Some(v) = word.strip_prefix("version=") {
            info.version = Some(v.to_string());
        }
    }
    info
}

fn failure_of(e: &DownloadError) -> DownloadFailure {
    match e.update_result() {
        2 => DownloadFailure::NotEnoughSpace,
        7 => DownloadFailure::InvalidUri,
        9 => DownloadFailure::UnsupportedProtocol,
        _ => DownloadFailure::ConnectionLost,
    }
}

/// Runs `argv`; its output goes to the journal, its status is the verdict.
async fn run(argv: &[String]) -> (bool, String) {
    let Some((prog, args)) = argv.split_first() else {
        return (false, "no installer configured".into());
    };
    let started = Instant::now();
    match tokio::process::Command::new(prog).args(args).output().await {
        Err(e) => (false, format!("cannot run {prog}: {e}")),
        Ok(out) => {
            for line in String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
            {
                tracing::info!("installer: {line}");
            }
            let took = started.elapsed().as_secs_f32();
            (
                out.status.success(),
                format!("{prog} exited with {} after {took:.1} s", out.status),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_comment_words() {
        let i = info_of(Some("timestamp:1 name=gw-image version=2.1.0"));
        assert_eq!(i.name.as_deref(), Some("gw-image"));
        assert_eq!(i.version.as_deref(), Some("2.1.0"));
        assert_eq!(info_of(None), PackageInfo::default());
    }
}
