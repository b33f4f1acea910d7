//! The DTLS timer calls rust-openssl does not wrap. `DTLSv1_get_timeout` and
//! `DTLSv1_handle_timeout` are C macros over `SSL_ctrl`, so they are spelled out
//! here; `DTLS_set_timer_cb` and `DTLS_get_data_mtu` are functions openssl-sys does not
//! declare.

use foreign_types::ForeignTypeRef;
use libc::{c_int, c_long, c_uint, c_void};
use openssl::ssl::SslRef;
use std::time::Duration;

// From OpenSSL's ssl.h (stable since 1.0).
const DTLS_CTRL_GET_TIMEOUT: c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;

/// First retransmission after 1 s, doubling to at most this: within our handshake
/// deadline a lost flight is retried several times, where OpenSSL's own doubling
/// to 60 s would retry a 15 s handshake only three times.
const MAX_RETRANSMIT_US: c_uint = 4_000_000;
const FIRST_RETRANSMIT_US: c_uint = 1_000_000;

type TimerCb = unsafe extern "C" fn(*mut openssl_sys::SSL, c_uint) -> c_uint;

extern "C" {
    fn DTLS_set_timer_cb(s: *mut openssl_sys::SSL, cb: Option<TimerCb>);
    fn DTLS_get_data_mtu(s: *const openssl_sys::SSL) -> libc::size_t;
}

/// The largest application datagram that fits one record within the MTU, for the
/// negotiated suite (0 before the handshake has chosen one).
pub fn data_mtu(ssl: &SslRef) -> usize {
    // SAFETY: reads the live SSL's MTU and cipher; no pointer is kept.
    unsafe { DTLS_get_data_mtu(ssl.as_ptr()) }
}

/// OpenSSL calls this with 0 to start a flight's timer and with the last value
/// after each timeout.
unsafe extern "C" fn timer_cb(_s: *mut openssl_sys::SSL, timer_us: c_uint) -> c_uint {
    if timer_us == 0 {
        FIRST_RETRANSMIT_US
    } else {
        timer_us.saturating_mul(2).min(MAX_RETRANSMIT_US)
    }
}

pub fn set_retransmit_schedule(ssl: &mut SslRef) {
    // SAFETY: `ssl` is a live SSL; the callback is a plain function that touches
    // nothing but its argument.
    unsafe { DTLS_set_timer_cb(ssl.as_ptr(), Some(timer_cb)) }
}

/// Time left until OpenSSL wants to retransmit, if its timer runs (by the real
/// clock: OpenSSL reads it itself).
pub fn timeout(ssl: &SslRef) -> Option<Duration> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    // SAFETY: DTLS_CTRL_GET_TIMEOUT writes one `struct timeval` through parg,
    // which points at a live local; `ssl` is a live SSL.
    let running = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_GET_TIMEOUT,
            0,
            (&mut tv as *mut libc::timeval).cast::<c_void>(),
        )
    };
    if running != 1 {
        return None;
    }
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u64::try_from(tv.tv_usec).unwrap_or(0);
    Some(Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Retransmits if OpenSSL's timer has expired: 1 retransmitted, 0 not due, < 0
/// the handshake failed (too many timeouts). A shared reference, as rust-openssl's
/// own wrappers take for calls that change the SSL: `SslRef` is an opaque cell.
pub fn handle_timeout(ssl: &SslRef) -> c_long {
    // SAFETY: DTLS_CTRL_HANDLE_TIMEOUT takes no argument; `ssl` is a live SSL.
    unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_HANDLE_TIMEOUT,
            0,
            std::ptr::null_mut(),
        )
    }
}

/// RFC 7250 raw public keys (OpenSSL 3.2 and later), which rust-openssl does not
/// wrap: the certificate types offered, and the key the server sent.
#[cfg(lwgate_rpk)]
pub mod rpk {
    use foreign_types::ForeignTypeRef;
    use libc::{c_int, size_t};
    use openssl::pkey::{PKeyRef, Public};
    use openssl::ssl::SslContextBuilder;
    use openssl::x509::X509StoreContextRef;

    /// TLS Certificate Type "RawPublicKey" (RFC 7250 §3, IANA value 2).
    const TLSEXT_CERT_TYPE_RPK: u8 = 2;

    extern "C" {
        fn SSL_CTX_set1_client_cert_type(
            ctx: *mut openssl_sys::SSL_CTX,
            val: *const u8,
            len: size_t,
        ) -> c_int;
        fn SSL_CTX_set1_server_cert_type(
            ctx: *mut openssl_sys::SSL_CTX,
            val: *const u8,
            len: size_t,
        ) -> c_int;
        fn X509_STORE_CTX_get0_rpk(
            ctx: *const openssl_sys::X509_STORE_CTX,
        ) -> *mut openssl_sys::EVP_PKEY;
    }

    /// Offers raw public keys only, for both sides: LwM2M's mode 1 is mutual and
    /// has no certificates to fall back to.
    pub fn only_raw_public_keys(b: &mut SslContextBuilder) -> bool {
        let types = [TLSEXT_CERT_TYPE_RPK];
        // SAFETY: `b` holds a live SSL_CTX; OpenSSL copies the 1-byte list.
        unsafe {
            SSL_CTX_set1_client_cert_type(b.as_ptr(), types.as_ptr(), types.len()) == 1
                && SSL_CTX_set1_server_cert_type(b.as_ptr(), types.as_ptr(), types.len()) == 1
        }
    }

    /// The SubjectPublicKeyInfo (DER) of the raw public key under verification.
    pub fn peer_key_der(ctx: &X509StoreContextRef) -> Option<Vec<u8>> {
        // SAFETY: the store context is live during the verify callback; the key
        // it returns is borrowed from it (get0) and only read here.
        unsafe {
            let p = X509_STORE_CTX_get0_rpk(ctx.as_ptr());
            if p.is_null() {
                return None;
            }
            PKeyRef::<Public>::from_ptr(p).public_key_to_der().ok()
        }
    }
}

/// The last fatal alert of a session, sent or received, as OpenSSL's info
/// callback reports it (rust-openssl does not wrap the callback). Kept in the
/// SSL's ex-data: 0 none, else 0x100 | (0x200 when we sent it) | the alert.
pub mod alerts {
    use foreign_types::ForeignTypeRef;
    use libc::c_int;
    use openssl::ex_data::Index;
    use openssl::ssl::{Ssl, SslRef};
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::OnceLock;

    const SSL_CB_READ: c_int = 0x04;
    const SSL_CB_WRITE: c_int = 0x08;
    const SSL_CB_ALERT: c_int = 0x4000;
    const FATAL: c_int = 2;

    type InfoCb = unsafe extern "C" fn(*const openssl_sys::SSL, c_int, c_int);

    extern "C" {
        fn SSL_set_info_callback(s: *mut openssl_sys::SSL, cb: Option<InfoCb>);
    }

    static INDEX: OnceLock<Option<Index<Ssl, AtomicU16>>> = OnceLock::new();

    fn index() -> Option<Index<Ssl, AtomicU16>> {
        *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
    }

    unsafe extern "C" fn info_cb(s: *const openssl_sys::SSL, at: c_int, ret: c_int) {
        if at & SSL_CB_ALERT == 0 || (ret >> 8) != FATAL {
            return;
        }
        let sent = at & SSL_CB_WRITE != 0 && at & SSL_CB_READ == 0;
        let Some(idx) = index() else { return };
        // SAFETY: OpenSSL calls this with the live SSL the callback was set on;
        // only its ex-data slot (an atomic set before the callback) is touched.
        let ssl = unsafe { SslRef::from_ptr(s.cast_mut()) };
        if let Some(slot) = ssl.ex_data(idx) {
            let v = 0x100 | if sent { 0x200 } else { 0 } | (ret & 0xff) as u16;
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// Starts recording fatal alerts on `ssl`.
    pub fn record(ssl: &mut SslRef) {
        let Some(idx) = index() else { return };
        ssl.set_ex_data(idx, AtomicU16::new(0));
        // SAFETY: `ssl` is live; the callback reads only its own ex-data.
        unsafe { SSL_set_info_callback(ssl.as_ptr(), Some(info_cb)) }
    }

    /// The last fatal alert: its code, and whether we sent it.
    pub fn last(ssl: &SslRef) -> Option<(u8, bool)> {
        let v = ssl.ex_data(index()?)?.load(Ordering::Relaxed);
        (v != 0).then_some(((v & 0xff) as u8, v & 0x200 != 0))
    }
}
