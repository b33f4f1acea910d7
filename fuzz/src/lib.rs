//! What several targets share: CoAP requests a server could really send, built
//! from fuzz input (`req`), and the gateway client they are sent to, registered
//! with two servers and with an end device behind /25 (`client`).
//!
//! Raw bytes rarely get past CoAP option parsing into a valid path with a
//! payload in the declared format; these builders make every input such a
//! request, then let a few bytes of it go wrong so the checks are reached too.

pub mod client;
pub mod req;
