//! Background services against the real store, moved by the test's clock.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spillway_server::spawn_services;
use spillway_server::testkit::{POLL_INTERVAL, SteppedClock};
use tokio_util::sync::CancellationToken;

use crate::support::{Server, ok, problem};

#[tokio::test]
async fn the_reaper_takes_back_expired_leases() {
    let server = Server::start().await;
    ok::<Value>(
        server
            .post(
                "/v1/queues",
                &server.admin,
                json!({"name": "short", "settings": {"lease_duration": "2s"}}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await;
    let stop = CancellationToken::new();
    let mut services = spawn_services(&server.state, stop.clone());
    let worker = server.worker(&server.admin, &["short"]).await;
    server
        .submit(&server.admin, json!({"command": ["x"], "queue": "short"}))
        .await;
    let leased = server.lease(&server.admin, &worker, &["short"], 1).await;
    let id = leased[0]["task_id"].as_i64().expect("id");

    services.lease_reaper.run_pass().await;
    let task: Value = ok(
        server.get(&format!("/v1/tasks/{id}"), &server.admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        task["task"]["state"], "leased",
        "reaped before the lease ran out"
    );

    server.clock.advance(Duration::from_secs(3));
    services.lease_reaper.run_pass().await;
    let task: Value = ok(
        server.get(&format!("/v1/tasks/{id}"), &server.admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(task["task"]["state"], "retrying");
    assert_eq!(task["attempts"][0]["outcome"], "lease_expired");
    let text = server
        .get("/metrics", "")
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        text.contains(r#"spillway_task_outcomes_total{queue="unknown",outcome="lease_expired"} 1"#),
        "{text}"
    );

    stop.cancel();
    services.join().await;
    server.stop().await;
}

#[tokio::test]
async fn silent_workers_are_marked_down() {
    let server = Server::start().await;
    let stop = CancellationToken::new();
    let mut services = spawn_services(&server.state, stop.clone());
    let worker = server.worker(&server.admin, &["default"]).await;
    let state_of = |list: &Value| {
        list["workers"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["id"] == worker.as_str()))
            .map(|w| w["state"].clone())
    };
    server.clock.advance(Duration::from_secs(31));
    services.worker_down.run_pass().await;
    let list: Value = ok(
        server.get("/v1/workers", &server.admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state_of(&list), Some(json!("down")));
    stop.cancel();
    services.join().await;
    server.stop().await;
}

#[tokio::test]
async fn inputs_of_succeeded_jobs_are_deleted_when_asked() {
    let server = Server::start().await;
    let stop = CancellationToken::new();
    let mut services = spawn_services(&server.state, stop.clone());
    let upload: Value = ok(
        server.post("/v1/uploads", &server.admin, json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let upload_id = upload["upload_id"].as_str().expect("id");
    let resp = server
        .req(
            Method::PUT,
            &format!("/v1/uploads/{upload_id}/files/in.txt"),
            &server.admin,
        )
        .body("input")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let job = server
        .submit(
            &server.admin,
            json!({"command": ["x"], "upload_id": upload_id, "delete_inputs_on_success": true}),
        )
        .await;
    let worker = server.worker(&server.admin, &["default"]).await;
    let leased = server.lease(&server.admin, &worker, &["default"], 1).await;
    services.input_cleaner.run_pass().await;
    let inputs: Value = ok(
        server
            .get(&format!("/v1/jobs/{job}/inputs"), &server.admin)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        inputs.as_array().map(Vec::len),
        Some(1),
        "deleted before the job succeeded"
    );

    let resp = server
        .post(
            &format!("/v1/tasks/{}/complete", leased[0]["task_id"]),
            &server.admin,
            json!({"task_id": leased[0]["task_id"], "lease_token": leased[0]["lease_token"]}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    services.input_cleaner.run_pass().await;
    let inputs: Value = ok(
        server
            .get(&format!("/v1/jobs/{job}/inputs"), &server.admin)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(inputs, json!([]));
    stop.cancel();
    services.join().await;
    server.stop().await;
}

#[tokio::test]
async fn retention_removes_finished_jobs_and_their_files() {
    let server = Server::start().await;
    ok::<Value>(
        server
            .post(
                "/v1/queues",
                &server.admin,
                json!({"name": "brief", "settings": {"retention": "1h"}}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await;
    let stop = CancellationToken::new();
    let mut services = spawn_services(&server.state, stop.clone());
    let job = server
        .submit(&server.admin, json!({"command": ["x"], "queue": "brief"}))
        .await;
    let worker = server.worker(&server.admin, &["brief"]).await;
    let leased = server.lease(&server.admin, &worker, &["brief"], 1).await;
    let id = leased[0]["task_id"].as_i64().expect("id");
    let resp = server
        .req(
            Method::PUT,
            &format!("/v1/tasks/{id}/results/out.txt"),
            &server.admin,
        )
        .header(
            "spillway-lease-token",
            leased[0]["lease_token"].as_str().expect("token"),
        )
        .body("result")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = server
        .post(
            &format!("/v1/tasks/{id}/complete"),
            &server.admin,
            json!({"task_id": id, "lease_token": leased[0]["lease_token"]}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    services.retention.run_pass().await;
    ok::<Value>(
        server.get(&format!("/v1/jobs/{job}"), &server.admin).await,
        StatusCode::OK,
    )
    .await;

    server.clock.advance(Duration::from_secs(2 * 3600));
    services.retention.run_pass().await;
    problem(
        server.get(&format!("/v1/jobs/{job}"), &server.admin).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let left = server
        .blobs
        .list(&format!("default/results/{job}"))
        .await
        .expect("list");
    assert!(left.is_empty(), "results left behind: {left:?}");
    stop.cancel();
    services.join().await;
    server.stop().await;
}

#[tokio::test]
async fn a_step_of_the_wall_clock_neither_expires_running_leases_nor_keeps_expired_ones() {
    let wall = SteppedClock::default();
    let server = Server::with_wall_clock(std::sync::Arc::new(wall.clone())).await;
    ok::<Value>(
        server
            .post(
                "/v1/queues",
                &server.admin,
                json!({"name": "short", "settings": {"lease_duration": "2s"}}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await;
    let stop = CancellationToken::new();
    let mut services = spawn_services(&server.state, stop.clone());
    let worker = server.worker(&server.admin, &["short"]).await;
    server
        .submit(&server.admin, json!({"command": ["x"], "queue": "short"}))
        .await;
    let leased = server.lease(&server.admin, &worker, &["short"], 1).await;
    let id = leased[0]["task_id"].as_i64().expect("id");
    // An hour forward: the two-second lease has not run out in any real sense.
    wall.step(chrono::TimeDelta::hours(1));
    services.lease_reaper.run_pass().await;
    assert_eq!(
        task_state(&server, id).await,
        "leased",
        "a clock step forward expired a running lease"
    );

    // Two hours back (an hour behind): the lease still runs out about when it should.
    wall.step(chrono::TimeDelta::hours(-2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while task_state(&server, id).await != "retrying" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a clock step back kept an expired lease"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
        services.lease_reaper.run_pass().await;
    }
    stop.cancel();
}

async fn task_state(server: &Server, id: i64) -> String {
    let task: Value = ok(
        server.get(&format!("/v1/tasks/{id}"), &server.admin).await,
        StatusCode::OK,
    )
    .await;
    task["task"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
