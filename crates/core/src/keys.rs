//! Object key layout and validation for staged inputs and task results.
//!
//! Layout: `<tenant>/uploads/<upload>/<path>` (staged before a submit),
//! `<tenant>/inputs/<job>/<path>` and `<tenant>/results/<job>/<task-index>/<path>`. Every key
//! and prefix is built here and nowhere else. User-supplied paths are relative, use '/' as
//! separator and can never escape their prefix (see [`validate_relative_path`]).

use crate::Error;

/// Longest relative path accepted for an input or result file.
pub const MAX_PATH_LEN: usize = 1024;

/// Check a user-supplied relative object path such as `data/part-1.csv`.
///
/// Rejects empty paths, absolute paths, `.` and `..` segments, empty segments (`a//b`),
/// backslashes and control characters, so that a path can never leave its prefix.
pub fn validate_relative_path(path: &str) -> Result<(), Error> {
    let reason = if path.is_empty() {
        Some("it is empty")
    } else if path.len() > MAX_PATH_LEN {
        Some("it is longer than 1024 bytes")
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
            "invalid object path {path:?}: {reason}"
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
