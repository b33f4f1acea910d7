//! Loading `devices.d/*.toml`.

use super::error::{deserialize, locate, ConfigError, ConfigErrors};
use lwgate_bridges::DeviceFile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct LoadedDevice {
    pub file: PathBuf,
    pub spec: DeviceFile,
}

/// Reads every `*.toml` in `dir`, in name order. A missing directory means no devices;
/// any broken file fails the whole load, so a reload never half-applies.
pub fn load_devices(dir: &Path) -> Result<Vec<LoadedDevice>, ConfigErrors> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::new(dir, "", format!("cannot read the directory: {e}")).into())
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();

    let mut errors = Vec::new();
    let mut devices = Vec::new();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    let mut prefixes: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError::new(
                    &file,
                    "",
                    format!("cannot read the file: {e}"),
                ));
                continue;
            }
        };
        let spec: DeviceFile = match deserialize(&file, &text) {
            Ok(spec) => {
                let first = errors.len();
                check(&file, &spec, &mut ids, &mut prefixes, &mut errors);
                locate(&text, &mut errors[first..]);
                if errors.len() > first {
                    continue;
                }
                spec
            }
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        devices.push(LoadedDevice { file, spec });
    }
    if errors.is_empty() {
        Ok(devices)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The checks on one parsed device file: its own values, then uniqueness
/// against the files before it.
fn check(
    file: &Path,
    spec: &DeviceFile,
    ids: &mut HashMap<String, PathBuf>,
    prefixes: &mut HashMap<String, PathBuf>,
    errors: &mut Vec<ConfigError>,
) {
    if let Err((key, e)) = spec.device.validate() {
        errors.push(ConfigError::new(
            file,
            format!("device.{key}"),
            e.to_string(),
        ));
        return;
    }
    if let Some(other) = ids.insert(spec.device.id.clone(), file.to_path_buf()) {
        errors.push(ConfigError::new(
            file,
            "device.id",
            format!(
                "id {:?} is also used by {}",
                spec.device.id,
                other.display()
            ),
        ));
    }
    let prefix = spec.device.prefix().to_string();
    if let Some(other) = prefixes.insert(prefix.clone(), file.to_path_buf()) {
        errors.push(ConfigError::new(
            file,
            "device.prefix",
            format!("prefix {prefix:?} is also used by {}", other.display()),
        ));
    }
    // The bridge would refuse it at start; check-config says so first.
    let (table, what) = match spec.device.protocol {
        lwgate_bridges::Protocol::Mqtt => ("mqtt", spec.mqtt.is_none()),
        lwgate_bridges::Protocol::Serial => ("serial", spec.serial.is_none()),
        _ => ("", false),
    };
    if what {
        errors.push(ConfigError::new(
            file,
            table,
            format!(
                "expected a [{table}] table for a {table} device (see /etc/lwgate/devices.d/{table}*.toml.example), got none"
            ),
        ));
    }
    if matches!(
        spec.device.protocol,
        lwgate_bridges::Protocol::ModbusTcp | lwgate_bridges::Protocol::ModbusRtu
    ) && spec.modbus.is_none()
    {
        errors.push(ConfigError::new(
            file,
            "modbus",
            format!(
                "expected a [modbus] table for a {} device (its {}, unit and [[modbus.point]] tables), got none",
                spec.device.protocol.as_str(),
                if spec.device.protocol == lwgate_bridges::Protocol::ModbusTcp {
                    "host"
                } else {
                    "tty"
                }
            ),
        ));
    }
}
