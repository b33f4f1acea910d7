//! Loading the configuration tree as `lwgate run` and `lwgate check-config` do:
//! `lwgate.toml` parsed and validated (DTLS key files read and checked, the
//! firmware and software tables, SMS), then every `devices.d/*.toml` (device
//! identity, Modbus, serial, MQTT, modem tables checked as parsed, ids and
//! prefixes unique). Errors, never a panic; every error names its file.
//!
//! Input: the text of `lwgate.toml`; a line `#>>> NAME` starts the file
//! `devices.d/NAME`. The files are written to a directory of this process that
//! also holds key files (a PSK, an EC key with its self-signed certificate in
//! PEM and DER, its public key, a minisign key) for the tables to name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const MINISIGN_PUB: &str = include_str!("../../agent/tests/fixtures/minisign/test.pub");

fn write(dir: &Path, name: &str, bytes: &[u8], mode: u32) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("fixture file");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("mode");
}

fn self_signed(dir: &Path) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = openssl::x509::X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "fuzz").expect("CN");
    let name = name.build();
    let mut b = openssl::x509::X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    let now = openssl::asn1::Asn1Time::days_from_now(0).expect("time");
    let later = openssl::asn1::Asn1Time::days_from_now(365).expect("time");
    b.set_not_before(&now).expect("not before");
    b.set_not_after(&later).expect("not after");
    b.sign(&key, openssl::hash::MessageDigest::sha256())
        .expect("sign");
    let cert = b.build();
    write(dir, "cert.pem", &cert.to_pem().expect("pem"), 0o644);
    write(dir, "cert.der", &cert.to_der().expect("der"), 0o644);
    write(dir, "ca.pem", &cert.to_pem().expect("pem"), 0o644);
    write(
        dir,
        "key.pem",
        &key.private_key_to_pem_pkcs8().expect("pem"),
        0o600,
    );
    write(
        dir,
        "key.der",
        &key.private_key_to_der().expect("der"),
        0o600,
    );
    write(
        dir,
        "pub.pem",
        &key.public_key_to_pem().expect("pem"),
        0o644,
    );
    write(
        dir,
        "pub.der",
        &key.public_key_to_der().expect("der"),
        0o644,
    );
}

/// This process's directory (tmpfs when there is one), made once.
fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // libFuzzer exits without destructors: a run clears what dead ones left.
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("lwgate-fuzz-config-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let d = base.join(format!("lwgate-fuzz-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("devices.d")).expect("fuzz directory");
        write(&d, "psk.key", b"000102030405060708090a0b0c0d0e0f\n", 0o600);
        write(&d, "open.key", b"00112233", 0o644);
        write(&d, "minisign.pub", MINISIGN_PUB.as_bytes(), 0o644);
        self_signed(&d);
        d
    })
}

/// Paths the loader would read that could block or never end (a character
/// device, /dev/zero): an input that names one, directly or through an
/// escape, is not the loader's business.
fn names_a_device(text: &str) -> bool {
    ["/dev/", "\\u00", "\\U0000", "../", "/.."]
        .iter()
        .any(|p| text.contains(p))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The serial and RTU examples name their tty; nothing opens it at load.
    let text = text.replace("\"/dev/", "\"/nonexistent/");
    if names_a_device(&text) {
        return;
    }
    let d = dir();
    let devices = d.join("devices.d");
    if let Ok(old) = std::fs::read_dir(&devices) {
        for e in old.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut parts = text.split("\n#>>> ");
    let main = parts.next().unwrap_or_default();
    for part in parts {
        let (name, body) = part.split_once('\n').unwrap_or((part, ""));
        if name.is_empty() || name.contains('/') || name.len() > 64 {
            continue;
        }
        let _ = std::fs::write(devices.join(name), body);
    }
    let path = d.join("lwgate.toml");
    if std::fs::write(&path, main).is_err() {
        return;
    }
    match lwgate::config::load(&path) {
        Ok(loaded) => {
            for dev in &loaded.devices {
                assert!(dev.file.starts_with(&devices));
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                let shown = e.to_string();
                assert!(!shown.is_empty());
            }
        }
    }
    // The string parser alone, as `lwgate check-config` runs it first.
    let _ = lwgate::config::parse(&path, main);
});
