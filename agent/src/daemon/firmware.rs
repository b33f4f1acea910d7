//! The driver's side of /5 Firmware Update: the package work of `package.rs`
//! (file, downloads, push, check) and the installer, run as a child or through
//! `lwgate-install.service`. The decisions are the machine's
//! (lwm2m/firmware/state.rs); `Engine::firmware_report` turns the reports into
//! its events.

use super::package::{self, Package, Settings, PACKAGE};
use crate::config::{FirmwareSection, Runner};
use crate::lwm2m::firmware::state::Protocol;
use crate::lwm2m::firmware::Config as MachineConfig;
use crate::lwm2m::{FirmwareSetup, FirmwareTask};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// /5's reports: its only command is the installer.
pub type Report = package::Report<()>;

pub struct FirmwareDriver {
    pub pkg: Package<()>,
    rx: mpsc::Receiver<package::Tagged<()>>,
    cfg: FirmwareSection,
}

/// What this build can fetch (/5/0/8, /9's URIs).
pub fn protocols() -> Vec<Protocol> {
    vec![
        Protocol::Coap,
        Protocol::Coaps,
        Protocol::Http,
        Protocol::Https,
    ]
}

/// /5's setup for the client, when `[firmware]` is configured.
pub fn setup(
    cfg: Option<&FirmwareSection>,
    store: &Path,
    running_version: &str,
) -> Option<FirmwareSetup> {
    let fw = cfg?;
    let dir = package_dir(fw, store);
    Some(FirmwareSetup {
        config: MachineConfig {
            protocols: protocols(),
            max_package_bytes: fw.max_size,
            restart_timeout_ms: u64::from(fw.restart_timeout.0) * 1000,
            verdict: crate::lwm2m::firmware::Verdict::Restart,
        },
        running_version: running_version.to_string(),
        package_present: dir.join(PACKAGE).exists(),
    })
}

/// Where the package of `[firmware]` is (for `lwgate install-package`).
pub fn package_path(fw: &FirmwareSection, store: &Path) -> PathBuf {
    package_dir(fw, store).join(PACKAGE)
}

fn package_dir(fw: &FirmwareSection, store: &Path) -> PathBuf {
    package::default_dir(fw.dir.as_ref(), store, "firmware")
}

/// `systemd` when the daemon runs under systemd (it sets INVOCATION_ID), else
/// `direct`: the default of both `runner` keys.
pub fn default_runner(runner: Option<Runner>) -> Runner {
    runner.unwrap_or(if std::env::var_os("INVOCATION_ID").is_some() {
        Runner::Systemd
    } else {
        Runner::Direct
    })
}

impl FirmwareDriver {
    pub fn new(cfg: Option<&FirmwareSection>, store: &Path) -> Option<Self> {
        let cfg = cfg?.clone();
        let (tx, rx) = mpsc::channel(64);
        let pkg = Package::new(
            Settings {
                label: "firmware",
                dir: package_dir(&cfg, store),
                max_size: cfg.max_size,
                ca_file: cfg.ca_file.clone(),
                public_key: cfg.public_key.clone(),
                sha256_manifest: cfg.sha256_manifest,
            },
            0,
            tx,
        );
        Some(Self { pkg, rx, cfg })
    }

    /// The next report for the machine (progress for `lwgate status` is kept
    /// here).
    pub async fn recv(&mut self) -> Option<Report> {
        loop {
            match self.rx.recv().await? {
                (_, Report::Progress(p)) => self.pkg.progress = Some(p),
                (_, r) => return Some(r),
            }
        }
    }

    /// `dtls`: the credentials for a coaps:// Package URI (those of the LwM2M
    /// server on the same host and port: ThingsBoard's generated CoAP URLs point at
    /// itself), found by the engine.
    pub fn task(&mut self, task: FirmwareTask, dtls: Option<crate::dtls::DtlsConfig>) {
        match task {
            FirmwareTask::Download { id, uri, resume } => self.pkg.download(id, uri, resume, dtls),
            FirmwareTask::Cancel => self.pkg.cancel(),
            FirmwareTask::DeletePackage => self.pkg.delete(),
            FirmwareTask::Verify { id } => self.pkg.verify(id),
            FirmwareTask::Install => self.install(),
            FirmwareTask::PushBlock { offset, data } => self.pkg.push_block(offset, &data),
        }
    }

    fn install(&mut self) {
        let package = self.pkg.path(PACKAGE);
        let argv: Vec<String> = self
            .cfg
            .install
            .iter()
            .map(|a| a.replace("{file}", &package.display().to_string()))
            .collect();
        let argv = match default_runner(self.cfg.runner) {
            Runner::Direct => argv,
            // The unit runs the same [firmware] install, as root, outside our sandbox.
            Runner::Systemd => vec![
                "systemctl".into(),
                "start".into(),
                "lwgate-install.service".into(),
            ],
        };
        self.pkg.run((), "installer", argv, || {});
    }
}
