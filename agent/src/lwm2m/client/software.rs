//! /9 Software Management in the client, as /5 is in `firmware.rs`, with one
//! instance per package: /9/0 from the start, more when a server creates them
//! (Create on /9), each with its own machine of `lwm2m/firmware/software.rs`
//! (its own package, commands and state). A server's requests on /9/x drive
//! that machine, its values are kept in the gateway's tree, the snapshots of
//! all instances are persisted together, and the work goes to the driver as
//! `Action::Software(instance, task)`. A Delete of an instance whose software
//! is not installed (or being worked on) drops it with its package.

use super::push::Target;
use super::requests::error_packet;
use super::*;
use crate::lwm2m::firmware::software::{self as sw, Software, SwAction, SwEvent, SwState};
use crate::lwm2m::firmware::SwUpdateResult;
use std::collections::BTreeMap;

/// The instance every gateway with `[software]` starts with.
pub const FIRST: u16 = 0;

/// What the driver tells the client about /9 at start.
#[derive(Debug, Clone)]
pub struct SoftwareSetup {
    pub config: sw::SwConfig,
    /// Per instance with a directory: its package file, and whether its
    /// software is installed now.
    pub boots: BTreeMap<u16, sw::SwBoot>,
    /// An uninstaller is configured. Without one, Uninstall of installed
    /// software is 4.05: nothing could remove it, and a result of 59 would
    /// only tell the server so later.
    pub can_uninstall: bool,
    /// The most instances a server may have (Create beyond is 4.00).
    pub max_instances: usize,
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

/// Work for the driver on one instance, in the order given (as `FirmwareTask`).
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
    /// Run a command of `[software]`; `name` is PkgName (/9/x/0), the
    /// `{name}` of its arguments. Report its end with the matching `*Exited`.
    Run {
        command: SwCommand,
        name: String,
    },
    /// A block pushed to /9/x/2 (offset 0 starts a new file).
    PushBlock {
        offset: u64,
        data: Vec<u8>,
    },
    /// The instance is gone (deleted by a server): stop its work, remove its
    /// files.
    Forget,
}

/// The state of one /9 instance for `lwgate status`.
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

/// The snapshots of every instance, as stored. A row of the one-instance
/// versions is a bare snapshot of /9/0 and still reads.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    instances: BTreeMap<u16, sw::SwSnapshot>,
}

fn parse_stored(json: &str) -> Result<BTreeMap<u16, sw::SwSnapshot>, serde_json::Error> {
    match serde_json::from_str::<Stored>(json) {
        Ok(s) => Ok(s.instances),
        Err(_) => {
            serde_json::from_str::<sw::SwSnapshot>(json).map(|s| BTreeMap::from([(FIRST, s)]))
        }
    }
}

/// `/9/<instance>/<resource>` of a request's path.
fn software_path(path: &[String]) -> Option<(u16, Option<&str>)> {
    match path {
        [o, i] if o == "9" => Some((i.parse().ok()?, None)),
        [o, i, r] if o == "9" => Some((i.parse().ok()?, Some(r.as_str()))),
        _ => None,
    }
}

impl Client {
    pub(super) fn software_setup_instances(&mut self) {
        if let Some(setup) = &self.cfg.software {
            let m = Software::new(setup.config.clone());
            self.software.insert(FIRST, m);
            self.sync_software_values(FIRST);
        }
    }

    /// The stored snapshots, judged against what the driver found at start.
    /// Instances that are stored replace /9/0 of a fresh start; an instance
    /// directory the store does not know of is forgotten.
    pub(super) fn restore_software(&mut self, now: Instant, stored: Option<&str>) {
        let (Some(setup), Some(json)) = (self.cfg.software.clone(), stored) else {
            return;
        };
        let snaps = match parse_stored(json) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "stored software-management state unreadable, starting Initial: {e}"
                );
                return;
            }
        };
        for inst in std::mem::take(&mut self.software).into_keys() {
            let _ = self.trees.gateway.delete_instance(9, inst);
        }
        for (inst, snap) in snaps {
            let boot = setup.boots.get(&inst).copied().unwrap_or(sw::SwBoot {
                package_present: false,
                installed: false,
            });
            let (machine, actions) = Software::restore(setup.config.clone(), snap, boot);
            self.software.insert(inst, machine);
            self.sync_software_values(inst);
            self.software_actions(now, inst, actions);
        }
        for inst in setup.boots.keys() {
            if !self.software.contains_key(inst) {
                self.actions
                    .push_back(Action::Software(*inst, SoftwareTask::Forget));
            }
        }
    }

    /// Requests on /9 that the machines answer: Execute Install, Uninstall
    /// (with its argument), Activate, Deactivate, a push to /9/x/2, and the
    /// refusals the data model cannot know of (a new Package URI outside
    /// INITIAL, a Create past the limit, a Delete of installed software). The
    /// Package URI and Update Supported Objects go through the data model
    /// first (see `software_written`), Create and Delete too (see
    /// `software_created`, `software_deleted`).
    pub(super) fn software_request(
        &mut self,
        now: Instant,
        idx: usize,
        req: &Packet,
    ) -> Option<Packet> {
        let setup = self.cfg.software.as_ref()?;
        let path = message::uri_path(req)?;
        let coap_lite::MessageClass::Request(method) = req.header.code else {
            return None;
        };
        if method == RequestType::Post && path.len() == 1 && path[0] == "9" {
            // Create: the data model makes the instance, within our limit.
            if self.software.len() >= setup.max_instances {
                return Some(error_packet(
                    req,
                    &OpError::BadRequest(format!(
                        "at most {} /9 instances ([software] instances)",
                        setup.max_instances
                    )),
                ));
            }
            return None;
        }
        let (inst, res) = software_path(&path)?;
        let machine = self.software.get(&inst)?;
        let state = machine.state();
        if method == RequestType::Delete && res.is_none() {
            if machine.busy().is_some() || state == SwState::Installed {
                tracing::info!(
                    "Delete of /9/{inst} refused: its software is installed or a command runs (Uninstall first)"
                );
                return Some(error_packet(req, &OpError::MethodNotAllowed));
            }
            return None;
        }
        let res = res?;
        if method == RequestType::Post {
            let ev = match res {
                "4" => Some(Ok(SwEvent::Install)),
                "6" => Some(
                    std::str::from_utf8(&req.payload)
                        .map_err(|_| OpError::BadRequest("the argument is not UTF-8".into()))
                        .and_then(sw::parse_uninstall_arg)
                        .and_then(|for_update| {
                            let removes = !for_update && state == SwState::Installed;
                            if removes && !setup.can_uninstall {
                                Err(OpError::MethodNotAllowed)
                            } else {
                                Ok(SwEvent::Uninstall { for_update })
                            }
                        }),
                ),
                "10" => Some(Ok(SwEvent::Activate)),
                "11" => Some(Ok(SwEvent::Deactivate)),
                _ => None,
            };
            if let Some(ev) = ev {
                return Some(
                    match ev.and_then(|ev| self.software_handle(now, inst, ev)) {
                        Ok(()) => message::response(req, codes::CHANGED),
                        Err(e) => error_packet(req, &e),
                    },
                );
            }
        }
        if method == RequestType::Put && res == "3" && state != SwState::Initial {
            // A new Package URI only in INITIAL: refused before the tree takes it.
            return Some(error_packet(req, &OpError::MethodNotAllowed));
        }
        if !matches!(method, RequestType::Put | RequestType::Post) || res != "2" {
            return None;
        }
        Some(self.package_push(now, idx, req, Target::Software(inst)))
    }

    /// A server wrote /9/x/3 or /9/x/8 (alone or with the instance).
    pub(super) fn software_written(&mut self, now: Instant, path: &Path) {
        let Some(inst) = path.instance() else {
            return;
        };
        if path.prefix.is_some() || path.object() != Some(9) || !self.software.contains_key(&inst) {
            return;
        }
        let res = path.resource();
        if res.is_none_or(|r| r == 3) {
            if let Some(Value::String(uri)) = self.trees.gateway.get(9, inst, 3).cloned() {
                if let Err(e) = self.software_handle(now, inst, SwEvent::PackageUriWritten(uri)) {
                    tracing::debug!("Package URI write refused by the software machine: {e}");
                }
            }
        }
        if res.is_none_or(|r| r == 8) {
            if let Some(Value::Boolean(b)) = self.trees.gateway.get(9, inst, 8).cloned() {
                let _ = self.software_handle(now, inst, SwEvent::UpdateSupportedObjectsWritten(b));
            }
        }
        self.sync_software_values(inst);
    }

    /// A server created or deleted an instance: the machines follow /9's.
    pub(super) fn software_instances_changed(&mut self, now: Instant, path: &Path) {
        let Some(inst) = path.instance() else {
            return;
        };
        if path.prefix.is_some() || path.object() != Some(9) || self.cfg.software.is_none() {
            return;
        }
        match (
            self.trees.gateway.instance(9, inst).is_some(),
            self.software.contains_key(&inst),
        ) {
            (true, false) => self.software_created(now, inst),
            (false, true) => self.software_deleted(inst),
            _ => {}
        }
    }

    /// A server created /9/x: a new machine for it, which takes what the
    /// Create wrote (a Package URI starts its download).
    fn software_created(&mut self, now: Instant, inst: u16) {
        let Some(setup) = self.cfg.software.as_ref() else {
            return;
        };
        if self.trees.gateway.get(9, inst, 2).is_some() {
            // The data model holds a Create's body in memory: a package is
            // pushed to /9/x/2 (block-wise, to disk) or pulled from /9/x/3.
            tracing::warn!("Create of /9/{inst} with a Package (/9/{inst}/2): ignored; push it to /9/{inst}/2 or write /9/{inst}/3");
            if let Some(i) = self.trees.gateway.instance_mut(9, inst) {
                i.remove(&2);
            }
        }
        tracing::info!("a server created /9/{inst}");
        self.software
            .insert(inst, Software::new(setup.config.clone()));
        self.persist_software();
        self.software_written(now, &Path::new(&[9, inst]));
    }

    /// A server deleted /9/x (`software_request` refused it while the
    /// software is installed or a command runs): its work and files go.
    fn software_deleted(&mut self, inst: u16) {
        if self.software.remove(&inst).is_some() {
            tracing::info!("a server deleted /9/{inst}");
            self.sw_push.remove(&inst);
            self.actions
                .push_back(Action::Software(inst, SoftwareTask::Forget));
            self.persist_software();
        }
    }

    /// What the driver's work on instance `inst` reports: downloads, the
    /// check, the commands.
    pub fn software_event(&mut self, now: Instant, inst: u16, ev: SwEvent) {
        self.now = now;
        if let Err(e) = self.software_handle(now, inst, ev) {
            tracing::debug!("software event for /9/{inst} refused: {e}");
        }
    }

    pub(super) fn software_handle(
        &mut self,
        now: Instant,
        inst: u16,
        ev: SwEvent,
    ) -> Result<(), OpError> {
        let Some(machine) = self.software.get_mut(&inst) else {
            return Err(OpError::NotFound);
        };
        let actions = machine.handle(ev)?;
        self.software_actions(now, inst, actions);
        Ok(())
    }

    /// Every instance's snapshot, as one record.
    fn persist_software(&mut self) {
        let stored = Stored {
            instances: self
                .software
                .iter()
                .map(|(i, m)| (*i, m.snapshot()))
                .collect(),
        };
        match serde_json::to_string(&stored) {
            Ok(json) => self.persist.push_back(Persist::Software(json)),
            Err(e) => tracing::error!("software-management state not saved: {e}"),
        }
    }

    fn software_actions(&mut self, now: Instant, inst: u16, actions: Vec<SwAction>) {
        let mut changed = false;
        let name = self
            .software
            .get(&inst)
            .map(|m| m.snapshot().pkg_name)
            .unwrap_or_default();
        let run = |command| SoftwareTask::Run {
            command,
            name: name.clone(),
        };
        for a in actions {
            let task = match a {
                SwAction::Persist(_) => {
                    // The machine's snapshot is its state now: stored with
                    // the other instances'.
                    self.persist_software();
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
                    self.sw_push.remove(&inst);
                    SoftwareTask::Cancel
                }
                SwAction::DeletePackage => SoftwareTask::DeletePackage,
                SwAction::Verify { id } => SoftwareTask::Verify { id },
                SwAction::RunInstall => run(SwCommand::Install),
                SwAction::RunUninstall => run(SwCommand::Uninstall),
                SwAction::RunActivate => run(SwCommand::Activate),
                SwAction::RunDeactivate => run(SwCommand::Deactivate),
            };
            self.actions.push_back(Action::Software(inst, task));
        }
        if changed {
            self.sync_software_values(inst);
            self.check_observations(now);
        }
    }

    /// A machine's values into its /9 instance of the gateway's tree.
    pub(super) fn sync_software_values(&mut self, inst: u16) {
        if let Some(machine) = self.software.get(&inst) {
            super::firmware::set_values(&mut self.trees.gateway, 9, inst, machine.values());
        }
    }

    /// Whether /9/x is at a state that takes a pushed package's blocks.
    pub(super) fn software_receiving(&self, inst: u16) -> bool {
        self.software.get(&inst).map(|s| s.state()) == Some(SwState::DownloadStarted)
    }

    pub fn software_status(&self) -> Vec<(u16, SoftwareStatus)> {
        self.software
            .iter()
            .map(|(i, m)| {
                let s = m.snapshot();
                (
                    *i,
                    SoftwareStatus {
                        state: s.state,
                        result: s.result,
                        name: s.pkg_name,
                        version: s.pkg_version,
                        active: s.active,
                        busy: s.busy,
                        detail: s.detail,
                    },
                )
            })
            .collect()
    }
}
