//! /5 Firmware Update in the client: a server's requests on /5/0 drive the
//! machine of `lwm2m/firmware/state.rs`, its values are kept in the gateway's
//! tree (reads and observations need nothing else), its snapshot is persisted,
//! and the work it asks for (download, check, install, the blocks of a push)
//! goes to the driver as `Action::Firmware`.
//!
//! An end device whose file has a `[firmware]` table has a /prefix/5/0 of its
//! own: the same machine (judged by its installer's exit, not a restart), kept
//! in its tree and stored under its prefix; its work goes out as
//! `Action::DeviceFirmware`.

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

/// An end device's /5: its machine, and the slot its pushes are known by.
#[derive(Debug)]
pub(super) struct DeviceFirmware {
    pub slot: u16,
    pub machine: Firmware,
    pub max_package_bytes: Option<u64>,
    pub push: Option<super::push::PushRx>,
}

/// The prefix (None: the gateway's own object) and the resource of a request on
/// /5/0/<res> or /<prefix>/5/0/<res>.
fn firmware_target(path: &[String]) -> Option<(Option<&str>, &str)> {
    let (prefix, rest) = match path.first()?.parse::<u16>() {
        Ok(_) => (None, path),
        Err(_) => (Some(path[0].as_str()), &path[1..]),
    };
    (rest.len() == 3 && rest[0] == "5" && rest[1] == "0").then(|| (prefix, rest[2].as_str()))
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
        self.firmware_actions(now, None, actions);
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
        let path = message::uri_path(req)?;
        let (at, res) = firmware_target(&path)?;
        let at = at.map(str::to_string);
        let state = self.machine(at.as_deref())?.state();
        let coap_lite::MessageClass::Request(method) = req.header.code else {
            return None;
        };
        if method == RequestType::Post && res == "2" {
            let r = self.firmware_handle_at(now, at.as_deref(), fw::Event::ExecuteUpdate);
            return Some(match r {
                Ok(()) => message::response(req, codes::CHANGED),
                Err(e) => error_packet(req, &e),
            });
        }
        if method == RequestType::Put && res == "1" {
            // A write while Updating is refused before the tree takes it.
            if state == fw::State::Updating {
                return Some(error_packet(req, &OpError::MethodNotAllowed));
            }
            return None;
        }
        if !matches!(method, RequestType::Put | RequestType::Post) || res != "0" {
            return None;
        }
        let target = match &at {
            None => Target::Firmware,
            Some(p) => Target::DeviceFirmware(self.device_firmware.get(p)?.slot),
        };
        Some(self.package_push(now, idx, req, target))
    }

    /// The /5 machine of the gateway (None) or of an end device.
    pub(super) fn machine(&self, at: Option<&str>) -> Option<&Firmware> {
        match at {
            None => self.firmware.as_ref(),
            Some(p) => self.device_firmware.get(p).map(|d| &d.machine),
        }
    }

    /// The end device whose /5 has push slot `slot`.
    pub(super) fn device_firmware_slot(&self, slot: u16) -> Option<&str> {
        self.device_firmware
            .iter()
            .find(|(_, d)| d.slot == slot)
            .map(|(p, _)| p.as_str())
    }

    /// Gives the end device under `prefix` a /5 (`setup`, restored from its
    /// `stored` snapshot), or with None takes it away. Called by the driver when
    /// the devices are placed (at start and after a reload).
    pub fn set_device_firmware(
        &mut self,
        now: Instant,
        prefix: &str,
        setup: Option<FirmwareSetup>,
        stored: Option<&str>,
    ) {
        let Some(setup) = setup else {
            if self.device_firmware.remove(prefix).is_some() {
                if let Some(t) = self.trees.devices.get_mut(prefix) {
                    t.objects.remove(&5);
                }
            }
            return;
        };
        if self.device_firmware.contains_key(prefix) {
            // Its machine goes on (a reload that kept the device, or restarted
            // it with a new tree): its values back into the tree.
            self.sync_firmware_values_at(Some(prefix));
            return;
        }
        let slot = (0..=u16::MAX)
            .find(|s| self.device_firmware.values().all(|d| d.slot != *s))
            .unwrap_or(u16::MAX);
        let snap = stored.and_then(|json| match serde_json::from_str::<fw::Snapshot>(json) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "{prefix}: stored firmware-update state unreadable, starting Idle: {e}"
                );
                None
            }
        });
        let (machine, actions) = match snap {
            Some(snap) => {
                let boot = fw::Boot {
                    running_version: setup.running_version.clone(),
                    package_present: setup.package_present,
                };
                Firmware::restore(setup.config.clone(), snap, &boot)
            }
            None => (Self::firmware_machine(&setup), Vec::new()),
        };
        self.device_firmware.insert(
            prefix.to_string(),
            DeviceFirmware {
                slot,
                machine,
                max_package_bytes: setup.config.max_package_bytes,
                push: None,
            },
        );
        self.sync_firmware_values_at(Some(prefix));
        self.firmware_actions(now, Some(prefix), actions);
    }

    /// What the driver's work for an end device's /5 reports.
    pub fn device_firmware_event(&mut self, now: Instant, prefix: &str, ev: fw::Event) {
        self.now = now;
        if let Err(e) = self.firmware_handle_at(now, Some(prefix), ev) {
            tracing::debug!("{prefix}: firmware event refused: {e}");
        }
    }

    /// The end devices' /5 for `lwgate status`.
    pub fn device_firmware_status(&self) -> Vec<(String, FirmwareStatus)> {
        self.device_firmware
            .iter()
            .map(|(p, d)| (p.clone(), status_of(&d.machine)))
            .collect()
    }

    /// A server wrote /5/0/1 (alone or with its instance): the machine takes
    /// the new Package URI.
    pub(super) fn firmware_written(&mut self, now: Instant, path: &Path) {
        let at = path.prefix.as_deref();
        if self.machine(at).is_none()
            || path.object() != Some(5)
            || path.resource().is_some_and(|r| r != 1)
        {
            return;
        }
        let uri = match self.trees.get(at).ok().and_then(|t| t.get(5, 0, 1)) {
            Some(Value::String(s)) => s.clone(),
            _ => return,
        };
        let at = at.map(str::to_string);
        let at = at.as_deref();
        if let Err(e) = self.firmware_handle_at(now, at, fw::Event::PackageUriWritten(uri)) {
            tracing::debug!("Package URI write refused by the firmware machine: {e}");
        }
        // The tree shows what the machine kept (an over-long URI is not).
        self.sync_firmware_values_at(at);
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
        self.firmware_handle_at(now, None, ev)
    }

    pub(super) fn firmware_handle_at(
        &mut self,
        now: Instant,
        at: Option<&str>,
        ev: fw::Event,
    ) -> Result<(), OpError> {
        let machine = match at {
            None => self.firmware.as_mut(),
            Some(p) => self.device_firmware.get_mut(p).map(|d| &mut d.machine),
        };
        let Some(machine) = machine else {
            return Err(OpError::NotFound);
        };
        let actions = machine.handle(ev)?;
        self.firmware_actions(now, at, actions);
        Ok(())
    }

    fn firmware_actions(&mut self, now: Instant, at: Option<&str>, actions: Vec<fw::Action>) {
        let mut changed = false;
        for a in actions {
            let task = match a {
                fw::Action::Persist(snap) => {
                    match serde_json::to_string(&*snap) {
                        Ok(json) => self.persist.push_back(match at {
                            None => Persist::Firmware(json),
                            Some(p) => Persist::DeviceFirmware {
                                prefix: p.to_string(),
                                json,
                            },
                        }),
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
                    match at {
                        None => self.fw_push = None,
                        Some(p) => {
                            if let Some(d) = self.device_firmware.get_mut(p) {
                                d.push = None;
                            }
                        }
                    }
                    FirmwareTask::Cancel
                }
                fw::Action::DeletePackage => FirmwareTask::DeletePackage,
                fw::Action::Verify { id } => FirmwareTask::Verify { id },
                fw::Action::RunInstall => FirmwareTask::Install,
            };
            self.actions.push_back(match at {
                None => Action::Firmware(task),
                Some(p) => Action::DeviceFirmware(p.to_string(), task),
            });
        }
        if changed {
            self.sync_firmware_values_at(at);
            match at {
                None => self.check_observations(now),
                Some(_) => self.device_values_changed(now, at, None),
            }
        }
    }

    /// The machine's values into /5/0 of the gateway's tree.
    pub(super) fn sync_firmware_values(&mut self) {
        self.sync_firmware_values_at(None);
    }

    /// The machine's values into /5/0 of the gateway's or an end device's tree.
    pub(super) fn sync_firmware_values_at(&mut self, at: Option<&str>) {
        let values = match self.machine(at) {
            Some(m) => m.values(),
            None => return,
        };
        if let Ok(tree) = self.trees.get_mut(at) {
            set_values(tree, 5, 0, values);
        }
    }

    pub fn firmware_status(&self) -> Option<FirmwareStatus> {
        self.firmware.as_ref().map(status_of)
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

fn status_of(m: &Firmware) -> FirmwareStatus {
    let s = m.snapshot();
    let (bytes, total) = m.progress();
    FirmwareStatus {
        state: m.state(),
        result: m.result(),
        uri: s.package_uri,
        bytes,
        total,
        detail: m.detail().map(String::from),
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
