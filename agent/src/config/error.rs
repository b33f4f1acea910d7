//! Configuration errors that name the file, the key path and what was expected.
//!
//! Field engineers read these in a terminal or in `journalctl`, often without the
//! source at hand, so every message carries `file: key.path: expected …, got …`
//! and a line number when the parser knows it.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path such as `server[0].lifetime`; empty for file-level errors.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            key: key.into(),
            line: None,
            message: message.into(),
        }
    }

    /// Converts a TOML/serde error, keeping the key path that serde_path_to_error tracked.
    pub(crate) fn from_toml(
        file: &Path,
        text: &str,
        err: serde_path_to_error::Error<toml::de::Error>,
    ) -> Self {
        let mut key = err.path().to_string();
        if key == "." {
            key.clear();
        }
        let inner = err.inner();
        let line = inner.span().map(|s| line_of(text, s.start));
        let mut message = reword(inner.message());
        // serde_path_to_error already ends the path with the unknown field's name.
        if let Some(field) = unknown_field_name(inner.message()) {
            if key.is_empty() {
                key = field.to_string();
            }
            message = format!("unknown key{}", expected_suffix(inner.message()));
        }
        Self {
            file: file.to_path_buf(),
            key,
            line,
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Several errors found in one pass, so an engineer fixes them all in one edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// serde says `invalid type: string "fast", expected a boolean`; operators read
/// `expected a boolean, got string "fast"` more easily, with the expectation first.
fn reword(msg: &str) -> String {
    let msg = msg.trim_end().trim_end_matches('\n');
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.split_once(", expected ") {
                return format!("expected {expected}, got {got}");
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some(field) = rest.strip_suffix('`') {
            return format!("missing required key `{field}`");
        }
    }
    msg.to_string()
}

fn unknown_field_name(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    Some(&rest[..end])
}

fn expected_suffix(msg: &str) -> String {
    match msg.split_once(", expected ") {
        Some((_, exp)) => format!(", expected {}", exp.trim_end()),
        None => match msg.split_once(", there are no fields") {
            Some(_) => " (this table takes no keys)".to_string(),
            None => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewords_invalid_type() {
        assert_eq!(
            reword("invalid type: string \"fast\", expected a positive number of seconds"),
            "expected a positive number of seconds, got string \"fast\""
        );
    }

    #[test]
    fn keeps_other_messages() {
        assert_eq!(reword("something else"), "something else");
    }

    #[test]
    fn line_numbers_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
