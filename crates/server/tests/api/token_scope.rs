//! Tokens that expire and tokens limited to some queues of their tenant, over HTTP.

use std::time::Duration;

use chrono::SubsecRound;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spillway_core::clock::Clock;

use crate::support::{Server, ok, problem};

/// Create `name` queues through the API.
async fn queues(server: &Server, names: &[&str]) {
    for name in names {
        ok::<Value>(
            server
                .post("/v1/queues", &server.admin, json!({"name": name}))
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
}

/// A token of tenant `default` made with `extra` fields; answers its secret and its info.
async fn token_with(server: &Server, role: &str, extra: Value) -> (String, Value) {
    let mut body = json!({"name": format!("{role}-scoped"), "role": role, "tenant": "default"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let created: Value = ok(
        server.post("/v1/tokens", &server.admin, body).await,
        StatusCode::CREATED,
    )
    .await;
    let secret = created["token"].as_str().expect("secret").to_string();
    (secret, created["info"].clone())
}

fn job_on(queue: &str) -> Value {
    json!({"command": ["echo", "hi"], "queue": queue})
}

#[tokio::test]
async fn an_expired_token_is_refused_saying_when_it_expired() {
    let server = Server::start().await;
    // Whole seconds: the server keeps an expiry to the second.
    let expires_at = server.clock.now().trunc_subsecs(0) + chrono::TimeDelta::hours(1);
    let (secret, info) = token_with(
        &server,
        "viewer",
        json!({"expires_at": expires_at.to_rfc3339()}),
    )
    .await;
    assert_eq!(
        info["expires_at"]
            .as_str()
            .map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("time")),
        Some(expires_at.fixed_offset()),
        "{info}"
    );
    let listed: Vec<Value> = ok(
        server.get("/v1/tokens", &server.admin).await,
        StatusCode::OK,
    )
    .await;
    let listed = listed
        .iter()
        .find(|t| t["id"] == info["id"])
        .expect("listed");
    assert_eq!(listed["expires_at"], info["expires_at"]);

    // Works before its expiry (and is cached by the server then)...
    ok::<Value>(server.get("/v1/jobs", &secret).await, StatusCode::OK).await;
    // ...and not from its expiry on, cache or not.
    server.clock.advance(Duration::from_secs(3600));
    let p = problem(
        server.get("/v1/jobs", &secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(p.detail.contains("expired at"), "{}", p.detail);
    assert!(
        p.detail.contains("ask an admin for a new one"),
        "{}",
        p.detail
    );

    // An expiry that is not ahead is refused at creation, saying how to fix it.
    let past = server.clock.now() - chrono::TimeDelta::minutes(1);
    let p = problem(
        server
            .post(
                "/v1/tokens",
                &server.admin,
                json!({"name": "late", "role": "viewer", "expires_at": past.to_rfc3339()}),
            )
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(p.detail.contains("is not in the future"), "{}", p.detail);
    server.stop().await;
}

#[tokio::test]
async fn a_queue_scoped_submitter_sees_and_touches_only_its_queues() {
    let server = Server::start().await;
    queues(&server, &["orders", "images", "payroll"]).await;
    let (submitter, info) = token_with(
        &server,
        "submitter",
        json!({"queues": ["orders", "images"]}),
    )
    .await;
    assert_eq!(info["queues"], json!(["orders", "images"]));

    let p = problem(
        server.post("/v1/jobs", &submitter, job_on("payroll")).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(p.detail.contains("orders, images"), "{}", p.detail);
    let own = server.submit(&submitter, job_on("orders")).await;
    let images = server.submit(&submitter, job_on("images")).await;
    let payroll = server.submit(&server.admin, job_on("payroll")).await;
    let default = server.submit(&server.admin, job_on("default")).await;

    // Another queue's job is not found, as another tenant's would be: read, cancel, retry,
    // its tasks, its results.
    for path in [
        format!("/v1/jobs/{payroll}"),
        format!("/v1/jobs/{payroll}/tasks"),
        format!("/v1/jobs/{payroll}/results"),
    ] {
        problem(server.get(&path, &submitter).await, StatusCode::NOT_FOUND).await;
    }
    for path in [
        format!("/v1/jobs/{payroll}/cancel"),
        format!("/v1/jobs/{payroll}/retry"),
    ] {
        problem(
            server.post(&path, &submitter, json!({})).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let job: Value = ok(
        server
            .get(&format!("/v1/jobs/{payroll}"), &server.admin)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        job["counts"]["cancelled"], 0,
        "the refused cancel changed nothing"
    );
    let tasks: Value = ok(
        server
            .get(&format!("/v1/jobs/{payroll}/tasks"), &server.admin)
            .await,
        StatusCode::OK,
    )
    .await;
    let task_id = tasks["items"][0]["id"].to_string();
    assert!(!tasks["items"][0]["id"].is_null(), "{tasks}");
    for path in [
        format!("/v1/tasks/{task_id}"),
        format!("/v1/tasks/{task_id}/why"),
        format!("/v1/tasks/{task_id}/logs"),
    ] {
        problem(server.get(&path, &submitter).await, StatusCode::NOT_FOUND).await;
    }
    problem(
        server.get("/v1/queues/payroll", &submitter).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        server.get("/v1/jobs?queue=payroll", &submitter).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Its own queues' jobs it reads and cancels.
    ok::<Value>(
        server.get(&format!("/v1/jobs/{own}"), &submitter).await,
        StatusCode::OK,
    )
    .await;
    ok::<Value>(
        server
            .post(&format!("/v1/jobs/{own}/cancel"), &submitter, json!({}))
            .await,
        StatusCode::OK,
    )
    .await;

    // Lists hold only its queues.
    let jobs: Value = ok(server.get("/v1/jobs", &submitter).await, StatusCode::OK).await;
    let mut ids: Vec<&str> = jobs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut want = vec![own.as_str(), images.as_str()];
    want.sort_unstable();
    assert_eq!(
        ids, want,
        "jobs of payroll ({payroll}) and default ({default}) left out"
    );
    let queues: Vec<Value> = ok(server.get("/v1/queues", &submitter).await, StatusCode::OK).await;
    let mut names: Vec<&str> = queues.iter().filter_map(|q| q["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["images", "orders"]);
    let dead: Value = ok(server.get("/v1/dead", &submitter).await, StatusCode::OK).await;
    assert!(
        dead["items"].as_array().is_some_and(Vec::is_empty),
        "{dead}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_queue_scoped_worker_leases_only_from_its_queues() {
    let server = Server::start().await;
    queues(&server, &["orders", "payroll"]).await;
    let (worker_token, _) = token_with(&server, "worker", json!({"queues": ["orders"]})).await;
    server.submit(&server.admin, job_on("payroll")).await;
    let order = server.submit(&server.admin, job_on("orders")).await;

    let p = problem(
        server
            .post(
                "/v1/workers",
                &worker_token,
                json!({"hostname": "h", "queues": ["payroll"], "concurrency": 1}),
            )
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(p.detail.contains("orders"), "{}", p.detail);
    let worker = server.worker(&worker_token, &["orders"]).await;
    for asked in [json!(["payroll"]), json!(["orders", "payroll"])] {
        let p = problem(
            server
                .post(
                    "/v1/tasks/lease",
                    &worker_token,
                    json!({"worker_id": worker, "queues": asked, "max_tasks": 10}),
                )
                .await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert!(p.detail.contains("orders"), "{}", p.detail);
    }
    let leased = server.lease(&worker_token, &worker, &["orders"], 10).await;
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(leased[0]["job_id"].as_str(), Some(order.as_str()));
    // The payroll task is still there for a worker allowed to take it.
    let snapshot = server
        .req(Method::GET, "/v1/queues/payroll", &server.admin)
        .send()
        .await
        .expect("send");
    let payroll: Value = ok(snapshot, StatusCode::OK).await;
    assert_eq!(payroll["stats"]["counts"]["available"], 1, "{payroll}");
    server.stop().await;
}

#[tokio::test]
async fn queue_scopes_are_checked_at_creation() {
    let server = Server::start().await;
    queues(&server, &["orders"]).await;
    let create = |body: Value| server.post("/v1/tokens", &server.admin, body);
    let p = problem(
        create(json!({"name": "a", "role": "admin", "tenant": "default", "queues": ["orders"]}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        p.detail.contains("an admin can mint tokens"),
        "{}",
        p.detail
    );
    let p = problem(
        create(json!({"name": "s", "role": "submitter", "queues": ["nosuch"]})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(p.detail.contains("create it first"), "{}", p.detail);
    let p = problem(
        create(json!({"name": "s", "role": "submitter", "queues": []})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(p.detail.contains("leave it out"), "{}", p.detail);
    server.stop().await;
}
