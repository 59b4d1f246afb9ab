//! A worker that stops answering: the server marks it down, reports it in /metrics, and its
//! task runs again elsewhere once the lease runs out.

use std::time::Duration;

use nix::sys::signal::Signal;
use spillway_client::Client;
use spillway_core::model::{QueueSettings, WorkerState};
use spillway_core::state::{AttemptOutcome, TaskState};

use crate::support::{
    STATE_DEADLINE, Server, WorkerSpec, create_queue, fast_settings, free_port, only_task,
    start_worker, submit, wait_task, wait_until,
};

/// Sleeps on its first attempt only, so the stopped worker holds it while a later attempt
/// finishes at once.
const SLOW_FIRST_ATTEMPT: &[&str] = &[
    "sh",
    "-c",
    "[ \"$SPILLWAY_ATTEMPT\" = 1 ] && sleep 30; exit 0",
];

/// A server that calls a worker down after 2 s of silence and checks often.
const CONFIG: &str = r#"
[server]
worker_down_after = "2s"
worker_check_interval = "200ms"
"#;

/// The state the server reports for worker `id`, if it lists it.
async fn worker_state(client: &Client, id: &str) -> Option<WorkerState> {
    let list = client.worker_list().await.ok()?;
    list.workers.iter().find(|w| w.id == id).map(|w| w.state)
}

/// The value of the unlabelled gauge `name` in a Prometheus text exposition.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_marked_down_and_its_task_runs_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // The server runs in its data directory, where it reads ./spillway.toml.
    std::fs::write(data.join("spillway.toml"), CONFIG).expect("write spillway.toml");
    let server = Server::start("server", &data, free_port(), None).await;
    let client = server.client();
    let settings = QueueSettings {
        lease_duration: Duration::from_secs(3),
        ..fast_settings(3)
    };
    create_queue(&client, "q", settings).await;
    let job = submit(&client, "q", SLOW_FIRST_ATTEMPT, 1).await;
    let task = only_task(&client, &job.id).await;

    let spec = WorkerSpec::new("q");
    let mut first = start_worker("worker-1", dir.path(), &server.url, &server.token, &spec);
    let leased = wait_task(&client, task.id, "leased by worker-1", |d| {
        d.task.state == TaskState::Leased && !d.attempts.is_empty()
    })
    .await;
    let w1 = leased.attempts[0].worker_id.clone();
    // Holding a 3 s lease it heartbeats every second, so it is active before it is stopped
    // (an idle worker's 10 s heartbeats could have let it be marked down already).
    wait_until("worker-1 to be active", STATE_DEADLINE, || async {
        (worker_state(&client, &w1).await == Some(WorkerState::Active)).then_some(())
    })
    .await;
    first.signal(Signal::SIGSTOP);

    wait_until("worker-1 to be marked down", STATE_DEADLINE, || async {
        (worker_state(&client, &w1).await == Some(WorkerState::Down)).then_some(())
    })
    .await;
    let down = wait_until("spillway_workers_down >= 1", STATE_DEADLINE, || async {
        let metrics = client.metrics().await.ok()?;
        gauge(&metrics, "spillway_workers_down").filter(|v| *v >= 1.0)
    })
    .await;
    assert!(down >= 1.0);

    let _second = start_worker("worker-2", dir.path(), &server.url, &server.token, &spec);
    let done = wait_task(&client, task.id, "finished after the lease expired", |d| {
        d.task.state.is_final()
    })
    .await;
    assert_eq!(done.task.state, TaskState::Succeeded, "{done:?}");
    let outcomes: Vec<_> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::LeaseExpired, AttemptOutcome::Succeeded]
    );
    assert_eq!(done.attempts[1].attempt, 2);
    assert_ne!(
        done.attempts[1].worker_id, w1,
        "the stopped worker cannot have run attempt 2"
    );
    // The stopped worker stays down: nothing of it has run since.
    assert_eq!(worker_state(&client, &w1).await, Some(WorkerState::Down));
    first.kill9();
}

#[test]
fn gauge_reads_an_unlabelled_sample() {
    let text =
        "# HELP spillway_workers_down x\nspillway_workers_down_total 7\nspillway_workers_down 2\n";
    assert_eq!(gauge(text, "spillway_workers_down"), Some(2.0));
    assert_eq!(gauge(text, "spillway_missing"), None);
}
