//! Definitions of the objects lwgate implements itself (spec Appendix E, 1.1 overview,
//! and the Gateway object /25 v2.0).

use super::defs::{ObjectDef, Operations, ResourceDef};
use super::value::DataType;

const R: Operations = Operations::R;
const RW: Operations = Operations::RW;
const W: Operations = Operations::W;
const E: Operations = Operations::E;
const NO: Operations = Operations::NONE;

use DataType::{
    Boolean as B, CoreLnk as L, Integer as I, ObjLnk as OL, Opaque as O, String as S, Time as T,
    UnsignedInteger as U,
};
const X: DataType = DataType::None;

/// (id, name, operations, multiple, mandatory, type, units)
type Row = (
    u16,
    &'static str,
    Operations,
    bool,
    bool,
    DataType,
    &'static str,
);

const SECURITY: &[Row] = &[
    (0, "LwM2M Server URI", NO, false, true, S, ""),
    (1, "Bootstrap-Server", NO, false, true, B, ""),
    (2, "Security Mode", NO, false, true, I, ""),
    (3, "Public Key or Identity", NO, false, true, O, ""),
    (4, "Server Public Key", NO, false, true, O, ""),
    (5, "Secret Key", NO, false, true, O, ""),
    (6, "SMS Security Mode", NO, false, false, I, ""),
    (7, "SMS Binding Key Parameters", NO, false, false, O, ""),
    (8, "SMS Binding Secret Key(s)", NO, false, false, O, ""),
    (9, "LwM2M Server SMS Number", NO, false, false, S, ""),
    (10, "Short Server ID", NO, false, false, I, ""),
    (11, "Client Hold Off Time", NO, false, false, I, "s"),
    (
        12,
        "Bootstrap-Server Account Timeout",
        NO,
        false,
        false,
        I,
        "s",
    ),
    // Security object 1.1.
    (13, "Matching Type", NO, false, false, U, ""),
    (14, "SNI", NO, false, false, S, ""),
    (15, "Certificate Usage", NO, false, false, U, ""),
    (16, "DTLS/TLS Ciphersuite", NO, true, false, U, ""),
];

const SERVER: &[Row] = &[
    (0, "Short Server ID", R, false, true, I, ""),
    (1, "Lifetime", RW, false, true, I, "s"),
    (2, "Default Minimum Period", RW, false, false, I, "s"),
    (3, "Default Maximum Period", RW, false, false, I, "s"),
    (4, "Disable", E, false, false, X, ""),
    (5, "Disable Timeout", RW, false, false, I, "s"),
    (
        6,
        "Notification Storing When Disabled or Offline",
        RW,
        false,
        true,
        B,
        "",
    ),
    (7, "Binding", RW, false, true, S, ""),
    (8, "Registration Update Trigger", E, false, true, X, ""),
    (9, "Bootstrap-Request Trigger", E, false, false, X, ""),
    (11, "TLS-DTLS Alert Code", R, false, false, U, ""),
    (12, "Last Bootstrapped", R, false, false, T, ""),
    (13, "Registration Priority Order", RW, false, false, U, ""),
    (
        14,
        "Initial Registration Delay Timer",
        RW,
        false,
        false,
        U,
        "s",
    ),
    (15, "Registration Failure Block", RW, false, false, B, ""),
    (
        16,
        "Bootstrap on Registration Failure",
        RW,
        false,
        false,
        B,
        "",
    ),
    (17, "Communication Retry Count", RW, false, false, U, ""),
    (18, "Communication Retry Timer", RW, false, false, U, "s"),
    (
        19,
        "Communication Sequence Delay Timer",
        RW,
        false,
        false,
        U,
        "s",
    ),
    (
        20,
        "Communication Sequence Retry Count",
        RW,
        false,
        false,
        U,
        "",
    ),
    (21, "Trigger", RW, false, false, B, ""),
    (22, "Preferred Transport", RW, false, false, S, ""),
    (23, "Mute Send", RW, false, false, B, ""),
];

const ACCESS_CONTROL: &[Row] = &[
    (0, "Object ID", R, false, true, I, ""),
    (1, "Object Instance ID", R, false, true, I, ""),
    (2, "ACL", RW, true, false, I, ""),
    (3, "Access Control Owner", RW, false, true, I, ""),
];

const DEVICE: &[Row] = &[
    (0, "Manufacturer", R, false, false, S, ""),
    (1, "Model Number", R, false, false, S, ""),
    (2, "Serial Number", R, false, false, S, ""),
    (3, "Firmware Version", R, false, false, S, ""),
    (4, "Reboot", E, false, true, X, ""),
    (5, "Factory Reset", E, false, false, X, ""),
    (6, "Available Power Sources", R, true, false, I, ""),
    (7, "Power Source Voltage", R, true, false, I, "mV"),
    (8, "Power Source Current", R, true, false, I, "mA"),
    (9, "Battery Level", R, false, false, I, "%"),
    (10, "Memory Free", R, false, false, I, "KB"),
    (11, "Error Code", R, true, true, I, ""),
    (12, "Reset Error Code", E, false, false, X, ""),
    (13, "Current Time", RW, false, false, T, ""),
    (14, "UTC Offset", RW, false, false, S, ""),
    (15, "Timezone", RW, false, false, S, ""),
    (16, "Supported Binding and Modes", R, false, true, S, ""),
    (17, "Device Type", R, false, false, S, ""),
    (18, "Hardware Version", R, false, false, S, ""),
    (19, "Software Version", R, false, false, S, ""),
    (20, "Battery Status", R, false, false, I, ""),
    (21, "Memory Total", R, false, false, I, "KB"),
    (22, "ExtDevInfo", R, true, false, OL, ""),
];

const CONNECTIVITY: &[Row] = &[
    (0, "Network Bearer", R, false, true, I, ""),
    (1, "Available Network Bearer", R, true, true, I, ""),
    (2, "Radio Signal Strength", R, false, true, I, "dBm"),
    (3, "Link Quality", R, false, false, I, ""),
    (4, "IP Addresses", R, true, true, S, ""),
    (5, "Router IP Addresses", R, true, false, S, ""),
    (6, "Link Utilization", R, false, false, I, "%"),
    (7, "APN", R, true, false, S, ""),
    (8, "Cell ID", R, false, false, I, ""),
    (9, "SMNC", R, false, false, I, ""),
    (10, "SMCC", R, false, false, I, ""),
];

const FIRMWARE: &[Row] = &[
    (0, "Package", W, false, true, O, ""),
    (1, "Package URI", RW, false, true, S, ""),
    (2, "Update", E, false, true, X, ""),
    (3, "State", R, false, true, I, ""),
    (5, "Update Result", R, false, true, I, ""),
    (6, "PkgName", R, false, false, S, ""),
    (7, "PkgVersion", R, false, false, S, ""),
    (8, "Firmware Update Protocol Support", R, true, false, I, ""),
    (9, "Firmware Update Delivery Method", R, false, true, I, ""),
];

/// OMA 9.xml (OMA-SUP-XML_9-V1_0_2), without the optional Checkpoint (5) and
/// Package Settings (13) object links that lwgate has no use for.
const SOFTWARE: &[Row] = &[
    (0, "PkgName", R, false, true, S, ""),
    (1, "PkgVersion", R, false, true, S, ""),
    (2, "Package", W, false, false, O, ""),
    (3, "Package URI", W, false, false, S, ""),
    (4, "Install", E, false, true, X, ""),
    (6, "Uninstall", E, false, true, X, ""),
    (7, "Update State", R, false, true, I, ""),
    (8, "Update Supported Objects", RW, false, false, B, ""),
    (9, "Update Result", R, false, true, I, ""),
    (10, "Activate", E, false, true, X, ""),
    (11, "Deactivate", E, false, true, X, ""),
    (12, "Activation State", R, false, true, B, ""),
];

const GATEWAY: &[Row] = &[
    (0, "Device ID", R, false, true, S, ""),
    (1, "Prefix", R, false, true, S, ""),
    (3, "IoT Device Objects", R, false, true, L, ""),
];

fn object(
    id: u16,
    name: &str,
    version: &str,
    multiple: bool,
    mandatory: bool,
    rows: &[Row],
) -> ObjectDef {
    ObjectDef {
        id,
        name: name.to_string(),
        version: version.to_string(),
        multiple,
        mandatory,
        resources: rows
            .iter()
            .map(|&(rid, rname, ops, multi, mand, ty, units)| {
                (
                    rid,
                    ResourceDef {
                        id: rid,
                        name: rname.to_string(),
                        ops,
                        multiple: multi,
                        mandatory: mand,
                        data_type: ty,
                        range: None,
                        units: (!units.is_empty()).then(|| units.to_string()),
                    },
                )
            })
            .collect(),
    }
}

pub fn definitions() -> Vec<ObjectDef> {
    vec![
        object(0, "LwM2M Security", "1.0", true, true, SECURITY),
        object(1, "LwM2M Server", "1.1", true, true, SERVER),
        object(
            2,
            "LwM2M Access Control",
            "1.0",
            true,
            false,
            ACCESS_CONTROL,
        ),
        object(3, "Device", "1.0", false, true, DEVICE),
        object(
            4,
            "Connectivity Monitoring",
            "1.0",
            false,
            false,
            CONNECTIVITY,
        ),
        object(5, "Firmware Update", "1.0", false, false, FIRMWARE),
        object(9, "LwM2M Software Management", "1.0", true, false, SOFTWARE),
        object(25, "LwM2M Gateway", "2.0", true, false, GATEWAY),
    ]
}
