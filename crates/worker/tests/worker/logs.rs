//! Live logs: a real worker streams a running task's output through a real server; a
//! follower sees it before the task ends, the whole log is kept past the 64 KiB tail, a stale
//! lease's chunks are refused, and retention deletes the log object.

use std::time::Duration;

use futures::StreamExt;
use spillway_client::{Client, LogEvent, LogEvents};
use spillway_core::api::{CreateQueue, SubmitJob};
use spillway_core::keys::{log_key, logs_prefix};
use spillway_core::model::{LOG_TAIL_BYTES, QueueSettings};
use spillway_core::state::TaskState;
use spillway_core::{ErrorKind, TaskId};
use spillway_server::services::log_sealer;
use spillway_testkit::{DEFAULT_DEADLINE, wait_until};
use tokio_util::sync::CancellationToken;

use super::{Server, spawn_worker};

/// Lines printed by the task before it waits, then after.
const BULK_LINES: usize = 2_000;

/// What the task prints: a first line, then (once `go` exists) over 64 KiB of numbered lines.
fn expected_output() -> String {
    let mut text = String::from("first line\n");
    for i in 0..BULK_LINES {
        text.push_str(&format!("line {i:05} {}\n", "x".repeat(40)));
    }
    text.push_str("last line\n");
    text
}

/// The next text event of `events`, or the end, within the deadline.
async fn next_event(events: &mut LogEvents) -> LogEvent {
    tokio::time::timeout(DEFAULT_DEADLINE, events.next())
        .await
        .expect("a log event within the deadline")
        .expect("the stream goes on until the end event")
        .expect("a log event, not an error")
}

async fn whole_log(client: &Client, task: TaskId) -> Vec<u8> {
    let mut stream = client.task_log_full(task, None).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(part) = stream.next().await {
        bytes.extend_from_slice(&part.unwrap());
    }
    bytes
}

#[tokio::test]
async fn a_running_tasks_log_is_followed_live_then_kept_whole_then_removed_by_retention() {
    let server = Server::start().await;
    let settings = QueueSettings {
        retention: Duration::from_secs(1),
        ..QueueSettings::default()
    };
    server
        .admin
        .queue_create(&CreateQueue {
            name: "brief".into(),
            tenant: None,
            settings,
        })
        .await
        .unwrap();
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    let script = format!(
        "echo 'first line'; while [ ! -e '{go}' ]; do sleep 0.05; done; \
         i=0; while [ $i -lt {BULK_LINES} ]; do printf 'line %05d %s\\n' $i {x}; i=$((i+1)); done; \
         echo 'last line'",
        go = go.display(),
        x = "x".repeat(40),
    );
    let job = server
        .admin
        .job_submit(&SubmitJob::command(
            "brief",
            vec!["sh".into(), "-c".into(), script],
        ))
        .await
        .unwrap()
        .job;

    let scratch = tempfile::tempdir().unwrap();
    let mut config = server.worker_config(scratch.path());
    config.queues = vec!["brief".into()];
    let shutdown = CancellationToken::new();
    let worker = spawn_worker(config, shutdown.clone());
    let task = server
        .wait_task(&job.id, "the task to run", |t| t.state == TaskState::Leased)
        .await;

    // The follower sees the first line while the task still waits for `go`.
    let mut events = server.admin.task_log_follow(task.id, None).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("first line\n") {
        match next_event(&mut events).await {
            LogEvent::Text(text) => seen.push_str(&text),
            end => panic!("the attempt ended before `go` was created: {end:?}"),
        }
    }
    assert_eq!(
        server.only_task(&job.id).await.state,
        TaskState::Leased,
        "the first line is seen while the task runs"
    );
    // Over HTTP the whole log so far is the first line too.
    assert_eq!(whole_log(&server.admin, task.id).await, b"first line\n");

    // A chunk under another lease token is refused as a conflict.
    let worker_client =
        Client::new(&server.server.base, Some(server.worker_token.clone())).unwrap();
    let stale = worker_client
        .task_log_chunk_put(task.id, &"f".repeat(32), 100, b"forged".to_vec())
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Conflict, "{stale}");

    std::fs::write(&go, b"").unwrap();
    let outcome = loop {
        match next_event(&mut events).await {
            LogEvent::Text(text) => seen.push_str(&text),
            LogEvent::End { outcome, .. } => break outcome,
        }
    };
    assert_eq!(outcome, "succeeded");
    let expected = expected_output();
    assert!(expected.len() > LOG_TAIL_BYTES + 30_000);
    assert_eq!(
        seen, expected,
        "the follower saw the whole output once, in order"
    );

    // The sealer writes the log as one object; the whole log is all of it, not the tail.
    let key = log_key("default", &job.id, 0, 1);
    let leadership = log_sealer::Leadership::default();
    let sealer = log_sealer::Config::default();
    wait_until("the log to be sealed", DEFAULT_DEADLINE, || async {
        log_sealer::pass(&server.server.state, &sealer, &leadership)
            .await
            .unwrap();
        server.server.blobs.get(&key).await.ok().map(|_| ())
    })
    .await;
    assert_eq!(whole_log(&server.admin, task.id).await, expected.as_bytes());
    let detail = server.admin.task_get(task.id).await.unwrap();
    assert!(detail.attempts[0].log_tail.len() <= LOG_TAIL_BYTES);
    assert!(expected.ends_with(&detail.attempts[0].log_tail));
    // Following a finished attempt gives the whole log, then its end.
    let mut again = server
        .admin
        .task_log_follow(task.id, Some(1))
        .await
        .unwrap();
    let mut replay = String::new();
    while let LogEvent::Text(text) = next_event(&mut again).await {
        replay.push_str(&text);
    }
    assert_eq!(replay, expected);

    // Retention removes the job and its log object.
    wait_until("retention to remove the job", DEFAULT_DEADLINE, || async {
        spillway_server::services::retention::pass(&server.server.state, &Default::default())
            .await
            .unwrap();
        let gone = server.admin.job_get(&job.id).await.is_err();
        gone.then_some(())
    })
    .await;
    let left = server
        .server
        .blobs
        .list(&logs_prefix("default", &job.id))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    shutdown.cancel();
    worker.await.unwrap();
}
