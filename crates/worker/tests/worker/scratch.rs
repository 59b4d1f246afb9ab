//! Scratch space: a private root per worker, private task folders, and nothing removed that
//! the worker did not make.

use std::os::unix::fs::MetadataExt;

use spillway_core::api::SubmitJob;
use spillway_core::state::JobState;
use tokio_util::sync::CancellationToken;

use crate::{Server, download};

#[tokio::test]
async fn task_folders_are_private_in_a_private_root_and_a_same_named_folder_is_left_alone() {
    let server = Server::start().await;
    // The task writes the mode and owner of its folder and of the folder above it, and where
    // it ran.
    let submit = SubmitJob::command(
        "default",
        vec![
            "sh".into(),
            "-c".into(),
            "stat -c '%a %u' . .. > \"$SPILLWAY_OUTPUT_DIR/stat.txt\" && pwd -P > \"$SPILLWAY_OUTPUT_DIR/pwd.txt\"".into(),
        ],
    );
    let job = server.admin.job_submit(&submit).await.unwrap().job;
    let task = server.only_task(&job.id).await;

    let scratch = tempfile::tempdir().unwrap();
    let scratch_path = scratch.path().canonicalize().unwrap();
    // A folder with the name the first attempt's folder would have had without a private
    // root, as another worker (or another user) might have left it.
    let same_name = scratch_path.join(format!("{}-1", task.id));
    std::fs::create_dir(&same_name).unwrap();
    std::fs::write(same_name.join("theirs.txt"), "keep me").unwrap();

    let mut config = server.worker_config(&scratch_path);
    config.exit_when_idle = true;
    let summary = spillway_worker::run(config, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.succeeded, 1, "{summary:?}");
    assert_eq!(
        server.admin.job_get(&job.id).await.unwrap().state,
        JobState::Succeeded
    );

    let uid = nix::unistd::geteuid().as_raw();
    let stat = download(&server.admin, &job.id, 0, "stat.txt").await;
    assert_eq!(
        stat,
        format!("700 {uid}\n700 {uid}\n"),
        "the task folder, then the worker's root"
    );
    let pwd = download(&server.admin, &job.id, 0, "pwd.txt").await;
    let task_dir = std::path::Path::new(pwd.trim());
    let root = task_dir.parent().unwrap();
    assert_eq!(root.parent(), Some(scratch_path.as_path()), "{pwd}");
    assert_ne!(
        task_dir, same_name,
        "the task ran in the pre-existing folder"
    );
    let root_name = root.file_name().unwrap().to_string_lossy();
    assert!(root_name.starts_with("spillway-worker-"), "{root_name}");

    // The pre-existing folder is untouched; the worker's own root is gone.
    assert_eq!(
        std::fs::read_to_string(same_name.join("theirs.txt")).unwrap(),
        "keep me"
    );
    assert!(!root.exists(), "the worker's root outlived it");
    let left: Vec<_> = std::fs::read_dir(&scratch_path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, std::slice::from_ref(&same_name));
    assert_eq!(std::fs::metadata(&same_name).unwrap().uid(), uid);
}

#[tokio::test]
async fn two_workers_sharing_a_scratch_folder_use_different_roots() {
    let server = Server::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let scratch_path = scratch.path().canonicalize().unwrap();
    // Each task waits until two roots exist, so both workers are up at once, then says where
    // it ran.
    let wait_for_two = format!(
        "i=0; while [ $(ls -d {}/spillway-worker-* | wc -l) -lt 2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; pwd -P > \"$SPILLWAY_OUTPUT_DIR/pwd.txt\"",
        scratch_path.display()
    );
    let mut submit = SubmitJob::command("default", vec!["sh".into(), "-c".into(), wait_for_two]);
    submit.count = Some(2);
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    let run = |scratch: std::path::PathBuf| {
        let mut config = server.worker_config(&scratch);
        config.concurrency = 1;
        config.exit_when_idle = true;
        spillway_worker::run(config, CancellationToken::new())
    };
    let (a, b) = tokio::join!(run(scratch_path.clone()), run(scratch_path.clone()));
    assert_eq!(a.unwrap().succeeded + b.unwrap().succeeded, 2);

    let mut roots = Vec::new();
    for index in 0..2 {
        let pwd = download(&server.admin, &job.id, index, "pwd.txt").await;
        let root = std::path::Path::new(pwd.trim())
            .parent()
            .unwrap()
            .to_path_buf();
        assert_eq!(root.parent(), Some(scratch_path.as_path()), "{pwd}");
        roots.push(root);
    }
    assert_ne!(roots[0], roots[1], "two workers shared a root");
    assert_eq!(std::fs::read_dir(&scratch_path).unwrap().count(), 0);
}
