//! A Block1 push of a package (/5/0/0 or /9/x/2): the blocks go to the driver
//! one by one as they come (a package does not fit in memory), in order, and
//! the machine of that object hears the start, the progress and the end.
//! One helper for both objects: only the events and the task differ.

use super::firmware::FirmwareTask;
use super::requests::error_packet;
use super::software::SoftwareTask;
use super::*;
use crate::lwm2m::firmware::{self as fw, SwEvent};

/// The object (and instance) a package is pushed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Firmware,
    /// An end device's /prefix/5, by its slot.
    DeviceFirmware(u16),
    Software(u16),
}

/// A Block1 push under way.
#[derive(Debug)]
pub(super) struct PushRx {
    ssid: u16,
    next: u64,
    expires: Instant,
}

/// What a push tells the machine of its target.
enum PushEvent {
    Started {
        size: Option<u64>,
    },
    Progress {
        bytes: u64,
    },
    Completed {
        bytes: u64,
    },
    Aborted,
    /// An empty package (/5's way of cancelling).
    Cleared,
}

impl Client {
    fn push_slot(&self, t: Target) -> Option<&PushRx> {
        match t {
            Target::Firmware => self.fw_push.as_ref(),
            Target::DeviceFirmware(slot) => self
                .device_firmware
                .values()
                .find(|d| d.slot == slot)?
                .push
                .as_ref(),
            Target::Software(i) => self.sw_push.get(&i),
        }
    }

    /// Puts (or with None, ends) the push of `t`; the one it replaces back.
    fn set_push(&mut self, t: Target, p: Option<PushRx>) -> Option<PushRx> {
        match (t, p) {
            (Target::Firmware, p) => std::mem::replace(&mut self.fw_push, p),
            (Target::DeviceFirmware(slot), p) => self
                .device_firmware
                .values_mut()
                .find(|d| d.slot == slot)
                .and_then(|d| std::mem::replace(&mut d.push, p)),
            (Target::Software(i), Some(p)) => self.sw_push.insert(i, p),
            (Target::Software(i), None) => self.sw_push.remove(&i),
        }
    }

    fn push_max(&self, t: Target) -> Option<u64> {
        match t {
            Target::Firmware => self
                .cfg
                .firmware
                .as_ref()
                .and_then(|s| s.config.max_package_bytes),
            Target::DeviceFirmware(slot) => self
                .device_firmware
                .values()
                .find(|d| d.slot == slot)
                .and_then(|d| d.max_package_bytes),
            Target::Software(_) => self
                .cfg
                .software
                .as_ref()
                .and_then(|s| s.config.max_package_bytes),
        }
    }

    /// The machine still takes blocks (it may have given the push up: too
    /// large, cancelled).
    fn push_receiving(&self, t: Target) -> bool {
        match t {
            Target::Firmware => {
                self.firmware.as_ref().map(|f| f.state()) == Some(fw::State::Downloading)
            }
            Target::DeviceFirmware(slot) => self
                .device_firmware_slot(slot)
                .and_then(|p| self.machine(Some(p)))
                .is_some_and(|m| m.state() == fw::State::Downloading),
            Target::Software(i) => self.software_receiving(i),
        }
    }

    fn push_event(&mut self, now: Instant, t: Target, ev: PushEvent) -> Result<(), OpError> {
        let fw_event = |ev| match ev {
            PushEvent::Started { size } => fw::Event::PushStarted { size },
            PushEvent::Progress { bytes } => fw::Event::PushProgress { bytes },
            PushEvent::Completed { bytes } => fw::Event::PushCompleted { bytes },
            PushEvent::Aborted => fw::Event::PushAborted,
            PushEvent::Cleared => fw::Event::PackageCleared,
        };
        match t {
            Target::Firmware => self.firmware_handle(now, fw_event(ev)),
            Target::DeviceFirmware(slot) => {
                let prefix = self
                    .device_firmware_slot(slot)
                    .ok_or(OpError::NotFound)?
                    .to_string();
                self.firmware_handle_at(now, Some(&prefix), fw_event(ev))
            }
            Target::Software(inst) => {
                let ev = match ev {
                    PushEvent::Started { size } => SwEvent::PushStarted { size },
                    PushEvent::Progress { bytes } => SwEvent::PushProgress { bytes },
                    PushEvent::Completed { bytes } => SwEvent::PushCompleted { bytes },
                    PushEvent::Aborted => SwEvent::PushAborted,
                    // /9 removes a package with Uninstall, not an empty write.
                    PushEvent::Cleared => {
                        return Err(OpError::BadRequest(
                            "an empty package: use Uninstall (/9/x/6) to drop one".into(),
                        ))
                    }
                };
                self.software_handle(now, inst, ev)
            }
        }
    }

    fn push_block_action(&self, t: Target, offset: u64, data: Vec<u8>) -> Action {
        match t {
            Target::Firmware => Action::Firmware(FirmwareTask::PushBlock { offset, data }),
            Target::DeviceFirmware(slot) => Action::DeviceFirmware(
                self.device_firmware_slot(slot)
                    .unwrap_or_default()
                    .to_string(),
                FirmwareTask::PushBlock { offset, data },
            ),
            Target::Software(i) => Action::Software(i, SoftwareTask::PushBlock { offset, data }),
        }
    }

    /// One block (or a single message) of a push to `t`'s package resource.
    pub(super) fn package_push(
        &mut self,
        now: Instant,
        idx: usize,
        req: &Packet,
        t: Target,
    ) -> Packet {
        let block = match message::block(req, CoapOption::Block1) {
            Some(None) => return error_packet(req, &OpError::BadOption(27)),
            Some(Some(b)) => Some(b),
            None => None,
        };
        let (offset, more) = block.map_or((0, false), |b| (b.offset() as u64, b.more));
        let ssid = self.sessions[idx].ssid;
        let max = self.push_max(t);
        if offset == 0 {
            if req.payload.is_empty() && !more || fw::state::is_empty_package(&req.payload) {
                self.set_push(t, None);
                return match self.push_event(now, t, PushEvent::Cleared) {
                    Ok(()) => message::response(req, codes::CHANGED),
                    Err(e) => error_packet(req, &e),
                };
            }
            let size = message::get_uint(req, CoapOption::Size1).map(u64::from);
            if let (Some(size), Some(max)) = (size, max) {
                if size > max {
                    return too_large(req, max);
                }
            }
            if let Err(e) = self.push_event(now, t, PushEvent::Started { size }) {
                return error_packet(req, &e);
            }
            self.set_push(
                t,
                Some(PushRx {
                    ssid,
                    next: 0,
                    expires: now,
                }),
            );
        }
        let next = match self.push_slot(t) {
            Some(p) if p.ssid == ssid && p.next == offset => p.next,
            _ => {
                // Out of order, or blocks after a cancel: RFC 7959 2.5.
                if self.set_push(t, None).is_some() {
                    let _ = self.push_event(now, t, PushEvent::Aborted);
                }
                return error_packet(req, &OpError::Incomplete);
            }
        };
        let end = next + req.payload.len() as u64;
        if let Some(m) = max.filter(|m| end > *m) {
            // The machine fails it with its "too large" result, not 4.
            self.set_push(t, None);
            let _ = self.push_event(now, t, PushEvent::Progress { bytes: end });
            return too_large(req, m);
        }
        self.actions
            .push_back(self.push_block_action(t, next, req.payload.clone()));
        let event = if more {
            let expires = now + self.cfg.tx.exchange_lifetime();
            self.set_push(
                t,
                Some(PushRx {
                    ssid,
                    next: end,
                    expires,
                }),
            );
            PushEvent::Progress { bytes: end }
        } else {
            self.set_push(t, None);
            PushEvent::Completed { bytes: end }
        };
        if let Err(e) = self.push_event(now, t, event) {
            return error_packet(req, &e);
        }
        if more && !self.push_receiving(t) {
            self.set_push(t, None);
        }
        let mut r = message::response(
            req,
            if more {
                codes::CONTINUE
            } else {
                codes::CHANGED
            },
        );
        if let Some(b) = block {
            message::set_block(&mut r, CoapOption::Block1, b);
        }
        r
    }

    /// Pushes whose next block did not come within EXCHANGE_LIFETIME.
    pub(super) fn expire_pushes(&mut self, now: Instant) {
        let targets: Vec<Target> = std::iter::once(Target::Firmware)
            .chain(
                self.device_firmware
                    .values()
                    .map(|d| Target::DeviceFirmware(d.slot)),
            )
            .chain(self.sw_push.keys().map(|i| Target::Software(*i)))
            .collect();
        for t in targets {
            if self
                .push_slot(t)
                .is_some_and(|p| p.next > 0 && p.expires <= now)
            {
                self.set_push(t, None);
                let _ = self.push_event(now, t, PushEvent::Aborted);
            }
        }
    }

    pub(super) fn push_deadline(&self) -> Option<Instant> {
        self.fw_push
            .iter()
            .chain(
                self.device_firmware
                    .values()
                    .filter_map(|d| d.push.as_ref()),
            )
            .chain(self.sw_push.values())
            .filter(|p| p.next > 0)
            .map(|p| p.expires)
            .min()
    }
}

fn too_large(req: &Packet, max: u64) -> Packet {
    let mut r = error_packet(req, &OpError::TooLarge);
    // RFC 7959 2.9.3: Size1 in a 4.13 tells the largest body the server may send.
    message::set_uint(
        &mut r,
        CoapOption::Size1,
        u32::try_from(max).unwrap_or(u32::MAX),
    );
    r
}
