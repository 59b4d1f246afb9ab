//! Admission control over HTTP: beyond max_in_flight_requests the server answers 503 with
//! Retry-After at once, never sheds its probes, admits again once a request ends, and does not
//! count lease long-polls while they are parked.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spillway_server::ServerConfig;
use spillway_server::testkit::{DEFAULT_DEADLINE, wait_until};

use crate::support::{Server, ok, problem, simple_job};

fn limited(max_in_flight_requests: usize) -> ServerConfig {
    ServerConfig {
        max_in_flight_requests,
        // Parked long-polls look again only when woken, so none takes a permit by itself.
        lease_recheck_interval: Duration::from_secs(60),
        ..Default::default()
    }
}

#[tokio::test]
async fn beyond_the_in_flight_limit_requests_are_shed_with_retry_after_but_probes_are_not() {
    let server = Server::with_config(limited(1)).await;
    let submitter = server.token("submitter", "default").await;
    let upload: Value = ok(
        server.post("/v1/uploads", &submitter, json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let upload_id = upload["upload_id"].as_str().expect("upload id");

    // An upload whose body arrives in part and then waits: it stays in flight.
    let (chunks, body) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    chunks
        .unbounded_send(Ok(b"first half, ".to_vec()))
        .expect("send a chunk");
    let held = tokio::spawn(
        server
            .req(
                Method::PUT,
                &format!("/v1/uploads/{upload_id}/files/held.txt"),
                &submitter,
            )
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    let admission = server.state.admission().clone();
    wait_until("the upload to be in flight", DEFAULT_DEADLINE, || {
        let admission = admission.clone();
        async move { (admission.in_flight() == 1).then_some(()) }
    })
    .await;

    let shed = server.get("/v1/jobs", &submitter).await;
    let header = |name: &str| {
        shed.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (retry_after, nosniff) = (header("retry-after"), header("x-content-type-options"));
    let shed = problem(shed, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        nosniff.as_deref(),
        Some("nosniff"),
        "shed without security headers"
    );
    assert_eq!(shed.code, "unavailable");
    assert!(
        shed.detail.contains("overloaded") && shed.detail.contains("retry after 1 second"),
        "{}",
        shed.detail
    );
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let resp = server.get(probe, "").await;
        assert_eq!(resp.status(), StatusCode::OK, "{probe} was shed");
    }
    let metrics = server
        .get("/metrics", "")
        .await
        .text()
        .await
        .expect("metrics text");
    for series in [
        "spillway_http_in_flight 1",
        "spillway_http_in_flight_limit 1",
    ] {
        assert!(
            metrics.lines().any(|line| line == series),
            "no `{series}` in /metrics:\n{metrics}"
        );
    }

    chunks
        .unbounded_send(Ok(b"second half".to_vec()))
        .expect("send a chunk");
    drop(chunks);
    let stored = held.await.expect("upload task").expect("upload answer");
    let stored: Value = ok(stored, StatusCode::CREATED).await;
    assert_eq!(stored["size"], 23);
    // The upload's answer came after its permit was given back.
    let resp = server.get("/v1/jobs", &submitter).await;
    assert_eq!(resp.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn parked_long_polls_do_not_count_against_the_in_flight_limit() {
    let server = Server::with_config(limited(1)).await;
    let submitter = server.token("submitter", "default").await;
    let work = server.token("worker", "default").await;
    let worker = server.worker(&work, &["default"]).await;

    // One after another: before it parks, a lease call is in flight (it looks up its worker
    // and queues and asks the store once), so two arriving together would exceed the limit.
    let admission = server.state.admission().clone();
    let mut polls = FuturesUnordered::new();
    for n in 1..=3 {
        let request = server.req(Method::POST, "/v1/tasks/lease", &work).json(
            &json!({"worker_id": worker, "queues": ["default"], "max_tasks": 1, "wait": "60s"}),
        );
        polls.push(tokio::spawn(async move {
            let resp = request.send().await.expect("lease answer");
            let body: Value = ok(resp, StatusCode::OK).await;
            body["tasks"].as_array().expect("tasks").len()
        }));
        wait_until("the long-poll to park", DEFAULT_DEADLINE, || {
            let admission = admission.clone();
            async move { (admission.parked() == n && admission.in_flight() == 0).then_some(()) }
        })
        .await;
    }

    // The limit of one is free for a submit; one of the parked polls gets its task.
    server.submit(&submitter, simple_job()).await;
    let first = polls.next().await.expect("a poll").expect("lease task");
    assert_eq!(first, 1, "the woken long-poll leased the task");

    // Stopping makes the others answer at once, with nothing left to lease.
    server.stop().await;
    while let Some(rest) = polls.next().await {
        assert_eq!(rest.expect("lease task"), 0);
    }
}
