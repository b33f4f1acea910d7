//! The driver's side of /9 Software Management: per instance, the package work
//! of `package.rs` in a directory of its own, and the commands of
//! `[software]`, run as children or through `lwgate-software@<command>.service`.
//! `Engine::software_report` turns the reports into the machines' events
//! (lwm2m/firmware/software.rs).
//!
//! Instance 0 lives in `dir` itself (where the one-instance versions kept it),
//! instance N in `dir/N/`. Two small files in an instance's directory say what
//! its machine cannot know after a restart: `installed` (PkgName of what the
//! last successful install put in place, removed by a successful uninstall: an
//! install or uninstall the agent did not see end is judged by it) and `name`
//! (the `{name}` of the command a systemd unit runs, which has only the command
//! in its instance). `dir/current` names the instance whose command runs.
//!
//! Commands run one at a time, whichever instance asks: dpkg and rpm take a
//! lock of their own anyway, and each systemd unit has one instance per
//! command, not per package.

use super::firmware::default_runner;
use super::package::{self, Package, Settings, PACKAGE};
use crate::config::{Runner, SoftwareSection};
use crate::lwm2m::firmware::software::{SwBoot, SwConfig};
use crate::lwm2m::{SoftwareSetup, SoftwareTask, SwCommand};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

pub type Report = package::Report<SwCommand>;

const INSTALLED: &str = "installed";
const NAME: &str = "name";
const CURRENT: &str = "current";

pub struct SoftwareDriver {
    pkgs: BTreeMap<u16, Package<SwCommand>>,
    tx: mpsc::Sender<package::Tagged<SwCommand>>,
    rx: mpsc::Receiver<package::Tagged<SwCommand>>,
    cfg: SoftwareSection,
    base: PathBuf,
    /// Commands waiting for the one that runs.
    queue: VecDeque<(u16, SwCommand, String)>,
    /// The instance whose command runs.
    running: Option<u16>,
}

pub fn package_dir(sw: &SoftwareSection, store: &Path) -> PathBuf {
    package::default_dir(sw.dir.as_ref(), store, "software")
}

/// The directory of instance `inst` under `base`.
pub fn instance_dir(base: &Path, inst: u16) -> PathBuf {
    if inst == 0 {
        base.to_path_buf()
    } else {
        base.join(inst.to_string())
    }
}

/// The directory of the instance whose command a systemd unit runs (what
/// `lwgate software-command` works on).
pub fn command_dir(sw: &SoftwareSection, store: &Path) -> PathBuf {
    let base = package_dir(sw, store);
    let inst = std::fs::read_to_string(base.join(CURRENT))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    instance_dir(&base, inst)
}

/// The instances that have a directory, with what it holds.
fn boots(base: &Path) -> BTreeMap<u16, SwBoot> {
    let boot = |d: &Path| SwBoot {
        package_present: d.join(PACKAGE).exists(),
        installed: d.join(INSTALLED).exists(),
    };
    let mut found = BTreeMap::from([(0, boot(base))]);
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let inst = e.file_name().to_str().and_then(|n| n.parse::<u16>().ok());
            if let (Some(inst @ 1..), true) = (inst, e.path().is_dir()) {
                found.insert(inst, boot(&e.path()));
            }
        }
    }
    found
}

/// /9's setup for the client, when `[software]` is configured.
pub fn setup(cfg: Option<&SoftwareSection>, store: &Path) -> Option<SoftwareSetup> {
    let sw = cfg?;
    Some(SoftwareSetup {
        config: SwConfig {
            protocols: super::firmware::protocols(),
            max_package_bytes: sw.max_size,
        },
        boots: boots(&package_dir(sw, store)),
        can_uninstall: sw.uninstall.is_some(),
        max_instances: usize::from(sw.instances),
    })
}

/// The command's arguments with `{file}` and `{name}` filled in; None: not
/// configured (Activate and Deactivate then need nothing run). `dir`: the
/// instance's directory.
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
        let base = package_dir(&cfg, store);
        Some(Self {
            pkgs: BTreeMap::new(),
            tx,
            rx,
            cfg,
            base,
            queue: VecDeque::new(),
            running: None,
        })
    }

    fn pkg(&mut self, inst: u16) -> &mut Package<SwCommand> {
        let (cfg, base, tx) = (&self.cfg, &self.base, &self.tx);
        self.pkgs.entry(inst).or_insert_with(|| {
            Package::new(
                Settings {
                    label: "software",
                    dir: instance_dir(base, inst),
                    max_size: cfg.max_size,
                    ca_file: cfg.ca_file.clone(),
                    public_key: cfg.public_key.clone(),
                    sha256_manifest: cfg.sha256_manifest,
                },
                inst,
                tx.clone(),
            )
        })
    }

    /// The package of `inst`, if it ever had work.
    pub fn package(&self, inst: u16) -> Option<&Package<SwCommand>> {
        self.pkgs.get(&inst)
    }

    /// The next report for a machine, with its instance (progress for
    /// `lwgate status` is kept here, and the next queued command starts when
    /// one ends).
    pub async fn recv(&mut self) -> Option<(u16, Report)> {
        loop {
            let (inst, r) = self.rx.recv().await?;
            match r {
                Report::Progress(p) => {
                    if let Some(pkg) = self.pkgs.get_mut(&inst) {
                        pkg.progress = Some(p);
                    }
                }
                r @ Report::CommandExited { .. } => {
                    if self.running == Some(inst) {
                        self.running = None;
                        self.next_command();
                    }
                    return Some((inst, r));
                }
                r => return Some((inst, r)),
            }
        }
    }

    pub fn task(&mut self, inst: u16, task: SoftwareTask, dtls: Option<crate::dtls::DtlsConfig>) {
        match task {
            SoftwareTask::Download { id, uri, resume } => {
                self.pkg(inst).download(id, uri, resume, dtls)
            }
            SoftwareTask::Cancel => self.pkg(inst).cancel(),
            SoftwareTask::DeletePackage => self.pkg(inst).delete(),
            SoftwareTask::Verify { id } => self.pkg(inst).verify(id),
            SoftwareTask::PushBlock { offset, data } => self.pkg(inst).push_block(offset, &data),
            SoftwareTask::Run { command, name } => {
                self.queue.push_back((inst, command, name));
                self.next_command();
            }
            SoftwareTask::Forget => self.forget(inst),
        }
    }

    /// A deleted instance: its work stops, its files go (for /9/0 only its
    /// own files: the other instances' directories are in it).
    fn forget(&mut self, inst: u16) {
        self.queue.retain(|(i, ..)| *i != inst);
        if let Some(mut pkg) = self.pkgs.remove(&inst) {
            pkg.cancel();
        }
        let dir = instance_dir(&self.base, inst);
        if inst == 0 {
            package::delete_files(&dir);
            for f in [INSTALLED, NAME] {
                let _ = std::fs::remove_file(dir.join(f));
            }
        } else if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("software: cannot remove {}: {e}", dir.display());
            }
        }
        if self.running == Some(inst) {
            self.running = None;
            self.next_command();
        }
    }

    fn next_command(&mut self) {
        if self.running.is_some() {
            return;
        }
        if let Some((inst, command, name)) = self.queue.pop_front() {
            self.running = Some(inst);
            self.run(inst, command, &name);
        }
    }

    fn run(&mut self, inst: u16, command: SwCommand, name: &str) {
        let dir = instance_dir(&self.base, inst);
        let what = command.as_str();
        let Some(argv) = command_argv(&self.cfg, &dir, command, name) else {
            // Only Activate and Deactivate get here (the client refuses an
            // Uninstall without an uninstaller): nothing to run, so done.
            tracing::info!(
                "software {what} of {name:?} (/9/{inst}): no command configured, nothing to run"
            );
            self.pkg(inst)
                .succeeded(command, "no command configured".into());
            return;
        };
        let argv = match default_runner(self.cfg.runner) {
            Runner::Direct => argv,
            Runner::Systemd => {
                let marked = std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(dir.join(NAME), format!("{name}\n")))
                    .and_then(|()| std::fs::write(self.base.join(CURRENT), format!("{inst}\n")));
                if let Err(e) = marked {
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
        self.pkg(inst).run(command, what, argv, after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_their_directories() {
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        assert_eq!(instance_dir(b, 0), b);
        assert_eq!(instance_dir(b, 3), b.join("3"));
        std::fs::write(b.join(INSTALLED), "app\n").unwrap();
        std::fs::create_dir(b.join("3")).unwrap();
        std::fs::write(b.join("3").join(PACKAGE), "pkg").unwrap();
        std::fs::create_dir(b.join("junk")).unwrap();
        std::fs::write(b.join("7"), "a file, not an instance").unwrap();
        let found = boots(b);
        assert_eq!(found.keys().copied().collect::<Vec<_>>(), [0, 3]);
        assert!(found[&0].installed && !found[&0].package_present);
        assert!(!found[&3].installed && found[&3].package_present);
    }

    #[test]
    fn the_command_dir_follows_current() {
        let store = tempfile::tempdir().unwrap();
        let sw: SoftwareSection = toml::from_str(&format!(
            "install = [\"i\", \"{{file}}\"]\ndir = \"{}\"",
            store.path().display()
        ))
        .unwrap();
        let db = store.path().join("state.db");
        assert_eq!(command_dir(&sw, &db), store.path());
        std::fs::write(store.path().join(CURRENT), "5\n").unwrap();
        assert_eq!(command_dir(&sw, &db), store.path().join("5"));
    }
}
