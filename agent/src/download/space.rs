//! Whether the package fits: the configured size limit, and the free space of the
//! download directory's file system less a reserve for the rest of the gateway
//! (its store, its logs), which a firmware image must not starve.

use super::DownloadError;
use std::path::Path;

/// Bytes an unprivileged writer may still use on the file system of `dir`.
pub(super) fn available(dir: &Path) -> Result<u64, DownloadError> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| DownloadError::File {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    #[allow(clippy::useless_conversion)] // the widths differ between targets
    let (blocks, size) = (
        u64::from(st.blocks_available()),
        u64::from(st.fragment_size()),
    );
    Ok(blocks.saturating_mul(size))
}

/// Checks that `remaining` more bytes fit in `dir` with `reserve` left free.
pub(super) fn check(dir: &Path, remaining: u64, reserve: u64) -> Result<(), DownloadError> {
    let usable = available(dir)?.saturating_sub(reserve);
    if remaining > usable {
        return Err(DownloadError::NoSpace {
            dir: dir.to_owned(),
            needed: remaining,
            available: usable,
        });
    }
    Ok(())
}

/// Checks a package's total size against the configured limit.
pub(super) fn check_limit(size: u64, limit: Option<u64>) -> Result<(), DownloadError> {
    match limit {
        Some(limit) if size > limit => Err(DownloadError::TooLarge { size, limit }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_and_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let free = available(dir.path()).unwrap();
        assert!(free > 0);
        check(dir.path(), 1, 0).unwrap();
        // Not `free` itself: others write to this file system meanwhile.
        let e = check(dir.path(), 1, u64::MAX / 2).unwrap_err();
        assert!(matches!(e, DownloadError::NoSpace { needed: 1, .. }), "{e}");
        assert_eq!(e.update_result(), 2);
        assert!(available(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn limit() {
        check_limit(10, None).unwrap();
        check_limit(10, Some(10)).unwrap();
        let e = check_limit(11, Some(10)).unwrap_err();
        assert!(matches!(
            e,
            DownloadError::TooLarge {
                size: 11,
                limit: 10
            }
        ));
    }
}
