//! Modbus bridge, the part without I/O: value codecs and read plans.
//!
//! A mapped point is a [`PointCodec`] (register kind, data type, byte and word order,
//! scale and offset) at an address. [`plan_reads`] turns the points of a device into
//! read requests; each response is [split](ReadRequest::split) back into the points'
//! registers, which their codecs [decode](PointCodec::decode_registers) into
//! [`Value`]s. Writes go the other way through [`PointCodec::encode`].
//!
//! For users of ThingsBoard IoT Gateway: its `byteOrder`/`wordOrder` are
//! [`ByteOrder`]/[`WordOrder`] (see [`parse_order`] for the `ABCD`-style names),
//! `multiplier: m` is a scale of `m` and `divider: d` a scale of `1 / d`
//! ([`PointCodec::with_scale`]); type names are listed on [`DataType`].

pub(crate) mod bus;
pub mod codec;
pub mod config;
pub(crate) mod link;
pub mod plan;

pub use codec::{
    parse_order, ByteOrder, CodecError, DataType, Encoded, PointCodec, RegisterKind, Value,
    WordOrder, MAX_READ_BITS, MAX_READ_REGISTERS,
};
pub use plan::{plan_reads, PlanError, PlanOptions, Point, ReadRequest, Served};
