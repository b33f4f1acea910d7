//! LwM2M paths: an optional prefix (an end device behind the gateway) followed by
//! object / instance / resource / resource-instance ids.

use std::fmt;

/// Object, instance and resource ids are 16-bit; 65535 is reserved (spec 6.1).
pub const MAX_ID: u16 = 65534;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Path {
    pub prefix: Option<String>,
    ids: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path has more than 4 numeric segments")]
    TooDeep,
    #[error("path segment {0:?} is not an id from 0 to 65534")]
    BadId(String),
    #[error("path segment {0:?} is not a valid prefix")]
    BadPrefix(String),
    #[error("empty path segment")]
    Empty,
}

impl Path {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn new(ids: &[u16]) -> Self {
        debug_assert!(ids.len() <= 4);
        Self {
            prefix: None,
            ids: ids.to_vec(),
        }
    }

    pub fn with_prefix(prefix: Option<&str>, ids: &[u16]) -> Self {
        Self {
            prefix: prefix.map(str::to_string),
            ids: ids.to_vec(),
        }
    }

    /// Parses URI-Path segments as CoAP delivers them. A first segment that is not
    /// a number is the prefix of an end device (Gateway /25 addressing).
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<Self, PathError> {
        let mut segs = segments.iter().map(AsRef::as_ref).peekable();
        // A trailing empty segment ("/3/0/") is tolerated; others are not.
        let mut prefix = None;
        if let Some(first) = segs.peek() {
            if !first.is_empty() && !first.bytes().all(|b| b.is_ascii_digit()) {
                if !first
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    return Err(PathError::BadPrefix(first.to_string()));
                }
                prefix = Some(first.to_string());
                segs.next();
            }
        }
        let rest: Vec<&str> = segs.collect();
        let n = rest.len();
        let mut ids = Vec::with_capacity(n);
        for (i, s) in rest.into_iter().enumerate() {
            if s.is_empty() {
                if i + 1 == n && i > 0 {
                    break;
                }
                if n == 1 {
                    break; // "/" alone is the root
                }
                return Err(PathError::Empty);
            }
            ids.push(parse_id(s)?);
        }
        if ids.len() > 4 {
            return Err(PathError::TooDeep);
        }
        Ok(Self { prefix, ids })
    }

    /// Parses "/3/0/1" or "/dev1/3303/0".
    pub fn parse(s: &str) -> Result<Self, PathError> {
        let s = s.strip_prefix('/').unwrap_or(s);
        if s.is_empty() {
            return Ok(Self::root());
        }
        let segs: Vec<&str> = s.split('/').collect();
        Self::from_segments(&segs)
    }

    pub fn ids(&self) -> &[u16] {
        &self.ids
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    pub fn object(&self) -> Option<u16> {
        self.ids.first().copied()
    }
    pub fn instance(&self) -> Option<u16> {
        self.ids.get(1).copied()
    }
    pub fn resource(&self) -> Option<u16> {
        self.ids.get(2).copied()
    }
    pub fn resource_instance(&self) -> Option<u16> {
        self.ids.get(3).copied()
    }

    pub fn child(&self, id: u16) -> Self {
        let mut p = self.clone();
        p.ids.push(id);
        p
    }

    pub fn parent(&self) -> Self {
        let mut p = self.clone();
        p.ids.pop();
        p
    }

    /// True if `other` is this path or below it (same prefix).
    pub fn contains(&self, other: &Path) -> bool {
        self.prefix == other.prefix && other.ids.starts_with(&self.ids)
    }

    /// URI-Path segments for a CoAP request.
    pub fn segments(&self) -> Vec<String> {
        let mut v: Vec<String> = self.prefix.iter().cloned().collect();
        v.extend(self.ids.iter().map(u16::to_string));
        v
    }
}

fn parse_id(s: &str) -> Result<u16, PathError> {
    if s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PathError::BadId(s.to_string()));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= u32::from(MAX_ID) => Ok(n as u16),
        _ => Err(PathError::BadId(s.to_string())),
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.prefix {
            write!(f, "/{p}")?;
        }
        if self.ids.is_empty() && self.prefix.is_none() {
            return f.write_str("/");
        }
        for id in &self.ids {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plain_and_prefixed() {
        let p = Path::parse("/3/0/1").unwrap();
        assert_eq!(p.ids(), &[3, 0, 1]);
        assert_eq!(p.prefix, None);
        let p = Path::parse("/dev1/3303/0/5700").unwrap();
        assert_eq!(p.prefix.as_deref(), Some("dev1"));
        assert_eq!(p.ids(), &[3303, 0, 5700]);
        assert_eq!(p.to_string(), "/dev1/3303/0/5700");
        assert_eq!(Path::parse("/").unwrap(), Path::root());
        assert_eq!(Path::root().to_string(), "/");
        assert_eq!(Path::parse("/3/0/").unwrap().ids(), &[3, 0]);
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "/3/x",
            "/3/65535",
            "/3/0/1/2/3",
            "/3//1",
            "/3/-1",
            "/a b/3",
            "/3/99999999",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn containment() {
        let o = Path::new(&[3]);
        assert!(o.contains(&Path::new(&[3, 0, 1])));
        assert!(!o.contains(&Path::new(&[4, 0])));
        assert!(Path::root().contains(&Path::new(&[4])));
        assert!(!Path::root().contains(&Path::parse("/dev/4").unwrap()));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(ids in proptest::collection::vec(0u16..=MAX_ID, 0..=4),
                                    prefix in proptest::option::of("[a-z][a-z0-9_-]{0,8}")) {
            let p = Path::with_prefix(prefix.as_deref(), &ids);
            prop_assert_eq!(Path::parse(&p.to_string()).unwrap(), p.clone());
            prop_assert_eq!(Path::from_segments(&p.segments()).unwrap(), p);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Path::parse(&s);
        }
    }
}
