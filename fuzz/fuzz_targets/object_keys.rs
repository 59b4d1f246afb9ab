//! Object keys and the relative paths users give for inputs and results. Asserts that a path
//! accepted by `spillway_core::keys` has no `..`, `.` or empty segment, no leading `/`, no
//! backslash and no control character; that the keys built from it stay under their prefix and
//! pass the blob store's own checks unchanged (or are refused by them with an error, never a
//! panic); and that a key the blob store accepts, placed under a local root the way `file://`
//! storage does, stays under that root.

#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use object_store::local::LocalFileSystem;
use spillway_core::keys;

/// The folder a `file://` store would write under; nothing is written.
static ROOT: LazyLock<(PathBuf, LocalFileSystem)> = LazyLock::new(|| {
    let root = std::env::temp_dir()
        .canonicalize()
        .expect("the temporary folder exists");
    let fs = LocalFileSystem::new_with_prefix(&root).expect("a local store over it");
    (root, fs)
});

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if keys::validate_relative_path(path).is_ok() {
        assert_relative(path);
        for (prefix, key) in [
            (
                keys::inputs_prefix("acme", "j1"),
                keys::input_key("acme", "j1", path),
            ),
            (
                keys::results_prefix("acme", "j1", 3),
                keys::result_key("acme", "j1", 3, path),
            ),
            (
                keys::uploads_prefix("acme", "u1"),
                keys::upload_key("acme", "u1", path),
            ),
        ] {
            assert_eq!(key.strip_prefix(&format!("{prefix}/")), Some(path));
            // The blob store may refuse a name it reserves (`name#123`), but what it accepts
            // it stores under exactly this key.
            if let Ok(stored) = spillway_blob::checked_key(&key) {
                assert_eq!(stored.as_ref(), key);
                assert_under_root(&stored);
            }
        }
    }
    if let Ok(stored) = spillway_blob::checked_key(path) {
        assert_relative(path);
        assert_eq!(stored.as_ref(), path, "the key is stored byte for byte");
        assert_under_root(&stored);
    }
    if let Ok(Some(prefix)) = spillway_blob::checked_prefix(path) {
        assert_relative(path);
        assert_under_root(&prefix);
    }
});

/// The rules every accepted relative path or key keeps.
fn assert_relative(path: &str) {
    assert!(!path.is_empty());
    assert!(!path.starts_with('/'), "{path:?}");
    assert!(!path.contains(['\\', '\0']), "{path:?}");
    assert!(!path.chars().any(char::is_control), "{path:?}");
    for segment in path.split('/') {
        assert!(!matches!(segment, "" | "." | ".."), "{path:?}");
    }
}

/// Where a local-disk store puts `location`: below the root, with no way back up.
fn assert_under_root(location: &object_store::path::Path) {
    let (root, fs) = &*ROOT;
    let Ok(file) = fs.path_to_filesystem(location) else {
        return;
    };
    assert!(file.starts_with(root), "{location} -> {}", file.display());
    let rest = file.strip_prefix(root).unwrap_or(Path::new(""));
    assert!(
        !rest.as_os_str().is_empty(),
        "{location} is the root itself"
    );
    for component in rest.components() {
        assert!(
            matches!(component, Component::Normal(_)),
            "{location} -> {}",
            file.display()
        );
    }
}
