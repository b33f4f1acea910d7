//! The configuration tree: `lwgate.toml` plus one file per device in `devices.d/`.
//!
//! Unknown keys are rejected everywhere: a misspelt key that is silently ignored is
//! the most expensive kind of field bug.

#[macro_use]
mod security;
mod devices;
mod endpoint;
mod error;
mod firmware;
mod server;
mod sms;
mod software;
mod types;

pub use devices::{load_devices, LoadedDevice};
pub use endpoint::default_endpoint_name;
pub use error::{ConfigError, ConfigErrors};
pub use firmware::{FirmwareSection, Runner};
pub use security::{
    iana_name, rpk_unsupported, CipherSuite, SecretHex, SecurityKeys, DEFAULT_HANDSHAKE_TIMEOUT,
};
pub use server::{parse_uri, SecurityMode, ServerAddr, ServerConfig, BINDINGS};
pub use sms::SmsSection;
pub use software::SoftwareSection;
pub use types::{LogLevel, Seconds};

use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use types::{MAX_RETRANSMIT_EXPECTED, QUEUE_CAP_EXPECTED, SSID_EXPECTED};

/// Where the packaged config lives; `--config` or `LWGATE_CONFIG` override it.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lwgate/lwgate.toml";

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub endpoint: EndpointSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub devices: DevicesSection,
    #[serde(default)]
    pub device: DeviceSection,
    #[serde(default)]
    pub lwm2m: Lwm2mSection,
    #[serde(default)]
    pub system: SystemSection,
    #[serde(default, rename = "server", deserialize_with = "server::servers")]
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub bootstrap: Option<BootstrapSection>,
    #[serde(default)]
    pub firmware: Option<FirmwareSection>,
    /// /9 Software Management; without the table there is no /9.
    #[serde(default)]
    pub software: Option<SoftwareSection>,
    /// SMS triggers (with a `[modem]`); without the table SMS is not used.
    #[serde(default)]
    pub sms: Option<SmsSection>,
    /// The cellular modem SMS triggers arrive through (checked as parsed, in the
    /// bridges crate); without it no SMS is received.
    #[serde(default)]
    pub modem: Option<lwgate_bridges::modem::ModemConfig>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// Endpoint Client Name; derived from /etc/machine-id or the hostname when absent.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    #[serde(default = "StoreSection::default_path")]
    pub path: PathBuf,
    /// Notifications kept per server while it is unreachable; oldest dropped first.
    #[serde(
        default = "StoreSection::default_queue_cap",
        deserialize_with = "types::queue_cap"
    )]
    pub queue_cap: usize,
}

impl StoreSection {
    fn default_path() -> PathBuf {
        PathBuf::from("/var/lib/lwgate/state.db")
    }
    fn default_queue_cap() -> usize {
        10_000
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: Self::default_path(),
            queue_cap: Self::default_queue_cap(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    #[serde(default = "ControlSection::default_socket")]
    pub socket: PathBuf,
}

impl ControlSection {
    fn default_socket() -> PathBuf {
        PathBuf::from("/run/lwgate/control.sock")
    }
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            socket: Self::default_socket(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    #[serde(default)]
    pub level: LogLevel,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DevicesSection {
    /// Directory of device files; relative paths are taken from the config file's directory.
    pub dir: Option<PathBuf>,
}

/// Identity reported in the Device object (/3/0); DMI values are used where absent.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub hardware_version: Option<String>,
    pub device_type: Option<String>,
    /// /3/0/3 Firmware Version: a file whose first line is the version (what
    /// an update changes; a firmware update is judged by it). Default: the
    /// distribution's PRETTY_NAME and lwgate's version.
    pub firmware_version_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum Lwm2mVersion {
    #[serde(rename = "1.0")]
    V1_0,
    #[default]
    #[serde(rename = "1.1")]
    V1_1,
}

/// Content formats a server may be offered for multi-resource payloads.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadFormat {
    Tlv,
    SenmlJson,
    SenmlCbor,
    Lwm2mJson,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Tlv => "tlv",
            PayloadFormat::SenmlJson => "senml-json",
            PayloadFormat::SenmlCbor => "senml-cbor",
            PayloadFormat::Lwm2mJson => "lwm2m-json",
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lwm2mSection {
    /// Version offered at Register; a 1.0 server's 4.12 makes the agent retry as 1.0.
    #[serde(default)]
    pub version: Lwm2mVersion,
    /// Format of multi-resource reads without Accept, towards 1.0 servers.
    #[serde(default = "Lwm2mSection::default_format_10")]
    pub format_1_0: PayloadFormat,
    /// The same towards 1.1 servers.
    #[serde(default = "Lwm2mSection::default_format_11")]
    pub format_1_1: PayloadFormat,
    /// Directories of OMA DDF XML object definitions, later ones override earlier ones.
    #[serde(default = "Lwm2mSection::default_object_dirs")]
    pub object_dirs: Vec<PathBuf>,
}

impl Lwm2mSection {
    fn default_format_10() -> PayloadFormat {
        PayloadFormat::Tlv
    }
    fn default_format_11() -> PayloadFormat {
        PayloadFormat::SenmlCbor
    }
    fn default_object_dirs() -> Vec<PathBuf> {
        vec![
            PathBuf::from("/usr/share/lwgate/objects"),
            PathBuf::from("/etc/lwgate/objects"),
        ]
    }
}

impl Default for Lwm2mSection {
    fn default() -> Self {
        Self {
            version: Lwm2mVersion::default(),
            format_1_0: Self::default_format_10(),
            format_1_1: Self::default_format_11(),
            object_dirs: Self::default_object_dirs(),
        }
    }
}

/// What Execute on /3/0/4 (Reboot) and /3/0/5 (Factory Reset) run.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SystemSection {
    #[serde(default = "SystemSection::default_reboot")]
    pub reboot_command: Vec<String>,
    #[serde(default)]
    pub factory_reset_command: Vec<String>,
}

impl SystemSection {
    fn default_reboot() -> Vec<String> {
        vec!["systemctl".into(), "reboot".into()]
    }
}

impl Default for SystemSection {
    fn default() -> Self {
        Self {
            reboot_command: Self::default_reboot(),
            factory_reset_command: Vec::new(),
        }
    }
}

/// Bootstrap sources other than the factory `[[server]]` tables (smartcard, bootstrap server).
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSection {
    pub smartcard: Option<SmartcardSection>,
    pub server: Option<BootstrapServerSection>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmartcardSection {
    #[serde(default)]
    pub enabled: bool,
    pub reader: Option<String>,
    pub pin: Option<String>,
    pub pin_file: Option<PathBuf>,
}

with_security_keys! {
/// `[bootstrap.server]`: the bootstrap-server account, with the same security
/// keys as a `[[server]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BootstrapServerSection {
    pub uri: String,
    /// Client Hold Off Time (/0/x/11): seconds to wait before bootstrapping.
    #[serde(default)]
    pub hold_off: Option<u32>,
    /// Seconds the bootstrap server may stay silent before Bootstrap-Finish;
    /// default EXCHANGE_LIFETIME (247 s).
    #[serde(default)]
    pub finish_timeout: Option<Seconds>,
}
}

/// A parsed and validated configuration with the paths it was read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: Config,
    pub endpoint: String,
    pub devices_dir: PathBuf,
    pub devices: Vec<LoadedDevice>,
    /// Things that are accepted but worth telling the operator about.
    pub warnings: Vec<String>,
}

/// Parses TOML text into a `Config`, naming the file and key on error.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    error::deserialize(path, text)
}

/// Reads, parses and validates the whole configuration tree.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "", format!("cannot read the file: {e}")))?;
    let mut config = parse(path, &text)?;
    let mut errors = validate(path, &config);
    let mut warnings = Vec::new();
    resolve_security(path, &mut config, &mut errors, &mut warnings);
    if let Some(fw) = config.firmware.as_mut() {
        fw.rebase_paths(&security::base_dir(path));
        errors.extend(fw.validate(path));
    }
    if let Some(sw) = config.software.as_mut() {
        sw.rebase_paths(&security::base_dir(path));
        errors.extend(sw.validate(path));
    }
    if let Some(sms) = &config.sms {
        errors.extend(sms.validate(path));
        if config.modem.is_none() {
            warnings.push(format!(
                "{}: [sms] without a [modem] table: SMS triggers are not received",
                path.display()
            ));
        }
    }
    if let Some(f) = config.device.firmware_version_file.as_mut() {
        if f.is_relative() {
            *f = security::base_dir(path).join(&*f);
        }
    }
    error::locate(&text, &mut errors);

    let endpoint = match &config.endpoint.name {
        Some(n) => n.clone(),
        None => default_endpoint_name(),
    };
    let devices_dir = devices_dir(path, &config);
    let devices = match load_devices(&devices_dir) {
        Ok(d) => d,
        Err(mut e) => {
            errors.append(&mut e.0);
            Vec::new()
        }
    };
    if config.servers.is_empty() && config.bootstrap.as_ref().is_none_or(|b| b.server.is_none()) {
        warnings.push(format!(
            "{}: no [[server]] table: the agent will run but register with no LwM2M server",
            path.display()
        ));
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Loaded {
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        config,
        endpoint,
        devices_dir,
        devices,
        warnings,
    })
}

/// Reads and checks every table's DTLS keys and files, makes their paths
/// absolute and fills in `credentials`.
fn resolve_security(
    path: &Path,
    config: &mut Config,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    let base = security::base_dir(path);
    for (i, s) in config.servers.iter_mut().enumerate() {
        let table = format!("server[{i}]");
        s.rebase_paths(&base);
        let keys = s.security_keys();
        warnings.extend(security::inline_key_warning(path, &table, &keys));
        let r = security::resolve(path, &table, &s.uri, &keys);
        errors.extend(r.errors);
        s.credentials = r.security;
    }
    if let Some(bs) = config.bootstrap.as_mut().and_then(|b| b.server.as_mut()) {
        let table = "bootstrap.server";
        bs.rebase_paths(&base);
        let keys = bs.security_keys();
        warnings.extend(security::inline_key_warning(path, table, &keys));
        let r = security::resolve(path, table, &bs.uri, &keys);
        errors.extend(r.errors);
        bs.credentials = r.security;
    }
}

fn devices_dir(path: &Path, config: &Config) -> PathBuf {
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    match &config.devices.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => base.join(d),
        None => base.join("devices.d"),
    }
}

/// Checks what the types alone cannot: ranges, uniqueness and URI syntax.
fn validate(path: &Path, config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(name) = &config.endpoint.name {
        if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control()) {
            errors.push(ConfigError::new(
                path,
                "endpoint.name",
                format!("expected 1 to 255 printable characters, got {name:?}"),
            ));
        }
    }
    if config.store.queue_cap == 0 {
        errors.push(ConfigError::new(
            path,
            "store.queue_cap",
            format!("expected {QUEUE_CAP_EXPECTED}, got 0"),
        ));
    }
    let mut ssids = HashSet::new();
    for (i, s) in config.servers.iter().enumerate() {
        let key = |k: &str| format!("server[{i}].{k}");
        if let Err(msg) = parse_uri(&s.uri) {
            errors.push(ConfigError::new(path, key("uri"), msg));
        }
        if s.ssid == 0 || s.ssid == 65535 {
            errors.push(ConfigError::new(
                path,
                key("ssid"),
                format!("expected {SSID_EXPECTED}, got {}", s.ssid),
            ));
        } else if !ssids.insert(s.ssid) {
            errors.push(ConfigError::new(
                path,
                key("ssid"),
                format!("ssid {} is used by an earlier [[server]] table", s.ssid),
            ));
        }
        if let Some(n) = s.max_retransmit.filter(|&n| n > 20) {
            errors.push(ConfigError::new(
                path,
                key("max_retransmit"),
                format!("expected {MAX_RETRANSMIT_EXPECTED}, got {n}"),
            ));
        }
        if let Some(n) = &s.sms_number {
            if let Err(e) = sms::check_number(n) {
                errors.push(ConfigError::new(path, key("sms_number"), e));
            }
        }
        if matches!(s.binding.as_str(), "S" | "SQ") {
            errors.push(ConfigError::new(
                path,
                key("binding"),
                format!(
                    "expected U, UQ, US or UQS, got {:?}: lwgate takes only wake-up triggers by SMS and talks to the server over UDP",
                    s.binding
                ),
            ));
        } else if s.binding.contains('S') && config.sms.is_none() {
            errors.push(ConfigError::new(
                path,
                key("binding"),
                format!(
                    "binding {:?} takes SMS triggers: expected an [sms] table (and a [modem]), got none",
                    s.binding
                ),
            ));
        }
        if !BINDINGS.contains(&s.binding.as_str()) {
            errors.push(ConfigError::new(
                path,
                key("binding"),
                format!(
                    "expected one of {}, got {:?}",
                    BINDINGS.join(", "),
                    s.binding
                ),
            ));
        }
    }
    for (key, cmd) in [
        ("system.reboot_command", &config.system.reboot_command),
        (
            "system.factory_reset_command",
            &config.system.factory_reset_command,
        ),
    ] {
        if cmd.first().is_some_and(|c| c.is_empty()) {
            errors.push(ConfigError::new(
                path,
                key,
                "expected a command and its arguments, e.g. [\"systemctl\", \"reboot\"]",
            ));
        }
    }
    if let Some(BootstrapSection {
        smartcard: Some(sc),
        ..
    }) = &config.bootstrap
    {
        if sc.pin.is_some() && sc.pin_file.is_some() {
            errors.push(ConfigError::new(
                path,
                "bootstrap.smartcard.pin_file",
                "expected either pin or pin_file, not both",
            ));
        }
    }
    if let Some(BootstrapSection {
        server: Some(bs), ..
    }) = &config.bootstrap
    {
        if let Err(msg) = parse_uri(&bs.uri) {
            errors.push(ConfigError::new(path, "bootstrap.server.uri", msg));
        }
    }
    errors
}

#[cfg(test)]
mod tests;
