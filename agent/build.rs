//! Tells the code whether the OpenSSL it links can do RFC 7250 raw public keys
//! (3.2 and later): Debian 12's 3.0 cannot, a `vendored-openssl` build or a newer
//! distribution's can. openssl-sys hands its version to dependents' build scripts.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(lwgate_rpk)");
    println!("cargo::rerun-if-env-changed=DEP_OPENSSL_VERSION_NUMBER");
    let v = std::env::var("DEP_OPENSSL_VERSION_NUMBER")
        .ok()
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0);
    if v >= 0x3020_0000 {
        println!("cargo::rustc-cfg=lwgate_rpk");
    }
}
