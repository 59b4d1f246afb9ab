//! `spillway logs --follow` against a real server and worker: it prints a running task's
//! first line before the task ends, then the rest and the end; `spillway logs` afterwards
//! prints the whole log, more than the 64 KiB tail.

use spillway_core::state::TaskState;
use spillway_testkit::{DEFAULT_DEADLINE, wait_until};

use crate::support::{
    ChildGuard, Server, WorkerSpec, create_queue, free_port, only_task, spillway, start_worker,
    submit,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_a_running_tasks_output_live_then_the_whole_log_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    create_queue(&client, "live", Default::default()).await;
    let go = dir.path().join("go");
    let script = format!(
        "echo 'first line'; while [ ! -e '{}' ]; do sleep 0.05; done; \
         i=0; while [ $i -lt 3000 ]; do echo \"line $i of the bulk, long enough to fill\"; i=$((i+1)); done; \
         echo 'last line'",
        go.display()
    );
    let job = submit(&client, "live", &["sh", "-c", &script], 1).await;
    let mut expected = String::from("first line\n");
    for i in 0..3000 {
        expected.push_str(&format!("line {i} of the bulk, long enough to fill\n"));
    }
    expected.push_str("last line\n");
    assert!(expected.len() > spillway_core::model::LOG_TAIL_BYTES);

    let _worker = start_worker(
        "worker",
        dir.path(),
        &server.url,
        &server.token,
        &WorkerSpec::new("live"),
    );
    let task = wait_until("the task to run", DEFAULT_DEADLINE, || async {
        let task = only_task(&client, &job.id).await;
        (task.state == TaskState::Leased).then_some(task)
    })
    .await;

    let mut follow = spillway(dir.path());
    follow
        .arg("--server")
        .arg(&server.url)
        .arg("--token")
        .arg(&server.token)
        .arg("logs")
        .arg(task.id.to_string())
        .arg("--follow");
    let mut follower = ChildGuard::spawn("logs-follow", follow, dir.path());
    wait_until(
        "the first line from spillway logs --follow",
        DEFAULT_DEADLINE,
        || {
            let seen = follower.output().contains("first line\n");
            async move { seen.then_some(()) }
        },
    )
    .await;
    follower.assert_running();
    assert_eq!(
        only_task(&client, &job.id).await.state,
        TaskState::Leased,
        "the first line is printed while the task runs"
    );

    std::fs::write(&go, b"").expect("create the gate file");
    let status = follower.wait_exit(DEFAULT_DEADLINE).await;
    assert!(status.success(), "{status}: {}", follower.output());
    let printed = follower.output();
    // stdout and stderr share the log file: the log, then the end on stderr.
    assert_eq!(
        printed,
        format!("{expected}attempt 1 of task {} ended: succeeded\n", task.id)
    );

    let whole = spillway(dir.path())
        .arg("--server")
        .arg(&server.url)
        .arg("--token")
        .arg(&server.token)
        .arg("logs")
        .arg(task.id.to_string())
        .output()
        .expect("run spillway logs");
    assert!(whole.status.success(), "{whole:?}");
    assert_eq!(String::from_utf8_lossy(&whole.stdout), expected);
}
