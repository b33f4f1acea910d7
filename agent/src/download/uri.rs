//! Package URIs: which ones are accepted, where a redirect's Location points, and
//! how a URI is shown in logs and errors.

use super::DownloadError;
use hyper::Uri;

/// Parses a Package URI: absolute, http or https, with a host.
pub(super) fn parse(uri: &str) -> Result<Uri, DownloadError> {
    let invalid = |reason: &str| DownloadError::InvalidUri {
        uri: uri.to_owned(),
        reason: reason.to_owned(),
    };
    let u: Uri = uri
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
    let Some(scheme) = u.scheme_str() else {
        return Err(invalid("not an absolute URI"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(DownloadError::UnsupportedScheme {
            uri: uri.to_owned(),
            scheme: scheme.to_owned(),
        });
    }
    if u.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(u)
}

pub(super) fn is_https(u: &Uri) -> bool {
    u.scheme_str() == Some("https")
}

/// The host to connect to and to check the certificate for: an IPv6 literal
/// without its brackets.
pub(super) fn host(u: &Uri) -> &str {
    let h = u.host().unwrap_or_default();
    h.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h)
}

pub(super) fn port(u: &Uri) -> u16 {
    u.port_u16().unwrap_or(if is_https(u) { 443 } else { 80 })
}

/// The Host header: the authority without user information.
pub(super) fn host_header(u: &Uri) -> String {
    let h = u.host().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_owned(),
    }
}

/// Resolves a Location header against the URI it came from (RFC 3986 5.2:
/// absolute, network-path, absolute-path and relative-path references).
pub(super) fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    let loc = location.split('#').next().unwrap_or_default();
    if let Ok(u) = loc.parse::<Uri>() {
        if u.scheme().is_some() {
            return Some(u);
        }
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let path = base.path();
    let s = if let Some(rest) = loc.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if loc.starts_with('/') {
        format!("{scheme}://{authority}{}", remove_dot_segments(loc))
    } else if loc.starts_with('?') {
        format!("{scheme}://{authority}{path}{loc}")
    } else if loc.is_empty() {
        return Some(base.clone());
    } else {
        let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
        format!(
            "{scheme}://{authority}{}",
            remove_dot_segments(&format!("{dir}{loc}"))
        )
    };
    s.parse().ok()
}

/// RFC 3986 5.2.4 on an absolute path (its query kept as it is).
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *s {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        // "/a/b/.." names the directory /a/, not the file /a.
        if last {
            out.push("");
        }
    }
    format!("/{}{query}", out.join("/"))
}

/// A URI as logs and errors show it: without user information or a query
/// string, which may hold credentials or a signed token.
pub(super) fn shown(u: &Uri) -> String {
    let query = if u.query().is_some() { "?..." } else { "" };
    format!(
        "{}://{}{}{query}",
        u.scheme_str().unwrap_or_default(),
        host_header(u),
        u.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_uris() {
        assert!(parse("https://repo.example/fw/1.2.bin").is_ok());
        assert!(parse("http://127.0.0.1:8080/fw").is_ok());
        assert!(parse("http://[::1]:8080/fw").is_ok());
        for (uri, code) in [
            ("", 7),
            ("fw.bin", 7),
            ("/fw.bin", 7),
            ("http://", 7),
            ("http://h.example/fw bin", 7),
            ("ftp://h.example/fw.bin", 9),
            ("coaps://h.example/fw", 9),
        ] {
            let e = parse(uri).unwrap_err();
            assert_eq!(e.update_result(), code, "{uri:?}: {e}");
        }
    }

    #[test]
    fn hosts_and_ports() {
        let u = parse("http://[::1]/fw").unwrap();
        assert_eq!(
            (host(&u), port(&u), host_header(&u)),
            ("::1", 80, "[::1]".into())
        );
        let u = parse("https://me:pw@h.example:8443/fw").unwrap();
        assert_eq!(
            (host(&u), port(&u), host_header(&u)),
            ("h.example", 8443, "h.example:8443".into())
        );
    }

    #[test]
    fn locations() {
        let base = parse("http://h.example:81/a/b/fw.bin?x=1").unwrap();
        let r = |l: &str| resolve(&base, l).map(|u| u.to_string());
        for (loc, want) in [
            ("https://o.example/fw", "https://o.example/fw"),
            ("//cdn.example/p/fw", "http://cdn.example/p/fw"),
            ("/fw2.bin", "http://h.example:81/fw2.bin"),
            ("/c/./d/../fw?sig=1", "http://h.example:81/c/fw?sig=1"),
            ("fw3.bin", "http://h.example:81/a/b/fw3.bin"),
            ("../fw4.bin#frag", "http://h.example:81/a/fw4.bin"),
            ("../../../../fw5", "http://h.example:81/fw5"),
            ("..", "http://h.example:81/a/"),
            ("?y=2", "http://h.example:81/a/b/fw.bin?y=2"),
        ] {
            assert_eq!(r(loc).as_deref(), Some(want), "{loc:?}");
        }
        assert_eq!(r("bad location"), None);
    }

    #[test]
    fn shown_hides_secrets() {
        let u = parse("https://me:secret@h.example/fw.bin?sig=abc").unwrap();
        assert_eq!(shown(&u), "https://h.example/fw.bin?...");
        assert_eq!(shown(&parse("http://h:81/").unwrap()), "http://h:81/");
    }
}
