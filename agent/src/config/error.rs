//! Configuration errors that name the file, the key path and what was expected.
//!
//! Field engineers read these in a terminal or in `journalctl`, often without the
//! source at hand, so every message carries `file: key.path: expected …, got …`
//! and a line number when the parser knows it.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// The checks made after parsing (ranges, uniqueness, URIs) see only values;
/// this gives their errors the line of the key they name, as the parser's errors
/// have, without wrapping every config field in `Spanned`.
pub(crate) fn locate(text: &str, errors: &mut [ConfigError]) {
    for e in errors
        .iter_mut()
        .filter(|e| e.line.is_none() && !e.key.is_empty())
    {
        e.line = line_of_key(text, &e.key);
    }
}

/// What the probe stops with; any other error means the text changed under us.
const HERE: &str = "lwgate: the key is here";

/// toml gives an error the span of the value it arose in (or of its key, for a
/// table that `[a.b]` makes implicitly), so a walk that fails on purpose at
/// `server[1].ssid` learns where that is. A key that is not in the file (a
/// default) fails at the nearest enclosing one that is.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let mut path = Vec::new();
    for segment in key.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(i) => segment.split_at(i),
            None => (segment, ""),
        };
        path.push(Step::Key(name));
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            path.push(Step::Index(index.parse().ok()?));
        }
    }
    let probe = Probe {
        path: &path,
        top: true,
    };
    let err = de::DeserializeSeed::deserialize(probe, toml::Deserializer::new(text)).err()?;
    if err.message() != HERE {
        return None;
    }
    err.span().map(|s| line_of(text, s.start))
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

struct Probe<'p, 'a> {
    path: &'p [Step<'a>],
    /// The document itself: a key missing there is missing from the file, and
    /// line 1 would be a wrong place to point at.
    top: bool,
}

impl<'p, 'a> Probe<'p, 'a> {
    fn inner(path: &'p [Step<'a>]) -> Self {
        Self { path, top: false }
    }
}

impl<'de> de::DeserializeSeed<'de> for Probe<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some((Step::Index(want), rest)) = self.path.split_first() {
            let mut skipped = 0;
            while skipped < *want && seq.next_element::<IgnoredAny>()?.is_some() {
                skipped += 1;
            }
            if skipped == *want {
                seq.next_element_seed(Probe::inner(rest))?;
            }
        }
        Err(de::Error::custom(HERE))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let Some((Step::Key(want), rest)) = self.path.split_first() {
            while let Some(key) = map.next_key::<String>()? {
                if key == *want {
                    return map.next_value_seed(Probe::inner(rest));
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        if self.top {
            return Err(de::Error::custom("lwgate: the key is not in the file"));
        }
        Err(de::Error::custom(HERE))
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
