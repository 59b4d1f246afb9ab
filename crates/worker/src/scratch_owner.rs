//! Scratch folders of tasks that run as another user (`task_user`): that user must reach its
//! folder and own what is in it, so that it can write its outputs; the worker, as root, still
//! reads the results and removes the folder.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use spillway_core::{Error, Result};
use spillway_executor::TaskUser;

/// Check that `user` may pass through every folder from `/` down to `root` (the scratch
/// root), so that it can enter the task folders made in it. The error names the first folder
/// in the way and how to open it.
pub fn check_reachable(root: &Path, user: TaskUser) -> Result<()> {
    let root = root.canonicalize().map_err(|e| {
        Error::invalid(format!(
            "could not resolve the scratch folder {}: choose an existing, writable folder",
            root.display()
        ))
        .with_source(e)
    })?;
    for folder in root.ancestors() {
        let meta = std::fs::metadata(folder).map_err(|e| {
            Error::internal(format!("could not stat {}", folder.display())).with_source(e)
        })?;
        let mode = meta.mode();
        let search = if meta.uid() == user.uid {
            mode & 0o100
        } else if meta.gid() == user.gid {
            mode & 0o010
        } else {
            mode & 0o001
        };
        if search == 0 {
            return Err(Error::invalid(format!(
                "task_user {user} cannot reach the scratch folder {}: {} (mode {:o}) does not let it pass; choose a scratch folder it can reach, or allow passing with chmod o+x {}",
                root.display(),
                folder.display(),
                mode & 0o7777,
                folder.display()
            )));
        }
    }
    Ok(())
}

/// Make `user` the owner of `dir` and everything in it (symbolic links themselves, not what
/// they point to).
pub async fn give_to(dir: &Path, user: TaskUser) -> Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || give_tree(&dir, user))
        .await
        .map_err(|e| Error::internal("handing the scratch folder over panicked").with_source(e))?
}

fn give_tree(dir: &Path, user: TaskUser) -> Result<()> {
    let chown = |path: &Path| {
        std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
            Error::internal(format!(
                "could not make task_user {user} the owner of {}",
                path.display()
            ))
            .with_source(e)
        })
    };
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        chown(&folder)?;
        let entries = std::fs::read_dir(&folder).map_err(|e| {
            Error::internal(format!("could not list {}", folder.display())).with_source(e)
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                Error::internal(format!("could not list {}", folder.display())).with_source(e)
            })?;
            let kind = entry.file_type().map_err(|e| {
                Error::internal(format!("could not stat {}", entry.path().display())).with_source(e)
            })?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else {
                chown(&entry.path())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const NOBODY: TaskUser = TaskUser {
        uid: 65534,
        gid: 65534,
    };

    #[test]
    fn a_folder_the_task_user_cannot_pass_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let closed = dir.path().join("closed");
        let root = closed.join("scratch");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = check_reachable(&root, NOBODY).unwrap_err();
        let closed = closed.canonicalize().unwrap();
        assert!(
            err.message()
                .contains(&format!("{} (mode 700)", closed.display())),
            "{err}"
        );
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).unwrap();
        check_reachable(&root, NOBODY).unwrap();
    }
}
