//! What /5 and /9 share on the driver's side: one package directory with its
//! file, downloads (download/ for http and https, fetch/ for coap and coaps)
//! with retries and a resume point on disk, a Block1 push written block by
//! block, the check (lwm2m/firmware/verify.rs), and commands run as children.
//! Everything reports on one channel of the object's driver, tagged with the
//! object instance; the driver turns the reports into its machine's events.
//!
//! The check runs while the bytes arrive (download/sink.rs): the SHA-256, the
//! digest the server gave (in the Package URI, or in a manifest beside the
//! package: lwm2m/firmware/digest.rs) and the minisign signature, which is
//! therefore fetched before the package. A Verify then has nothing left to
//! read, unless the agent restarted in between (the file is read back then).

use crate::download::{DownloadConfig, DownloadError, Downloader, Progress, Resume};
use crate::fetch::{self, FetchConfig, FetchError};
use crate::lwm2m::firmware::digest;
use crate::lwm2m::firmware::state::{DownloadFailure, VerifyFailure};
use crate::lwm2m::firmware::verify::{
    parse_sha256, DetachedSignature, ImageVerifier, Policy, TrustedKey, Verified, VerifyError,
};
use crate::lwm2m::firmware::PackageInfo;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub const PACKAGE: &str = "package";
const SIGNATURE: &str = "package.minisig";
/// The digest the package must have, in `sha256sum` format (so `sha256sum -c
/// package.sha256` in the directory checks it by hand too).
const DIGEST: &str = "package.sha256";
/// The server's manifest while it is read.
const MANIFEST: &str = "package.manifest";
const RESUME: &str = "package.resume.json";
const COAP_RESUME: &str = "package.coap-resume.json";
const FILES: [&str; 6] = [PACKAGE, SIGNATURE, DIGEST, MANIFEST, RESUME, COAP_RESUME];
/// Attempts of one download while the link keeps failing, and the first pause.
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// A signature or a manifest is a few lines: anything larger is not one.
const MAX_COMPANION: u64 = 64 << 10;

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

/// Reports with the object instance they are about.
pub type Tagged<C> = (u16, Report<C>);

/// A download's progress as `lwgate status` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    pub bytes: u64,
    pub total: Option<u64>,
    /// Bytes per second.
    pub rate: u64,
}

/// How the package of one object is fetched and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// "firmware" or "software": for the journal.
    pub label: &'static str,
    /// Where the package and its resume points live.
    pub dir: PathBuf,
    pub max_size: Option<u64>,
    pub ca_file: Option<PathBuf>,
    pub public_key: Option<PathBuf>,
    /// Fetch `<Package URI>.sha256` and check the package against it.
    pub sha256_manifest: bool,
}

/// The default package directory: `name` beside the state database.
pub fn default_dir(dir: Option<&PathBuf>, store: &Path, name: &str) -> PathBuf {
    dir.cloned()
        .unwrap_or_else(|| store.parent().unwrap_or_else(|| Path::new(".")).join(name))
}

/// A download's verdict, left for the Verify that follows it.
#[derive(Debug)]
struct Checked {
    id: u32,
    bytes: u64,
    check: Result<Verified, VerifyError>,
}

/// A Block1 push being written: its SHA-256 as the blocks come.
struct Push {
    file: std::fs::File,
    /// None once a block came out of order (the file is read back then).
    check: Option<ImageVerifier<'static>>,
    next: u64,
}

pub struct Package<C> {
    tag: u16,
    tx: mpsc::Sender<Tagged<C>>,
    s: Settings,
    downloader: Option<Arc<Downloader>>,
    /// The download, check or command running.
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    push: Option<Push>,
    checked: Arc<Mutex<Option<Checked>>>,
    /// Progress for `lwgate status`.
    pub progress: Option<Shown>,
}

impl<C: Copy + Send + 'static> Package<C> {
    /// `tag`: the object instance, given back with every report on `tx`.
    pub fn new(s: Settings, tag: u16, tx: mpsc::Sender<Tagged<C>>) -> Self {
        let mut dl = DownloadConfig::new(&s.dir);
        dl.max_size = s.max_size;
        dl.ca_file = s.ca_file.clone();
        let downloader = match Downloader::new(dl) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::error!("{} downloads cannot work: {e}", s.label);
                None
            }
        };
        Self {
            tag,
            tx,
            s,
            downloader,
            running: None,
            push: None,
            checked: Arc::default(),
            progress: None,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.s.dir.join(name)
    }

    fn report(&self, r: Report<C>) {
        let _ = self.tx.try_send((self.tag, r));
    }

    /// Fetch `uri` into the package file; `dtls` for a coaps:// URI.
    pub fn download(
        &mut self,
        id: u32,
        uri: String,
        resume: bool,
        dtls: Option<crate::dtls::DtlsConfig>,
    ) {
        let via = if uri.starts_with("coap") {
            Via::Coap(Box::new(FetchConfig {
                max_bytes: self.s.max_size,
                keep_free: 4 << 20,
                dtls,
                progress_every: Duration::from_secs(5),
                ..FetchConfig::default()
            }))
        } else {
            match self.downloader.clone() {
                Some(d) => Via::Http(d),
                None => {
                    self.report(Report::DownloadFailed {
                        id,
                        failure: DownloadFailure::UnsupportedProtocol,
                        detail: "the downloader could not be set up (see the journal)".into(),
                    });
                    return;
                }
            }
        };
        self.cancel();
        let _ = std::fs::create_dir_all(&self.s.dir);
        let keep: &[&str] = if resume {
            &[PACKAGE, RESUME, COAP_RESUME]
        } else {
            &[]
        };
        for f in FILES.iter().filter(|f| !keep.contains(f)) {
            let _ = std::fs::remove_file(self.path(f));
        }
        *lock(&self.checked) = None;
        let job = Pull {
            label: self.s.label,
            tag: self.tag,
            id,
            uri,
            dir: self.s.dir.clone(),
            via,
            key: self.s.public_key.clone(),
            manifest: self.s.sha256_manifest,
            checked: self.checked.clone(),
        };
        self.spawn(move |cancel, tx| tokio::spawn(job.run(cancel, tx)));
    }

    pub fn delete(&mut self) {
        self.push = None;
        delete_files(&self.s.dir);
        *lock(&self.checked) = None;
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
        F: FnOnce(CancellationToken, mpsc::Sender<Tagged<C>>) -> tokio::task::JoinHandle<()>,
    {
        self.cancel();
        let token = CancellationToken::new();
        let task = work(token.clone(), self.tx.clone());
        self.running = Some((token, task));
    }

    /// A block pushed by a server: `data` at `offset` (0 starts a new file).
    pub fn push_block(&mut self, offset: u64, data: &[u8]) {
        let path = self.path(PACKAGE);
        let r = (|| -> std::io::Result<()> {
            if offset == 0 {
                std::fs::create_dir_all(&self.s.dir)?;
                for f in [SIGNATURE, DIGEST, MANIFEST, RESUME, COAP_RESUME] {
                    let _ = std::fs::remove_file(self.path(f));
                }
                *lock(&self.checked) = None;
                self.push = Some(Push {
                    file: std::fs::File::create(&path)?,
                    check: Some(ImageVerifier::digest_only()),
                    next: 0,
                });
            }
            let p = self
                .push
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no push under way"))?;
            if offset != p.next {
                // The client sends blocks in order; should one come again,
                // the file is right and the running hash is not.
                p.check = None;
                p.file.seek(SeekFrom::Start(offset))?;
            }
            p.file.write_all(data)?;
            if let Some(c) = p.check.as_mut() {
                c.update(data);
            }
            p.next = offset + data.len() as u64;
            Ok(())
        })();
        if let Err(e) = r {
            tracing::error!(
                "{} push: cannot write {}: {e}",
                self.s.label,
                path.display()
            );
            self.push = None;
            self.report(Report::PushAborted);
        }
    }

    /// The verdict on the package file: the one its download or push
    /// computed, or (after a restart) the file read back.
    pub fn verify(&mut self, id: u32) {
        let package = self.path(PACKAGE);
        let on_disk = std::fs::metadata(&package).ok().map(|m| m.len());
        let (label, tag) = (self.s.label, self.tag);
        let downloaded = lock(&self.checked)
            .take()
            .filter(|c| c.id == id && Some(c.bytes) == on_disk)
            .map(|c| c.check.map_err(|e| e.to_string()));
        let known = match downloaded {
            Some(c) => Some(c),
            None => self.pushed(on_disk),
        };
        match known {
            Some(check) => {
                self.cancel();
                self.report(verdict(label, id, check));
            }
            None => {
                let policy = self.policy();
                self.spawn(move |_, tx| {
                    tokio::task::spawn_blocking(move || {
                        let check = policy.and_then(|p| read_back(&package, &p));
                        let _ = tx.blocking_send((tag, verdict(label, id, check)));
                    })
                });
            }
        }
    }

    /// The verdict on a push that just ended, from the hash of its blocks;
    /// None: read the file back.
    fn pushed(&mut self, on_disk: Option<u64>) -> Option<Result<Verified, String>> {
        let p = self.push.take()?;
        // Durable before the machine may call it Downloaded.
        if let Err(e) = p.file.sync_all() {
            return Some(Err(format!("cannot write the package: {e}")));
        }
        let check = p.check.filter(|c| Some(c.bytes()) == on_disk)?;
        // A push has no signature or digest beside it: with a key configured
        // the policy refuses it, without one the digest is all there is.
        match self.policy() {
            Ok(policy) if policy.signature.is_none() && policy.sha256.is_none() => {
                Some(check.finish().map_err(|e| e.to_string()))
            }
            Ok(_) => None,
            Err(why) => Some(Err(why)),
        }
    }

    /// The check a package in the directory must pass: the configured key
    /// with the signature beside the package, the digest recorded with it.
    fn policy(&self) -> Result<Policy, String> {
        let signature = match &self.s.public_key {
            None => None,
            Some(k) => {
                let key = read_key(k)?;
                let sig = std::fs::read_to_string(self.path(SIGNATURE))
                    .map_err(|_| format!("the package has no signature (Package URI + .minisig), and [{}] public_key requires one", self.s.label))
                    .and_then(|t| DetachedSignature::decode(&t).map_err(|e| e.to_string()))?;
                Some((key, sig))
            }
        };
        let sha256 = match std::fs::read_to_string(self.path(DIGEST)) {
            Err(_) => None,
            Ok(t) => Some(
                parse_sha256(t.split_whitespace().next().unwrap_or_default())
                    .map_err(|e| format!("{}: {e}", self.path(DIGEST).display()))?,
            ),
        };
        Ok(Policy { sha256, signature })
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
        let label = self.s.label;
        let tag = self.tag;
        tracing::info!("{label} {what}: running {}", argv.join(" "));
        self.spawn(move |_, tx| {
            tokio::spawn(async move {
                let _ = tx.send((tag, Report::CommandStarted(command))).await;
                let (success, detail) = run(what, &argv).await;
                if success {
                    after();
                    tracing::info!("{label} {what} succeeded: {detail}");
                } else {
                    tracing::error!("{label} {what} failed: {detail}");
                }
                let _ = tx
                    .send((
                        tag,
                        Report::CommandExited {
                            command,
                            success,
                            detail,
                        },
                    ))
                    .await;
            })
        });
    }

    /// A command that needed nothing run: reported as a success at once.
    pub fn succeeded(&mut self, command: C, detail: String) {
        self.report(Report::CommandExited {
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

/// Removes the package of `dir` with what belongs to it (signature, digest,
/// resume points).
pub fn delete_files(dir: &Path) {
    for f in FILES {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_key(k: &Path) -> Result<TrustedKey, String> {
    std::fs::read_to_string(k)
        .map_err(|e| format!("cannot read the public key {}: {e}", k.display()))
        .and_then(|t| TrustedKey::decode(&t).map_err(|e| e.to_string()))
}

/// The report of a check, with its line in the journal.
fn verdict<C>(label: &str, id: u32, check: Result<Verified, String>) -> Report<C> {
    match check {
        Ok(done) => {
            tracing::info!(
                bytes = done.bytes,
                sha256 = %done.sha256,
                "{label} package checked{}",
                if done.trusted_comment.is_some() { " (signature good)" } else { "" }
            );
            Report::VerificationOk {
                id,
                info: info_of(done.trusted_comment.as_deref()),
            }
        }
        Err(detail) => {
            tracing::error!("{label} package refused: {detail}");
            Report::VerificationFailed {
                id,
                failure: VerifyFailure::Integrity,
                detail,
            }
        }
    }
}

/// The package file read back through the check.
fn read_back(package: &Path, policy: &Policy) -> Result<Verified, String> {
    let mut v = ImageVerifier::new(policy).map_err(|e| e.to_string())?;
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
    v.finish().map_err(|e| e.to_string())
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
        5 => DownloadFailure::IntegrityFailure,
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
            let mut detail = format!("{prog} exited with {} after {took:.1} s", out.status);
            // What a failed command said last is what the operator needs to
            // see in `lwgate status` and /5's reason, without the journal.
            if let Some(last) = (!out.status.success())
                .then(|| last_line(&out.stderr).or_else(|| last_line(&out.stdout)))
                .flatten()
            {
                detail.push_str(": ");
                detail.push_str(&last);
            }
            (out.status.success(), detail)
        }
    }
}

/// The last non-empty line of a command's output, at most 200 characters.
fn last_line(out: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(out);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

// ---------------------------------------------------------------------------
// Pulls

/// How a pull fetches.
enum Via {
    Http(Arc<Downloader>),
    Coap(Box<FetchConfig>),
}

/// One attempt's failure: its /5 Update Result, whether the same URI may
/// work later, and what to tell.
struct Failed {
    result: u8,
    retryable: bool,
    detail: String,
}

impl From<DownloadError> for Failed {
    fn from(e: DownloadError) -> Self {
        Failed {
            result: e.update_result(),
            retryable: e.is_retryable(),
            detail: e.to_string(),
        }
    }
}

impl From<FetchError> for Failed {
    fn from(e: FetchError) -> Self {
        let result = e.update_result();
        Failed {
            result,
            retryable: result == 4,
            detail: match e {
                FetchError::NoCredentials => "no DTLS credentials for this coaps:// host: lwgate uses those of the LwM2M server on the same host and port".into(),
                e => e.to_string(),
            },
        }
    }
}

/// Why a pull ends without a package.
enum Stop {
    Cancelled,
    Failed(DownloadFailure, String),
}

impl Stop {
    fn integrity(detail: impl ToString) -> Self {
        Stop::Failed(DownloadFailure::IntegrityFailure, detail.to_string())
    }
}

/// A URI as the journal and `lwgate status` show it: no query (a signed
/// URL's token), no fragment.
fn shown(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or_default()
}

struct Pull {
    label: &'static str,
    tag: u16,
    id: u32,
    /// As the server wrote it (its fragment may hold the digest).
    uri: String,
    dir: PathBuf,
    via: Via,
    key: Option<PathBuf>,
    manifest: bool,
    checked: Arc<Mutex<Option<Checked>>>,
}

impl Pull {
    async fn run<C: Send + 'static>(self, cancel: CancellationToken, tx: mpsc::Sender<Tagged<C>>) {
        let (id, tag) = (self.id, self.tag);
        let outcome = match self.policy(&cancel).await {
            Ok(policy) => self.package(policy, &cancel, &tx).await,
            Err(stop) => Err(stop),
        };
        let report = match outcome {
            Ok((bytes, check)) => {
                *lock(&self.checked) = Some(Checked { id, bytes, check });
                Report::DownloadFinished { id, bytes }
            }
            Err(Stop::Cancelled) => return,
            Err(Stop::Failed(failure, detail)) => {
                if failure == DownloadFailure::IntegrityFailure {
                    tracing::error!("{} package refused: {detail}", self.label);
                }
                Report::DownloadFailed {
                    id,
                    failure,
                    detail,
                }
            }
        };
        let _ = tx.send((tag, report)).await;
    }

    /// Waits out a failed attempt before the next; false: give up (the
    /// failure is final, or it was the last attempt).
    async fn again(
        &self,
        f: &Failed,
        attempt: u32,
        pause: &mut Duration,
        cancel: &CancellationToken,
    ) -> Result<bool, Stop> {
        if !f.retryable || attempt >= ATTEMPTS {
            return Ok(false);
        }
        tracing::warn!(
            "{} download: {}; attempt {attempt} of {ATTEMPTS}, again in {} s",
            self.label,
            f.detail,
            pause.as_secs()
        );
        tokio::select! {
            () = cancel.cancelled() => return Err(Stop::Cancelled),
            () = tokio::time::sleep(*pause) => {}
        }
        *pause = (*pause * 2).min(Duration::from_secs(120));
        Ok(true)
    }

    /// What the package is checked against, from the config, the URI and
    /// the files beside the package (fetched first: the check runs while the
    /// package arrives). A policy that cannot pass fails the pull with
    /// Integrity before the package is fetched.
    async fn policy(&self, cancel: &CancellationToken) -> Result<Policy, Stop> {
        let in_uri = digest::from_uri(&self.uri)
            .map_err(|e| Stop::Failed(DownloadFailure::InvalidUri, e.to_string()))?;
        let in_manifest = if self.manifest {
            let text = self
                .companion(".sha256", MANIFEST, cancel, |why| {
                    format!(
                        "no SHA-256 manifest ({why}), and [{}] sha256_manifest requires one",
                        self.label
                    )
                })
                .await?;
            let _ = std::fs::remove_file(self.dir.join(MANIFEST));
            let name = digest::file_name(&self.uri);
            Some(digest::from_manifest(&text, name).map_err(Stop::integrity)?)
        } else {
            None
        };
        let sha256 = digest::expected(in_uri, in_manifest).map_err(Stop::integrity)?;
        let digest_file = self.dir.join(DIGEST);
        match sha256 {
            Some(d) => std::fs::write(&digest_file, format!("{}  {PACKAGE}\n", hex::encode(d)))
                .map_err(|e| {
                    Stop::Failed(
                        DownloadFailure::NotEnoughSpace,
                        format!("{}: {e}", digest_file.display()),
                    )
                })?,
            None => {
                let _ = std::fs::remove_file(&digest_file);
            }
        }
        let signature = match &self.key {
            None => None,
            Some(k) => {
                let key = read_key(k).map_err(Stop::integrity)?;
                let text = self
                    .companion(".minisig", SIGNATURE, cancel, |why| {
                        format!("the package has no signature ({why}), and [{}] public_key requires one", self.label)
                    })
                    .await?;
                let sig = DetachedSignature::decode(&text).map_err(Stop::integrity)?;
                Some((key, sig))
            }
        };
        let policy = Policy { sha256, signature };
        // A signature by another key, or a legacy one, fails now.
        ImageVerifier::new(&policy).map_err(Stop::integrity)?;
        Ok(policy)
    }

    /// A small file beside the package (`ext` after its URI's path) into
    /// `file`, with the package's retries. One that is not there (4.04, 404)
    /// fails the pull with Integrity, `missing` saying why.
    async fn companion(
        &self,
        ext: &str,
        file: &str,
        cancel: &CancellationToken,
        missing: impl Fn(String) -> String,
    ) -> Result<String, Stop> {
        let uri = digest::companion(&self.uri, ext);
        let path = self.dir.join(file);
        let mut pause = FIRST_RETRY;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let _ = std::fs::remove_file(&path);
            let r = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(Stop::Cancelled),
                r = self.small(&uri, file, &path) => r,
            };
            match r {
                Ok(()) => break,
                Err(f) if self.again(&f, attempt, &mut pause, cancel).await? => {}
                Err(f) if f.result == 7 => {
                    return Err(Stop::integrity(missing(format!(
                        "{}: {}",
                        shown(&uri),
                        f.detail
                    ))))
                }
                Err(f) => return Err(Stop::Failed(failure_of(f.result), f.detail)),
            }
        }
        let big = std::fs::metadata(&path).map_or(0, |m| m.len()) > MAX_COMPANION;
        let text = std::fs::read(&path)
            .ok()
            .filter(|_| !big)
            .and_then(|b| String::from_utf8(b).ok());
        text.ok_or_else(|| {
            Stop::integrity(format!(
                "{} is not a text file of at most {MAX_COMPANION} bytes",
                shown(&uri)
            ))
        })
    }

    async fn small(&self, uri: &str, file: &str, path: &Path) -> Result<(), Failed> {
        match &self.via {
            Via::Http(dl) => {
                let mut state = Resume::new(uri);
                dl.fetch(file, &mut state, None, None).await.map(drop)?;
            }
            Via::Coap(cfg) => {
                fetch::fetch(uri, path, cfg, None, None).await.map(drop)?;
            }
        }
        Ok(())
    }

    /// The package itself, checked against `policy` as it arrives.
    async fn package<C: Send + 'static>(
        &self,
        policy: Policy,
        cancel: &CancellationToken,
        tx: &mpsc::Sender<Tagged<C>>,
    ) -> Result<(u64, Result<Verified, VerifyError>), Stop> {
        // Never sent: the fragment is ours (it may hold the digest).
        let uri = digest::without_fragment(&self.uri);
        let mut pause = FIRST_RETRY;
        let mut attempt = 0;
        match &self.via {
            Via::Http(dl) => {
                let resume_file = self.dir.join(RESUME);
                let mut state = std::fs::read_to_string(&resume_file)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Resume>(&t).ok())
                    .filter(|r| r.url == uri)
                    .unwrap_or_else(|| Resume::new(uri));
                let (ptx, forward) =
                    self.forward(&resume_file, tx, state.clone(), |p: &Progress| {
                        (
                            Shown {
                                bytes: p.bytes,
                                total: p.total,
                                rate: p.rate,
                            },
                            p.resume.clone(),
                        )
                    });
                let result = loop {
                    attempt += 1;
                    let r = dl
                        .fetch_checked(
                            PACKAGE,
                            &mut state,
                            Some(&ptx),
                            Some(cancel),
                            policy.clone(),
                        )
                        .await;
                    save(&resume_file, &state);
                    match r {
                        Err(DownloadError::Cancelled { .. }) => return Err(Stop::Cancelled),
                        Err(e) => {
                            let f = Failed::from(e);
                            if !self.again(&f, attempt, &mut pause, cancel).await? {
                                break Err(f);
                            }
                        }
                        Ok(done) => break Ok((done.bytes, done.check)),
                    }
                };
                drop(ptx);
                let _ = forward.await;
                result.map_err(|f| Stop::Failed(failure_of(f.result), f.detail))
            }
            Via::Coap(cfg) => {
                let resume_file = self.dir.join(COAP_RESUME);
                let package = self.dir.join(PACKAGE);
                let mut state = std::fs::read_to_string(&resume_file)
                    .ok()
                    .and_then(|t| serde_json::from_str::<fetch::Resume>(&t).ok())
                    .filter(|r| r.uri == uri);
                loop {
                    attempt += 1;
                    let first = state.clone().unwrap_or(fetch::Resume {
                        uri: uri.to_string(),
                        etag: None,
                        bytes: 0,
                        block_size: 0,
                    });
                    let (ptx, forward) =
                        self.forward(&resume_file, tx, first, |p: &fetch::Progress| {
                            (
                                Shown {
                                    bytes: p.bytes,
                                    total: p.total,
                                    rate: p.bytes_per_sec as u64,
                                },
                                p.resume.clone(),
                            )
                        });
                    let r = tokio::select! {
                        () = cancel.cancelled() => return Err(Stop::Cancelled),
                        r = fetch::fetch_checked(uri, &package, cfg, state.as_ref(), Some(&ptx), policy.clone()) => r,
                    };
                    drop(ptx);
                    if let Ok(Some(last)) = forward.await {
                        state = Some(last);
                    }
                    match r {
                        Ok(done) => return Ok((done.bytes, done.check)),
                        Err(e) => {
                            let f = Failed::from(e);
                            if !self.again(&f, attempt, &mut pause, cancel).await? {
                                return Err(Stop::Failed(failure_of(f.result), f.detail));
                            }
                        }
                    }
                }
            }
        }
    }

    /// A progress channel for one transfer, and the task that forwards what
    /// it publishes: the resume point to disk, the machine's progress event,
    /// the figures for `lwgate status`. The task ends with the last resume
    /// point once the sender is dropped.
    fn forward<P, R, C>(
        &self,
        resume_file: &Path,
        tx: &mpsc::Sender<Tagged<C>>,
        first: R,
        view: fn(&P) -> (Shown, R),
    ) -> (watch::Sender<P>, tokio::task::JoinHandle<Option<R>>)
    where
        P: Clone + Send + Sync + 'static + FromResume<R>,
        R: serde::Serialize + Clone + Send + Sync + 'static,
        C: Send + 'static,
    {
        let (ptx, mut prx) = watch::channel(P::from_resume(first));
        let tx = tx.clone();
        let resume_file = resume_file.to_owned();
        let (id, tag) = (self.id, self.tag);
        let task = tokio::spawn(async move {
            let mut last = None;
            while prx.changed().await.is_ok() {
                let (shown, resume) = view(&prx.borrow_and_update());
                save(&resume_file, &resume);
                let _ = tx
                    .send((
                        tag,
                        Report::DownloadProgress {
                            id,
                            bytes: shown.bytes,
                            total: shown.total,
                        },
                    ))
                    .await;
                let _ = tx.send((tag, Report::Progress(shown))).await;
                last = Some(resume);
            }
            last
        });
        (ptx, task)
    }
}

/// The first value of a progress channel: where the transfer starts.
trait FromResume<R> {
    fn from_resume(r: R) -> Self;
}

impl FromResume<Resume> for Progress {
    fn from_resume(r: Resume) -> Self {
        Progress {
            bytes: r.bytes,
            total: None,
            rate: 0,
            resume: r,
        }
    }
}

impl FromResume<fetch::Resume> for fetch::Progress {
    fn from_resume(r: fetch::Resume) -> Self {
        fetch::Progress {
            bytes: 0,
            total: None,
            bytes_per_sec: 0.0,
            resume: r,
        }
    }
}

fn save(path: &Path, resume: &impl serde::Serialize) {
    if let Ok(json) = serde_json::to_string(resume) {
        let _ = std::fs::write(path, json);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_commands_last_words_are_kept() {
        assert_eq!(
            super::last_line(b"step 1\nmeter unreachable\n\n").as_deref(),
            Some("meter unreachable")
        );
        assert_eq!(super::last_line(b"\n  \n"), None);
        assert_eq!(super::last_line(&[b'x'; 500]).map(|l| l.len()), Some(200));
    }

    use super::*;

    #[test]
    fn trusted_comment_words() {
        let i = info_of(Some("timestamp:1 name=gw-image version=2.1.0"));
        assert_eq!(i.name.as_deref(), Some("gw-image"));
        assert_eq!(i.version.as_deref(), Some("2.1.0"));
        assert_eq!(info_of(None), PackageInfo::default());
    }
}
