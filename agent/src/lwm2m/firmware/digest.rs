//! The SHA-256 a server can give with a package. PkgName and PkgVersion are
//! read-only for servers, so what a server can really send is the Package URI
//! itself and files beside the package:
//!
//! - `sha256=<64 hex digits>` in the URI's fragment (`…/fw.bin#sha256=…`, never
//!   sent to the HTTP or CoAP server) or among its query parameters;
//! - a manifest at the package's URI + `.sha256` in the format of coreutils'
//!   `sha256sum` (`<hex>  <name>`, `<hex> *<name>`) or its `--tag` form
//!   (`SHA256 (<name>) = <hex>`), fetched when the config asks for it.
//!
//! Pure: the driver fetches, these functions read.

use super::verify::parse_sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("sha256= in the Package URI is not 64 hex digits")]
    Malformed,
    #[error("the Package URI gives two different sha256= values")]
    Conflict,
    #[error("the SHA-256 manifest has no digest")]
    EmptyManifest,
    #[error("the SHA-256 manifest has a line that is not `<64 hex>  <name>`: {0:?}")]
    BadManifestLine(String),
    #[error("the SHA-256 manifest lists several files and none is {0:?}")]
    NotInManifest(String),
    #[error("the SHA-256 manifest gives {manifest}, the Package URI {uri}")]
    Disagree { uri: String, manifest: String },
}

/// The URI without its fragment: what is fetched.
pub fn without_fragment(uri: &str) -> &str {
    uri.split_once('#').map_or(uri, |(u, _)| u)
}

/// The `sha256=` of the URI's fragment and query (`&`-separated parameters;
/// the name is case-sensitive, so a storage service's own
/// `X-Amz-Content-Sha256` is not taken for it).
pub fn from_uri(uri: &str) -> Result<Option<[u8; 32]>, DigestError> {
    let (rest, fragment) = match uri.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (uri, None),
    };
    let query = rest.split_once('?').map(|(_, q)| q);
    let mut found: Option<[u8; 32]> = None;
    for part in [query, fragment].into_iter().flatten() {
        for param in part.split('&') {
            let Some(v) = param.strip_prefix("sha256=") else {
                continue;
            };
            if v.len() != 64 {
                return Err(DigestError::Malformed);
            }
            let d = parse_sha256(v).map_err(|_| DigestError::Malformed)?;
            match found {
                Some(f) if f != d => return Err(DigestError::Conflict),
                _ => found = Some(d),
            }
        }
    }
    Ok(found)
}

/// The URI of a file beside the package: `ext` after the path, the query
/// kept (a signed URL's token may be needed for it too), the fragment
/// dropped.
pub fn companion(uri: &str, ext: &str) -> String {
    let u = without_fragment(uri);
    match u.split_once('?') {
        Some((path, query)) => format!("{path}{ext}?{query}"),
        None => format!("{u}{ext}"),
    }
}

/// The last segment of the URI's path, as a manifest would name the file.
pub fn file_name(uri: &str) -> &str {
    let u = without_fragment(uri);
    let path = u.split_once('?').map_or(u, |(p, _)| p);
    path.rsplit('/').next().unwrap_or_default()
}

fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The digest a manifest gives for `name`: its only entry (whatever name it
/// has: the package URI may not end in the file's name), or the entry whose
/// file name is `name`.
pub fn from_manifest(text: &str, name: &str) -> Result<[u8; 32], DigestError> {
    let mut entries: Vec<(Option<&str>, [u8; 32])> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || DigestError::BadManifestLine(line.chars().take(80).collect());
        let entry = if let Some(tagged) = line.strip_prefix("SHA256 (") {
            let (file, hex) = tagged.rsplit_once(") = ").ok_or_else(bad)?;
            (Some(file), hex)
        } else {
            // A leading backslash marks an escaped name (coreutils); the
            // names we compare have nothing to escape.
            let line = line.strip_prefix('\\').unwrap_or(line);
            match line.split_once(char::is_whitespace) {
                None => (None, line),
                Some((hex, file)) => {
                    let file = file.trim_start();
                    let file = file.strip_prefix('*').unwrap_or(file);
                    (Some(file), hex)
                }
            }
        };
        if entry.1.len() != 64 {
            return Err(bad());
        }
        let d = parse_sha256(entry.1).map_err(|_| bad())?;
        entries.push((entry.0, d));
    }
    match entries.as_slice() {
        [] => Err(DigestError::EmptyManifest),
        [(_, d)] => Ok(*d),
        many => many
            .iter()
            .find(|(f, _)| f.is_some_and(|f| base_name(f) == name))
            .map(|(_, d)| *d)
            .ok_or_else(|| DigestError::NotInManifest(name.to_string())),
    }
}

/// The digest a package must have: the URI's and the manifest's, which must
/// agree when both are given.
pub fn expected(
    uri: Option<[u8; 32]>,
    manifest: Option<[u8; 32]>,
) -> Result<Option<[u8; 32]>, DigestError> {
    match (uri, manifest) {
        (Some(u), Some(m)) if u != m => Err(DigestError::Disagree {
            uri: hex::encode(u),
            manifest: hex::encode(m),
        }),
        (u, m) => Ok(u.or(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0542235c83e32274635ce957a37f15c884a9c25a269aad4838f4b06cd70ce8bd";
    const B: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn d(h: &str) -> [u8; 32] {
        parse_sha256(h).unwrap()
    }

    #[test]
    fn digest_from_fragment_or_query() {
        assert_eq!(from_uri("http://h/fw.bin"), Ok(None));
        assert_eq!(
            from_uri(&format!("http://h/fw.bin#sha256={A}")),
            Ok(Some(d(A)))
        );
        assert_eq!(
            from_uri(&format!("coap://h/fw?x=1&sha256={}", A.to_uppercase())),
            Ok(Some(d(A)))
        );
        assert_eq!(
            from_uri(&format!("https://h/fw?sha256={A}#v=2&sha256={A}")),
            Ok(Some(d(A)))
        );
        assert_eq!(
            from_uri(&format!("https://h/fw?sha256={A}#sha256={B}")),
            Err(DigestError::Conflict)
        );
        for bad in [
            "http://h/fw#sha256=abc".to_string(),
            format!("http://h/fw#sha256={A}0"),
            format!("http://h/fw?sha256={}", "g".repeat(64)),
            "http://h/fw?sha256=".to_string(),
        ] {
            assert_eq!(from_uri(&bad), Err(DigestError::Malformed), "{bad}");
        }
        // Not ours: another parameter, another case.
        assert_eq!(
            from_uri("https://s3/fw?X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&xsha256=1"),
            Ok(None)
        );
    }

    #[test]
    fn companions_keep_the_query_and_drop_the_fragment() {
        assert_eq!(
            companion("http://h/a/fw.bin", ".sha256"),
            "http://h/a/fw.bin.sha256"
        );
        assert_eq!(
            companion("https://h/fw.bin?token=x#sha256=1", ".minisig"),
            "https://h/fw.bin.minisig?token=x"
        );
        assert_eq!(without_fragment("coap://h/fw#x"), "coap://h/fw");
        assert_eq!(file_name("https://h/a/fw.bin?t=1#f"), "fw.bin");
        assert_eq!(file_name("coap://h"), "h");
    }

    #[test]
    fn manifests_in_the_formats_of_sha256sum() {
        // One entry: taken whatever its name.
        assert_eq!(
            from_manifest(&format!("{A}  other.bin\n"), "fw.bin"),
            Ok(d(A))
        );
        assert_eq!(from_manifest(&format!("{A}\n"), "fw.bin"), Ok(d(A)));
        // Binary mode, --tag, comments, several entries.
        let text = format!("# release 2\n{B} *lib.so\n{A} *build/fw.bin\n");
        assert_eq!(from_manifest(&text, "fw.bin"), Ok(d(A)));
        let tagged = format!("SHA256 (lib.so) = {B}\nSHA256 (fw.bin) = {A}\n");
        assert_eq!(from_manifest(&tagged, "fw.bin"), Ok(d(A)));
        assert_eq!(from_manifest(&tagged, "lib.so"), Ok(d(B)));
        assert_eq!(
            from_manifest(&tagged, "x.bin"),
            Err(DigestError::NotInManifest("x.bin".into()))
        );
        assert_eq!(
            from_manifest("\n# none\n", "fw.bin"),
            Err(DigestError::EmptyManifest)
        );
        for bad in ["<html>404</html>", "abc  fw.bin", "SHA256 fw.bin = 1"] {
            assert!(
                matches!(
                    from_manifest(bad, "fw.bin"),
                    Err(DigestError::BadManifestLine(_))
                ),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        // Both read what a server sends: anything at all, without a panic,
        // and a digest only from 64 hex digits.
        #[test]
        fn any_manifest_or_uri_is_read_without_panic(text in "\\PC{0,400}", name in "[a-z.]{0,12}") {
            if let Ok(d) = from_manifest(&text, &name) {
                proptest::prop_assert!(text.to_ascii_lowercase().contains(&hex::encode(d)));
            }
            if let Ok(Some(d)) = from_uri(&text) {
                proptest::prop_assert!(text.to_ascii_lowercase().contains(&hex::encode(d)));
            }
            let _ = companion(&text, ".sha256");
            let _ = file_name(&text);
        }
    }

    #[test]
    fn uri_and_manifest_must_agree() {
        assert_eq!(expected(None, None), Ok(None));
        assert_eq!(expected(Some(d(A)), None), Ok(Some(d(A))));
        assert_eq!(expected(None, Some(d(B))), Ok(Some(d(B))));
        assert_eq!(expected(Some(d(A)), Some(d(A))), Ok(Some(d(A))));
        assert!(matches!(
            expected(Some(d(A)), Some(d(B))),
            Err(DigestError::Disagree { .. })
        ));
    }
}
