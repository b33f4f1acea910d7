//! /9 Software Management (one instance, /9/0) in the client, as /5 is in
//! `firmware.rs`: a server's requests on /9/0 drive the machine of
//! `lwm2m/firmware/software.rs`, its values are kept in the gateway's tree, its
//! snapshot is persisted, and its work goes to the driver as `Action::Software`.

use super::push::Target;
use super::requests::error_packet;
use super::*;
use crate::lwm2m::firmware::software::{self as sw, Software, SwAction, SwEvent, SwState};
use crate::lwm2m::firmware::SwUpdateResult;

/// The only instance: several would need a package directory each, and no
/// server we know of drives more than one.
pub const INSTANCE: u16 = 0;

/// What the driver tells the client about /9 at start.
#[derive(Debug, Clone)]
pub struct SoftwareSetup {
    pub config: sw::SwConfig,
    /// The package file, and whether the software is installed now.
    pub boot: sw::SwBoot,
    /// An uninstaller is configured. Without one, Uninstall of installed
    /// software is 4.05: nothing could remove it, and a result of 59 would
    /// only tell the server so later.
    pub can_uninstall: bool,
}

/// The commands of `[software]`; also the instance of
/// `lwgate-software@.service` that runs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwCommand {
    Install,
    Uninstall,
    Activate,
    Deactivate,
}

impl SwCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            SwCommand::Install => "install",
            SwCommand::Uninstall => "uninstall",
            SwCommand::Activate => "activate",
            SwCommand::Deactivate => "deactivate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            SwCommand::Install,
            SwCommand::Uninstall,
            SwCommand::Activate,
            SwCommand::Deactivate,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Work for the driver, in the order given (as `FirmwareTask`).
#[derive(Debug, Clone, PartialEq)]
pub enum SoftwareTask {
    Download {
        id: u32,
        uri: String,
        resume: bool,
    },
    Cancel,
    DeletePackage,
    Verify {
        id: u32,
    },
    /// Run a command of `[software]`; `name` is PkgName (/9/0/0), the
    /// `{name}` of its arguments. Report its end with the matching `*Exited`.
    Run {
        command: SwCommand,
        name: String,
    },
    /// A block pushed to /9/0/2 (offset 0 starts a new file).
    PushBlock {
        offset: u64,
        data: Vec<u8>,
    },
}

/// The state of /9/0 for `lwgate status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareStatus {
    pub state: SwState,
    pub result: SwUpdateResult,
    pub name: String,
    pub version: String,
    pub active: bool,
    pub busy: Option<sw::Busy>,
    pub detail: Option<String>,
}

fn is_software(path: &[String], res: &str) -> bool {
    path.len() == 3 && path[0] == "9" && path[1] == "0" && path[2] == res
}

impl Client {
    /// The stored snapshot, judged against what the driver found at start.
    pub(super) fn restore_software(&mut self, now: Instant, stored: Option<&str>) {
        let (Some(setup), Some(json)) = (self.cfg.software.clone(), stored) else {
            return;
        };
        let snap: sw::SwSnapshot = match serde_json::from_str(json) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "stored software-management state unreadable, starting Initial: {e}"
                );
                return;
            }
        };
        let (machine, actions) = Software::restore(setup.config.clone(), snap, setup.boot);
        self.software = Some(machine);
        self.sync_software_values();
        self.software_actions(now, actions);
    }

    /// Requests on /9/0 that the machine answers: Execute Install, Uninstall
    /// (with its argument), Activate, Deactivate, and a push to /9/0/2. The
    /// Package URI and Update Supported Objects go through the data model
    /// first (see `software_written`).
    pub(super) fn software_request(
        &mut self,
        now: Instant,
        idx: usize,
        req: &Packet,
    ) -> Option<Packet> {
        let state = self.software.as_ref()?.state();
        let path = message::uri_path(req)?;
        let coap_lite::MessageClass::Request(method) = req.header.code else {
            return None;
        };
        if method == RequestType::Post {
            let ev = if is_software(&path, "4") {
                Some(Ok(SwEvent::Install))
            } else if is_software(&path, "6") {
                Some(
                    std::str::from_utf8(&req.payload)
                        .map_err(|_| OpError::BadRequest("the argument is not UTF-8".into()))
                        .and_then(sw::parse_uninstall_arg)
                        .and_then(|for_update| {
                            let removes = !for_update && state == SwState::Installed;
                            let can = self.cfg.software.as_ref().is_some_and(|s| s.can_uninstall);
                            if removes && !can {
                                Err(OpError::MethodNotAllowed)
                            } else {
                                Ok(SwEvent::Uninstall { for_update })
                            }
                        }),
                )
            } else if is_software(&path, "10") {
                Some(Ok(SwEvent::Activate))
            } else if is_software(&path, "11") {
                Some(Ok(SwEvent::Deactivate))
            } else {
                None
            };
            if let Some(ev) = ev {
                return Some(match ev.and_then(|ev| self.software_handle(now, ev)) {
                    Ok(()) => message::response(req, codes::CHANGED),
                    Err(e) => error_packet(req, &e),
                });
            }
        }
        if method == RequestType::Put && is_software(&path, "3") && state != SwState::Initial {
            // A new Package URI only in INITIAL: refused before the tree takes it.
            return Some(error_packet(req, &OpError::MethodNotAllowed));
        }
        if !matches!(method, RequestType::Put | RequestType::Post) || !is_software(&path, "2") {
            return None;
        }
        Some(self.package_push(now, idx, req, Target::Software))
    }

    /// A server wrote /9/0/3 or /9/0/8 (alone or with the instance).
    pub(super) fn software_written(&mut self, now: Instant, path: &Path) {
        if self.software.is_none()
            || path.prefix.is_some()
            || path.object() != Some(9)
            || path.instance().is_some_and(|i| i != INSTANCE)
        {
            return;
        }
        let res = path.resource();
        if res.is_none_or(|r| r == 3) {
            if let Some(Value::String(uri)) = self.trees.gateway.get(9, INSTANCE, 3).cloned() {
                if let Err(e) = self.software_handle(now, SwEvent::PackageUriWritten(uri)) {
                    tracing::debug!("Package URI write refused by the software machine: {e}");
                }
            }
        }
        if res.is_none_or(|r| r == 8) {
            if let Some(Value::Boolean(b)) = self.trees.gateway.get(9, INSTANCE, 8).cloned() {
                let _ = self.software_handle(now, SwEvent::UpdateSupportedObjectsWritten(b));
            }
        }
        self.sync_software_values();
    }

    /// What the driver's work reports: downloads, the check, the commands.
    pub fn software_event(&mut self, now: Instant, ev: SwEvent) {
        self.now = now;
        if let Err(e) = self.software_handle(now, ev) {
            tracing::debug!("software event refused: {e}");
        }
    }

    pub(super) fn software_handle(&mut self, now: Instant, ev: SwEvent) -> Result<(), OpError> {
        let Some(machine) = self.software.as_mut() else {
            return Err(OpError::NotFound);
        };
        let actions = machine.handle(ev)?;
        self.software_actions(now, actions);
        Ok(())
    }

    fn software_actions(&mut self, now: Instant, actions: Vec<SwAction>) {
        let mut changed = false;
        let name = self
            .software
            .as_ref()
            .map(|m| m.snapshot().pkg_name)
            .unwrap_or_default();
        let run = |command| SoftwareTask::Run {
            command,
            name: name.clone(),
        };
        for a in actions {
            let task = match a {
                SwAction::Persist(snap) => {
                    match serde_json::to_string(&*snap) {
                        Ok(json) => self.persist.push_back(Persist::Software(json)),
                        Err(e) => tracing::error!("software-management state not saved: {e}"),
                    }
                    continue;
                }
                SwAction::ValuesChanged(_) => {
                    changed = true;
                    continue;
                }
                SwAction::RegistrationUpdate => {
                    // The object list may have changed with the software.
                    for idx in 0..self.sessions.len() {
                        self.request_update(now, idx);
                    }
                    continue;
                }
                SwAction::StartDownload { id, uri, resume } => {
                    SoftwareTask::Download { id, uri, resume }
                }
                SwAction::CancelDownload => {
                    self.sw_push = None;
                    SoftwareTask::Cancel
                }
                SwAction::DeletePackage => SoftwareTask::DeletePackage,
                SwAction::Verify { id } => SoftwareTask::Verify { id },
                SwAction::RunInstall => run(SwCommand::Install),
                SwAction::RunUninstall => run(SwCommand::Uninstall),
                SwAction::RunActivate => run(SwCommand::Activate),
                SwAction::RunDeactivate => run(SwCommand::Deactivate),
            };
            self.actions.push_back(Action::Software(task));
        }
        if changed {
            self.sync_software_values();
            self.check_observations(now);
        }
    }

    /// The machine's values into /9/0 of the gateway's tree.
    pub(super) fn sync_software_values(&mut self) {
        if let Some(machine) = self.software.as_ref() {
            super::firmware::set_values(&mut self.trees.gateway, 9, INSTANCE, machine.values());
        }
    }

    pub fn software_status(&self) -> Option<SoftwareStatus> {
        let m = self.software.as_ref()?;
        let s = m.snapshot();
        Some(SoftwareStatus {
            state: s.state,
            result: s.result,
            name: s.pkg_name,
            version: s.pkg_version,
            active: s.active,
            busy: s.busy,
            detail: s.detail,
        })
    }
}
