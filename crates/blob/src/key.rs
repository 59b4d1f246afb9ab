//! Validation of the object keys and prefixes handed to a [`BlobStore`](crate::BlobStore).
//!
//! Keys are built by `spillway_core::keys` from validated parts, so these checks should never
//! fail in practice. They are defence in depth: a key that slips through with a `..` segment
//! would let `file://` write outside its folder.

use object_store::path::Path;
use spillway_core::keys::{MAX_KEY_LEN, MAX_SEGMENT_LEN, long_segment};
use spillway_core::names::preview;
use spillway_core::{Error, Result};

/// Check a full object key such as `acme/inputs/<job>/data/a.csv` and turn it into a path.
///
/// The rules are those of `spillway_core::keys::validate_relative_path`, with the whole key's
/// length limit (`MAX_KEY_LEN`) in place of the relative path's; every segment is within
/// `MAX_SEGMENT_LEN` bytes on every backend, so a name local disk could not hold is refused
/// as invalid (400), never met as a file system error (503).
pub(crate) fn key_path(key: &str) -> Result<Path> {
    check("key", key)?;
    to_path(key)
}

/// Check a prefix (a folder, without trailing '/'); the empty prefix means the whole store.
pub(crate) fn prefix_path(prefix: &str) -> Result<Option<Path>> {
    if prefix.is_empty() {
        return Ok(None);
    }
    check("prefix", prefix)?;
    to_path(prefix).map(Some)
}

fn check(what: &str, key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        Some("it is empty".to_string())
    } else if key.len() > MAX_KEY_LEN {
        Some(format!(
            "it is {} bytes, over the limit of {MAX_KEY_LEN}; use a shorter path",
            key.len()
        ))
    } else if let Some(segment) = long_segment(key) {
        Some(format!(
            "its segment {} is over the limit of {MAX_SEGMENT_LEN} bytes per file or folder name; use shorter names",
            preview(segment)
        ))
    } else if key.starts_with('/') {
        Some("it starts with '/'; object keys are relative to the store's root".to_string())
    } else if key.contains('\\') {
        Some("it contains a backslash; use '/' between folders".to_string())
    } else if key.chars().any(char::is_control) {
        Some("it contains a control character".to_string())
    } else if key.split('/').any(|s| s == ".." || s == ".") {
        Some("it contains a '.' or '..' segment".to_string())
    } else if key.split('/').any(str::is_empty) {
        Some("it contains an empty segment ('//' or a trailing '/')".to_string())
    } else if what == "key" && is_staging_name(key) {
        Some(
            "its name ends in '#' and digits, which local disk storage reserves for partial uploads; rename the file"
                .to_string(),
        )
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::invalid(format!(
            "invalid object {what} {}: {reason}",
            preview(key)
        ))),
        None => Ok(()),
    }
}

/// Whether the last segment looks like `name#123`, the shape of `object_store`'s staging
/// files on local disk: such objects could be written elsewhere but never listed on disk, so
/// they are refused on every backend alike.
fn is_staging_name(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.split_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

fn to_path(key: &str) -> Result<Path> {
    // `parse` keeps the key byte for byte (no percent-encoding), so the object's name in the
    // bucket is exactly the key; it repeats the segment checks above.
    Path::parse(key).map_err(|e| {
        Error::invalid(format!(
            "invalid object key {key:?}: not a valid object path"
        ))
        .with_source(e)
    })
}

/// The part of `location` below `prefix`, or `None` if it is not below it.
pub(crate) fn relative<'a>(location: &'a Path, prefix: Option<&Path>) -> Option<&'a str> {
    let full = location.as_ref();
    match prefix {
        None => Some(full),
        Some(prefix) => full
            .strip_prefix(prefix.as_ref())
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_core::ErrorKind;

    #[test]
    fn accepts_layout_keys() {
        for ok in [
            "acme/inputs/j1/a.txt",
            "acme/results/j1/0/out/part 1.csv",
            "x..y",
            "notes#2.txt",
            "a#1/b",
        ] {
            assert_eq!(
                key_path(ok).map(|p| p.to_string()).ok().as_deref(),
                Some(ok)
            );
        }
    }

    #[test]
    fn rejects_escapes_naming_the_key() {
        for bad in [
            "", "/abs", "../x", "a/../b", "a/./b", "a//b", "a/", "a\\b", "a\nb", "a/b#12",
        ] {
            let err = key_path(bad).err();
            assert_eq!(
                err.as_ref().map(|e| e.kind()),
                Some(ErrorKind::InvalidArgument),
                "{bad:?}"
            );
            let message = err.map(|e| e.message().to_owned()).unwrap_or_default();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
        }
    }

    #[test]
    fn long_segments_and_keys_are_invalid_on_every_backend() {
        let longest = format!("acme/inputs/j1/{}", "a".repeat(MAX_SEGMENT_LEN));
        assert!(key_path(&longest).is_ok());
        for bad in [
            format!("acme/inputs/j1/{}", "a".repeat(MAX_SEGMENT_LEN + 1)),
            format!("acme/{}/x", "é".repeat(118)),
            format!("acme/{}", "a/".repeat(MAX_KEY_LEN / 2)) + "z",
        ] {
            let err = key_path(&bad).err();
            assert_eq!(
                err.as_ref().map(|e| e.kind()),
                Some(ErrorKind::InvalidArgument),
                "{bad:?}"
            );
            let message = err.map(|e| e.message().to_owned()).unwrap_or_default();
            assert!(
                message.contains("234 bytes") || message.contains("1024"),
                "{message}"
            );
        }
        assert!(prefix_path(&"p".repeat(MAX_SEGMENT_LEN + 1)).is_err());
    }

    #[test]
    fn empty_prefix_is_the_whole_store_but_other_prefixes_are_checked() {
        assert!(matches!(prefix_path(""), Ok(None)));
        assert!(prefix_path("a/").is_err());
        assert!(prefix_path("..").is_err());
    }

    #[test]
    fn relative_strips_whole_segments_only() {
        let prefix = Path::parse("a/b").ok();
        let inside = Path::parse("a/b/c/d").unwrap_or_default();
        let sibling = Path::parse("a/bc/d").unwrap_or_default();
        assert_eq!(relative(&inside, prefix.as_ref()), Some("c/d"));
        assert_eq!(relative(&sibling, prefix.as_ref()), None);
        assert_eq!(relative(&inside, None), Some("a/b/c/d"));
    }
}
