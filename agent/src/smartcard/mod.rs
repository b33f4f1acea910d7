//! Bootstrap from a UICC over PC/SC (LwM2M 1.0 TS 5.2.3.2 and Appendix G).
//! `ber`, `pkcs15` and `bootfile` are pure parsers of card bytes; `walk` is the
//! APDU sequence over any transport; `reader` binds it to PC/SC.

pub mod ber;
pub mod bootfile;
pub mod dump;
pub mod pkcs15;
pub mod reader;
pub mod walk;

pub use walk::{CardData, SmartcardError};
