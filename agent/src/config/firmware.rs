//! The `[firmware]` table: how /5 Firmware Update installs a package, where
//! packages go, what they are checked against. Without `install` there is no /5:
//! an object that cannot install would only let a server start downloads.

use super::error::ConfigError;
use super::types::Seconds;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirmwareSection {
    /// The installer: program and arguments; `{file}` is the verified package,
    /// `{version}` its PkgVersion (empty when unknown).
    pub install: Vec<String>,
    /// `systemd`: start lwgate-install.service (root, outside the daemon's
    /// sandbox) that runs `install`; `direct`: run it as a child of the daemon.
    /// Default: `systemd` when the daemon runs under systemd, else `direct`.
    pub runner: Option<Runner>,
    /// Where packages are downloaded; default `firmware/` beside the state database.
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
    /// After the installer exits 0, how long to wait for the restart (of lwgate
    /// or the gateway) it should cause before the update counts as failed.
    #[serde(default = "FirmwareSection::default_restart_timeout")]
    pub restart_timeout: Seconds,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    Systemd,
    Direct,
}

impl FirmwareSection {
    fn default_restart_timeout() -> Seconds {
        Seconds(600)
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
            errors.push(ConfigError::new(path, format!("firmware.{key}"), msg))
        };
        check_package_keys(
            &mut err,
            &self.install,
            "[\"rauc\", \"install\", \"{file}\"]",
            self.max_size,
            self.ca_file.as_deref(),
            self.public_key.as_deref(),
        );
        errors
    }
}

/// The keys `[firmware]` and `[software]` share: the installer with its `{file}`,
/// the size limit, the CA file and the minisign key.
pub(super) fn check_package_keys(
    err: &mut dyn FnMut(&str, String),
    install: &[String],
    example: &str,
    max_size: Option<u64>,
    ca_file: Option<&Path>,
    public_key: Option<&Path>,
) {
    if install.first().is_none_or(|p| p.is_empty()) {
        err(
            "install",
            format!("expected the installer and its arguments, e.g. {example}"),
        );
    } else if !install.iter().any(|a| a.contains("{file}")) {
        err(
            "install",
            "expected {file} in one of the arguments: where the verified package is".into(),
        );
    }
    if max_size == Some(0) {
        err("max_size", "expected a number of bytes above 0".into());
    }
    for (key, p) in [("ca_file", ca_file), ("public_key", public_key)] {
        if let Some(p) = p {
            if let Err(e) = std::fs::metadata(p) {
                err(key, format!("cannot read {}: {e}", p.display()));
            }
        }
    }
    if let Some(p) = public_key {
        if let Ok(text) = std::fs::read_to_string(p) {
            if let Err(e) = crate::lwm2m::firmware::verify::TrustedKey::decode(&text) {
                err(
                    "public_key",
                    format!("{} is not a minisign public key: {e}", p.display()),
                );
            }
        }
    }
}
