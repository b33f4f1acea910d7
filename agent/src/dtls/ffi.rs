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
