//! Factory bootstrap: the object instances built from `[[server]]` tables and the
//! device's static identity.

use super::acl;
use super::dm::Trees;
use crate::model::Value;

/// One server account as the factory configuration gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub uri: String,
    pub ssid: u16,
    pub lifetime: u32,
    pub binding: String,
    pub notification_storing: bool,
}

/// Static Device object (/3) resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub firmware_version: String,
    pub device_type: String,
    pub hardware_version: String,
    pub software_version: String,
}

pub fn trees(accounts: &[Account], info: &DeviceInfo) -> Trees {
    let mut t = Trees::default();
    let g = &mut t.gateway;
    for (i, a) in accounts.iter().enumerate() {
        let i = i as u16;
        let ssid = i64::from(a.ssid);
        g.set(0, i, 0, Value::String(a.uri.clone()));
        g.set(0, i, 1, Value::Boolean(false));
        g.set(0, i, 2, Value::Integer(3)); // NoSec
        g.set(0, i, 3, Value::Opaque(Vec::new()));
        g.set(0, i, 4, Value::Opaque(Vec::new()));
        g.set(0, i, 5, Value::Opaque(Vec::new()));
        g.set(0, i, 10, Value::Integer(ssid));
        g.set(1, i, 0, Value::Integer(ssid));
        g.set(1, i, 1, Value::Integer(i64::from(a.lifetime)));
        g.set(1, i, 6, Value::Boolean(a.notification_storing));
        g.set(1, i, 7, Value::String(a.binding.clone()));
    }
    // Unknown optional values are left out rather than sent as empty strings.
    for (rid, v) in [
        (0, &info.manufacturer),
        (1, &info.model),
        (2, &info.serial),
        (3, &info.firmware_version),
        (17, &info.device_type),
        (18, &info.hardware_version),
        (19, &info.software_version),
    ] {
        if !v.is_empty() {
            g.set(3, 0, rid, Value::String(v.clone()));
        }
    }
    g.set_multi(3, 0, 11, [(0, Value::Integer(0))].into());
    g.set(3, 0, 16, Value::String("U".into()));
    g.objects.entry(4).or_default().entry(0).or_default();
    if accounts.len() > 1 {
        // Each server owns its own /1 instance; every server may read, write and
        // execute the gateway's Device and Connectivity objects (spec 7.3, Appendix F).
        let mut next = 0u16;
        let mut acl_inst =
            |g: &mut super::tree::Tree, obj: u16, inst: u16, owner: i64, default: Option<i64>| {
                g.set(2, next, 0, Value::Integer(i64::from(obj)));
                g.set(2, next, 1, Value::Integer(i64::from(inst)));
                let entries = default
                    .map(|d| (0u16, Value::Integer(d)))
                    .into_iter()
                    .collect();
                g.set_multi(2, next, 2, entries);
                g.set(2, next, 3, Value::Integer(owner));
                next += 1;
            };
        for (i, a) in accounts.iter().enumerate() {
            acl_inst(g, 1, i as u16, i64::from(a.ssid), None);
        }
        let owner = i64::from(accounts[0].ssid);
        let rwe = acl::READ | acl::WRITE | acl::EXECUTE;
        acl_inst(g, 3, 0, owner, Some(rwe));
        acl_inst(g, 4, 0, owner, Some(acl::READ));
    }
    t
}
