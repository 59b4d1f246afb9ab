//! Moving files between the server and a task's scratch folder: inputs down, results up.

use std::path::{Path, PathBuf};

use spillway_client::{Client, open_file_body, stream_to_file};
use spillway_core::api::ObjectInfo;
use spillway_core::keys::validate_relative_path;
use spillway_core::{Error, ErrorKind, Result, TaskId};

use crate::backoff;

/// Tries per file while the server is unreachable.
const TRIES_PER_FILE: u32 = 5;

/// Download every input of `job_id` into `dir`, keeping relative paths. Every path the
/// server names is validated before anything is written, so none can leave `dir`.
pub async fn download_inputs(client: &Client, job_id: &str, dir: &Path) -> Result<usize> {
    let objects = client.job_input_list(job_id).await?;
    for object in &objects {
        validate_relative_path(&object.path)?;
        let dest = dir.join(&object.path);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                Error::internal(format!("could not create {}", parent.display())).with_source(e)
            })?;
        }
        let mut backoff = backoff::retries(std::time::Duration::from_secs(2));
        let mut tries = 0;
        loop {
            tries += 1;
            let attempt = async {
                let stream = client.job_input_get(job_id, &object.path).await?;
                stream_to_file(stream, &dest).await
            };
            match attempt.await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && tries < TRIES_PER_FILE => {
                    tracing::warn!(job_id, path = %object.path, error = %e, "input download failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(objects.len())
}

/// Upload every regular file under `dir` as a result of the task, under its lease. A
/// conflict (the lease is gone) is returned at once; passing outages are retried.
pub async fn upload_results(
    client: &Client,
    task_id: TaskId,
    lease_token: &str,
    dir: &Path,
) -> Result<Vec<ObjectInfo>> {
    let root = dir.to_path_buf();
    let listed = root.clone();
    let files = tokio::task::spawn_blocking(move || collect_files(&listed))
        .await
        .map_err(|e| Error::internal("listing result files panicked").with_source(e))??;
    let mut uploaded = Vec::with_capacity(files.len());
    for (path, abs) in files {
        let mut backoff = backoff::retries(std::time::Duration::from_secs(2));
        let mut tries = 0;
        let info = loop {
            tries += 1;
            let attempt = async {
                let file = open_result(&root, &path)?;
                let (body, size) = open_file_body(tokio::fs::File::from_std(file), &abs).await?;
                client
                    .task_result_put(task_id, lease_token, &path, body, Some(size))
                    .await
            };
            match attempt.await {
                Ok(info) => break info,
                Err(e) if e.is_retryable() && tries < TRIES_PER_FILE => {
                    tracing::warn!(task_id, path, error = %e, "result upload failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e),
            }
        };
        uploaded.push(ObjectInfo {
            path,
            size: info.size,
        });
    }
    Ok(uploaded)
}

/// Every regular file under `root` as (relative '/'-separated path, absolute path), sorted.
/// Symbolic links are skipped: following them could upload files from outside the task.
fn collect_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| {
            Error::internal(format!("could not list {}", folder.display())).with_source(e)
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                Error::internal(format!("could not list {}", folder.display())).with_source(e)
            })?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| {
                Error::internal(format!("could not stat {}", path.display())).with_source(e)
            })?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let rel = relative_name(root, &path)?;
                validate_relative_path(&rel)?;
                out.push((rel, path));
            } else {
                tracing::warn!(path = %path.display(), "skipping result entry that is not a regular file");
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Open the result file `rel` (validated, '/'-separated) under `root` for reading, following
/// no symbolic link on the way and only if it is a regular file. Between the listing and the
/// upload, code running as the task's user may swap a file or a folder for a link to the
/// worker's own secrets; each component is opened with `O_NOFOLLOW` from the folder before
/// it, so such a swap fails instead of uploading what the link points to.
fn open_result(root: &Path, rel: &str) -> Result<std::fs::File> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;

    let refused = |e: nix::errno::Errno| {
        Error::invalid(format!(
            "result {rel} is no longer a regular file of the task's output folder (replaced by a link?): {e}"
        ))
    };
    let folder = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = open(root, folder, Mode::empty()).map_err(refused)?;
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_some() {
            dir = openat(&dir, part, folder, Mode::empty()).map_err(refused)?;
            continue;
        }
        // Non-blocking, so a FIFO swapped in cannot hold the worker; checked below.
        let fd = openat(
            &dir,
            part,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(refused)?;
        let file = std::fs::File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| Error::internal(format!("could not stat result {rel}")).with_source(e))?;
        if !meta.file_type().is_file() {
            return Err(refused(nix::errno::Errno::EINVAL));
        }
        return Ok(file);
    }
    Err(Error::invalid(format!("result path {rel:?} is empty")))
}

fn relative_name(root: &Path, path: &Path) -> Result<String> {
    let rel = path
        .strip_prefix(root)
        .map_err(|e| Error::internal("result file outside the output folder").with_source(e))?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|p| p.join("/")).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "result file name {} is not valid UTF-8: rename it in the command's output",
                rel.display()
            ),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn collects_nested_files_with_slash_paths_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("top.txt"), "1").unwrap();
        std::fs::write(dir.path().join("a/b/deep.bin"), "22").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        let files = collect_files(dir.path()).unwrap();
        let names: Vec<_> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["a/b/deep.bin", "top.txt"]);
    }

    #[test]
    fn a_result_swapped_for_a_link_after_listing_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "worker secret").unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/deep.bin"), "22").unwrap();
        std::fs::write(dir.path().join("top.txt"), "1").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut open_result(dir.path(), "a/b/deep.bin").unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "22");

        // The file itself becomes a link.
        std::fs::remove_file(dir.path().join("top.txt")).unwrap();
        std::os::unix::fs::symlink(secret.path(), dir.path().join("top.txt")).unwrap();
        let err = open_result(dir.path(), "top.txt").unwrap_err();
        assert!(err.message().contains("no longer a regular file"), "{err}");

        // A folder on the way becomes a link to a folder holding a same-named file.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(elsewhere.path().join("b")).unwrap();
        std::fs::write(elsewhere.path().join("b/deep.bin"), "worker secret").unwrap();
        std::fs::rename(dir.path().join("a"), dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("a")).unwrap();
        assert!(open_result(dir.path(), "a/b/deep.bin").is_err());

        // A FIFO in its place neither blocks nor uploads.
        std::fs::remove_file(dir.path().join("top.txt")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("top.txt"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(open_result(dir.path(), "top.txt").is_err());
    }
}
