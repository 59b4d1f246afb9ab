//! Idle lease long-polls are woken one per new task, not all at once: with many workers
//! waiting, a new task wakes one lease call and the others stay parked.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spillway_server::ServerConfig;
use spillway_server::testkit::{DEFAULT_DEADLINE, wait_until};
use tokio::sync::mpsc;

use crate::support::{Server, ok, simple_job};

/// Long-polls parked at once.
const POLLS: usize = 8;

/// The value of the counter `name` on /metrics.
async fn counter(server: &Server, name: &str) -> u64 {
    let text = server
        .get("/metrics", "")
        .await
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in /metrics:\n{text}"))
}

/// Wait until exactly `n` long-polls are parked and no request is in flight (a woken poll
/// that found nothing is parked again).
async fn wait_parked(server: &Server, n: usize) {
    let admission = server.state.admission().clone();
    wait_until(&format!("{n} parked long-polls"), DEFAULT_DEADLINE, || {
        let admission = admission.clone();
        async move { (admission.parked() == n && admission.in_flight() == 0).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_new_task_wakes_one_parked_long_poll_and_three_wake_three() {
    let server = Server::with_config(ServerConfig {
        // Parked long-polls look again only when woken.
        lease_recheck_interval: Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    let submitter = server.token("submitter", "default").await;
    let work = server.token("worker", "default").await;

    let (answers, mut answered) = mpsc::unbounded_channel::<usize>();
    for _ in 0..POLLS {
        let worker = server.worker(&work, &["default"]).await;
        let request = server.req(Method::POST, "/v1/tasks/lease", &work).json(
            &json!({"worker_id": worker, "queues": ["default"], "max_tasks": 1, "wait": "600s"}),
        );
        let answers = answers.clone();
        tokio::spawn(async move {
            let resp = request.send().await.expect("lease answer");
            let body: Value = ok(resp, StatusCode::OK).await;
            let _ = answers.send(body["tasks"].as_array().expect("tasks").len());
        });
    }
    wait_parked(&server, POLLS).await;
    let next_answer = async |answered: &mut mpsc::UnboundedReceiver<usize>| {
        tokio::time::timeout(DEFAULT_DEADLINE, answered.recv())
            .await
            .expect("a long-poll answered in time")
            .expect("an answer")
    };

    server.submit(&submitter, simple_job()).await;
    assert_eq!(
        next_answer(&mut answered).await,
        1,
        "the woken poll leased the task"
    );
    wait_parked(&server, POLLS - 1).await;
    assert_eq!(
        counter(&server, "spillway_lease_wakeups_total").await,
        1,
        "one task woke one long-poll"
    );
    assert!(answered.try_recv().is_err(), "another long-poll answered");

    server
        .submit(&submitter, json!({"command": ["echo", "hi"], "count": 3}))
        .await;
    for _ in 0..3 {
        assert_eq!(next_answer(&mut answered).await, 1);
    }
    wait_parked(&server, POLLS - 4).await;
    assert_eq!(
        counter(&server, "spillway_lease_wakeups_total").await,
        4,
        "three tasks woke three more long-polls"
    );
    assert!(answered.try_recv().is_err(), "a fifth long-poll answered");

    // Stopping makes the rest answer at once, with nothing.
    server.stop().await;
    for _ in 0..POLLS - 4 {
        assert_eq!(next_answer(&mut answered).await, 0);
    }
}
