//! One instance of Software Management (/9, OMA object 9 version 1.0), as a
//! machine without I/O in the style of [`super::state`]: events in, actions
//! out, a serde snapshot. Checked against the OMA registry's 9.xml
//! (OMA-SUP-XML_9-V1_0_2).
//!
//! Package installation, as implemented (Update State / Update Result):
//!
//! | from | trigger | to | result |
//! |---|---|---|---|
//! | INITIAL | Write /9/x/3 valid URI, or a push to /9/x/2 | DOWNLOAD STARTED | 1 |
//! | INITIAL | Write /9/x/3 bad or unsupported URI | INITIAL | 56 |
//! | DOWNLOAD STARTED | transfer complete | DOWNLOADED (check runs) | 1 |
//! | DOWNLOAD STARTED | transfer failed | INITIAL | 50..=54, 56 |
//! | DOWNLOADED | check ok | DELIVERED | 3 |
//! | DOWNLOADED | check failed | INITIAL | 53, 54 |
//! | DELIVERED | Install, installer ok | INSTALLED | 2 |
//! | DELIVERED | Install, installer failed | DELIVERED | 58 |
//! | INSTALLED | Uninstall (0), uninstaller ok | INITIAL | 0 |
//! | INSTALLED | Uninstall (0), uninstaller failed | INSTALLED | 59 |
//! | INSTALLED | Uninstall 1 ("ForUpdate") | INITIAL, software kept | 0 |
//! | DOWNLOAD STARTED, DOWNLOADED, DELIVERED | Uninstall | INITIAL, package dropped | 0 |
//!
//! The activation machine lives only in INSTALLED: Activate and Deactivate run
//! a command, and Activation State (/9/x/12) follows its success. It starts
//! inactive after an install.
//!
//! Requests the state does not allow (Install outside DELIVERED, Activate
//! outside INSTALLED, a new package outside INITIAL, anything while a command
//! of this instance runs) are 4.05 Method Not Allowed, as for /5/0/2.

use serde::{Deserialize, Serialize};

use super::state::{
    check_package_uri, DownloadFailure, PackageInfo, Protocol, ResourceValue, Source, VerifyFailure,
};
use crate::lwm2m::error::OpError;

/// Resource 7, Update State.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwState {
    #[default]
    Initial,
    DownloadStarted,
    Downloaded,
    Delivered,
    Installed,
}

impl SwState {
    pub fn code(self) -> i64 {
        match self {
            SwState::Initial => 0,
            SwState::DownloadStarted => 1,
            SwState::Downloaded => 2,
            SwState::Delivered => 3,
            SwState::Installed => 4,
        }
    }
}

/// Resource 9, Update Result, with the registry's codes (55 is unassigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwUpdateResult {
    #[default]
    Initial,
    Downloading,
    Installed,
    /// "Successfully Downloaded and package integrity verified".
    Delivered,
    NotEnoughStorage,
    OutOfMemory,
    ConnectionLost,
    IntegrityFailure,
    UnsupportedPackageType,
    InvalidUri,
    DeviceError,
    InstallFailed,
    UninstallFailed,
}

impl SwUpdateResult {
    pub fn code(self) -> i64 {
        match self {
            SwUpdateResult::Initial => 0,
            SwUpdateResult::Downloading => 1,
            SwUpdateResult::Installed => 2,
            SwUpdateResult::Delivered => 3,
            SwUpdateResult::NotEnoughStorage => 50,
            SwUpdateResult::OutOfMemory => 51,
            SwUpdateResult::ConnectionLost => 52,
            SwUpdateResult::IntegrityFailure => 53,
            SwUpdateResult::UnsupportedPackageType => 54,
            SwUpdateResult::InvalidUri => 56,
            SwUpdateResult::DeviceError => 57,
            SwUpdateResult::InstallFailed => 58,
            SwUpdateResult::UninstallFailed => 59,
        }
    }

    /// /9 has no "unsupported protocol": a URI this device cannot fetch is
    /// an invalid URI for it.
    pub fn of_download(f: DownloadFailure) -> Self {
        match f {
            DownloadFailure::NotEnoughSpace => SwUpdateResult::NotEnoughStorage,
            DownloadFailure::OutOfMemory => SwUpdateResult::OutOfMemory,
            DownloadFailure::ConnectionLost => SwUpdateResult::ConnectionLost,
            DownloadFailure::IntegrityFailure => SwUpdateResult::IntegrityFailure,
            DownloadFailure::UnsupportedPackageType => SwUpdateResult::UnsupportedPackageType,
            DownloadFailure::InvalidUri | DownloadFailure::UnsupportedProtocol => {
                SwUpdateResult::InvalidUri
            }
        }
    }
}

/// A command of this instance that is running; persisted so a restart can
/// judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Busy {
    Installing,
    Uninstalling,
    Activating,
    Deactivating,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwEvent {
    /// A Write of /9/x/3. Empty: forget the URI (INITIAL only).
    PackageUriWritten(String),
    /// A write to /9/x/2 begins; see [`super::state::Event::PushStarted`].
    PushStarted {
        size: Option<u64>,
    },
    PushProgress {
        bytes: u64,
    },
    PushCompleted {
        bytes: u64,
    },
    PushAborted,
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
    /// Execute /9/x/4.
    Install,
    InstallExited {
        success: bool,
        detail: String,
    },
    /// Execute /9/x/6; see [`parse_uninstall_arg`].
    Uninstall {
        for_update: bool,
    },
    UninstallExited {
        success: bool,
        detail: String,
    },
    /// Execute /9/x/10.
    Activate,
    /// Execute /9/x/11.
    Deactivate,
    /// The activate or deactivate command ended.
    ActivationExited {
        success: bool,
        detail: String,
    },
    /// A Write of /9/x/8.
    UpdateSupportedObjectsWritten(bool),
}

/// Carried out in order, as [`super::state::Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwAction {
    StartDownload {
        id: u32,
        uri: String,
        resume: bool,
    },
    CancelDownload,
    DeletePackage,
    Verify {
        id: u32,
    },
    RunInstall,
    RunUninstall,
    RunActivate,
    RunDeactivate,
    Persist(Box<SwSnapshot>),
    /// Update Supported Objects (/9/x/8) is true and the software changed:
    /// send a Registration Update with the object list now.
    RegistrationUpdate,
    ValuesChanged(Vec<u16>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwSnapshot {
    pub state: SwState,
    pub result: SwUpdateResult,
    pub package_uri: String,
    pub source: Option<Source>,
    pub transfer_id: u32,
    pub bytes: u64,
    pub total: Option<u64>,
    pub pkg_name: String,
    pub pkg_version: String,
    pub busy: Option<Busy>,
    /// The software runs (activation state machine ACTIVE).
    pub active: bool,
    pub update_supported_objects: bool,
    pub detail: Option<String>,
}

/// What the driver knows at start-up about this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwBoot {
    pub package_present: bool,
    /// The instance's software is installed now (asked of the installer).
    pub installed: bool,
}

#[derive(Debug, Clone)]
pub struct SwConfig {
    pub protocols: Vec<Protocol>,
    pub max_package_bytes: Option<u64>,
}

impl Default for SwConfig {
    fn default() -> Self {
        SwConfig {
            protocols: vec![
                Protocol::Coap,
                Protocol::Coaps,
                Protocol::Http,
                Protocol::Https,
            ],
            max_package_bytes: None,
        }
    }
}

/// Execute /9/x/6's argument: none or 0 removes the software, 1 is
/// "ForUpdate". Anything else is 4.00 (8.5: the argument is not understood).
pub fn parse_uninstall_arg(args: &str) -> Result<bool, OpError> {
    match args.trim() {
        "" | "0" => Ok(false),
        "1" => Ok(true),
        other => Err(OpError::BadRequest(format!(
            "Uninstall takes no argument, 0 or 1, not {other:?}"
        ))),
    }
}

#[derive(Default)]
struct Out {
    undo: Vec<SwAction>,
    work: Vec<SwAction>,
}

const MAX_BYTES: usize = 255;

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[derive(Debug, Clone)]
pub struct Software {
    cfg: SwConfig,
    s: SwSnapshot,
}

impl Software {
    pub fn new(cfg: SwConfig) -> Self {
        Software {
            cfg,
            s: SwSnapshot::default(),
        }
    }

    /// After a start: finishes what the last run left, judging an interrupted
    /// install or uninstall by whether the software is installed now.
    pub fn restore(cfg: SwConfig, snap: SwSnapshot, boot: SwBoot) -> (Self, Vec<SwAction>) {
        let mut sw = Software {
            cfg,
            s: snap.clone(),
        };
        let before = sw.values();
        let mut out = Out::default();
        sw.boot(boot, &mut out);
        let acts = sw.finish(&snap, before, out);
        (sw, acts)
    }

    fn boot(&mut self, boot: SwBoot, out: &mut Out) {
        let busy = self.s.busy.take();
        match self.s.state {
            SwState::Initial => {
                self.s.source = None;
                if boot.package_present {
                    out.undo.push(SwAction::DeletePackage);
                }
            }
            SwState::DownloadStarted if self.s.source == Some(Source::Pull) => {
                match check_package_uri(&self.s.package_uri, &self.cfg.protocols) {
                    Ok(_) => out.work.push(SwAction::StartDownload {
                        id: self.s.transfer_id,
                        uri: self.s.package_uri.clone(),
                        resume: boot.package_present,
                    }),
                    Err(e) => self.fail(SwUpdateResult::InvalidUri, e.to_string(), false, out),
                }
            }
            SwState::DownloadStarted => self.fail(
                SwUpdateResult::ConnectionLost,
                "the agent restarted during the package transfer".into(),
                false,
                out,
            ),
            SwState::Downloaded if boot.package_present => out.work.push(SwAction::Verify {
                id: self.s.transfer_id,
            }),
            SwState::Downloaded => self.package_gone(out),
            SwState::Delivered => match busy {
                Some(Busy::Installing) if boot.installed => self.installed(out),
                Some(Busy::Installing) if boot.package_present => {
                    self.s.result = SwUpdateResult::InstallFailed;
                    self.s.detail = Some("the agent restarted during the install".into());
                }
                Some(Busy::Installing) => self.fail(
                    SwUpdateResult::InstallFailed,
                    "the agent restarted during the install, and the package is gone".into(),
                    false,
                    out,
                ),
                _ if !boot.package_present => self.package_gone(out),
                _ => {}
            },
            SwState::Installed => match busy {
                Some(Busy::Uninstalling) if !boot.installed => self.uninstalled(out),
                Some(Busy::Uninstalling) => {
                    self.s.result = SwUpdateResult::UninstallFailed;
                    self.s.detail = Some("the agent restarted during the uninstall".into());
                }
                Some(_) if boot.installed => {
                    self.s.detail = Some("the agent restarted while (de)activating".into());
                }
                _ if !boot.installed => {
                    self.uninstalled(out);
                    self.s.result = SwUpdateResult::DeviceError;
                    self.s.detail = Some("the installed software is gone".into());
                }
                _ => {}
            },
        }
    }

    /// One event; `Err` is the code for the server's request, and the
    /// instance is then unchanged.
    pub fn handle(&mut self, ev: SwEvent) -> Result<Vec<SwAction>, OpError> {
        let snap = self.s.clone();
        let before = self.values();
        let mut out = Out::default();
        self.step(ev, &mut out)?;
        Ok(self.finish(&snap, before, out))
    }

    fn finish(
        &self,
        snap: &SwSnapshot,
        before: Vec<(u16, ResourceValue)>,
        out: Out,
    ) -> Vec<SwAction> {
        let mut acts = out.undo;
        let strip = |s: &SwSnapshot| SwSnapshot {
            bytes: 0,
            total: None,
            ..s.clone()
        };
        if strip(snap) != strip(&self.s) {
            acts.push(SwAction::Persist(Box::new(self.s.clone())));
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
            acts.push(SwAction::ValuesChanged(changed));
        }
        acts
    }

    fn step(&mut self, ev: SwEvent, out: &mut Out) -> Result<(), OpError> {
        let receiving = |s: &SwSnapshot, src: Source| {
            s.state == SwState::DownloadStarted && s.source == Some(src)
        };
        match ev {
            SwEvent::PackageUriWritten(uri) => {
                self.allow(self.s.state == SwState::Initial)?;
                if uri.is_empty() {
                    self.s.package_uri.clear();
                } else {
                    self.start_pull(uri, out);
                }
            }
            SwEvent::PushStarted { size } => {
                let restart = receiving(&self.s, Source::Push);
                self.allow(self.s.state == SwState::Initial || restart)?;
                if restart {
                    // The server began its Block1 transfer again.
                    out.undo.push(SwAction::CancelDownload);
                    out.undo.push(SwAction::DeletePackage);
                }
                self.begin(Source::Push);
                self.s.total = size;
                if let Some(n) = size {
                    self.check_size(n, true, out);
                }
            }
            SwEvent::PushProgress { bytes } => {
                if receiving(&self.s, Source::Push) {
                    self.s.bytes = bytes;
                    self.check_size(bytes, true, out);
                }
            }
            SwEvent::PushCompleted { bytes } => {
                if receiving(&self.s, Source::Push) {
                    self.s.bytes = bytes;
                    if self.check_size(bytes, true, out) {
                        self.downloaded(out);
                    }
                }
            }
            SwEvent::PushAborted => {
                if receiving(&self.s, Source::Push) {
                    self.fail(
                        SwUpdateResult::ConnectionLost,
                        "the package transfer to /9/x/2 stopped".into(),
                        false,
                        out,
                    );
                }
            }
            SwEvent::DownloadProgress { id, bytes, total } => {
                if receiving(&self.s, Source::Pull) && id == self.s.transfer_id {
                    self.s.bytes = bytes;
                    self.s.total = total;
                    self.check_size(total.unwrap_or(0).max(bytes), true, out);
                }
            }
            SwEvent::DownloadFinished { id, bytes } => {
                if receiving(&self.s, Source::Pull) && id == self.s.transfer_id {
                    self.s.bytes = bytes;
                    if self.check_size(bytes, false, out) {
                        self.downloaded(out);
                    }
                }
            }
            SwEvent::DownloadFailed {
                id,
                failure,
                detail,
            } => {
                if receiving(&self.s, Source::Pull) && id == self.s.transfer_id {
                    self.fail(SwUpdateResult::of_download(failure), detail, false, out);
                }
            }
            SwEvent::VerificationOk { id, info } => {
                if self.s.state == SwState::Downloaded && id == self.s.transfer_id {
                    self.s.state = SwState::Delivered;
                    self.s.result = SwUpdateResult::Delivered;
                    self.s.pkg_name = clip(info.name.as_deref().unwrap_or(""));
                    self.s.pkg_version = clip(info.version.as_deref().unwrap_or(""));
                }
            }
            SwEvent::VerificationFailed {
                id,
                failure,
                detail,
            } => {
                if self.s.state == SwState::Downloaded && id == self.s.transfer_id {
                    let result = match failure {
                        VerifyFailure::Integrity => SwUpdateResult::IntegrityFailure,
                        VerifyFailure::UnsupportedPackageType => {
                            SwUpdateResult::UnsupportedPackageType
                        }
                    };
                    self.fail(result, detail, false, out);
                }
            }
            SwEvent::Install => {
                // 9.xml: "only executable when the value of the State
                // Resource is DELIVERED".
                self.allow(self.s.state == SwState::Delivered && self.s.busy.is_none())?;
                self.s.busy = Some(Busy::Installing);
                self.s.detail = None;
                out.work.push(SwAction::RunInstall);
            }
            SwEvent::InstallExited { success, detail } => {
                if self.s.state == SwState::Delivered && self.s.busy == Some(Busy::Installing) {
                    self.s.busy = None;
                    if success {
                        self.installed(out);
                    } else {
                        // 9.xml: "If executing the Install Resource failed,
                        // the state remains at DELIVERED."
                        self.s.result = SwUpdateResult::InstallFailed;
                        self.s.detail = Some(format!("the installer failed: {detail}"));
                    }
                }
            }
            SwEvent::Uninstall { for_update } => {
                self.allow(self.s.state != SwState::Initial && self.s.busy.is_none())?;
                match self.s.state {
                    SwState::Installed if !for_update => {
                        self.s.busy = Some(Busy::Uninstalling);
                        self.s.detail = None;
                        out.work.push(SwAction::RunUninstall);
                    }
                    SwState::Installed => {
                        // The software stays in place for the package that
                        // will upgrade it; the instance awaits that package.
                        self.s.state = SwState::Initial;
                        self.s.result = SwUpdateResult::Initial;
                        self.s.detail = None;
                        self.s.package_uri.clear();
                    }
                    _ => {
                        if matches!(self.s.state, SwState::DownloadStarted | SwState::Downloaded) {
                            out.undo.push(SwAction::CancelDownload);
                        }
                        out.undo.push(SwAction::DeletePackage);
                        self.s.state = SwState::Initial;
                        self.s.result = SwUpdateResult::Initial;
                        self.s.detail = None;
                        self.s.source = None;
                        self.s.bytes = 0;
                        self.s.total = None;
                        self.s.package_uri.clear();
                        self.s.pkg_name.clear();
                        self.s.pkg_version.clear();
                    }
                }
            }
            SwEvent::UninstallExited { success, detail } => {
                if self.s.state == SwState::Installed && self.s.busy == Some(Busy::Uninstalling) {
                    self.s.busy = None;
                    if success {
                        self.uninstalled(out);
                    } else {
                        self.s.result = SwUpdateResult::UninstallFailed;
                        self.s.detail = Some(format!("the uninstaller failed: {detail}"));
                    }
                }
            }
            SwEvent::Activate | SwEvent::Deactivate => {
                let on = ev == SwEvent::Activate;
                self.allow(self.s.state == SwState::Installed && self.s.busy.is_none())?;
                if self.s.active != on {
                    self.s.detail = None;
                    if on {
                        self.s.busy = Some(Busy::Activating);
                        out.work.push(SwAction::RunActivate);
                    } else {
                        self.s.busy = Some(Busy::Deactivating);
                        out.work.push(SwAction::RunDeactivate);
                    }
                }
            }
            SwEvent::ActivationExited { success, detail } => {
                let target = match self.s.busy {
                    Some(Busy::Activating) => Some(true),
                    Some(Busy::Deactivating) => Some(false),
                    _ => None,
                };
                if let (SwState::Installed, Some(on)) = (self.s.state, target) {
                    self.s.busy = None;
                    if success {
                        self.s.active = on;
                    } else {
                        // No Update Result code fits; Activation State
                        // staying put is what the server sees.
                        let what = if on { "activate" } else { "deactivate" };
                        self.s.detail = Some(format!("{what} failed: {detail}"));
                    }
                }
            }
            SwEvent::UpdateSupportedObjectsWritten(b) => self.s.update_supported_objects = b,
        }
        Ok(())
    }

    fn allow(&self, ok: bool) -> Result<(), OpError> {
        if ok {
            Ok(())
        } else {
            Err(OpError::MethodNotAllowed)
        }
    }

    fn begin(&mut self, source: Source) {
        self.s.transfer_id = self.s.transfer_id.wrapping_add(1);
        self.s.state = SwState::DownloadStarted;
        self.s.source = Some(source);
        self.s.result = SwUpdateResult::Downloading;
        self.s.detail = None;
        self.s.bytes = 0;
        self.s.total = None;
    }

    fn start_pull(&mut self, uri: String, out: &mut Out) {
        self.s.package_uri = if uri.len() <= MAX_BYTES {
            uri.clone()
        } else {
            String::new()
        };
        match check_package_uri(&uri, &self.cfg.protocols) {
            Err(e) => {
                self.s.result = SwUpdateResult::InvalidUri;
                self.s.detail = Some(e.to_string());
            }
            Ok(_) => {
                self.begin(Source::Pull);
                out.work.push(SwAction::StartDownload {
                    id: self.s.transfer_id,
                    uri,
                    resume: false,
                });
            }
        }
    }

    fn downloaded(&mut self, out: &mut Out) {
        self.s.state = SwState::Downloaded;
        out.work.push(SwAction::Verify {
            id: self.s.transfer_id,
        });
    }

    fn installed(&mut self, out: &mut Out) {
        self.s.state = SwState::Installed;
        self.s.result = SwUpdateResult::Installed;
        self.s.detail = None;
        self.s.active = false;
        self.s.source = None;
        out.undo.push(SwAction::DeletePackage);
        if self.s.update_supported_objects {
            out.work.push(SwAction::RegistrationUpdate);
        }
    }

    fn uninstalled(&mut self, out: &mut Out) {
        self.s.state = SwState::Initial;
        self.s.result = SwUpdateResult::Initial;
        self.s.detail = None;
        self.s.active = false;
        self.s.package_uri.clear();
        self.s.pkg_name.clear();
        self.s.pkg_version.clear();
        if self.s.update_supported_objects {
            out.work.push(SwAction::RegistrationUpdate);
        }
    }

    fn package_gone(&mut self, out: &mut Out) {
        self.fail(
            SwUpdateResult::IntegrityFailure,
            "the downloaded package is gone after a restart".into(),
            false,
            out,
        );
    }

    fn check_size(&mut self, n: u64, cancel: bool, out: &mut Out) -> bool {
        match self.cfg.max_package_bytes {
            Some(max) if n > max => {
                self.fail(
                    SwUpdateResult::NotEnoughStorage,
                    format!("the package has {n} bytes, more than the {max} allowed"),
                    cancel,
                    out,
                );
                false
            }
            _ => true,
        }
    }

    /// Back to INITIAL with an error; the package (if any) is dropped, what
    /// is installed (after a "ForUpdate") is left alone.
    fn fail(&mut self, result: SwUpdateResult, detail: String, cancel: bool, out: &mut Out) {
        if cancel && self.s.state == SwState::DownloadStarted {
            out.undo.push(SwAction::CancelDownload);
        }
        if self.s.state != SwState::Initial {
            out.undo.push(SwAction::DeletePackage);
        }
        self.s.state = SwState::Initial;
        self.s.result = result;
        self.s.detail = Some(detail);
        self.s.source = None;
        self.s.bytes = 0;
        self.s.total = None;
        self.s.busy = None;
    }

    /// The readable resources 0, 1, 7, 8, 9 and 12, in that order (3 is
    /// write-only in object 9).
    pub fn values(&self) -> Vec<(u16, ResourceValue)> {
        // 9.xml: DISABLED "if the Software Activation State Machine is in the
        // INACTIVE state or not alive", and it lives only in INSTALLED.
        let enabled = self.s.state == SwState::Installed && self.s.active;
        vec![
            (0, ResourceValue::Str(self.s.pkg_name.clone())),
            (1, ResourceValue::Str(self.s.pkg_version.clone())),
            (7, ResourceValue::Int(self.s.state.code())),
            (8, ResourceValue::Bool(self.s.update_supported_objects)),
            (9, ResourceValue::Int(self.s.result.code())),
            (12, ResourceValue::Bool(enabled)),
        ]
    }

    pub fn state(&self) -> SwState {
        self.s.state
    }

    pub fn result(&self) -> SwUpdateResult {
        self.s.result
    }

    pub fn snapshot(&self) -> SwSnapshot {
        self.s.clone()
    }

    pub fn busy(&self) -> Option<Busy> {
        self.s.busy
    }

    pub fn detail(&self) -> Option<&str> {
        self.s.detail.as_deref()
    }
}

#[cfg(test)]
#[path = "software_tests.rs"]
mod tests;
