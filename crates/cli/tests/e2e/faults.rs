//! Faults a deployment meets, one task at a time: workers killed, frozen or stopped mid-task,
//! and tasks that always fail. The same faults under load (and the server killed under load)
//! are runs of the history checker, in `history/runs.rs`.

use std::time::Duration;

use nix::sys::signal::Signal;
use spillway_client::DeadListQuery;
use spillway_core::api::RequeueRequest;
use spillway_core::model::QueueSettings;
use spillway_core::state::{AttemptOutcome, JobState, TaskState};

use crate::support::{
    STATE_DEADLINE, Server, WorkerSpec, create_queue, fast_settings, free_port, only_task,
    start_worker, submit, wait_job_final, wait_task, wait_until,
};

/// A command that sleeps on its first attempt only, so a test can interrupt it there and
/// see the next attempt succeed at once.
const SLOW_FIRST_ATTEMPT: &[&str] = &[
    "sh",
    "-c",
    "[ \"$SPILLWAY_ATTEMPT\" = 1 ] && sleep 60; exit 0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_a_killed_worker_runs_again_after_its_lease_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    create_queue(&client, "q", fast_settings(3)).await;
    let job = submit(&client, "q", SLOW_FIRST_ATTEMPT, 1).await;
    let task = only_task(&client, &job.id).await;

    let spec = WorkerSpec::new("q");
    let mut first = start_worker("worker-1", dir.path(), &server.url, &server.token, &spec);
    wait_task(&client, task.id, "leased", |d| {
        d.task.state == TaskState::Leased
    })
    .await;
    first.kill9();

    let _second = start_worker("worker-2", dir.path(), &server.url, &server.token, &spec);
    let done = wait_task(&client, task.id, "finished", |d| d.task.state.is_final()).await;
    assert_eq!(done.task.state, TaskState::Succeeded, "{done:?}");
    let outcomes: Vec<_> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::LeaseExpired, AttemptOutcome::Succeeded]
    );
    assert_eq!(
        done.task.failures, 1,
        "an expired lease counts as a failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_cannot_overwrite_the_result_of_the_task_it_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    let settings = QueueSettings {
        lease_duration: Duration::from_secs(3),
        ..fast_settings(3)
    };
    create_queue(&client, "q", settings).await;
    // Attempt 1 outlives the moment its worker is frozen; later attempts finish well
    // within a lease (workers heartbeat less often than this short lease).
    let script = "if [ \"$SPILLWAY_ATTEMPT\" = 1 ]; then sleep 2; else sleep 0.2; fi; \
                  printf %s \"$MARK\" > \"$SPILLWAY_OUTPUT_DIR/who.txt\"";
    let job = submit(&client, "q", &["sh", "-c", script], 1).await;
    let task = only_task(&client, &job.id).await;

    let w1 = start_worker(
        "worker-w1",
        dir.path(),
        &server.url,
        &server.token,
        &WorkerSpec {
            env: vec![("MARK", "w1")],
            ..WorkerSpec::new("q")
        },
    );
    wait_task(&client, task.id, "leased by w1", |d| {
        d.task.state == TaskState::Leased
    })
    .await;
    w1.signal(Signal::SIGSTOP);
    wait_task(&client, task.id, "attempt 1 to expire", |d| {
        // Attempt 1 sleeps long enough that w1 is frozen before it could report.
        assert_ne!(
            d.task.state,
            TaskState::Succeeded,
            "w1 finished before SIGSTOP: {d:?}"
        );
        d.attempts.first().map(|a| a.outcome) == Some(AttemptOutcome::LeaseExpired)
    })
    .await;

    let _w2 = start_worker(
        "worker-w2",
        dir.path(),
        &server.url,
        &server.token,
        &WorkerSpec {
            env: vec![("MARK", "w2")],
            ..WorkerSpec::new("q")
        },
    );
    let done = wait_task(&client, task.id, "finished by w2", |d| {
        d.task.state.is_final()
    })
    .await;
    assert_eq!(done.task.state, TaskState::Succeeded, "{done:?}");

    // w1 wakes with its command long finished and tries to upload and complete on a lease
    // that is no longer its own.
    w1.signal(Signal::SIGCONT);
    let refused = wait_until("w1 to give up its lost lease", STATE_DEADLINE, || {
        let log = w1.output();
        async move {
            (log.contains("lease lost; the task was stopped and nothing is reported")
                || log.contains("report refused: the lease is no longer ours"))
            .then_some(log)
        }
    })
    .await;
    assert!(
        !refused.contains("task reported"),
        "w1 reported a stale result:\n{refused}"
    );

    let after = client.task_get(task.id).await.expect("task");
    assert_eq!(after.task.state, TaskState::Succeeded);
    let outcomes: Vec<_> = after.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::LeaseExpired, AttemptOutcome::Succeeded]
    );
    let who = read_result(&client, &job.id, 0, "who.txt").await;
    assert_eq!(
        who, "w2",
        "the result object was overwritten by the stale worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_always_fails_ends_dead_and_can_be_requeued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    create_queue(&client, "q", fast_settings(3)).await;
    let job = submit(&client, "q", &["false"], 1).await;
    let task = only_task(&client, &job.id).await;

    let mut worker = start_worker(
        "worker",
        dir.path(),
        &server.url,
        &server.token,
        &WorkerSpec::new("q"),
    );
    let dead = wait_task(&client, task.id, "dead", |d| d.task.state.is_final()).await;
    assert_eq!(dead.task.state, TaskState::Dead, "{dead:?}");
    assert_eq!(dead.task.failures, 3);
    assert_eq!(dead.attempts.len(), 3, "{:?}", dead.attempts);
    for attempt in &dead.attempts {
        assert_eq!(attempt.outcome, AttemptOutcome::Failed, "{attempt:?}");
        assert_eq!(attempt.exit_code, Some(1), "{attempt:?}");
    }
    let letters = client
        .dead_list(&DeadListQuery {
            queue: Some("q".to_string()),
            ..Default::default()
        })
        .await
        .expect("dead list");
    let listed: Vec<_> = letters.items.iter().map(|t| t.id).collect();
    assert_eq!(listed, [task.id]);
    assert_eq!(
        wait_job_final(&client, &job.id, STATE_DEADLINE).await.state,
        JobState::Failed
    );

    // With no worker left to take it, the requeued task must wait as available.
    worker.signal(Signal::SIGTERM);
    assert!(worker.wait_exit(STATE_DEADLINE).await.success());
    let changed = client
        .dead_requeue(&RequeueRequest {
            task_ids: vec![task.id],
            queue: None,
            tenant: None,
        })
        .await
        .expect("requeue");
    assert_eq!(changed.changed, 1);
    let back = client.task_get(task.id).await.expect("task");
    assert_eq!(back.task.state, TaskState::Available, "{back:?}");
    let letters = client
        .dead_list(&DeadListQuery::default())
        .await
        .expect("dead list");
    assert!(letters.items.is_empty(), "{:?}", letters.items);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_running_task_back_without_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    // A long lease: the worker must hand the task back itself, not let it expire.
    let settings = QueueSettings {
        lease_duration: Duration::from_secs(60),
        ..fast_settings(3)
    };
    create_queue(&client, "q", settings).await;
    let job = submit(&client, "q", SLOW_FIRST_ATTEMPT, 1).await;
    let task = only_task(&client, &job.id).await;

    let spec = WorkerSpec {
        grace: "1s",
        ..WorkerSpec::new("q")
    };
    let mut busy = start_worker("worker-1", dir.path(), &server.url, &server.token, &spec);
    wait_task(&client, task.id, "leased", |d| {
        d.task.state == TaskState::Leased
    })
    .await;
    busy.signal(Signal::SIGTERM);
    let status = busy.wait_exit(STATE_DEADLINE).await;
    assert!(
        status.success(),
        "worker exited with {status}:\n{}",
        busy.output()
    );

    let handed_back = client.task_get(task.id).await.expect("task");
    assert_eq!(
        handed_back.task.state,
        TaskState::Available,
        "{handed_back:?}"
    );
    assert_eq!(handed_back.task.failures, 0);
    assert_eq!(handed_back.task.preemptions, 1);
    assert_eq!(
        handed_back.attempts.first().map(|a| a.outcome),
        Some(AttemptOutcome::Preempted)
    );

    let _other = start_worker("worker-2", dir.path(), &server.url, &server.token, &spec);
    let done = wait_task(&client, task.id, "finished", |d| d.task.state.is_final()).await;
    assert_eq!(done.task.state, TaskState::Succeeded, "{done:?}");
    assert_eq!(done.task.failures, 0);
    let outcomes: Vec<_> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Preempted, AttemptOutcome::Succeeded]
    );
}

/// Download one result file of one task as text.
async fn read_result(
    client: &spillway_client::Client,
    job: &str,
    index: u32,
    path: &str,
) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("file");
    let stream = client
        .job_result_get(job, index, path)
        .await
        .unwrap_or_else(|e| panic!("cannot download result {index}/{path}: {e}"));
    spillway_client::stream_to_file(stream, &dest)
        .await
        .expect("save the result");
    std::fs::read_to_string(&dest).expect("read the result")
}
