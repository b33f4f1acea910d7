//! DTLS 1.2 client sessions over OpenSSL, without I/O: the driver feeds datagrams
//! and timeouts to a [`DtlsSession`] and puts what `poll_transmit` yields on its
//! connected UDP socket, the CoAP core above seeing plaintext datagrams only.
//!
//! A [`DtlsContext`] is built once per server from its [`DtlsConfig`] (PSK or
//! certificates, LwM2M's certificate usages, SNI, cipher suites by IANA number,
//! our handshake deadline, a fixed MTU); sessions of one context resume each other
//! through a [`SessionTicket`].

mod alert;
pub mod ciphers;
mod config;
mod context;
mod error;
mod failure;
mod ffi;
mod session;
mod trust;
mod wire;

pub use config::{
    CertUsage, DtlsConfig, Security, ServerTrust, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MTU,
};
pub use context::{DtlsContext, SessionTicket, RAW_PUBLIC_KEYS};
pub use error::DtlsError;
pub use session::{DtlsSession, DtlsState};
