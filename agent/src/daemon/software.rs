//! The driver's side of /9 Software Management (/9/0): the package work of
//! `package.rs` and the commands of `[software]`, run as children or through
//! `lwgate-software@<command>.service`. `Engine::software_report` turns the
//! reports into the machine's events (lwm2m/firmware/software.rs).
//!
//! Two small files beside the package say what the machine cannot know after
//! a restart: `installed` (PkgName of what the last successful install put in
//! place, removed by a successful uninstall: an install or uninstall the
//! agent did not see end is judged by it) and `name` (the `{name}` of the
//! command a systemd unit runs, which has only the command in its instance).

use super::firmware::default_runner;
use super::package::{self, Package, Settings, PACKAGE};
use crate::config::{Runner, SoftwareSection};
use crate::lwm2m::firmware::software::{SwBoot, SwConfig};
use crate::lwm2m::{SoftwareSetup, SoftwareTask, SwCommand};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

pub type Report = package::Report<SwCommand>;

const INSTALLED: &str = "installed";
const NAME: &str = "name";

pub struct SoftwareDriver {
    pub pkg: Package<SwCommand>,
    rx: mpsc::Receiver<package::Tagged<SwCommand>>,
    cfg: SoftwareSection,
}

pub fn package_dir(sw: &SoftwareSection, store: &Path) -> PathBuf {
    package::default_dir(sw.dir.as_ref(), store, "software")
}

/// /9's setup for the client, when `[software]` is configured.
pub fn setup(cfg: Option<&SoftwareSection>, store: &Path) -> Option<SoftwareSetup> {
    let sw = cfg?;
    let dir = package_dir(sw, store);
    Some(SoftwareSetup {
        config: SwConfig {
            protocols: super::firmware::protocols(),
            max_package_bytes: sw.max_size,
        },
        boot: SwBoot {
            package_present: dir.join(PACKAGE).exists(),
            installed: dir.join(INSTALLED).exists(),
        },
        can_uninstall: sw.uninstall.is_some(),
    })
}

/// The command's arguments with `{file}` and `{name}` filled in; None: not
/// configured (Activate and Deactivate then need nothing run).
pub fn command_argv(
    sw: &SoftwareSection,
    dir: &Path,
    command: SwCommand,
    name: &str,
) -> Option<Vec<String>> {
    let argv = match command {
        SwCommand::Install => Some(&sw.install),
        SwCommand::Uninstall => sw.uninstall.as_ref(),
        SwCommand::Activate => sw.activate.as_ref(),
        SwCommand::Deactivate => sw.deactivate.as_ref(),
    }?;
    let file = dir.join(PACKAGE).display().to_string();
    Some(
        argv.iter()
            .map(|a| a.replace("{file}", &file).replace("{name}", name))
            .collect(),
    )
}

/// The `{name}` a systemd-run command takes (written by the daemon before it
/// starts the unit).
pub fn command_name(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(NAME))
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_default()
}

impl SoftwareDriver {
    pub fn new(cfg: Option<&SoftwareSection>, store: &Path) -> Option<Self> {
        let cfg = cfg?.clone();
        let (tx, rx) = mpsc::channel(64);
        let pkg = Package::new(
            Settings {
                label: "software",
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

    /// The next report for a machine (progress for `lwgate status` is kept
    /// here).
    pub async fn recv(&mut self) -> Option<Report> {
        loop {
            match self.rx.recv().await? {
                (_, Report::Progress(p)) => self.pkg.progress = Some(p),
                (_, r) => return Some(r),
            }
        }
    }

    pub fn task(&mut self, task: SoftwareTask, dtls: Option<crate::dtls::DtlsConfig>) {
        match task {
            SoftwareTask::Download { id, uri, resume } => self.pkg.download(id, uri, resume, dtls),
            SoftwareTask::Cancel => self.pkg.cancel(),
            SoftwareTask::DeletePackage => self.pkg.delete(),
            SoftwareTask::Verify { id } => self.pkg.verify(id),
            SoftwareTask::PushBlock { offset, data } => self.pkg.push_block(offset, &data),
            SoftwareTask::Run { command, name } => self.run(command, &name),
        }
    }

    fn run(&mut self, command: SwCommand, name: &str) {
        let dir = self.pkg.dir().to_path_buf();
        let what = command.as_str();
        let Some(argv) = command_argv(&self.cfg, &dir, command, name) else {
            // Only Activate and Deactivate get here (the client refuses an
            // Uninstall without an uninstaller): nothing to run, so done.
            tracing::info!("software {what} of {name:?}: no command configured, nothing to run");
            self.pkg.succeeded(command, "no command configured".into());
            return;
        };
        let argv = match default_runner(self.cfg.runner) {
            Runner::Direct => argv,
            Runner::Systemd => {
                if let Err(e) = std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(dir.join(NAME), format!("{name}\n")))
                {
                    tracing::error!("software {what}: cannot write {}: {e}", dir.display());
                }
                // The unit runs the same [software] command, as root, outside our sandbox.
                vec![
                    "systemctl".into(),
                    "start".into(),
                    format!("lwgate-software@{what}.service"),
                ]
            }
        };
        // What a restart judges an unfinished install or uninstall by.
        let marker = dir.join(INSTALLED);
        let name = name.to_string();
        let after = move || {
            let r = match command {
                SwCommand::Install => std::fs::write(&marker, format!("{name}\n")),
                SwCommand::Uninstall => std::fs::remove_file(&marker),
                SwCommand::Activate | SwCommand::Deactivate => Ok(()),
            };
            if let Err(e) = r {
                tracing::warn!("software: cannot update {}: {e}", marker.display());
            }
        };
        self.pkg.run(command, what, argv, after);
    }
}
