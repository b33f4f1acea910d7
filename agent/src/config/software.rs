//! The `[software]` table: the commands of /9 Software Management (an
//! instance per package: /9/0, and those a server creates), where its packages
//! go, what they are checked against. Without the table there is no /9.

use super::error::ConfigError;
use super::firmware::Runner;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Each instance has a directory and, while it works, a task and a download
/// client: a few dozen are plenty for the packages of a gateway.
const MAX_INSTANCES: u16 = 64;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SoftwareSection {
    /// The installer: program and arguments; `{file}` is the verified
    /// package, `{name}` its PkgName (empty when unknown).
    pub install: Vec<String>,
    /// The uninstaller, `{name}` the installed PkgName. Without it, Uninstall
    /// of installed software is refused (4.05): the agent cannot remove it.
    pub uninstall: Option<Vec<String>>,
    /// Start the installed software (`{name}`). Without it, Activate only
    /// sets Activation State (software that runs once installed).
    pub activate: Option<Vec<String>>,
    /// Stop it (`{name}`); without it, Deactivate only clears Activation State.
    pub deactivate: Option<Vec<String>>,
    /// `systemd`: start `lwgate-software@<command>.service` (root, outside the
    /// daemon's sandbox), which runs the command; `direct`: run it as a child
    /// of the daemon. Default: `systemd` under systemd, else `direct`.
    pub runner: Option<Runner>,
    /// Where packages are downloaded; default `software/` beside the state database.
    pub dir: Option<PathBuf>,
    /// The largest package accepted, in bytes.
    pub max_size: Option<u64>,
    /// PEM CAs trusted for https:// Package URIs, on top of the system's.
    pub ca_file: Option<PathBuf>,
    /// A minisign public key: every package must then carry a signature by it
    /// (fetched from the Package URI + `.minisig`).
    pub public_key: Option<PathBuf>,
    /// Fetch a SHA-256 manifest beside every pulled package (the Package URI
    /// with `.sha256` after its path, in `sha256sum` format) and refuse a
    /// package that does not match it (or has none). A `sha256=` in the
    /// Package URI itself is always checked.
    #[serde(default)]
    pub sha256_manifest: bool,
    /// The most /9 instances (packages) a server may have, /9/0 included; a
    /// Create beyond is refused.
    #[serde(default = "SoftwareSection::default_instances")]
    pub instances: u16,
}

impl SoftwareSection {
    fn default_instances() -> u16 {
        8
    }

    /// Relative paths are taken from the config file's directory.
    pub(super) fn rebase_paths(&mut self, base: &Path) {
        for p in [&mut self.dir, &mut self.ca_file, &mut self.public_key]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub(super) fn validate(&self, path: &Path) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |key: &str, msg: String| {
            errors.push(ConfigError::new(path, format!("software.{key}"), msg))
        };
        super::firmware::check_package_keys(
            &mut err,
            &self.install,
            "[\"/usr/local/sbin/sw-install\", \"{file}\"]",
            self.max_size,
            self.ca_file.as_deref(),
            self.public_key.as_deref(),
        );
        if !(1..=MAX_INSTANCES).contains(&self.instances) {
            err(
                "instances",
                format!("expected 1 to {MAX_INSTANCES}, got {}", self.instances),
            );
        }
        for (key, argv) in [
            ("uninstall", &self.uninstall),
            ("activate", &self.activate),
            ("deactivate", &self.deactivate),
        ] {
            if argv
                .as_ref()
                .is_some_and(|a| a.first().is_none_or(|p| p.is_empty()))
            {
                err(
                    key,
                    "expected a program and its arguments ({name}: the PkgName), or no key".into(),
                );
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SoftwareSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn install_needs_file_and_commands_need_a_program() {
        let p = Path::new("/etc/lwgate/lwgate.toml");
        let ok = parse("install = [\"inst\", \"{file}\"]\nuninstall = [\"rm\", \"{name}\"]");
        assert!(ok.validate(p).is_empty());
        assert_eq!(ok.instances, 8);
        let bad = parse("install = [\"inst\"]\nactivate = []\nmax_size = 0\ninstances = 0");
        let msgs: Vec<String> = bad.validate(p).iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        for key in [
            "software.install",
            "software.activate",
            "software.max_size",
            "software.instances",
        ] {
            assert!(msgs.iter().any(|m| m.contains(key)), "{key}: {msgs:?}");
        }
    }
}
