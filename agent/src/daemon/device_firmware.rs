//! The driver's side of end devices' /prefix/5: per device with a `[firmware]`
//! table in its file, the package work of `package.rs` in a directory of its own
//! and the device's install command, run as a child of the daemon (it talks to
//! the device as the bridge does, so it needs no more than the daemon has). Its
//! exit status is the update's verdict (`Verdict::InstallerExit`).

use super::package::{self, Package, Settings, PACKAGE};
use crate::lwm2m::firmware::{Config as MachineConfig, Verdict};
use crate::lwm2m::{FirmwareSetup, FirmwareTask};
use lwgate_bridges::spec::FirmwareSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

struct Device {
    tag: u16,
    id: String,
    spec: FirmwareSpec,
    pkg: Package<()>,
}

/// The end devices' packages, on one report channel (tagged per device).
pub struct DeviceFirmwareDriver {
    tx: mpsc::Sender<package::Tagged<()>>,
    rx: mpsc::Receiver<package::Tagged<()>>,
    devices: BTreeMap<String, Device>,
    root: PathBuf,
}

/// A device that should have a /5: its prefix, id and `[firmware]` table.
pub struct Wanted {
    pub prefix: String,
    pub id: String,
    pub spec: FirmwareSpec,
    /// /3/0/3 as its file gives it (`firmware_version`).
    pub version: String,
}

/// A change for the client: `setup` None takes the device's /5 away.
pub struct Change {
    pub prefix: String,
    pub setup: Option<FirmwareSetup>,
}

impl DeviceFirmwareDriver {
    /// Packages go under `firmware/devices/<prefix>/` beside the state database.
    pub fn new(store: &Path) -> Self {
        let (tx, rx) = mpsc::channel(64);
        Self {
            tx,
            rx,
            devices: BTreeMap::new(),
            root: package::default_dir(None, store, "firmware").join("devices"),
        }
    }

    /// Brings the set of devices with a /5 to `wanted`; what changed for the
    /// client. A device whose table changed starts over with the new one (its
    /// machine and stored state stay with the client).
    pub fn sync(&mut self, wanted: Vec<Wanted>) -> Vec<Change> {
        let mut changes = Vec::new();
        let keep: BTreeMap<&str, &Wanted> = wanted.iter().map(|w| (w.prefix.as_str(), w)).collect();
        let gone: Vec<String> = self
            .devices
            .iter()
            .filter(|(p, d)| keep.get(p.as_str()).is_none_or(|w| w.spec != d.spec))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(mut d) = self.devices.remove(&p) {
                d.pkg.cancel();
                if !keep.contains_key(p.as_str()) {
                    changes.push(Change {
                        prefix: p,
                        setup: None,
                    });
                }
            }
        }
        for w in wanted {
            let dir = self.root.join(&w.prefix);
            let present = dir.join(PACKAGE).exists();
            let setup = FirmwareSetup {
                config: MachineConfig {
                    protocols: super::firmware::protocols(),
                    max_package_bytes: w.spec.max_size,
                    restart_timeout_ms: 0,
                    verdict: Verdict::InstallerExit,
                },
                running_version: w.version.clone(),
                package_present: present,
            };
            if !self.devices.contains_key(&w.prefix) {
                let tag = (0..=u16::MAX)
                    .find(|t| self.devices.values().all(|d| d.tag != *t))
                    .unwrap_or(u16::MAX);
                let pkg = Package::new(
                    Settings {
                        label: "firmware",
                        dir,
                        max_size: w.spec.max_size,
                        ca_file: w.spec.ca_file.clone(),
                        public_key: w.spec.public_key.clone(),
                        sha256_manifest: w.spec.sha256_manifest,
                    },
                    tag,
                    self.tx.clone(),
                );
                self.devices.insert(
                    w.prefix.clone(),
                    Device {
                        tag,
                        id: w.id,
                        spec: w.spec,
                        pkg,
                    },
                );
            }
            changes.push(Change {
                prefix: w.prefix,
                setup: Some(setup),
            });
        }
        changes
    }

    /// The next report, with the prefix of its device (progress for `lwgate
    /// status` is kept here). Reports of a device no longer configured are
    /// dropped.
    pub async fn recv(&mut self) -> Option<(String, package::Report<()>)> {
        loop {
            let (tag, report) = self.rx.recv().await?;
            let Some((prefix, dev)) = self.devices.iter_mut().find(|(_, d)| d.tag == tag) else {
                continue;
            };
            match report {
                package::Report::Progress(p) => dev.pkg.progress = Some(p),
                r => return Some((prefix.clone(), r)),
            }
        }
    }

    pub fn task(
        &mut self,
        prefix: &str,
        task: FirmwareTask,
        dtls: Option<crate::dtls::DtlsConfig>,
    ) {
        let Some(dev) = self.devices.get_mut(prefix) else {
            tracing::warn!(
                prefix,
                "firmware task for a device without [firmware]: {task:?}"
            );
            return;
        };
        match task {
            FirmwareTask::Download { id, uri, resume } => dev.pkg.download(id, uri, resume, dtls),
            FirmwareTask::Cancel => dev.pkg.cancel(),
            FirmwareTask::DeletePackage => dev.pkg.delete(),
            FirmwareTask::Verify { id } => dev.pkg.verify(id),
            FirmwareTask::PushBlock { offset, data } => dev.pkg.push_block(offset, &data),
            FirmwareTask::Install => {
                let argv = install_argv(&dev.spec.install, &dev.pkg.path(PACKAGE), &dev.id, prefix);
                tracing::info!(prefix, device = %dev.id, "end device firmware: installing");
                dev.pkg.run((), "installer", argv, || {});
            }
        }
    }

    /// Download progress of a device, for `lwgate status`.
    pub fn describe_progress(&self, prefix: &str) -> Option<String> {
        self.devices.get(prefix)?.pkg.describe_progress()
    }
}

/// The install command with `{file}`, `{id}` and `{prefix}` replaced.
pub fn install_argv(install: &[String], file: &Path, id: &str, prefix: &str) -> Vec<String> {
    let file = file.display().to_string();
    install
        .iter()
        .map(|a| {
            a.replace("{file}", &file)
                .replace("{id}", id)
                .replace("{prefix}", prefix)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_command_names_the_file_and_the_device() {
        let argv = install_argv(
            &[
                "flash".into(),
                "--unit={id}".into(),
                "{prefix}:{file}".into(),
            ],
            Path::new("/var/lib/lwgate/firmware/devices/m7/package"),
            "meter-7",
            "m7",
        );
        assert_eq!(
            argv,
            [
                "flash",
                "--unit=meter-7",
                "m7:/var/lib/lwgate/firmware/devices/m7/package"
            ]
        );
    }

    fn wanted(prefix: &str, cmd: &str) -> Wanted {
        Wanted {
            prefix: prefix.into(),
            id: prefix.into(),
            spec: FirmwareSpec {
                install: vec![cmd.into()],
                max_size: Some(10),
                public_key: None,
                ca_file: None,
                sha256_manifest: false,
            },
            version: "1.0".into(),
        }
    }

    #[tokio::test]
    async fn sync_adds_keeps_and_removes_devices() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DeviceFirmwareDriver::new(&dir.path().join("state.db"));
        let c = d.sync(vec![wanted("a", "x"), wanted("b", "x")]);
        assert_eq!(c.len(), 2);
        let setup = c[0].setup.as_ref().unwrap();
        assert_eq!(setup.config.verdict, Verdict::InstallerExit);
        assert_eq!(setup.config.max_package_bytes, Some(10));
        assert_eq!(setup.running_version, "1.0");
        // b dropped, a changed: a comes back with its new table, b goes.
        let c = d.sync(vec![wanted("a", "y")]);
        let summary: Vec<(String, bool)> = c
            .iter()
            .map(|c| (c.prefix.clone(), c.setup.is_some()))
            .collect();
        assert_eq!(summary, [("b".into(), false), ("a".into(), true)]);
        assert_eq!(d.devices["a"].spec.install, ["y"]);
        assert!(d.devices["a"]
            .pkg
            .path(PACKAGE)
            .starts_with(dir.path().join("firmware/devices/a")));
    }
}
