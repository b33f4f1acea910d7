//! The gateway's LwM2M client as the daemon runs it, driven by fuzz input: two
//! servers (one in queue mode) it is registered with, an end device `m1` behind
//! /25 (IPSO temperature and light objects from the shipped DDF files), /5 and
//! /9 configured. Each step is a server's request (whole or in Block1 blocks), a
//! raw datagram, time passing, an answer to what the client sent (ACK, RST, a
//! response to its Update), an end device carrying out a write or execute, new
//! device values, or the driver reporting on a firmware or software task.

use crate::req;
use arbitrary::{Result, Unstructured};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use lwgate::coap::message::{self, codes};
use lwgate::lwm2m::client::{FirmwareTask, SoftwareTask};
use lwgate::lwm2m::error::OpError;
use lwgate::lwm2m::factory::{self, Account, DeviceInfo};
use lwgate::lwm2m::firmware::software::{SwBoot, SwConfig, SwEvent};
use lwgate::lwm2m::firmware::state::{self as fw, DownloadFailure, PackageInfo, VerifyFailure};
use lwgate::lwm2m::gateway::{self, EndDevice};
use lwgate::lwm2m::{Action, Client, ClientConfig, FirmwareSetup, SoftwareSetup};
use lwgate::model::{ddf, Registry, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DDF: [&str; 3] = [
    include_str!("../../objects/3303.xml"),
    include_str!("../../objects/3311.xml"),
    include_str!("../../objects/6.xml"),
];
pub const SERVERS: [u16; 2] = [1, 2];
/// What the harness keeps of the client's output, so memory stays bounded.
const KEEP: usize = 16;

/// The built-in objects and the IPSO ones of the end device.
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = Registry::builtin();
        for xml in DDF {
            for d in ddf::parse("fuzz.xml", xml).unwrap_or_default() {
                r.insert(d);
            }
        }
        r
    })
}

fn account(ssid: u16, binding: &str) -> Account {
    Account {
        uri: format!("coap://127.0.0.1:{}", 5682 + ssid),
        ssid,
        lifetime: 300,
        binding: binding.into(),
        notification_storing: true,
        sms_number: None,
    }
}

pub struct Harness {
    pub c: Client,
    pub now: Instant,
    mid: u16,
    /// The client's confirmable messages not yet answered (newest last).
    sent: Vec<(u16, Packet)>,
    /// End-device operations waiting for their device.
    tickets: Vec<u64>,
    fw_ids: Vec<u32>,
    sw_ids: Vec<(u16, u32)>,
}

impl Harness {
    /// A client started and registered with both servers.
    pub fn registered() -> Self {
        let now = Instant::now();
        let reg = registry().clone();
        let mut trees =
            factory::trees(&[account(1, "U"), account(2, "UQ")], &DeviceInfo::default());
        let dev = EndDevice {
            id: "meter-1".into(),
            prefix: "m1".into(),
            manufacturer: Some("ACME".into()),
            instances: vec![(3303, 0), (3311, 0)],
            ..Default::default()
        };
        let mut t = gateway::device_tree(&dev);
        t.set(3303, 0, 5700, Value::Float(21.5));
        t.set(3311, 0, 5850, Value::Boolean(false));
        let links = gateway::iot_device_objects(&reg, &t);
        gateway::set_gateway_instance(&mut trees.gateway, 0, &dev, links);
        trees.devices.insert("m1".into(), t);
        let cfg = ClientConfig {
            endpoint: "fuzz".into(),
            block_size: 64,
            queue_cap: 32,
            firmware: Some(FirmwareSetup {
                config: fw::Config {
                    max_package_bytes: Some(4096),
                    ..Default::default()
                },
                running_version: "1.0".into(),
                package_present: false,
            }),
            software: Some(SoftwareSetup {
                config: SwConfig::default(),
                boots: [(
                    0,
                    SwBoot {
                        package_present: false,
                        installed: false,
                    },
                )]
                .into(),
                can_uninstall: true,
                max_instances: 3,
            }),
            ..Default::default()
        };
        let mut c = Client::new(cfg, reg, trees, now, 7);
        c.set_wall_clock(1.7e9);
        c.handle_timeout(now);
        let mut h = Self {
            c,
            now,
            mid: 0x4000,
            sent: Vec::new(),
            tickets: Vec::new(),
            fw_ids: Vec::new(),
            sw_ids: Vec::new(),
        };
        while let Some((ssid, b)) = h.c.poll_transmit() {
            if let Ok(p) = Packet::from_bytes(&b) {
                let mut r = message::response(&p, codes::CREATED);
                r.header.set_type(MessageType::Acknowledgement);
                r.header.message_id = p.header.message_id;
                r.add_option(CoapOption::LocationPath, b"rd".to_vec());
                r.add_option(CoapOption::LocationPath, format!("r{ssid}").into_bytes());
                h.deliver(ssid, &r);
            }
        }
        h.drain();
        h
    }

    fn deliver(&mut self, ssid: u16, p: &Packet) {
        if let Ok(b) = p.to_bytes() {
            self.c.handle_datagram(self.now, ssid, &b);
        }
    }

    /// Takes everything the client has for the driver, as the daemon does.
    pub fn drain(&mut self) {
        while let Some((ssid, b)) = self.c.poll_transmit() {
            if let Ok(p) = Packet::from_bytes(&b) {
                if p.header.get_type() == MessageType::Confirmable {
                    if self.sent.len() == KEEP {
                        self.sent.remove(0);
                    }
                    self.sent.push((ssid, p));
                }
            }
        }
        while let Some(a) = self.c.poll_action() {
            match a {
                Action::Device { ticket, .. } => self.tickets.push(ticket),
                Action::Firmware(
                    FirmwareTask::Download { id, .. } | FirmwareTask::Verify { id },
                ) => self.fw_ids.push(id),
                Action::Software(
                    inst,
                    SoftwareTask::Download { id, .. } | SoftwareTask::Verify { id },
                ) => self.sw_ids.push((inst, id)),
                _ => {}
            }
        }
        self.tickets.truncate(KEEP);
        self.fw_ids.truncate(KEEP);
        self.sw_ids.truncate(KEEP);
        while self.c.poll_persist().is_some() {}
    }

    fn next_mid(&mut self) -> u16 {
        self.mid = self.mid.wrapping_add(1);
        self.mid
    }

    /// A server's request, whole or in blocks, each block with its own message id.
    pub fn request(&mut self, ssid: u16, p: Packet, u: &mut Unstructured) -> Result<()> {
        for mut b in req::blocks(u, p)? {
            b.header.message_id = self.next_mid();
            self.deliver(ssid, &b);
            self.drain();
        }
        Ok(())
    }

    /// One step of whatever a server, the network, a device or the driver does.
    pub fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        let ssid = *u.choose(&SERVERS)?;
        match u.int_in_range(0..=15)? {
            0..=7 => {
                let p = req::request(u, registry())?;
                self.request(ssid, p, u)?;
            }
            8 => {
                let n = u.int_in_range(0..=64)?;
                let raw = u.bytes(n)?.to_vec();
                self.c.handle_datagram(self.now, ssid, &raw);
            }
            9 => {
                let ms = match u.int_in_range(0..=2)? {
                    0 => u.int_in_range(0..=2_000)?,
                    1 => u.int_in_range(0..=100_000)?,
                    _ => u.int_in_range(0..=400_000)?,
                };
                self.now += Duration::from_millis(ms);
                self.c.handle_timeout(self.now);
            }
            10 => self.answer(u)?,
            11 if !self.tickets.is_empty() => {
                let i = u.choose_index(self.tickets.len())?;
                let t = self.tickets.remove(i);
                let r = if u.arbitrary()? {
                    Ok(())
                } else {
                    Err(OpError::Unavailable("the device did not answer".into()))
                };
                self.c.device_done(self.now, t, r);
            }
            12 => {
                let v = req::value(u, lwgate::model::DataType::Float)?;
                if let Some(t) = self.c.trees.devices.get_mut("m1") {
                    t.set(3303, 0, 5700, v);
                }
                if u.arbitrary()? {
                    self.c
                        .trees
                        .down
                        .insert("m1".into(), "unit 1 is silent".into());
                } else {
                    self.c.trees.down.clear();
                }
                self.c
                    .device_values_changed(self.now, Some("m1"), Some(1.7e9));
                self.c.values_changed(self.now);
            }
            13 => self.firmware_report(u)?,
            14 => self.software_report(u)?,
            _ => {
                let p = req::path(u, registry(), true)?;
                let _ = self.c.send(self.now, ssid, &[p]);
            }
        }
        self.drain();
        Ok(())
    }

    /// The server's side of a message the client sent: an ACK (with a response
    /// code for a request), a separate response, or an RST.
    fn answer(&mut self, u: &mut Unstructured) -> Result<()> {
        if self.sent.is_empty() {
            return Ok(());
        }
        let i = u.choose_index(self.sent.len())?;
        let (ssid, p) = self.sent.remove(i);
        let code = *u.choose(&[
            codes::CHANGED,
            codes::CREATED,
            codes::NOT_FOUND,
            codes::BAD_REQUEST,
            0, // empty ACK / RST
        ])?;
        let mut r = if code == 0 || matches!(p.header.code, MessageClass::Response(_)) {
            let mut e = Packet::new();
            e.header.code = MessageClass::Empty;
            e
        } else {
            message::response(&p, code)
        };
        r.header.message_id = p.header.message_id;
        r.header.set_type(if u.ratio(1, 4)? {
            MessageType::Reset
        } else {
            MessageType::Acknowledgement
        });
        self.deliver(ssid, &r);
        Ok(())
    }

    fn firmware_report(&mut self, u: &mut Unstructured) -> Result<()> {
        let id = match self.fw_ids.last() {
            Some(id) if u.ratio(7, 8)? => *id,
            _ => u.arbitrary()?,
        };
        let bytes = u.int_in_range(0..=8192)?;
        let ev = match u.int_in_range(0..=7)? {
            0 => fw::Event::DownloadProgress {
                id,
                bytes,
                total: Some(4096),
            },
            1 => fw::Event::DownloadFinished { id, bytes },
            2 => fw::Event::DownloadFailed {
                id,
                failure: DownloadFailure::ConnectionLost,
                detail: "reset".into(),
            },
            3 => fw::Event::VerificationOk {
                id,
                info: PackageInfo {
                    name: Some("fw".into()),
                    version: Some("2.0".into()),
                    expected_version: None,
                },
            },
            4 => fw::Event::VerificationFailed {
                id,
                failure: VerifyFailure::Integrity,
                detail: "digest".into(),
            },
            5 => fw::Event::InstallStarted {
                now_ms: self.c.firmware_clock_ms(self.now),
            },
            6 => fw::Event::InstallExited {
                success: u.arbitrary()?,
                detail: String::new(),
                now_ms: self.c.firmware_clock_ms(self.now),
            },
            _ => fw::Event::Tick {
                now_ms: self.c.firmware_clock_ms(self.now),
            },
        };
        self.c.firmware_event(self.now, ev);
        Ok(())
    }

    fn software_report(&mut self, u: &mut Unstructured) -> Result<()> {
        let (inst, id) = match self.sw_ids.last() {
            Some(x) if u.ratio(7, 8)? => *x,
            _ => (u.int_in_range(0..=3)?, u.arbitrary()?),
        };
        let bytes = u.int_in_range(0..=8192)?;
        let ev = match u.int_in_range(0..=6)? {
            0 => SwEvent::DownloadFinished { id, bytes },
            1 => SwEvent::DownloadFailed {
                id,
                failure: DownloadFailure::InvalidUri,
                detail: "404".into(),
            },
            2 => SwEvent::VerificationOk {
                id,
                info: PackageInfo::default(),
            },
            3 => SwEvent::VerificationFailed {
                id,
                failure: VerifyFailure::UnsupportedPackageType,
                detail: String::new(),
            },
            4 => SwEvent::InstallExited {
                success: u.arbitrary()?,
                detail: String::new(),
            },
            5 => SwEvent::UninstallExited {
                success: u.arbitrary()?,
                detail: String::new(),
            },
            _ => SwEvent::DownloadProgress {
                id,
                bytes,
                total: None,
            },
        };
        self.c.software_event(self.now, inst, ev);
        Ok(())
    }
}
