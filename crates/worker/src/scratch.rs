//! The worker's private scratch space.
//!
//! Each worker makes one folder of its own with an unpredictable name inside the configured
//! scratch folder (`<scratch>/spillway-worker-XXXXXX/`, mode 0700), and each task attempt gets
//! a folder inside it (`<root>/<task>-<attempt>/`, mode 0700). So other local users cannot
//! read a task's inputs or guess where they will be, two workers sharing a scratch folder
//! (even of two servers) never meet, and the worker only ever removes what it made: its
//! task folders, and its root when it stops.

use std::io::ErrorKind as IoErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use spillway_core::api::LeasedTask;
use spillway_core::{Error, Result};

/// The start of every worker's root folder name; the rest is random.
const ROOT_PREFIX: &str = "spillway-worker-";
/// Mode of the scratch folder when the worker creates it, of its root and of task folders.
const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the scratch folder and the root when tasks run as another user (`task_user`):
/// that user may pass through to its own task folder but not list what is there, and task
/// folders get unguessable names, so one task cannot find another's.
const PASSABLE_DIR_MODE: u32 = 0o711;

/// This worker's root folder; removed with everything in it when dropped.
#[derive(Debug)]
pub(crate) struct ScratchRoot {
    dir: tempfile::TempDir,
}

impl ScratchRoot {
    /// Make this worker's root inside `scratch_dir`, creating `scratch_dir` (mode 0700) when it
    /// does not exist. Fails when the root is not a folder owned by the worker's user and
    /// closed to everyone else. With `passable` (tasks run as another user) both are 0711:
    /// others may pass through, never list or write.
    pub(crate) fn create(scratch_dir: &Path, passable: bool) -> Result<Self> {
        let mode = if passable {
            PASSABLE_DIR_MODE
        } else {
            PRIVATE_DIR_MODE
        };
        let unusable = |e: std::io::Error| {
            Error::invalid(format!(
                "could not create a folder in the scratch folder {}: choose a writable folder (--scratch-dir)",
                scratch_dir.display()
            ))
            .with_source(e)
        };
        // Recursive: an existing folder is fine and keeps its mode.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(scratch_dir)
            .map_err(unusable)?;
        let dir = tempfile::Builder::new()
            .prefix(ROOT_PREFIX)
            .permissions(std::fs::Permissions::from_mode(mode))
            .tempdir_in(scratch_dir)
            .map_err(unusable)?;
        check_private(dir.path(), mode)?;
        Ok(Self { dir })
    }

    /// The root folder.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remove the root and everything left in it.
    pub(crate) fn remove(self) {
        let path = self.dir.path().to_path_buf();
        if let Err(e) = self.dir.close() {
            tracing::warn!(dir = %path.display(), error = %e, "could not remove the worker's scratch folder");
        }
    }
}

/// Fail unless `dir` is a real folder (not a link) owned by this process's user that no one
/// else may enter (or, with `mode` 0711, only pass through).
fn check_private(dir: &Path, mode: u32) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| {
        Error::internal(format!(
            "could not inspect the scratch folder {}",
            dir.display()
        ))
        .with_source(e)
    })?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != uid {
        return Err(Error::invalid(format!(
            "refusing the scratch folder {}: it is {} owned by uid {}, not a folder owned by the worker's uid {uid}; remove it or choose another --scratch-dir",
            dir.display(),
            if meta.is_dir() {
                "a folder"
            } else {
                "not a folder"
            },
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 & !mode != 0 {
        return Err(Error::invalid(format!(
            "refusing the scratch folder {}: its mode is {:o}, open to other users; it must be {mode:o}",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// The folder of one attempt of a task inside `root`: its task and attempt, and a random
/// part, so that where a root is passable no task can guess another's folder.
pub(crate) fn task_path(root: &Path, task: &LeasedTask) -> PathBuf {
    let random: u64 = rand::random();
    root.join(format!("{}-{}-{random:016x}", task.task_id, task.attempt))
}

/// Create the folder of one attempt (mode 0700). It must not exist yet: the worker only ever
/// uses, and later removes, folders it made itself.
pub(crate) async fn create_task_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.mode(PRIVATE_DIR_MODE);
    match builder.create(dir).await {
        Err(e) if e.kind() == IoErrorKind::AlreadyExists => Err(std::io::Error::new(
            IoErrorKind::AlreadyExists,
            format!(
                "{} already exists and was not made by this attempt; it is left alone",
                dir.display()
            ),
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").mode() & 0o7777
    }

    #[test]
    fn two_workers_on_one_scratch_folder_get_different_private_roots() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let a = ScratchRoot::create(scratch.path(), false).expect("first root");
        let b = ScratchRoot::create(scratch.path(), false).expect("second root");
        assert_ne!(a.path(), b.path());
        for root in [a.path(), b.path()] {
            assert_eq!(root.parent(), Some(scratch.path()));
            assert_eq!(mode(root), 0o700, "{}", root.display());
            let name = root.file_name().expect("a name").to_string_lossy();
            assert!(name.starts_with(ROOT_PREFIX), "{name}");
            assert!(name.len() > ROOT_PREFIX.len() + 5, "a random part: {name}");
        }
        let kept = a.path().to_path_buf();
        b.remove();
        assert!(kept.is_dir(), "removing one root leaves the other");
    }

    #[test]
    fn a_missing_scratch_folder_is_created_private_and_the_root_goes_at_the_end() {
        let parent = tempfile::tempdir().expect("tempdir");
        let scratch = parent.path().join("new/scratch");
        let root = ScratchRoot::create(&scratch, false).expect("root");
        assert_eq!(mode(&scratch), 0o700);
        assert_eq!(mode(&parent.path().join("new")), 0o700);
        let path = root.path().to_path_buf();
        std::fs::write(path.join("left.txt"), "x").expect("write");
        root.remove();
        assert!(!path.exists(), "the root is removed with its contents");
        assert!(scratch.is_dir(), "the scratch folder itself stays");
    }

    #[test]
    fn a_folder_that_is_not_private_or_not_ours_is_refused() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let open = scratch.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = check_private(&open, 0o700).expect_err("a 755 folder");
        assert!(err.to_string().contains("755"), "{err}");
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(scratch.path(), &link).expect("symlink");
        let err = check_private(&link, 0o700).expect_err("a link");
        assert!(err.to_string().contains("not a folder"), "{err}");
        if nix::unistd::geteuid().is_root() {
            let theirs = scratch.path().join("theirs");
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&theirs)
                .expect("mkdir");
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
            let err = check_private(&theirs, 0o700).expect_err("another user's folder");
            assert!(err.to_string().contains("uid 65534"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_task_folder_is_private_and_never_one_that_already_exists() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = scratch.path().join("7-1");
        create_task_dir(&dir).await.expect("create");
        assert_eq!(mode(&dir), 0o700);
        std::fs::write(dir.join("keep"), "x").expect("write");
        let err = create_task_dir(&dir).await.expect_err("exists");
        assert!(err.to_string().contains("left alone"), "{err}");
        assert!(dir.join("keep").exists());
    }
}
