//! What /5 and /9 share on the driver's side: one package directory with its
//! file, downloads (download/ for http and https, fetch/ for coap and coaps)
//! with retries and a resume point on disk, a Block1 push written block by
//! block, the check (lwm2m/firmware/verify.rs), and commands run as children.
//! Everything reports on one channel of the main loop; the object's driver
//! turns the reports into its machine's events.

use crate::download::{DownloadConfig, DownloadError, Downloader, Progress, Resume};
use crate::lwm2m::firmware::state::{DownloadFailure, VerifyFailure};
use crate::lwm2m::firmware::verify::{DetachedSignature, ImageVerifier, Policy, TrustedKey};
use crate::lwm2m::firmware::PackageInfo;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub const PACKAGE: &str = "package";
const SIGNATURE: &str = "package.minisig";
const RESUME: &str = "package.resume.json";
const COAP_RESUME: &str = "package.coap-resume.json";
/// Attempts of one download while the link keeps failing, and the first pause.
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// What the package work reports; `C` names the command that ran.
#[derive(Debug)]
pub enum Report<C> {
    DownloadProgress {
        id: u32,
        bytes: u64,
        total: Option<u64>,
    },
    DownloadFinished {
        id: u32,
        bytes: u64,
    },
    DownloadFailed {
        id: u32,
        failure: DownloadFailure,
        detail: String,
    },
    VerificationOk {
        id: u32,
        info: PackageInfo,
    },
    VerificationFailed {
        id: u32,
        failure: VerifyFailure,
        detail: String,
    },
    /// A pushed block could not be written.
    PushAborted,
    /// A command is about to run.
    CommandStarted(C),
    CommandExited {
        command: C,
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

/// How the package of one object is fetched and checked.
pub struct Settings {
    /// "firmware" or "software": for the journal.
    pub label: &'static str,
    /// Where the package and its resume points live.
    pub dir: PathBuf,
    pub max_size: Option<u64>,
    pub ca_file: Option<PathBuf>,
    pub public_key: Option<PathBuf>,
}

/// The default package directory: `name` beside the state database.
pub fn default_dir(dir: Option<&PathBuf>, store: &Path, name: &str) -> PathBuf {
    dir.cloned()
        .unwrap_or_else(|| store.parent().unwrap_or_else(|| Path::new(".")).join(name))
}

pub struct Package<C> {
    pub rx: mpsc::Receiver<Report<C>>,
    tx: mpsc::Sender<Report<C>>,
    label: &'static str,
    pub dir: PathBuf,
    max_size: Option<u64>,
    public_key: Option<PathBuf>,
    downloader: Option<Arc<Downloader>>,
    /// The download, check or command running.
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    push: Option<std::fs::File>,
    /// Progress for `lwgate status`.
    pub progress: Option<Shown>,
}

impl<C: Copy + Send + 'static> Package<C> {
    pub fn new(s: Settings) -> Self {
        let mut dl = DownloadConfig::new(&s.dir);
        dl.max_size = s.max_size;
        dl.ca_file = s.ca_file;
        let downloader = match Downloader::new(dl) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::error!("{} downloads cannot work: {e}", s.label);
                None
            }
        };
        let (tx, rx) = mpsc::channel(64);
        Self {
            rx,
            tx,
            label: s.label,
            dir: s.dir,
            max_size: s.max_size,
            public_key: s.public_key,
            downloader,
            running: None,
            push: None,
            progress: None,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Fetch `uri` into the package file; `dtls` for a coaps:// URI.
    pub fn download(
        &mut self,
        id: u32,
        uri: String,
        resume: bool,
        dtls: Option<crate::dtls::DtlsConfig>,
    ) {
        if uri.starts_with("coap") {
            self.coap_download(id, uri, resume, dtls)
        } else {
            self.http_download(id, uri, resume)
        }
    }

    pub fn delete(&mut self) {
        self.push = None;
        for f in [PACKAGE, SIGNATURE, RESUME, COAP_RESUME] {
            let _ = std::fs::remove_file(self.path(f));
        }
        self.progress = None;
    }

    pub fn cancel(&mut self) {
        if let Some((token, task)) = self.running.take() {
            token.cancel();
            task.abort();
        }
        self.push = None;
    }

    fn spawn<F>(&mut self, work: F)
    where
        F: FnOnce(CancellationToken, mpsc::Sender<Report<C>>) -> tokio::task::JoinHandle<()>,
    {
        self.cancel();
        let token = CancellationToken::new();
        let task = work(token.clone(), self.tx.clone());
        self.running = Some((token, task));
    }

    fn http_download(&mut self, id: u32, uri: String, resume: bool) {
        let Some(dl) = self.downloader.clone() else {
            let _ = self.tx.try_send(Report::DownloadFailed {
                id,
                failure: DownloadFailure::UnsupportedProtocol,
                detail: "the downloader could not be set up (see the journal)".into(),
            });
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
        let signed = self.public_key.is_some();
        let label = self.label;
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
                            let shown = Shown {
                                bytes: p.bytes,
                                total: p.total,
                                rate: p.rate,
                            };
                            progressed(&tx, id, &resume_file, &p.resume, shown).await;
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
                                "{label} download: {e}; attempt {attempt} of {ATTEMPTS}, again in {} s (from byte {})",
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
                        tracing::warn!("{label} download: no signature: {e}");
                        let _ = std::fs::remove_file(dl.config().dir.join(SIGNATURE));
                    }
                }
                drop(ptx);
                let _ = forward.await;
                let report = match result {
                    Ok(done) => Report::DownloadFinished {
                        id,
                        bytes: done.bytes,
                    },
                    Err(DownloadError::Cancelled { .. }) => return,
                    Err(e) => Report::DownloadFailed {
                        id,
                        failure: failure_of(e.update_result()),
                        detail: e.to_string(),
                    },
                };
                let _ = tx.send(report).await;
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
            max_bytes: self.max_size,
            keep_free: 4 << 20,
            dtls,
            progress_every: Duration::from_secs(5),
            ..FetchConfig::default()
        };
        let label = self.label;
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
                                let shown = Shown {
                                    bytes: p.bytes,
                                    total: p.total,
                                    rate: p.bytes_per_sec as u64,
                                };
                                progressed(&tx, id, &resume_file, &p.resume, shown).await;
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
                                "{label} download: {e}; attempt {attempt} of {ATTEMPTS}, again in {} s",
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
                let report = match result {
                    Ok(done) => Report::DownloadFinished {
                        id,
                        bytes: done.bytes,
                    },
                    Err(e) => Report::DownloadFailed {
                        id,
                        failure: failure_of(e.update_result()),
                        detail: match e {
                            FetchError::NoCredentials => "no DTLS credentials for this coaps:// host: lwgate uses those of the LwM2M server on the same host and port".into(),
                            e => e.to_string(),
                        },
                    },
                };
                let _ = tx.send(report).await;
            })
        });
    }

    /// A block pushed by a server: `data` at `offset` (0 starts a new file).
    pub fn push_block(&mut self, offset: u64, data: &[u8]) {
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
            tracing::error!("{} push: cannot write {}: {e}", self.label, path.display());
            self.push = None;
            let _ = self.tx.try_send(Report::PushAborted);
        }
    }

    pub fn verify(&mut self, id: u32) {
        self.push = None; // the last block is written: close the file
        let package = self.path(PACKAGE);
        let signature = self.path(SIGNATURE);
        let key = self.public_key.clone();
        let label = self.label;
        self.spawn(move |_, tx| {
            tokio::task::spawn_blocking(move || {
                let report = match check(label, &package, &signature, key.as_deref()) {
                    Ok(info) => Report::VerificationOk { id, info },
                    Err(detail) => {
                        tracing::error!("{label} package refused: {detail}");
                        Report::VerificationFailed {
                            id,
                            failure: VerifyFailure::Integrity,
                            detail,
                        }
                    }
                };
                let _ = tx.blocking_send(report);
            })
        });
    }

    /// Runs `argv` as a child; `after` runs on success, before the report
    /// (what must be true on disk before the machine hears of it).
    pub fn run(
        &mut self,
        command: C,
        what: &'static str,
        argv: Vec<String>,
        after: impl FnOnce() + Send + 'static,
    ) {
        let label = self.label;
        tracing::info!("{label} {what}: running {}", argv.join(" "));
        self.spawn(move |_, tx| {
            tokio::spawn(async move {
                let _ = tx.send(Report::CommandStarted(command)).await;
                let (success, detail) = run(what, &argv).await;
                if success {
                    after();
                    tracing::info!("{label} {what} succeeded: {detail}");
                } else {
                    tracing::error!("{label} {what} failed: {detail}");
                }
                let _ = tx
                    .send(Report::CommandExited {
                        command,
                        success,
                        detail,
                    })
                    .await;
            })
        });
    }

    /// A command that needed nothing run: reported as a success at once.
    pub fn succeeded(&mut self, command: C, detail: String) {
        let _ = self.tx.try_send(Report::CommandExited {
            command,
            success: true,
            detail,
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
fn check(
    label: &str,
    package: &Path,
    signature: &Path,
    key: Option<&Path>,
) -> Result<PackageInfo, String> {
    let policy = match key {
        None => Policy::default(),
        Some(k) => {
            let key = std::fs::read_to_string(k)
                .map_err(|e| format!("cannot read the public key {}: {e}", k.display()))
                .and_then(|t| TrustedKey::decode(&t).map_err(|e| e.to_string()))?;
            let sig = std::fs::read_to_string(signature)
                .map_err(|_| format!("the package has no signature (Package URI + .minisig), and [{label}] public_key requires one"))
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
        "{label} package checked{}",
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

/// A transfer's /5 Update Result code as the machines' failure.
fn failure_of(update_result: u8) -> DownloadFailure {
    match update_result {
        2 => DownloadFailure::NotEnoughSpace,
        7 => DownloadFailure::InvalidUri,
        9 => DownloadFailure::UnsupportedProtocol,
        _ => DownloadFailure::ConnectionLost,
    }
}

/// Runs `argv`; its output goes to the journal, its status is the verdict.
async fn run(what: &str, argv: &[String]) -> (bool, String) {
    let Some((prog, args)) = argv.split_first() else {
        return (false, "no command configured".into());
    };
    let started = Instant::now();
    match tokio::process::Command::new(prog).args(args).output().await {
        Err(e) => (false, format!("cannot run {prog}: {e}")),
        Ok(out) => {
            for line in String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
            {
                tracing::info!("{what}: {line}");
            }
            let took = started.elapsed().as_secs_f32();
            (
                out.status.success(),
                format!("{prog} exited with {} after {took:.1} s", out.status),
            )
        }
    }
}

/// A download moved on: where a restart continues from (on disk), the machine's
/// progress event, and the figures for `lwgate status`.
async fn progressed<C>(
    tx: &mpsc::Sender<Report<C>>,
    id: u32,
    resume_file: &Path,
    resume: &impl serde::Serialize,
    shown: Shown,
) {
    if let Ok(json) = serde_json::to_string(resume) {
        let _ = std::fs::write(resume_file, json);
    }
    let _ = tx
        .send(Report::DownloadProgress {
            id,
            bytes: shown.bytes,
            total: shown.total,
        })
        .await;
    let _ = tx.send(Report::Progress(shown)).await;
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
