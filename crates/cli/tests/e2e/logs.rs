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

/// Two replicas on one PostgreSQL database: a follower connected to one sees the chunks a
/// worker sends through the other while the task runs, then its end and the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_one_replica_sees_a_worker_writing_through_the_other() {
    use futures::StreamExt;
    use spillway_client::LogEvent;

    let Some(admin_url) = crate::postgres::admin_url_or_skip("the live log replica test") else {
        return;
    };
    let db = crate::postgres::TempDatabase::create(&admin_url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Shared data directory: the admin token and the blob folder both replicas use.
    let data = dir.path().join("data");
    let a = Server::start("server-a", &data, free_port(), Some(&db.url)).await;
    let b = Server::start("server-b", &data, free_port(), Some(&db.url)).await;
    let (client_a, client_b) = (a.client(), b.client());
    create_queue(&client_a, "live", Default::default()).await;
    let go = dir.path().join("go");
    let script = format!(
        "echo 'through a'; while [ ! -e '{}' ]; do sleep 0.05; done; echo 'still through a'",
        go.display()
    );
    let job = submit(&client_a, "live", &["sh", "-c", &script], 1).await;
    let _worker = start_worker(
        "worker-a",
        dir.path(),
        &a.url,
        &a.token,
        &WorkerSpec::new("live"),
    );
    let task = wait_until("the task to run", DEFAULT_DEADLINE, || async {
        let task = only_task(&client_b, &job.id).await;
        (task.state == TaskState::Leased).then_some(task)
    })
    .await;

    let mut events = client_b
        .task_log_follow(task.id, None)
        .await
        .expect("follow on b");
    let mut next = async || {
        tokio::time::timeout(DEFAULT_DEADLINE, events.next())
            .await
            .expect("an event within the deadline")
            .expect("the stream goes on until the end")
            .expect("an event, not an error")
    };
    let mut seen = String::new();
    while !seen.contains("through a\n") {
        match next().await {
            LogEvent::Text(text) => seen.push_str(&text),
            end => panic!("ended before the gate opened: {end:?}"),
        }
    }
    assert_eq!(only_task(&client_b, &job.id).await.state, TaskState::Leased);
    std::fs::write(&go, b"").expect("create the gate file");
    let outcome = loop {
        match next().await {
            LogEvent::Text(text) => seen.push_str(&text),
            LogEvent::End { outcome, .. } => break outcome,
        }
    };
    assert_eq!(outcome, "succeeded");
    assert_eq!(seen, "through a\nstill through a\n");
    let mut whole = Vec::new();
    let mut log = client_b
        .task_log_full(task.id, None)
        .await
        .expect("whole log on b");
    while let Some(part) = log.next().await {
        whole.extend_from_slice(&part.expect("read"));
    }
    assert_eq!(whole, b"through a\nstill through a\n");
}
