//! Configuration errors that name the file, the key path and what was expected.
//!
//! Field engineers read these in a terminal or in `journalctl`, often without the
//! source at hand, so every message carries `file:line: key.path: expected …, got …`
//! and says it in the words of the TOML file, not of the Rust types behind it.

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path such as `server[0].lifetime`; empty for file-level errors.
    pub key: String,
    pub line: Option<usize>,
    /// Only for TOML syntax errors, where the line alone may not find the typo.
    pub column: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            key: key.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// Converts a TOML/serde error, keeping the key path that serde_path_to_error tracked.
    fn from_toml(
        file: &Path,
        text: &str,
        err: serde_path_to_error::Error<toml::de::Error>,
    ) -> Self {
        let mut key = err.path().to_string();
        if key == "." {
            key.clear();
        }
        let inner = err.inner();
        let span = inner.span();
        let line = span.as_ref().map(|s| line_of(text, s.start));
        let source = span.and_then(|s| text.get(s));
        let mut message = reword(inner.message(), source);
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
            column: None,
            message,
        }
    }

    /// A document that is not TOML at all: toml gives a description and an
    /// "expected …" list on separate lines, which read as two errors in a journal.
    fn syntax(file: &Path, text: &str, err: &toml::de::Error) -> Self {
        let (line, column) = match err.span() {
            Some(s) => (Some(line_of(text, s.start)), Some(column_of(text, s.start))),
            None => (None, None),
        };
        let parts: Vec<String> = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| match l.strip_prefix("expected ") {
                Some(list) => format!("expected {}", or_list(list)),
                None => l.to_string(),
            })
            .collect();
        Self {
            file: file.to_path_buf(),
            key: String::new(),
            line,
            column,
            message: format!("TOML syntax error: {}", parts.join(", ")),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
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

/// Parses a TOML document into `T`, naming the file, line and key on error.
pub(crate) fn deserialize<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(value) => Ok(value),
        Err(e) => {
            // Any document that is TOML at all deserializes into IgnoredAny.
            if let Err(syntax) = toml::from_str::<IgnoredAny>(text) {
                return Err(ConfigError::syntax(file, text, &syntax));
            }
            let names = if e.inner().message().starts_with("wanted ") {
                e.inner().span().and_then(|s| enum_names::<T>(text, s))
            } else {
                None
            };
            let source = e.inner().span().and_then(|s| text.get(s));
            let mut err = ConfigError::from_toml(file, text, e);
            if let Some(names) = names {
                err.message = format!("expected {names} (in quotes), got {}", snippet(source));
            }
            Err(err)
        }
    }
}

/// toml reports a non-string where an enum goes as "wanted string or table",
/// without the names the key takes. Asking again with a string that is no name
/// makes serde list them, whichever enum it is.
fn enum_names<T: DeserializeOwned>(text: &str, span: Range<usize>) -> Option<String> {
    let (before, after) = (text.get(..span.start)?, text.get(span.end..)?);
    let probe = format!("{before}\"\\u0001\"{after}");
    // Through serde_path_to_error as the first attempt was: a plain
    // `toml::from_str::<T>` would build every config type's deserializer a second
    // time (~100 KiB of the release binary).
    let err = serde_path_to_error::deserialize::<_, T>(toml::Deserializer::new(&probe)).err()?;
    let list = err
        .inner()
        .message()
        .strip_prefix("unknown variant `\u{1}`, expected ")?;
    Some(quoted_names(list.trim_end()))
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// In characters, as an editor counts them, not bytes.
fn column_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    let bytes = &text.as_bytes()[..end];
    let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes[start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count()
        + 1
}

/// serde says `invalid type: string "fast", expected a boolean` in the words of
/// the Rust types (u16, sequence, map, struct StoreSection); operators read
/// `expected true or false, got string "fast"` more easily: the expectation first,
/// both in the words of the TOML file. `source` is the text the error points at.
fn reword(msg: &str, source: Option<&str>) -> String {
    let msg = msg.trim_end();
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // The expectation never contains ", expected "; a quoted value may.
            if let Some((got, expected)) = rest.rsplit_once(", expected ") {
                return format!(
                    "expected {}, got {}",
                    expected_words(expected),
                    got_words(got, source)
                );
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        if let Some((got, names)) = rest.split_once(", expected ") {
            return format!("expected {}, got {}", quoted_names(names), quoted(got));
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some(field) = rest.strip_suffix('`') {
            return format!("missing required key `{field}`");
        }
    }
    // toml's enum errors ("wanted string or table", "wanted exactly 1 element, …");
    // `deserialize` replaces this with the names when it can find them.
    if msg.starts_with("wanted ") {
        return format!("expected a name in quotes, got {}", snippet(source));
    }
    msg.to_string()
}

/// serde's `expecting` texts for the types a config uses, in TOML's words.
/// Our own visitors already speak in words and pass through.
fn expected_words(expected: &str) -> String {
    let words = match expected {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" => "a whole number from -128 to 127",
        "i16" => "a whole number from -32768 to 32767",
        "i32" => "a whole number from -2147483648 to 2147483647",
        "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" => "a string in quotes",
        "a character" => "a single character in quotes",
        "path string" => "a path in quotes",
        "a sequence" => "an array such as [\"a\", \"b\"]",
        "a map" | "a table" => "a table",
        e if e.starts_with("struct ") => "a table",
        e if e.starts_with("enum ") => "a name in quotes",
        e if e.contains('`') => return quoted_names(e),
        e => e,
    };
    words.to_string()
}

/// serde's `Unexpected` texts (`integer `5``, `map`, …) for what the file has.
fn got_words(got: &str, source: Option<&str>) -> String {
    for kind in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = got.strip_prefix(kind) {
            return v.trim_matches('`').to_string();
        }
    }
    match got {
        "sequence" => "an array".to_string(),
        // toml hands a date-time to serde as a map, so the text tells them apart.
        "map" => match source.map(str::trim_start) {
            Some(s) if s.starts_with('{') => "an inline table".to_string(),
            Some(s) if s.starts_with('[') => match s.lines().next() {
                Some(header) => format!("the table {}", header.trim_end()),
                None => "a table".to_string(),
            },
            Some(s) if s.starts_with(|c: char| c.is_ascii_digit()) => "a date-time".to_string(),
            _ => "a table".to_string(),
        },
        "unit value" | "Option value" | "newtype struct" | "enum" | "unit variant"
        | "newtype variant" | "tuple variant" | "struct variant" => {
            "a value of another kind".to_string()
        }
        g => g.to_string(),
    }
}

/// serde lists names as `a`, `b` or `c` in backticks; in a TOML file they are
/// written in double quotes.
fn quoted_names(list: &str) -> String {
    let list = or_list(&list.replace('`', "\""));
    if list.contains(", ") {
        format!("one of {list}")
    } else {
        list
    }
}

/// The value as written, for errors where serde does not say what it got; an
/// array or inline table over several lines is cut at the first.
fn snippet(source: Option<&str>) -> String {
    let Some(first) = source.and_then(|s| s.trim().lines().next()) else {
        return "something else".to_string();
    };
    let mut cut: String = first.chars().take(40).collect();
    if cut.len() < source.map_or(0, |s| s.trim().len()) {
        cut.push('…');
    }
    cut
}

/// serde writes the value it did not know as `value`, which may hold anything.
fn quoted(got: &str) -> String {
    let raw = got.strip_prefix('`').and_then(|g| g.strip_suffix('`'));
    format!("{:?}", raw.unwrap_or(got))
}

/// serde and toml write lists as "one of a, b, c" or "a, b"; "a, b or c" reads better.
fn or_list(list: &str) -> String {
    let list = list.strip_prefix("one of ").unwrap_or(list);
    match list.rsplit_once(", ") {
        Some((head, last)) if !list.contains(" or ") => format!("{head} or {last}"),
        _ => list.to_string(),
    }
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
            reword(
                "invalid type: string \"fast\", expected a positive number of seconds",
                None
            ),
            "expected a positive number of seconds, got string \"fast\""
        );
    }

    #[test]
    fn keeps_other_messages() {
        assert_eq!(reword("something else", None), "something else");
    }

    #[test]
    fn line_numbers_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }

    #[test]
    fn every_rust_type_name_is_said_in_words() {
        for (rust, words) in [
            ("u8", "a whole number from 0 to 255"),
            ("u16", "a whole number from 0 to 65535"),
            ("u32", "a whole number from 0 to 4294967295"),
            ("u64", "a whole number, 0 or more"),
            ("usize", "a whole number, 0 or more"),
            ("i8", "a whole number from -128 to 127"),
            ("i16", "a whole number from -32768 to 32767"),
            ("i32", "a whole number from -2147483648 to 2147483647"),
            ("i64", "a whole number"),
            ("f64", "a number"),
            ("a boolean", "true or false"),
            ("a string", "a string in quotes"),
            ("path string", "a path in quotes"),
            ("a sequence", "an array such as [\"a\", \"b\"]"),
            ("a map", "a table"),
            ("struct StoreSection", "a table"),
            ("enum LogLevel", "a name in quotes"),
            (
                "a positive number of seconds",
                "a positive number of seconds",
            ),
        ] {
            assert_eq!(expected_words(rust), words, "{rust}");
        }
        for (unexpected, source, words) in [
            ("integer `5`", None, "5"),
            ("floating point `1.5`", None, "1.5"),
            ("boolean `true`", None, "true"),
            ("string \"x\"", None, "string \"x\""),
            ("sequence", None, "an array"),
            ("map", Some("{ a = 1 }"), "an inline table"),
            ("map", Some("[server]\nuri = \"x\"\n"), "the table [server]"),
            ("map", Some("2026-01-01"), "a date-time"),
            ("map", None, "a table"),
            ("unit value", None, "a value of another kind"),
        ] {
            assert_eq!(got_words(unexpected, source), words, "{unexpected}");
        }
    }

    #[test]
    fn name_lists_read_as_toml() {
        assert_eq!(
            reword(
                "unknown variant `loud`, expected one of `error`, `warn`, `info`",
                None
            ),
            "expected one of \"error\", \"warn\" or \"info\", got \"loud\""
        );
        assert_eq!(
            reword("unknown variant `2.0`, expected `1.0` or `1.1`", None),
            "expected \"1.0\" or \"1.1\", got \"2.0\""
        );
        assert_eq!(
            reword("unknown variant `psk`, expected `nosec`", None),
            "expected \"nosec\", got \"psk\""
        );
        assert_eq!(
            reword("wanted string or table", Some(" 3 ")),
            "expected a name in quotes, got 3"
        );
        assert_eq!(
            reword(
                "wanted exactly 1 element, more than 1 element",
                Some(&format!("{{ {} }}", "a = 1, ".repeat(10)))
            ),
            "expected a name in quotes, got { a = 1, a = 1, a = 1, a = 1, a = 1, a =…"
        );
    }

    #[test]
    fn syntax_errors_join_their_lines() {
        let text = "[log\n";
        let err = toml::from_str::<IgnoredAny>(text).unwrap_err();
        let e = ConfigError::syntax(Path::new("f.toml"), text, &err);
        assert_eq!(
            e.to_string(),
            "f.toml:1:5: TOML syntax error: invalid table header, expected `.` or `]`"
        );
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(column_of("ab\ncd", 3), 1);
        assert_eq!(column_of("ab\ncd", 4), 2);
        assert_eq!(column_of("ä = ", 3), 3, "ä is two bytes, one column");
    }
}
