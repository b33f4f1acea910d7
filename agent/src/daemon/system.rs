//! The Linux system behind the Device (/3) and Connectivity Monitoring (/4) objects.
//! Sampling reads /proc, /sys and the kernel's interface list; failures leave a
//! resource out rather than stopping the agent.

use crate::config::DeviceSection;
use crate::lwm2m::factory::DeviceInfo;
use crate::lwm2m::Tree;
use crate::model::Value;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub storage_free_kb: Option<i64>,
    pub storage_total_kb: Option<i64>,
    pub now_unix: i64,
    pub utc_offset: String,
    pub timezone: Option<String>,
    pub ip_addresses: Vec<String>,
    pub routers: Vec<String>,
    pub bearer: Option<i64>,
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "Default string" && s != "To be filled by O.E.M.")
}

/// PRETTY_NAME of /etc/os-release.
pub fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// Device identity: configuration first, then DMI, then what is always there.
pub fn device_info(cfg: &DeviceSection, endpoint: &str) -> DeviceInfo {
    let dmi = |f: &str| read_trim(&format!("/sys/class/dmi/id/{f}"));
    let os = os_release().unwrap_or_else(|| "Linux".into());
    let kernel = read_trim("/proc/sys/kernel/osrelease").unwrap_or_default();
    DeviceInfo {
        manufacturer: cfg
            .manufacturer
            .clone()
            .or_else(|| dmi("sys_vendor"))
            .unwrap_or_else(|| "unknown".into()),
        model: cfg
            .model
            .clone()
            .or_else(|| dmi("product_name"))
            .unwrap_or_else(|| "Linux gateway".into()),
        // product_serial is root-only on most boards; the endpoint name is unique per install.
        serial: cfg
            .serial
            .clone()
            .or_else(|| dmi("product_serial"))
            .or_else(|| dmi("board_serial"))
            .unwrap_or_else(|| endpoint.to_string()),
        firmware_version: cfg
            .firmware_version_file
            .as_deref()
            .and_then(firmware_version)
            .unwrap_or_else(|| format!("{os} / lwgate {}", crate::VERSION)),
        device_type: cfg.device_type.clone().unwrap_or_else(|| "Gateway".into()),
        hardware_version: cfg
            .hardware_version
            .clone()
            .or_else(|| dmi("product_version"))
            .unwrap_or_default(),
        software_version: format!("lwgate {} (Linux {kernel})", crate::VERSION),
    }
}

/// The first line of the configured version file (written by the image, or by
/// the installer of an update).
fn firmware_version(path: &std::path::Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => t
            .lines()
            .next()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty()),
        Err(e) => {
            tracing::warn!("firmware version file {}: {e}", path.display());
            None
        }
    }
}

fn local_offset(now: i64) -> i64 {
    let t = now as libc::time_t;
    // SAFETY: localtime_r writes only into the tm we pass; both pointers are valid.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

/// ISO 8601 offset as in the spec's example ("+02:00").
pub fn format_offset(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

fn timezone() -> Option<String> {
    if let Some(tz) = std::env::var("TZ").ok().filter(|t| !t.is_empty()) {
        return Some(tz.trim_start_matches(':').to_string());
    }
    if let Some(t) = read_trim("/etc/timezone") {
        return Some(t);
    }
    let link = std::fs::read_link("/etc/localtime").ok()?;
    let s = link.to_string_lossy();
    s.split("zoneinfo/").nth(1).map(str::to_string)
}

/// Default routes from /proc/net/route and /proc/net/ipv6_route: (interface, gateway).
pub fn default_routes(route4: &str, route6: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in route4.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 2 && f[1] == "00000000" {
            if let Ok(gw) = u32::from_str_radix(f[2], 16) {
                if gw != 0 {
                    out.push((
                        f[0].to_string(),
                        Ipv4Addr::from(gw.swap_bytes()).to_string(),
                    ));
                }
            }
        }
    }
    for line in route6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 10 && f[0] == "00000000000000000000000000000000" && f[1] == "00" {
            if let Ok(gw) = u128::from_str_radix(f[4], 16) {
                if gw != 0 && f[9] != "lo" {
                    out.push((f[9].to_string(), Ipv6Addr::from(gw).to_string()));
                }
            }
        }
    }
    out
}

/// Network bearer (/4/0/0): 21 WLAN, 41 Ethernet, 6 LTE-FDD for cellular modems.
fn bearer_of(iface: &str) -> i64 {
    if Path::new(&format!("/sys/class/net/{iface}/wireless")).exists() {
        21
    } else if iface.starts_with("wwan")
        || iface.starts_with("ppp")
        || iface.starts_with("usb")
        || iface.starts_with("rmnet")
    {
        6
    } else {
        41
    }
}

fn addresses() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for a in addrs {
        let Some(addr) = a.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            let ip = v4.ip();
            if !ip.is_loopback() {
                out.push(ip.to_string());
            }
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let ip = v6.ip();
            // Link-local addresses are not reachable beyond the link.
            if !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                out.push(ip.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

pub fn sample(storage_dir: &Path) -> Facts {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (free, total) = match nix::sys::statvfs::statvfs(storage_dir) {
        Ok(s) => {
            let frag = s.fragment_size() as i64;
            (
                Some(s.blocks_available() as i64 * frag / 1024),
                Some(s.blocks() as i64 * frag / 1024),
            )
        }
        Err(_) => (None, None),
    };
    let routes = default_routes(
        &std::fs::read_to_string("/proc/net/route").unwrap_or_default(),
        &std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default(),
    );
    Facts {
        storage_free_kb: free,
        storage_total_kb: total,
        now_unix: now,
        utc_offset: format_offset(local_offset(now)),
        timezone: timezone(),
        ip_addresses: addresses(),
        routers: routes.iter().map(|(_, gw)| gw.clone()).collect(),
        bearer: routes.first().map(|(i, _)| bearer_of(i)),
    }
}

fn list(v: &[String]) -> BTreeMap<u16, Value> {
    v.iter()
        .enumerate()
        .map(|(i, s)| (i as u16, Value::String(s.clone())))
        .collect()
}

/// Writes sampled facts into the gateway tree. Current Time (/3/0/13) is not among
/// them: the LwM2M core sets it from the wall clock it is given.
pub fn apply(tree: &mut Tree, f: &Facts) {
    if let Some(v) = f.storage_free_kb {
        tree.set(3, 0, 10, Value::Integer(v));
    }
    if let Some(v) = f.storage_total_kb {
        tree.set(3, 0, 21, Value::Integer(v));
    }
    tree.set(3, 0, 14, Value::String(f.utc_offset.clone()));
    if let Some(tz) = &f.timezone {
        tree.set(3, 0, 15, Value::String(tz.clone()));
    }
    let bearer = f.bearer.unwrap_or(41);
    tree.set(4, 0, 0, Value::Integer(bearer));
    tree.set_multi(4, 0, 1, [(0, Value::Integer(bearer))].into());
    tree.set_multi(4, 0, 4, list(&f.ip_addresses));
    tree.set_multi(4, 0, 5, list(&f.routers));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_routes() {
        let r4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        let r6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(
            default_routes(r4, r6),
            vec![
                ("eth0".into(), "192.168.2.1".into()),
                ("wlan0".into(), "fe80::1".into())
            ]
        );
    }

    #[test]
    fn offsets_read_as_utc_plus_minus() {
        assert_eq!(format_offset(3600), "+01:00");
        assert_eq!(format_offset(-9000), "-02:30");
        assert_eq!(format_offset(0), "+00:00");
    }

    #[test]
    fn sampling_this_machine_fills_the_objects() {
        let f = sample(Path::new("/"));
        assert!(f.now_unix > 1_700_000_000);
        assert!(f.storage_total_kb.unwrap_or(0) > 0);
        let mut t = Tree::default();
        apply(&mut t, &f);
        assert!(t.get(3, 0, 14).is_some() && t.get(4, 0, 0).is_some());
    }
}
