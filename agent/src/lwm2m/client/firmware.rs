//! /5 Firmware Update in the client: a server's requests on /5/0 drive the
//! machine of `lwm2m/firmware/state.rs`, its values are kept in the gateway's
//! tree (reads and observations need nothing else), its snapshot is persisted,
//! and the work it asks for (download, check, install, the blocks of a push)
//! goes to the driver as `Action::Firmware`.

use super::push::Target;
use super::requests::error_packet;
use super::*;
use crate::lwm2m::firmware::{self as fw, Firmware, ResourceValue};

/// What the driver tells the client about /5 at start.
#[derive(Debug, Clone)]
pub struct FirmwareSetup {
    pub config: fw::Config,
    /// The firmware version running now (/3/0/3): an update is judged by it.
    pub running_version: String,
    /// The package file exists (a download or push the last run left).
    pub package_present: bool,
}

/// Work for the driver, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum FirmwareTask {
    /// Fetch `uri` into the package file; `resume`: continue from its length.
    Download {
        id: u32,
        uri: String,
        resume: bool,
    },
    /// Stop the download or the check under way.
    Cancel,
    DeletePackage,
    /// Check the whole package file and report with `id`.
    Verify {
        id: u32,
    },
    /// Run the installer on the package file.
    Install,
    /// A block pushed to /5/0/0: write `data` at `offset` of the package file
    /// (offset 0 starts a new file).
    PushBlock {
        offset: u64,
        data: Vec<u8>,
    },
}

/// The state of /5 for `lwgate status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareStatus {
    pub state: fw::State,
    pub result: fw::UpdateResult,
    pub uri: String,
    pub bytes: u64,
    pub total: Option<u64>,
    pub detail: Option<String>,
}

fn is_firmware(path: &[String], res: &str) -> bool {
    path.len() == 3 && path[0] == "5" && path[1] == "0" && path[2] == res
}

impl Client {
    pub(super) fn firmware_machine(setup: &FirmwareSetup) -> Firmware {
        Firmware::new(setup.config.clone(), &setup.running_version)
    }

    /// The stored snapshot, judged against what runs now (an update is decided
    /// here, a download or check the last run left goes on).
    pub(super) fn restore_firmware(&mut self, now: Instant, stored: Option<&str>) {
        let (Some(setup), Some(json)) = (self.cfg.firmware.clone(), stored) else {
            return;
        };
        let snap: fw::Snapshot = match serde_json::from_str(json) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("stored firmware-update state unreadable, starting Idle: {e}");
                return;
            }
        };
        let boot = fw::Boot {
            running_version: setup.running_version.clone(),
            package_present: setup.package_present,
        };
        let (machine, actions) = Firmware::restore(setup.config.clone(), snap, &boot);
        self.firmware = Some(machine);
        self.sync_firmware_values();
        self.firmware_actions(now, actions);
    }

    /// Requests on /5/0 that the machine answers (the Package URI goes through
    /// the data model first, see `firmware_written`): a push to /5/0/0, block by
    /// block to the driver, and Execute /5/0/2.
    pub(super) fn firmware_request(
        &mut self,
        now: Instant,
        idx: usize,
        req: &Packet,
    ) -> Option<Packet> {
        self.firmware.as_ref()?;
        let path = message::uri_path(req)?;
        let coap_lite::MessageClass::Request(method) = req.header.code else {
            return None;
        };
        if method == RequestType::Post && is_firmware(&path, "2") {
            let r = self.firmware_handle(now, fw::Event::ExecuteUpdate);
            return Some(match r {
                Ok(()) => message::response(req, codes::CHANGED),
                Err(e) => error_packet(req, &e),
            });
        }
        if method == RequestType::Put && is_firmware(&path, "1") {
            // A write while Updating is refused before the tree takes it.
            if self.firmware.as_ref()?.state() == fw::State::Updating {
                return Some(error_packet(req, &OpError::MethodNotAllowed));
            }
            return None;
        }
        if !matches!(method, RequestType::Put | RequestType::Post) || !is_firmware(&path, "0") {
            return None;
        }
        Some(self.package_push(now, idx, req, Target::Firmware))
    }

    /// A server wrote /5/0/1 (alone or with its instance): the machine takes
    /// the new Package URI.
    pub(super) fn firmware_written(&mut self, now: Instant, path: &Path) {
        if self.firmware.is_none()
            || path.prefix.is_some()
            || path.object() != Some(5)
            || path.resource().is_some_and(|r| r != 1)
        {
            return;
        }
        let uri = match self.trees.gateway.get(5, 0, 1) {
            Some(Value::String(s)) => s.clone(),
            _ => return,
        };
        if let Err(e) = self.firmware_handle(now, fw::Event::PackageUriWritten(uri)) {
            tracing::debug!("Package URI write refused by the firmware machine: {e}");
        }
        // The tree shows what the machine kept (an over-long URI is not).
        self.sync_firmware_values();
    }

    /// What the driver's work reports: download progress and end, the check,
    /// the installer.
    pub fn firmware_event(&mut self, now: Instant, ev: fw::Event) {
        self.now = now;
        if let Err(e) = self.firmware_handle(now, ev) {
            tracing::debug!("firmware event refused: {e}");
        }
    }

    pub(super) fn firmware_handle(&mut self, now: Instant, ev: fw::Event) -> Result<(), OpError> {
        let Some(machine) = self.firmware.as_mut() else {
            return Err(OpError::NotFound);
        };
        let actions = machine.handle(ev)?;
        self.firmware_actions(now, actions);
        Ok(())
    }

    fn firmware_actions(&mut self, now: Instant, actions: Vec<fw::Action>) {
        let mut changed = false;
        for a in actions {
            let task = match a {
                fw::Action::Persist(snap) => {
                    match serde_json::to_string(&*snap) {
                        Ok(json) => self.persist.push_back(Persist::Firmware(json)),
                        Err(e) => tracing::error!("firmware-update state not saved: {e}"),
                    }
                    continue;
                }
                fw::Action::ValuesChanged(_) => {
                    changed = true;
                    continue;
                }
                fw::Action::StartDownload { id, uri, resume } => {
                    FirmwareTask::Download { id, uri, resume }
                }
                fw::Action::CancelDownload => {
                    self.fw_push = None;
                    FirmwareTask::Cancel
                }
                fw::Action::DeletePackage => FirmwareTask::DeletePackage,
                fw::Action::Verify { id } => FirmwareTask::Verify { id },
                fw::Action::RunInstall => FirmwareTask::Install,
            };
            self.actions.push_back(Action::Firmware(task));
        }
        if changed {
            self.sync_firmware_values();
            self.check_observations(now);
        }
    }

    /// The machine's values into /5/0 of the gateway's tree.
    pub(super) fn sync_firmware_values(&mut self) {
        if let Some(machine) = self.firmware.as_ref() {
            set_values(&mut self.trees.gateway, 5, 0, machine.values());
        }
    }

    pub fn firmware_status(&self) -> Option<FirmwareStatus> {
        let m = self.firmware.as_ref()?;
        let s = m.snapshot();
        let (bytes, total) = m.progress();
        Some(FirmwareStatus {
            state: m.state(),
            result: m.result(),
            uri: s.package_uri,
            bytes,
            total,
            detail: m.detail().map(String::from),
        })
    }

    /// Called by the driver now and then: an update whose installer succeeded
    /// but whose restart never came is failed after the configured time.
    pub fn firmware_tick(&mut self, now: Instant) {
        if self.firmware.as_ref().map(|f| f.state()) == Some(fw::State::Updating) {
            let now_ms = self.firmware_clock_ms(now);
            let _ = self.firmware_handle(now, fw::Event::Tick { now_ms });
        }
    }

    /// The clock the machine's install timing runs on.
    pub fn firmware_clock_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

/// A machine's resource values (/5 or /9) into an instance of the tree.
pub(super) fn set_values(
    tree: &mut crate::lwm2m::Tree,
    obj: u16,
    inst: u16,
    values: Vec<(u16, ResourceValue)>,
) {
    for (res, v) in values {
        match v {
            ResourceValue::Int(i) => tree.set(obj, inst, res, Value::Integer(i)),
            ResourceValue::Str(s) => tree.set(obj, inst, res, Value::String(s)),
            ResourceValue::Bool(b) => tree.set(obj, inst, res, Value::Boolean(b)),
            ResourceValue::Ints(v) => {
                let m = v
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| (i as u16, Value::Integer(x)))
                    .collect();
                tree.set_multi(obj, inst, res, m);
            }
        }
    }
}
