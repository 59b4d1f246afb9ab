//! The life of a job through the API: stage inputs, submit, lease, upload results, complete.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spillway_server::ServerConfig;
use spillway_server::testkit::{DEFAULT_DEADLINE, wait_until};

use crate::support::{Server, ok, problem, simple_job};

#[tokio::test]
async fn submit_lease_upload_and_complete_round_trip() {
    let server = Server::start().await;
    let submitter = server.token("submitter", "default").await;
    let work = server.token("worker", "default").await;

    let upload: Value = ok(
        server.post("/v1/uploads", &submitter, json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let upload_id = upload["upload_id"].as_str().expect("upload id").to_string();
    let resp = server
        .req(
            Method::PUT,
            &format!("/v1/uploads/{upload_id}/files/data/in.txt"),
            &submitter,
        )
        .body("hello input")
        .send()
        .await
        .expect("send");
    let stored: Value = ok(resp, StatusCode::CREATED).await;
    assert_eq!(stored, json!({"path": "data/in.txt", "size": 11}));

    let submitted: Value = ok(
        server
            .post(
                "/v1/jobs",
                &submitter,
                json!({"command": ["cat"], "tasks": [{"payload": {"n": 0}}, {"payload": {"n": 1}}],
                       "upload_id": upload_id, "labels": {"team": "data"}, "idempotency_key": "k1"}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(submitted["created"], true);
    let job = submitted["job"]["id"].as_str().expect("job id").to_string();
    assert_eq!(submitted["job"]["task_count"], 2);
    assert_eq!(submitted["job"]["has_inputs"], true);
    // The upload area was moved to the job's inputs.
    let leftover = server
        .blobs
        .list(&format!("default/uploads/{upload_id}"))
        .await
        .expect("list");
    assert!(leftover.is_empty(), "upload left behind: {leftover:?}");

    // Submitting again with the same key answers with the same job (200) and writes nothing.
    let before = server.snapshot().await;
    let again: Value = ok(
        server
            .post(
                "/v1/jobs",
                &submitter,
                json!({"command": ["cat"], "idempotency_key": "k1"}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["created"], false);
    assert_eq!(again["job"]["id"], job.as_str());
    assert_eq!(server.snapshot().await, before);

    let by_label: Value = ok(
        server.get("/v1/jobs?label=team=data", &submitter).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_label["items"][0]["id"], job.as_str());

    let worker = server.worker(&work, &["default"]).await;
    let leased = server.lease(&work, &worker, &["default"], 10).await;
    assert_eq!(leased.len(), 2);
    assert!(leased.iter().all(|t| t["has_inputs"] == true));

    let resp = server
        .get(&format!("/v1/jobs/{job}/inputs/data/in.txt"), &work)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "hello input");
    let inputs: Value = ok(
        server.get(&format!("/v1/jobs/{job}/inputs"), &work).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(inputs, json!([{"path": "data/in.txt", "size": 11}]));

    for task in &leased {
        let id = task["task_id"].as_i64().expect("id");
        let token = task["lease_token"].as_str().expect("token");
        let index = task["index"].as_u64().expect("index");
        let resp = server
            .req(
                Method::PUT,
                &format!("/v1/tasks/{id}/results/out.txt"),
                &work,
            )
            .header("spillway-lease-token", token)
            .body(format!("result {index}"))
            .send()
            .await
            .expect("send");
        ok::<Value>(resp, StatusCode::CREATED).await;
    }

    // One through the batch call, one through the single-task call.
    let (first, second) = (&leased[0], &leased[1]);
    let report: Value = ok(
        server
            .post(
                "/v1/tasks/complete",
                &work,
                json!({"completions": [{"task_id": first["task_id"], "lease_token": first["lease_token"],
                                        "exit_code": 0, "log_tail": "all good"}]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["results"][0]["ok"], true);
    let id = second["task_id"].as_i64().expect("id");
    let resp = server
        .post(
            &format!("/v1/tasks/{id}/complete"),
            &work,
            json!({"task_id": id, "lease_token": second["lease_token"], "exit_code": 0}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let done: Value = ok(
        server.get(&format!("/v1/jobs/{job}"), &submitter).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["counts"]["succeeded"], 2);

    let results: Value = ok(
        server
            .get(&format!("/v1/jobs/{job}/results"), &submitter)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        results,
        json!([{"path": "0/out.txt", "size": 8}, {"path": "1/out.txt", "size": 8}])
    );
    let resp = server
        .get(&format!("/v1/jobs/{job}/results/1/out.txt"), &submitter)
        .await;
    assert_eq!(resp.text().await.expect("body"), "result 1");

    let first_id = first["task_id"].as_i64().expect("id");
    let resp = server
        .get(&format!("/v1/tasks/{first_id}/logs"), &submitter)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "all good");
    let detail: Value = ok(
        server
            .get(&format!("/v1/tasks/{first_id}"), &submitter)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(detail["task"]["state"], "succeeded");
    assert_eq!(detail["attempts"].as_array().map(Vec::len), Some(1));
    server.stop().await;
}

#[tokio::test]
async fn stale_reports_and_uploads_are_409_and_change_nothing() {
    let server = Server::start().await;
    ok::<Value>(
        server
            .post(
                "/v1/queues",
                &server.admin,
                json!({"name": "short", "settings": {"lease_duration": "1s", "backoff_base": "1s", "backoff_max": "1s"}}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await;
    let worker = server.worker(&server.admin, &["short"]).await;
    server
        .submit(&server.admin, json!({"command": ["x"], "queue": "short"}))
        .await;
    let first = server
        .lease(&server.admin, &worker, &["short"], 1)
        .await
        .remove(0);
    let id = first["task_id"].as_i64().expect("id");
    let stale = first["lease_token"].as_str().expect("token").to_string();

    // The lease runs out, the reaper takes it back, and after the backoff another lease wins.
    server.clock.advance(Duration::from_secs(5));
    let reaped = spillway_server::services::lease_reaper::pass(&server.state)
        .await
        .expect("reap");
    assert_eq!(reaped, 1);
    server.clock.advance(Duration::from_secs(5));
    let second = server
        .lease(&server.admin, &worker, &["short"], 1)
        .await
        .remove(0);
    assert_eq!(second["task_id"].as_i64(), Some(id));
    let current = second["lease_token"].as_str().expect("token").to_string();
    assert_ne!(current, stale);

    let before = server.snapshot().await;
    let resp = server
        .post(
            &format!("/v1/tasks/{id}/complete"),
            &server.admin,
            json!({"task_id": id, "lease_token": stale}),
        )
        .await;
    let p = problem(resp, StatusCode::CONFLICT).await;
    assert_eq!(p.code, "conflict");
    let resp = server
        .post(
            &format!("/v1/tasks/{id}/fail"),
            &server.admin,
            json!({"task_id": id, "lease_token": stale, "error": "boom"}),
        )
        .await;
    problem(resp, StatusCode::CONFLICT).await;
    let resp = server
        .req(
            Method::PUT,
            &format!("/v1/tasks/{id}/results/out.txt"),
            &server.admin,
        )
        .header("spillway-lease-token", &stale)
        .body("late result")
        .send()
        .await
        .expect("send");
    problem(resp, StatusCode::CONFLICT).await;
    let report: Value = ok(
        server
            .post(
                "/v1/tasks/complete",
                &server.admin,
                json!({"completions": [{"task_id": id, "lease_token": stale}]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["results"][0]["ok"], false);
    assert!(report["results"][0]["error"].is_string());
    // Body and path must name the same task.
    let resp = server
        .post(
            &format!("/v1/tasks/{}/complete", id + 1),
            &server.admin,
            json!({"task_id": id, "lease_token": current}),
        )
        .await;
    problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(server.snapshot().await, before);

    // The current holder still completes.
    let resp = server
        .post(
            &format!("/v1/tasks/{id}/complete"),
            &server.admin,
            json!({"task_id": id, "lease_token": current}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_lease_wakes_when_work_is_submitted() {
    // Recheck so rarely that only the wake-up can deliver the task within the wait.
    let server = Server::with_config(ServerConfig {
        lease_recheck_interval: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let worker = server.worker(&server.admin, &["default"]).await;
    let http = server.http.clone();
    let url = format!("{}/v1/tasks/lease", server.base);
    let token = server.admin.clone();
    let body = json!({"worker_id": worker, "queues": ["default"], "wait": "30s"});
    let waiting = tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("send");
        ok::<Value>(resp, StatusCode::OK).await
    });
    wait_until("the lease call to wait", DEFAULT_DEADLINE, || async {
        let text = server
            .get("/metrics", "")
            .await
            .text()
            .await
            .unwrap_or_default();
        text.contains("spillway_lease_waiters 1").then_some(())
    })
    .await;
    let job = server.submit(&server.admin, simple_job()).await;
    let answer = waiting.await.expect("lease task");
    let tasks = answer["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1, "woke without the task: {answer}");
    assert_eq!(tasks[0]["job_id"], job.as_str());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_a_waiting_lease_with_no_tasks() {
    let server = Server::start().await;
    let worker = server.worker(&server.admin, &["default"]).await;
    let http = server.http.clone();
    let url = format!("{}/v1/tasks/lease", server.base);
    let token = server.admin.clone();
    let body = json!({"worker_id": worker, "queues": ["default"], "wait": "60s"});
    let waiting = tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("send");
        ok::<Value>(resp, StatusCode::OK).await
    });
    wait_until("the lease call to wait", DEFAULT_DEADLINE, || async {
        let text = server
            .get("/metrics", "")
            .await
            .text()
            .await
            .unwrap_or_default();
        text.contains("spillway_lease_waiters 1").then_some(())
    })
    .await;
    server.stop().await;
    let answer = waiting.await.expect("lease task");
    assert_eq!(answer["tasks"], json!([]));
}
