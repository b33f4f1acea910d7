//! Default Endpoint Client Name.
//!
//! A fleet of 500 gateways built from one image shares a hostname, but each has
//! its own /etc/machine-id. The raw machine-id must not leave the box (machine-id(5)
//! says so), so we publish a hash of it keyed by our application name.

use sha2::{Digest, Sha256};

pub fn default_endpoint_name() -> String {
    from_sources(
        std::fs::read_to_string("/etc/machine-id").ok().as_deref(),
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .as_deref(),
    )
}

pub(crate) fn from_sources(machine_id: Option<&str>, hostname: Option<&str>) -> String {
    if let Some(id) = machine_id.map(str::trim).filter(|s| s.len() >= 16) {
        let digest = Sha256::new()
            .chain_update(b"lwgate-endpoint:")
            .chain_update(id.as_bytes())
            .finalize();
        return format!("lwgate-{}", hex::encode(&digest[..8]));
    }
    match hostname.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None => "lwgate".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_is_hashed_not_exposed() {
        let id = "0123456789abcdef0123456789abcdef";
        let name = from_sources(Some(id), Some("host"));
        assert!(name.starts_with("lwgate-"));
        assert_eq!(name.len(), "lwgate-".len() + 16);
        assert!(!name.contains("0123456789abcdef"));
        assert_eq!(name, from_sources(Some(&format!("{id}\n")), None));
    }

    #[test]
    fn falls_back_to_hostname_then_constant() {
        assert_eq!(from_sources(None, Some("gw-17")), "gw-17");
        assert_eq!(from_sources(Some(""), Some("")), "lwgate");
    }
}
