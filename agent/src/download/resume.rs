//! What a download needs to continue where it stopped, after a lost link or a
//! restart of the agent: the caller keeps a [`Resume`] (in its store) and hands it
//! back; the validator makes sure the bytes already on disk belong to the same
//! version of the resource.

use hyper::header::{HeaderMap, CONTENT_RANGE, ETAG, LAST_MODIFIED};
use serde::{Deserialize, Serialize};

/// The state of one package download, to persist between attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The Package URI as the server wrote it (not a redirect's target, which may
    /// be a short-lived signed URL).
    pub url: String,
    /// The resource's ETag when the bytes on disk were fetched.
    pub etag: Option<String>,
    /// Its Last-Modified, the fallback validator.
    pub last_modified: Option<String>,
    /// Bytes of the resource written to the partial file.
    pub bytes: u64,
}

impl Resume {
    /// A download of `url` from its first byte.
    pub fn new(url: impl Into<String>) -> Self {
        Resume {
            url: url.into(),
            etag: None,
            last_modified: None,
            bytes: 0,
        }
    }

    /// The If-Range value, if the bytes on disk can be continued at all. RFC 9110
    /// 13.1.5 allows only a strong validator there: a weak ETag does not promise
    /// byte-identical content. Without a validator a range request could splice
    /// two versions of the image, so the download starts over instead.
    pub(super) fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(e) if !e.starts_with("W/") => Some(e),
            _ => self.last_modified.as_deref(),
        }
    }

    /// Starts over with the validators of a new full response.
    pub(super) fn restart(&mut self, headers: &HeaderMap) {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(String::from)
        };
        self.etag = text(ETAG);
        self.last_modified = text(LAST_MODIFIED);
        self.bytes = 0;
    }
}

/// A Content-Range header of a 206 or 416 response (RFC 9110 14.4).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ContentRange {
    /// `bytes first-last/complete` (complete is None for `*`).
    Bytes {
        first: u64,
        last: u64,
        complete: Option<u64>,
    },
    /// `bytes */complete`: the range asked for is not in the resource.
    Unsatisfied { complete: u64 },
}

impl ContentRange {
    pub(super) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        Self::parse(headers.get(CONTENT_RANGE)?.to_str().ok()?)
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        let rest = s.trim().strip_prefix("bytes ")?.trim_start();
        let (range, complete) = rest.split_once('/')?;
        if range == "*" {
            return Some(Self::Unsatisfied {
                complete: complete.parse().ok()?,
            });
        }
        let (first, last) = range.split_once('-')?;
        let (first, last) = (first.parse().ok()?, last.parse().ok()?);
        let complete = match complete {
            "*" => None,
            n => Some(n.parse().ok()?),
        };
        if last < first || complete.is_some_and(|c| last >= c) {
            return None;
        }
        Some(Self::Bytes {
            first,
            last,
            complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_range_prefers_a_strong_etag() {
        let mut r = Resume::new("http://h/fw");
        assert_eq!(r.if_range(), None);
        r.last_modified = Some("Tue, 01 Dec 2026 10:00:00 GMT".into());
        assert_eq!(r.if_range(), r.last_modified.as_deref());
        r.etag = Some("W/\"weak\"".into());
        assert_eq!(r.if_range(), r.last_modified.as_deref());
        r.etag = Some("\"64-1f\"".into());
        assert_eq!(r.if_range(), Some("\"64-1f\""));
    }

    #[test]
    fn content_range() {
        use ContentRange::*;
        let p = ContentRange::parse;
        assert_eq!(
            p("bytes 100-199/200"),
            Some(Bytes {
                first: 100,
                last: 199,
                complete: Some(200)
            })
        );
        assert_eq!(
            p("bytes 0-9/*"),
            Some(Bytes {
                first: 0,
                last: 9,
                complete: None
            })
        );
        assert_eq!(p("bytes */200"), Some(Unsatisfied { complete: 200 }));
        for bad in [
            "",
            "bytes",
            "items 0-1/2",
            "bytes 5-1/9",
            "bytes 0-9/9",
            "bytes a-b/c",
            "bytes */*",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let mut r = Resume::new("https://h/fw.bin");
        r.etag = Some("\"1\"".into());
        r.bytes = 42;
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Resume>(&s).unwrap(), r);
    }
}
