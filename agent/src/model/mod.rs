//! The LwM2M data model: paths, typed values, object definitions.

mod builtin;
pub mod ddf;
pub mod defs;
pub mod path;
pub mod value;

pub use defs::{ObjectDef, Operations, Registry, ResourceDef};
pub use path::{Path, PathError};
pub use value::{DataType, Value};
