//! CoRE link-format (RFC 6690, content-format 40): registration payloads and Discover.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    /// Attributes in order; `None` for a bare attribute.
    pub attrs: Vec<(String, Option<String>)>,
}

impl Link {
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            attrs: Vec::new(),
        }
    }

    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Self {
        self.attrs.push((k.to_string(), Some(v.into())));
        self
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Builds a link-format document.
#[derive(Debug, Default, Clone)]
pub struct LinkFormat {
    pub links: Vec<Link>,
}

impl LinkFormat {
    pub fn push(&mut self, l: Link) {
        self.links.push(l);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.links.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "<{}>", l.target);
            for (k, v) in &l.attrs {
                match v {
                    Some(v) => {
                        let _ = write!(s, ";{k}={v}");
                    }
                    None => {
                        let _ = write!(s, ";{k}");
                    }
                }
            }
        }
        s
    }
}

/// Parses link-format; quoted values keep their quotes stripped. Used by tests and
/// by the bootstrap-server Discover path.
pub fn parse(s: &str) -> Result<Vec<Link>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] != b'<' {
            return Err(format!("expected '<' at byte {i}"));
        }
        let end = s[i..].find('>').ok_or("unterminated '<'")? + i;
        let mut link = Link::new(&s[i + 1..end]);
        i = end + 1;
        while i < b.len() && b[i] == b';' {
            i += 1;
            let start = i;
            while i < b.len() && !matches!(b[i], b'=' | b';' | b',') {
                i += 1;
            }
            let key = s[start..i].to_string();
            if i < b.len() && b[i] == b'=' {
                i += 1;
                if i < b.len() && b[i] == b'"' {
                    let close = s[i + 1..].find('"').ok_or("unterminated quote")? + i + 1;
                    link.attrs.push((key, Some(s[i + 1..close].to_string())));
                    i = close + 1;
                } else {
                    let vs = i;
                    while i < b.len() && !matches!(b[i], b';' | b',') {
                        i += 1;
                    }
                    link.attrs.push((key, Some(s[vs..i].to_string())));
                }
            } else {
                link.attrs.push((key, None));
            }
        }
        out.push(link);
    }
    Ok(out)
}
