//! CoAP without I/O: the message layer (retransmission, deduplication, tokens,
//! NSTART, Block1/Block2 for our requests) and helpers over coap-lite's codec.

pub mod block;
pub mod endpoint;
pub mod message;
pub mod params;
pub mod trace;

pub use endpoint::{Endpoint, Event, Failure, Handle, Incoming};
pub use params::TxParams;
