//! The `[serial]` table of a `devices.d` file, checked as it is parsed.

use serde::Deserialize;

/// A validated `[serial]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SerialConfig {}
