//! Object key layout and validation for staged inputs and task results.
//!
//! Layout: `<tenant>/uploads/<upload>/<path>` (staged before a submit),
//! `<tenant>/inputs/<job>/<path>`, `<tenant>/results/<job>/<task-index>/<path>` and the whole
//! log of each attempt, `<tenant>/logs/<job>/<task-index>/<attempt>.log`. Every key
//! and prefix is built here and nowhere else. User-supplied paths are relative, use '/' as
//! separator and can never escape their prefix (see [`validate_relative_path`]).

use crate::Error;

/// Longest relative path accepted for an input or result file, in bytes: what is left of
/// [`MAX_KEY_LEN`] under the longest prefix the layout builds
/// (`<tenant>/results/<job>/<index>/`, 120 bytes at most).
pub const MAX_PATH_LEN: usize = 896;
/// Longest segment (file or folder name) of a path or key, in bytes: the 255 bytes local file
/// systems accept in one name, less the 21 that `file://` storage appends to a file's name
/// while it is written (`#` and a counter).
pub const MAX_SEGMENT_LEN: usize = 234;
/// Longest whole object key, in bytes: a relative path under the longest prefix the layout
/// builds (tenant, kind, job id, task index), within S3's and GCS's 1024-byte limit.
pub const MAX_KEY_LEN: usize = 1024;

/// The first segment of `path` over [`MAX_SEGMENT_LEN`] bytes, if any.
pub fn long_segment(path: &str) -> Option<&str> {
    path.split('/').find(|s| s.len() > MAX_SEGMENT_LEN)
}

/// Check a user-supplied relative object path such as `data/part-1.csv`.
///
/// Rejects empty paths, absolute paths, `.` and `..` segments, empty segments (`a//b`),
/// backslashes and control characters, so that a path can never leave its prefix.
pub fn validate_relative_path(path: &str) -> Result<(), Error> {
    let reason = if path.is_empty() {
        Some("it is empty")
    } else if path.len() > MAX_PATH_LEN {
        return Err(Error::invalid(format!(
            "invalid object path {}: it is {} bytes, over the limit of {MAX_PATH_LEN}; use a shorter path",
            crate::names::preview(path),
            path.len()
        )));
    } else if let Some(segment) = long_segment(path) {
        return Err(Error::invalid(format!(
            "invalid object path {}: its segment {} is over the limit of {MAX_SEGMENT_LEN} bytes per file or folder name; use shorter names",
            crate::names::preview(path),
            crate::names::preview(segment),
        )));
    } else if path.starts_with('/') {
        Some("it is absolute; give a path relative to the job's folder")
    } else if path.contains('\\') {
        Some("it contains a backslash; use '/' between folders")
    } else if path.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if path.split('/').any(|s| s == ".." || s == ".") {
        Some("it contains a '.' or '..' segment")
    } else if path.split('/').any(str::is_empty) {
        Some("it contains an empty segment ('//' or a trailing '/')")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::invalid(format!(
            "invalid object path {}: {reason}",
            crate::names::preview(path)
        ))),
        None => Ok(()),
    }
}

/// The prefix under which a job's inputs live.
pub fn inputs_prefix(tenant: &str, job: &str) -> String {
    format!("{tenant}/inputs/{job}")
}

/// The key of one input file; `path` has passed [`validate_relative_path`].
pub fn input_key(tenant: &str, job: &str, path: &str) -> String {
    join(&inputs_prefix(tenant, job), path)
}

/// The prefix under which every task's results of a job live, as `<task-index>/<path>`.
pub fn job_results_prefix(tenant: &str, job: &str) -> String {
    format!("{tenant}/results/{job}")
}

/// The prefix under which one task's results live.
pub fn results_prefix(tenant: &str, job: &str, index: u32) -> String {
    format!("{}/{index}", job_results_prefix(tenant, job))
}

/// The key of one result file of task `index`; `path` has passed [`validate_relative_path`].
pub fn result_key(tenant: &str, job: &str, index: u32, path: &str) -> String {
    join(&results_prefix(tenant, job, index), path)
}

/// The prefix under which a pending upload's files live before they are attached to a job.
pub fn uploads_prefix(tenant: &str, upload: &str) -> String {
    format!("{tenant}/uploads/{upload}")
}

/// The key of one file of a pending upload; `path` has passed [`validate_relative_path`].
pub fn upload_key(tenant: &str, upload: &str, path: &str) -> String {
    join(&uploads_prefix(tenant, upload), path)
}

/// The prefix under which the whole logs of every attempt of a job's tasks live, as
/// `<task-index>/<attempt>.log`.
pub fn logs_prefix(tenant: &str, job: &str) -> String {
    format!("{tenant}/logs/{job}")
}

/// The key of the whole log of attempt `attempt` (from 1) of task `index` of a job.
pub fn log_key(tenant: &str, job: &str, index: u32, attempt: u32) -> String {
    format!("{}/{index}/{attempt}.log", logs_prefix(tenant, job))
}

fn join(prefix: &str, path: &str) -> String {
    format!("{prefix}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_relative_paths() {
        for ok in ["a.txt", "dir/sub/file.bin", "with space.txt", "x..y"] {
            assert!(validate_relative_path(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_every_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
        ] {
            assert!(validate_relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segments_over_the_limit_are_refused_naming_it() {
        assert!(validate_relative_path(&format!("d/{}", "a".repeat(MAX_SEGMENT_LEN))).is_ok());
        // 118 two-byte characters: 236 bytes in 118 characters.
        for long in [
            "a".repeat(MAX_SEGMENT_LEN + 1),
            "é".repeat(118),
            "a".repeat(300),
        ] {
            let err = validate_relative_path(&format!("d/{long}/x")).expect_err("long segment");
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
            assert!(err.message().contains("234 bytes"), "{err}");
        }
        let err = validate_relative_path(&"a/".repeat(600)).expect_err("long path");
        assert!(err.message().contains("896"), "{err}");
    }

    #[test]
    fn the_longest_path_under_the_longest_prefix_fits_the_key_limit() {
        let tenant = "t".repeat(crate::names::MAX_NAME_LEN);
        let job = "0190a5b6-7c8d-7e9f-8a0b-1c2d3e4f5a6b";
        let key = result_key(&tenant, job, u32::MAX, &"p".repeat(MAX_PATH_LEN));
        assert!(key.len() <= MAX_KEY_LEN, "{}", key.len());
    }

    #[test]
    fn layout_matches_the_documented_prefixes() {
        assert_eq!(inputs_prefix("acme", "j1"), "acme/inputs/j1");
        assert_eq!(results_prefix("acme", "j1", 7), "acme/results/j1/7");
        assert_eq!(job_results_prefix("acme", "j1"), "acme/results/j1");
        assert_eq!(uploads_prefix("acme", "u1"), "acme/uploads/u1");
        assert_eq!(input_key("acme", "j1", "d/a.csv"), "acme/inputs/j1/d/a.csv");
        assert_eq!(
            result_key("acme", "j1", 7, "out/r.txt"),
            "acme/results/j1/7/out/r.txt"
        );
        assert_eq!(upload_key("acme", "u1", "a.txt"), "acme/uploads/u1/a.txt");
        // A task's results sit inside the job's, so removing the job's prefix removes them.
        assert!(results_prefix("acme", "j1", 7).starts_with(&job_results_prefix("acme", "j1")));
    }
}
