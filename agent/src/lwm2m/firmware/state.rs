//! The Firmware Update object (/5) of LwM2M 1.0 Appendix E.6, as a machine
//! without I/O: the driver feeds it [`Event`]s (server requests, and what its
//! download, verify and install work reported) and carries out the
//! [`Action`]s it returns, in order.
//!
//! Figure 29 (E.6.1), as implemented:
//!
//! | from | trigger | to | Update Result |
//! |---|---|---|---|
//! | Idle | Write /5/0/1 valid URI, or push started on /5/0/0 | Downloading | 0 |
//! | Idle | Write /5/0/1 bad URI | Idle | 7 (9: scheme not supported) |
//! | Downloading | download/push finished, integrity check ok | Downloaded | 0 |
//! | Downloading | download/push or integrity check failed | Idle | 2..=7, 9 |
//! | Downloaded | Execute /5/0/2 | Updating | 0 |
//! | Updating | restarted running the expected version | Idle | 1 |
//! | Updating | installer failed, or restarted on another version | Downloaded (Idle if the image is gone) | 8 |
//! | any but Updating | Write "" to /5/0/1 or an empty /5/0/0 | Idle | 0 |
//!
//! The integrity check runs while State is still Downloading, so a server
//! that executes /5/0/2 as soon as it sees Downloaded (ThingsBoard does)
//! only ever installs a checked image.

use serde::{Deserialize, Serialize};

use crate::lwm2m::error::OpError;

/// Resource 3, State.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Idle,
    Downloading,
    Downloaded,
    Updating,
}

impl State {
    pub fn code(self) -> i64 {
        match self {
            State::Idle => 0,
            State::Downloading => 1,
            State::Downloaded => 2,
            State::Updating => 3,
        }
    }
}

/// Resource 5, Update Result (E.6; 10 and 11 are LwM2M 1.1's Cancel and
/// deferred update, which this object version does not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateResult {
    #[default]
    Initial,
    Success,
    NotEnoughSpace,
    OutOfMemory,
    ConnectionLost,
    IntegrityFailure,
    UnsupportedPackageType,
    InvalidUri,
    UpdateFailed,
    UnsupportedProtocol,
}

impl UpdateResult {
    pub fn code(self) -> i64 {
        match self {
            UpdateResult::Initial => 0,
            UpdateResult::Success => 1,
            UpdateResult::NotEnoughSpace => 2,
            UpdateResult::OutOfMemory => 3,
            UpdateResult::ConnectionLost => 4,
            UpdateResult::IntegrityFailure => 5,
            UpdateResult::UnsupportedPackageType => 6,
            UpdateResult::InvalidUri => 7,
            UpdateResult::UpdateFailed => 8,
            UpdateResult::UnsupportedProtocol => 9,
        }
    }
}

/// Resource 8, Firmware Update Protocol Support. 4 and 5 are the values the
/// OMA registry added for CoAP over TCP/TLS (RFC 8323).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Coap,
    Coaps,
    Http,
    Https,
    CoapTcp,
    CoapsTcp,
}

impl Protocol {
    pub fn code(self) -> i64 {
        match self {
            Protocol::Coap => 0,
            Protocol::Coaps => 1,
            Protocol::Http => 2,
            Protocol::Https => 3,
            Protocol::CoapTcp => 4,
            Protocol::CoapsTcp => 5,
        }
    }

    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Coap => "coap",
            Protocol::Coaps => "coaps",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::CoapTcp => "coap+tcp",
            Protocol::CoapsTcp => "coaps+tcp",
        }
    }

    /// Schemes compare case-insensitively (RFC 3986 3.1).
    pub fn from_scheme(scheme: &str) -> Option<Protocol> {
        let s = scheme.to_ascii_lowercase();
        [
            Protocol::Coap,
            Protocol::Coaps,
            Protocol::Http,
            Protocol::Https,
            Protocol::CoapTcp,
            Protocol::CoapsTcp,
        ]
        .into_iter()
        .find(|p| p.scheme() == s)
    }
}

/// A value of a readable resource, in plain types; the driver maps it to the
/// data model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceValue {
    Int(i64),
    Str(String),
    Bool(bool),
    /// A multiple-instance resource, instances numbered from 0.
    Ints(Vec<i64>),
}

// ---------------------------------------------------------------------------
// Package URI

/// Why a Package URI cannot be used. Both are reported through Update Result
/// only; the Write itself succeeds (E.6.1: "Errors during the Firmware Update
/// process MUST be reported only by the Update Result resource").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("invalid package URI: {0}")]
    Invalid(&'static str),
    #[error("package URI scheme {0:?} is not supported here")]
    Unsupported(String),
}

impl UriError {
    pub fn result(&self) -> UpdateResult {
        match self {
            UriError::Invalid(_) => UpdateResult::InvalidUri,
            UriError::Unsupported(_) => UpdateResult::UnsupportedProtocol,
        }
    }
}

/// A Package URI that passed [`check_package_uri`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageUri {
    pub protocol: Protocol,
    /// A name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    /// None: the scheme's default.
    pub port: Option<u16>,
    /// Path and query as written (may be empty); the fragment is dropped, it
    /// is never sent (RFC 7252 6.4, RFC 7230 5.1).
    pub path_and_query: String,
}

const MAX_URI_BYTES: usize = 255;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn pchar(b: u8) -> bool {
    unreserved(b) || sub_delim(b) || matches!(b, b':' | b'@' | b'%')
}

/// Checks a Package URI: RFC 3986 syntax, at most 255 bytes (the resource's
/// range), an authority with a host, and a scheme among `supported`.
///
/// The syntax every URI shares (characters, percent-encoding, a scheme) is
/// judged first, then the scheme, then what the download protocols need (an
/// authority with a host, a valid port). So a hopeless string ("not a uri",
/// "coap://", "http://h:99999/") is 7 Invalid URI, and 9 is left for a
/// well-formed URI of a protocol this build or config does not offer
/// ("ftp://h/x", "mailto:a@b", or "https://h/x" without HTTPS). User information
/// (`user:pass@`) is refused as invalid: RFC 7230 2.7.1 forbids it in http(s),
/// RFC 7252 has none, and a password would end up in the store and the log.
pub fn check_package_uri(uri: &str, supported: &[Protocol]) -> Result<PackageUri, UriError> {
    if uri.len() > MAX_URI_BYTES {
        return Err(UriError::Invalid("longer than 255 bytes"));
    }
    let bytes = uri.as_bytes();
    if bytes
        .iter()
        .any(|&b| !(pchar(b) || matches!(b, b'/' | b'?' | b'#' | b'[' | b']')))
    {
        return Err(UriError::Invalid("a character RFC 3986 does not allow"));
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(UriError::Invalid("bad percent-encoding"));
        }
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(UriError::Invalid("no scheme"));
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(UriError::Invalid("no scheme"));
    }
    let protocol = Protocol::from_scheme(scheme)
        .filter(|p| supported.contains(p))
        .ok_or_else(|| UriError::Unsupported(scheme.to_string()))?;
    let Some(rest) = rest.strip_prefix("//") else {
        return Err(UriError::Invalid("no authority (//host)"));
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    if authority.contains('@') {
        return Err(UriError::Invalid("user information in the URI"));
    }
    let (host, port) = split_host_port(authority)?;
    let (path_and_query, fragment) = match tail.split_once('#') {
        Some((pq, f)) => (pq, Some(f)),
        None => (tail, None),
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    if !path.bytes().all(|b| pchar(b) || b == b'/') {
        return Err(UriError::Invalid("a character not allowed in the path"));
    }
    for part in [query, fragment].into_iter().flatten() {
        if !part.bytes().all(|b| pchar(b) || b == b'/' || b == b'?') {
            return Err(UriError::Invalid("a character not allowed in the query"));
        }
    }
    // A digest given with the URI (digest.rs) must be one: a typo there
    // would otherwise fail only as an integrity error after the download.
    match super::digest::from_uri(uri) {
        Err(super::digest::DigestError::Conflict) => {
            return Err(UriError::Invalid("two different sha256= values"))
        }
        Err(_) => return Err(UriError::Invalid("sha256= is not 64 hex digits")),
        Ok(_) => {}
    }
    Ok(PackageUri {
        protocol,
        host,
        port,
        path_and_query: path_and_query.to_string(),
    })
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), UriError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(UriError::Invalid("unclosed IPv6 literal"));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UriError::Invalid("bad IPv6 literal"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(UriError::Invalid("junk after the IPv6 literal"))?,
            ),
        };
        (addr.to_string(), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.is_empty() {
            return Err(UriError::Invalid("no host"));
        }
        if !h
            .bytes()
            .all(|b| unreserved(b) || sub_delim(b) || b == b'%')
        {
            return Err(UriError::Invalid("a character not allowed in the host"));
        }
        (h.to_string(), p)
    };
    let port = match port {
        // RFC 3986 3.2.3 allows an empty port: the scheme's default.
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(UriError::Invalid("bad port")),
        },
        Some(_) => return Err(UriError::Invalid("bad port")),
    };
    Ok((host, port))
}

/// An empty write to /5/0/0 resets the machine: zero bytes (LwM2M 1.0) or a
/// single NUL byte (LwM2M 1.1's wording for "set the Package to NULL").
pub fn is_empty_package(payload: &[u8]) -> bool {
    payload.is_empty() || payload == [0]
}

// ---------------------------------------------------------------------------
// Events, actions

/// How a download failed, as the driver saw it; each maps to an Update Result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFailure {
    /// The disk is full or the package is larger than allowed.
    NotEnoughSpace,
    OutOfMemory,
    /// Network error or time-out after the driver's own retries.
    ConnectionLost,
    /// The transfer itself says the data is bad (e.g. a length mismatch).
    IntegrityFailure,
    UnsupportedPackageType,
    /// The host does not resolve, or the server answers 4.04/404 and the like.
    InvalidUri,
    UnsupportedProtocol,
}

impl DownloadFailure {
    pub fn result(self) -> UpdateResult {
        match self {
            DownloadFailure::NotEnoughSpace => UpdateResult::NotEnoughSpace,
            DownloadFailure::OutOfMemory => UpdateResult::OutOfMemory,
            DownloadFailure::ConnectionLost => UpdateResult::ConnectionLost,
            DownloadFailure::IntegrityFailure => UpdateResult::IntegrityFailure,
            DownloadFailure::UnsupportedPackageType => UpdateResult::UnsupportedPackageType,
            DownloadFailure::InvalidUri => UpdateResult::InvalidUri,
            DownloadFailure::UnsupportedProtocol => UpdateResult::UnsupportedProtocol,
        }
    }
}

/// How the check of a complete package failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// Digest or signature mismatch ([`super::verify::VerifyError`]).
    Integrity,
    /// Not a package this device can install (unknown format, wrong target).
    UnsupportedPackageType,
}

/// What the verified package says about itself (e.g. from its manifest or
/// its signature's trusted comment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageInfo {
    /// Resource 6, PkgName.
    pub name: Option<String>,
    /// Resource 7, PkgVersion.
    pub version: Option<String>,
    /// The version string the agent will report once this package runs, when
    /// it differs from `version`; None: `version`.
    pub expected_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Write of a string to /5/0/1. Empty: reset to Idle.
    PackageUriWritten(String),
    /// A non-empty write to /5/0/0 begins (Block1 block 0, or a single
    /// message: then send [`Event::PushCompleted`] right after). `size`: the
    /// Size1 option, if the server sent one.
    PushStarted {
        size: Option<u64>,
    },
    /// Bytes of the push stored so far.
    PushProgress {
        bytes: u64,
    },
    /// The last block is stored.
    PushCompleted {
        bytes: u64,
    },
    /// The push was given up (blocks stopped coming, or out of order).
    PushAborted,
    /// An empty write to /5/0/0 (see [`is_empty_package`]): reset to Idle.
    PackageCleared,
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
    /// Execute /5/0/2.
    ExecuteUpdate,
    /// The installer process is running (optional: for `install_stage`).
    InstallStarted {
        now_ms: u64,
    },
    /// The installer process ended. Success means "installed, now restart";
    /// the verdict comes with the restart ([`Firmware::restore`]).
    InstallExited {
        success: bool,
        detail: String,
        now_ms: u64,
    },
    /// Time passes; `now_ms` on the same clock as `InstallExited`'s.
    Tick {
        now_ms: u64,
    },
}

/// To be carried out in the order given: what undoes the old package comes
/// before `Persist`, and new work after it, so a crash between two actions
/// restores to something [`Firmware::restore`] can finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fetch `uri` into the package file. `resume`: keep what the file has and
    /// continue from its length (HTTP Range, or CoAP Block2 from that block).
    /// Report with the `id`.
    StartDownload {
        id: u32,
        uri: String,
        resume: bool,
    },
    /// Stop whatever fills or checks the package file: the download task, the
    /// Block1 push (answer its remaining blocks 4.08), a running check. A
    /// no-op when nothing runs.
    CancelDownload,
    DeletePackage,
    /// Check the complete package file ([`super::verify`]) and report with the
    /// `id`.
    Verify {
        id: u32,
    },
    /// Start the installer on the package file (State is Updating already and
    /// persisted). Report its exit with [`Event::InstallExited`].
    RunInstall,
    /// Store this in place of the last one.
    Persist(Box<Snapshot>),
    /// These resources changed: notify their observers.
    ValuesChanged(Vec<u16>),
}

/// What survives a restart. Serde with names, not codes, so a stored row reads
/// on its own; fields default so older rows still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    pub state: State,
    pub result: UpdateResult,
    /// Resource 1 as last written (kept after the download: servers read it back).
    pub package_uri: String,
    pub source: Option<Source>,
    /// Numbers each package transfer, so a report from a cancelled one is ignored.
    pub transfer_id: u32,
    /// Downloading, complete, and being checked.
    pub verifying: bool,
    pub bytes: u64,
    pub total: Option<u64>,
    pub pkg_name: String,
    pub pkg_version: String,
    pub expected_version: Option<String>,
    /// The running version when the update was executed.
    pub version_before: Option<String>,
    /// Why the last failure, for the log and `lwgate status`.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// From the Package URI.
    Pull,
    /// Written to /5/0/0.
    Push,
}

/// What the driver knows at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The version the agent runs now (what /3/0/3 shows).
    pub running_version: String,
    /// The package file exists.
    pub package_present: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Resource 8, and which Package URI schemes are accepted. Empty: no pull,
    /// push only (resource 9 = 1).
    pub protocols: Vec<Protocol>,
    /// Larger packages fail with Update Result 2.
    pub max_package_bytes: Option<u64>,
    /// After the installer exits 0, how long to wait for the restart it should
    /// have caused before calling the update failed.
    pub restart_timeout_ms: u64,
    pub verdict: Verdict,
}

/// What tells whether an installed package took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verdict {
    /// The restart the installer causes: the version running after it (the
    /// gateway's own firmware).
    #[default]
    Restart,
    /// The installer's exit status: an end device's installer talks to the
    /// device and waits for the outcome; nothing of ours restarts.
    InstallerExit,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocols: vec![
                Protocol::Coap,
                Protocol::Coaps,
                Protocol::Http,
                Protocol::Https,
            ],
            max_package_bytes: None,
            restart_timeout_ms: 10 * 60 * 1000,
            verdict: Verdict::Restart,
        }
    }
}

/// Where an Updating machine is; not persisted, a restart ends every stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStage {
    Requested,
    Running { since_ms: u64 },
    AwaitingRestart { deadline_ms: u64 },
}

const MAX_NAME_BYTES: usize = 255;

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Splits a step's actions so `Persist` can go between them.
#[derive(Default)]
struct Out {
    undo: Vec<Action>,
    work: Vec<Action>,
}

#[derive(Debug, Clone)]
pub struct Firmware {
    cfg: Config,
    running_version: String,
    s: Snapshot,
    stage: Option<InstallStage>,
}

impl Firmware {
    /// A device with no update history.
    pub fn new(cfg: Config, running_version: &str) -> Self {
        Firmware {
            cfg,
            running_version: running_version.to_string(),
            s: Snapshot::default(),
            stage: None,
        }
    }

    /// After a start: takes the stored snapshot and finishes what the last
    /// run left. Never stays Downloading without a `StartDownload` or `Verify`
    /// to carry out, and never stays Updating: an update is judged here by the
    /// running version against the expected one (or, without one, against the
    /// version the update started from).
    pub fn restore(cfg: Config, snap: Snapshot, boot: &Boot) -> (Self, Vec<Action>) {
        let mut fw = Firmware {
            cfg,
            running_version: boot.running_version.clone(),
            s: snap.clone(),
            stage: None,
        };
        let before = fw.values();
        let mut out = Out::default();
        fw.boot(boot.package_present, &mut out);
        let acts = fw.finish(&snap, before, out);
        (fw, acts)
    }

    fn boot(&mut self, package_present: bool, out: &mut Out) {
        if self.s.state != State::Downloading {
            self.s.verifying = false;
        }
        match self.s.state {
            State::Idle => {
                self.s.source = None;
                // A crash between writing blocks and failing the push, say.
                if package_present {
                    out.undo.push(Action::DeletePackage);
                }
            }
            State::Downloading if self.s.verifying && package_present => {
                out.work.push(Action::Verify {
                    id: self.s.transfer_id,
                });
            }
            State::Downloading if self.s.source == Some(Source::Pull) => {
                self.s.verifying = false;
                match check_package_uri(&self.s.package_uri, &self.cfg.protocols) {
                    Ok(_) => out.work.push(Action::StartDownload {
                        id: self.s.transfer_id,
                        uri: self.s.package_uri.clone(),
                        resume: package_present,
                    }),
                    // The config changed under the download.
                    Err(e) => self.fail(e.result(), e.to_string(), false, out),
                }
            }
            State::Downloading => {
                // A Block1 push dies with the process; only the server can
                // start it again, and Idle + 4 tells it to.
                self.fail(
                    UpdateResult::ConnectionLost,
                    "the agent restarted during the package transfer".into(),
                    false,
                    out,
                );
            }
            State::Downloaded if package_present => {}
            State::Downloaded => self.fail(
                UpdateResult::IntegrityFailure,
                "the downloaded package is gone after a restart".into(),
                false,
                out,
            ),
            State::Updating if self.cfg.verdict == Verdict::InstallerExit => {
                // The installer died with us; only it could have said how the
                // device took the package.
                self.install_failed(
                    "the agent restarted while the installer ran: the outcome is unknown".into(),
                );
                if !package_present {
                    self.s.state = State::Idle;
                    self.clear_package();
                }
            }
            State::Updating => self.judge(package_present, out),
        }
    }

    fn judge(&mut self, package_present: bool, out: &mut Out) {
        let running = self.running_version.clone();
        let verdict = match (&self.s.expected_version, &self.s.version_before) {
            (Some(want), _) if *want == running => Ok(()),
            (Some(want), _) => Err(format!(
                "after the update the agent runs version {running}, not the expected {want}"
            )),
            (None, Some(old)) if *old != running => Ok(()),
            (None, Some(_)) => Err(format!(
                "after the update the agent still runs version {running}"
            )),
            (None, None) => Err("no version to tell whether the update took effect".into()),
        };
        self.s.version_before = None;
        match verdict {
            Ok(()) => self.succeeded(package_present, out),
            Err(why) => {
                self.s.result = UpdateResult::UpdateFailed;
                self.s.detail = Some(why);
                if package_present {
                    self.s.state = State::Downloaded;
                } else {
                    self.s.state = State::Idle;
                    self.clear_package();
                }
            }
        }
    }

    /// One event. `Err` is the response code for the server's request (4.05
    /// for Execute /5/0/2 outside Downloaded, and for any write to /5/0/0 or
    /// /5/0/1 while Updating); the machine is then unchanged. Events that no
    /// longer apply (a report from a cancelled transfer) give no actions.
    pub fn handle(&mut self, ev: Event) -> Result<Vec<Action>, OpError> {
        let snap = self.s.clone();
        let before = self.values();
        let mut out = Out::default();
        self.step(ev, &mut out)?;
        Ok(self.finish(&snap, before, out))
    }

    fn finish(&self, snap: &Snapshot, before: Vec<(u16, ResourceValue)>, out: Out) -> Vec<Action> {
        let mut acts = out.undo;
        // Progress counters alone are not worth a write to flash.
        let strip = |s: &Snapshot| Snapshot {
            bytes: 0,
            total: None,
            ..s.clone()
        };
        if strip(snap) != strip(&self.s) {
            acts.push(Action::Persist(Box::new(self.s.clone())));
        }
        acts.extend(out.work);
        let changed: Vec<u16> = self
            .values()
            .into_iter()
            .zip(before)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.0)
            .collect();
        if !changed.is_empty() {
            acts.push(Action::ValuesChanged(changed));
        }
        acts
    }

    fn step(&mut self, ev: Event, out: &mut Out) -> Result<(), OpError> {
        let downloading = |s: &Snapshot, src: Source| {
            s.state == State::Downloading && s.source == Some(src) && !s.verifying
        };
        match ev {
            Event::PackageUriWritten(uri) => {
                self.refuse_while_updating()?;
                if uri.is_empty() {
                    self.reset(out);
                    self.s.package_uri.clear();
                } else if self.s.state == State::Downloading
                    && self.s.source == Some(Source::Pull)
                    && uri == self.s.package_uri
                {
                    // The download asked for is already under way (or done
                    // and being checked).
                } else {
                    self.reset(out);
                    self.start_pull(uri, out);
                }
            }
            Event::PushStarted { size } => {
                self.refuse_while_updating()?;
                self.reset(out);
                self.s.transfer_id = self.s.transfer_id.wrapping_add(1);
                self.s.state = State::Downloading;
                self.s.source = Some(Source::Push);
                self.s.total = size;
                if let Some(n) = size {
                    self.check_size(n, true, out);
                }
            }
            Event::PushProgress { bytes } => {
                if downloading(&self.s, Source::Push) {
                    self.s.bytes = bytes;
                    self.check_size(bytes, true, out);
                }
            }
            Event::PushCompleted { bytes } => {
                if downloading(&self.s, Source::Push) {
                    self.s.bytes = bytes;
                    if self.check_size(bytes, true, out) {
                        self.start_verify(out);
                    }
                }
            }
            Event::PushAborted => {
                if downloading(&self.s, Source::Push) {
                    self.fail(
                        UpdateResult::ConnectionLost,
                        "the package transfer to /5/0/0 stopped".into(),
                        false,
                        out,
                    );
                }
            }
            Event::PackageCleared => {
                self.refuse_while_updating()?;
                self.reset(out);
                self.s.package_uri.clear();
            }
            Event::DownloadProgress { id, bytes, total } => {
                if downloading(&self.s, Source::Pull) && id == self.s.transfer_id {
                    self.s.bytes = bytes;
                    self.s.total = total;
                    let most = total.unwrap_or(0).max(bytes);
                    self.check_size(most, true, out);
                }
            }
            Event::DownloadFinished { id, bytes } => {
                if downloading(&self.s, Source::Pull) && id == self.s.transfer_id {
                    self.s.bytes = bytes;
                    if self.check_size(bytes, false, out) {
                        self.start_verify(out);
                    }
                }
            }
            Event::DownloadFailed {
                id,
                failure,
                detail,
            } => {
                if downloading(&self.s, Source::Pull) && id == self.s.transfer_id {
                    self.fail(failure.result(), detail, false, out);
                }
            }
            Event::VerificationOk { id, info } => {
                if self.verifying(id) {
                    self.s.verifying = false;
                    self.s.state = State::Downloaded;
                    self.s.pkg_name = clip(info.name.as_deref().unwrap_or(""));
                    self.s.pkg_version = clip(info.version.as_deref().unwrap_or(""));
                    self.s.expected_version = info.expected_version.or(info.version);
                }
            }
            Event::VerificationFailed {
                id,
                failure,
                detail,
            } => {
                if self.verifying(id) {
                    let result = match failure {
                        VerifyFailure::Integrity => UpdateResult::IntegrityFailure,
                        VerifyFailure::UnsupportedPackageType => {
                            UpdateResult::UnsupportedPackageType
                        }
                    };
                    self.fail(result, detail, false, out);
                }
            }
            Event::ExecuteUpdate => {
                // E.6: "only executable when the value of the State Resource
                // is Downloaded"; 8.5 gives 4.05 for a target not allowed.
                if self.s.state != State::Downloaded {
                    return Err(OpError::MethodNotAllowed);
                }
                self.s.state = State::Updating;
                self.s.result = UpdateResult::Initial;
                self.s.detail = None;
                self.s.version_before = Some(self.running_version.clone());
                self.stage = Some(InstallStage::Requested);
                out.work.push(Action::RunInstall);
            }
            Event::InstallStarted { now_ms } => {
                if self.s.state == State::Updating && self.stage == Some(InstallStage::Requested) {
                    self.stage = Some(InstallStage::Running { since_ms: now_ms });
                }
            }
            Event::InstallExited {
                success,
                detail,
                now_ms,
            } => {
                let running = matches!(
                    self.stage,
                    Some(InstallStage::Requested | InstallStage::Running { .. })
                );
                if self.s.state == State::Updating && running {
                    if success && self.cfg.verdict == Verdict::InstallerExit {
                        self.succeeded(true, out);
                    } else if success {
                        self.stage = Some(InstallStage::AwaitingRestart {
                            deadline_ms: now_ms.saturating_add(self.cfg.restart_timeout_ms),
                        });
                    } else {
                        self.install_failed(format!("the installer failed: {detail}"));
                    }
                }
            }
            Event::Tick { now_ms } => {
                if let (State::Updating, Some(InstallStage::AwaitingRestart { deadline_ms })) =
                    (self.s.state, self.stage)
                {
                    if now_ms >= deadline_ms {
                        self.install_failed(format!(
                            "the installer succeeded but the agent was not restarted within {} s",
                            self.cfg.restart_timeout_ms / 1000
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The 1.1 object's Cancel gives the reason: an installer that has begun
    /// cannot be called back, so a reset then would lose the verdict.
    fn refuse_while_updating(&self) -> Result<(), OpError> {
        if self.s.state == State::Updating {
            Err(OpError::MethodNotAllowed)
        } else {
            Ok(())
        }
    }

    fn verifying(&self, id: u32) -> bool {
        self.s.state == State::Downloading && self.s.verifying && id == self.s.transfer_id
    }

    fn start_pull(&mut self, uri: String, out: &mut Out) {
        // A value outside the resource's range is not kept for reading back.
        self.s.package_uri = if uri.len() <= MAX_URI_BYTES {
            uri.clone()
        } else {
            String::new()
        };
        match check_package_uri(&uri, &self.cfg.protocols) {
            Err(e) => {
                self.s.result = e.result();
                self.s.detail = Some(e.to_string());
            }
            Ok(_) => {
                self.s.transfer_id = self.s.transfer_id.wrapping_add(1);
                self.s.state = State::Downloading;
                self.s.source = Some(Source::Pull);
                out.work.push(Action::StartDownload {
                    id: self.s.transfer_id,
                    uri,
                    resume: false,
                });
            }
        }
    }

    fn start_verify(&mut self, out: &mut Out) {
        self.s.verifying = true;
        out.work.push(Action::Verify {
            id: self.s.transfer_id,
        });
    }

    /// False (and failed with 2) when `n` bytes exceed the configured limit.
    fn check_size(&mut self, n: u64, cancel: bool, out: &mut Out) -> bool {
        match self.cfg.max_package_bytes {
            Some(max) if n > max => {
                self.fail(
                    UpdateResult::NotEnoughSpace,
                    format!("the package has {n} bytes, more than the {max} allowed"),
                    cancel,
                    out,
                );
                false
            }
            _ => true,
        }
    }

    fn succeeded(&mut self, package_present: bool, out: &mut Out) {
        self.s.state = State::Idle;
        self.s.result = UpdateResult::Success;
        self.s.detail = None;
        self.s.source = None;
        self.s.expected_version = None;
        self.s.version_before = None;
        self.stage = None;
        if package_present {
            out.undo.push(Action::DeletePackage);
        }
    }

    fn install_failed(&mut self, why: String) {
        // E.6: "If the Update Resource failed, the state returns at Downloaded."
        self.s.state = State::Downloaded;
        self.s.result = UpdateResult::UpdateFailed;
        self.s.detail = Some(why);
        self.s.version_before = None;
        self.stage = None;
    }

    /// Writing "" to /5/0/1 or an empty /5/0/0: Idle, result 0, no package.
    fn reset(&mut self, out: &mut Out) {
        self.drop_package(out, true);
        self.s.state = State::Idle;
        self.s.result = UpdateResult::Initial;
        self.s.detail = None;
        self.clear_package();
    }

    fn fail(&mut self, result: UpdateResult, detail: String, cancel: bool, out: &mut Out) {
        self.drop_package(out, cancel);
        self.s.state = State::Idle;
        self.s.result = result;
        self.s.detail = Some(detail);
        self.clear_package();
    }

    fn drop_package(&self, out: &mut Out, cancel: bool) {
        if cancel && self.s.state == State::Downloading {
            out.undo.push(Action::CancelDownload);
        }
        if self.s.state != State::Idle {
            out.undo.push(Action::DeletePackage);
        }
    }

    fn clear_package(&mut self) {
        self.s.source = None;
        self.s.verifying = false;
        self.s.bytes = 0;
        self.s.total = None;
        self.s.pkg_name.clear();
        self.s.pkg_version.clear();
        self.s.expected_version = None;
        self.s.version_before = None;
        self.stage = None;
    }

    /// The readable resources 1, 3, 5, 6, 7, 8 and 9, in that order.
    pub fn values(&self) -> Vec<(u16, ResourceValue)> {
        let mut protocols: Vec<i64> = self.cfg.protocols.iter().map(|p| p.code()).collect();
        protocols.sort_unstable();
        protocols.dedup();
        // Push is always offered: E.6 makes block-wise transfer mandatory
        // for a client that has this object.
        let delivery = if protocols.is_empty() { 1 } else { 2 };
        vec![
            (1, ResourceValue::Str(self.s.package_uri.clone())),
            (3, ResourceValue::Int(self.s.state.code())),
            (5, ResourceValue::Int(self.s.result.code())),
            (6, ResourceValue::Str(self.s.pkg_name.clone())),
            (7, ResourceValue::Str(self.s.pkg_version.clone())),
            (8, ResourceValue::Ints(protocols)),
            (9, ResourceValue::Int(delivery)),
        ]
    }

    pub fn state(&self) -> State {
        self.s.state
    }

    pub fn result(&self) -> UpdateResult {
        self.s.result
    }

    pub fn snapshot(&self) -> Snapshot {
        self.s.clone()
    }

    /// Why the last failure, if the last outcome was one.
    pub fn detail(&self) -> Option<&str> {
        self.s.detail.as_deref()
    }

    pub fn install_stage(&self) -> Option<InstallStage> {
        self.stage
    }

    /// (bytes so far, total if known) of the transfer under way.
    pub fn progress(&self) -> (u64, Option<u64>) {
        (self.s.bytes, self.s.total)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
