//! Bad input gets a clear problem+json answer and writes nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;
use spillway_server::ServerConfig;
use spillway_server::size::ByteSize;

use crate::support::{Server, problem, simple_job};

#[tokio::test]
async fn malformed_json_is_a_400_that_says_so() {
    let server = Server::start().await;
    let before = server.snapshot().await;
    let resp = server
        .req(Method::POST, "/v1/jobs", &server.admin)
        .header("content-type", "application/json")
        .body("{\"command\": [\"echo\"")
        .send()
        .await
        .expect("send");
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.contains("malformed JSON"), "{}", p.detail);
    assert_eq!(p.code, "invalid_argument");
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn unknown_fields_are_named_in_the_problem() {
    let server = Server::start().await;
    let before = server.snapshot().await;
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["echo"], "prioritty": 5}),
        )
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.contains("prioritty"), "{}", p.detail);
    let resp = server
        .post(
            "/v1/queues",
            &server.admin,
            json!({"name": "q", "settings": {"max_attempt": 3}}),
        )
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.contains("max_attempt"), "{}", p.detail);
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn oversize_body_and_payload_are_413() {
    let server = Server::with_config(ServerConfig {
        max_body_bytes: ByteSize(64 * 1024),
        max_payload_bytes: ByteSize(1024),
        ..Default::default()
    })
    .await;
    let before = server.snapshot().await;
    let huge = "x".repeat(100 * 1024);
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["echo"], "name": huge}),
        )
        .await;
    let p = problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(p.detail.contains("max_body_bytes"), "{}", p.detail);

    let payload = "y".repeat(2048);
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["echo"], "tasks": [{"payload": payload}]}),
        )
        .await;
    let p = problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(p.detail.contains("payload of task 0"), "{}", p.detail);
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn oversize_upload_is_413_and_stores_nothing() {
    let server = Server::with_config(ServerConfig {
        max_upload_bytes: ByteSize(1024),
        ..Default::default()
    })
    .await;
    let upload: serde_json::Value = crate::support::ok(
        server.post("/v1/uploads", &server.admin, json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let id = upload["upload_id"].as_str().expect("id");
    let before = server.snapshot().await;
    let resp = server
        .req(
            Method::PUT,
            &format!("/v1/uploads/{id}/files/big.bin"),
            &server.admin,
        )
        .body(vec![0u8; 4096])
        .send()
        .await
        .expect("send");
    let p = problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(p.detail.contains("max_upload_bytes"), "{}", p.detail);
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn invalid_names_are_400() {
    let server = Server::start().await;
    let before = server.snapshot().await;
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["echo"], "queue": "Bad Queue"}),
        )
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.contains("invalid queue name"), "{}", p.detail);
    let resp = server
        .post("/v1/queues", &server.admin, json!({"name": "../etc"}))
        .await;
    problem(resp, StatusCode::BAD_REQUEST).await;
    let resp = server
        .post("/v1/tenants", &server.admin, json!({"name": "Acme Corp"}))
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.contains("invalid tenant name"), "{}", p.detail);
    let resp = server.get("/v1/jobs?tenant=..", &server.admin).await;
    problem(resp, StatusCode::BAD_REQUEST).await;
    // An admin of every tenant cannot stage files under a tenant that does not exist.
    let resp = server
        .req(
            Method::PUT,
            "/v1/uploads/0123456789abcdef0123456789abcdef/files/x?tenant=ghost",
            &server.admin,
        )
        .body("data")
        .send()
        .await
        .expect("send");
    let p = problem(resp, StatusCode::NOT_FOUND).await;
    assert!(p.detail.contains("ghost"), "{}", p.detail);
    assert!(server.blobs.list("ghost").await.expect("list").is_empty());
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn path_traversal_in_uploads_and_results_is_refused() {
    let server = Server::start().await;
    let upload: serde_json::Value = crate::support::ok(
        server.post("/v1/uploads", &server.admin, json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let id = upload["upload_id"].as_str().expect("id").to_string();
    let worker = server.worker(&server.admin, &["default"]).await;
    server.submit(&server.admin, simple_job()).await;
    let leased = server.lease(&server.admin, &worker, &["default"], 1).await;
    let task_id = leased[0]["task_id"].as_i64().expect("task id");
    let token = leased[0]["lease_token"]
        .as_str()
        .expect("token")
        .to_string();
    let before = server.snapshot().await;
    // Encoded slashes keep the dots from being resolved by the URL parser on the way.
    for bad in [
        "..%2F..%2Fescape.txt",
        "a%2F..%2F..%2Fx",
        "a%2F%2Fb",
        "dir%5Cfile",
    ] {
        let resp = server
            .req(
                Method::PUT,
                &format!("/v1/uploads/{id}/files/{bad}"),
                &server.admin,
            )
            .body("data")
            .send()
            .await
            .expect("send");
        let p = problem(resp, StatusCode::BAD_REQUEST).await;
        assert!(
            p.detail.contains("invalid object path"),
            "{bad}: {}",
            p.detail
        );
        let resp = server
            .req(
                Method::PUT,
                &format!("/v1/tasks/{task_id}/results/{bad}"),
                &server.admin,
            )
            .header("spillway-lease-token", &token)
            .body("data")
            .send()
            .await
            .expect("send");
        let p = problem(resp, StatusCode::BAD_REQUEST).await;
        assert!(
            p.detail.contains("invalid object path"),
            "{bad}: {}",
            p.detail
        );
    }
    let resp = server
        .req(
            Method::PUT,
            "/v1/uploads/..%2F..%2Fother/files/x",
            &server.admin,
        )
        .body("data")
        .send()
        .await
        .expect("send");
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.contains("invalid upload id"), "{}", p.detail);
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn unknown_queue_job_and_upload_are_404() {
    let server = Server::start().await;
    let before = server.snapshot().await;
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["echo"], "queue": "nope"}),
        )
        .await;
    let p = problem(resp, StatusCode::NOT_FOUND).await;
    assert!(p.detail.contains("nope"), "{}", p.detail);
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["echo"], "upload_id": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    let p = problem(resp, StatusCode::NOT_FOUND).await;
    assert!(p.detail.contains("upload"), "{}", p.detail);
    let resp = server
        .get(
            "/v1/jobs/0190c2a4-0000-7000-8000-000000000000",
            &server.admin,
        )
        .await;
    problem(resp, StatusCode::NOT_FOUND).await;
    let resp = server.get("/v1/tasks/999999", &server.admin).await;
    problem(resp, StatusCode::NOT_FOUND).await;
    let resp = server.get("/v1/queues/nope", &server.admin).await;
    problem(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn bad_query_parameters_are_400() {
    let server = Server::start().await;
    for query in [
        "state=bogus",
        "limit=0",
        "limit=5000",
        "limit=ten",
        "limit=1&limit=2",
        "queue=a&queue=b",
        "colour=blue",
        // A bare key is a valid selector (any value); an empty key is not.
        "label==x",
    ] {
        let resp = server
            .get(&format!("/v1/jobs?{query}"), &server.admin)
            .await;
        problem(resp, StatusCode::BAD_REQUEST).await;
    }
    let resp = server.get("/v1/tasks/not-a-number", &server.admin).await;
    problem(resp, StatusCode::BAD_REQUEST).await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_submits_name_the_problem() {
    let server = Server::start().await;
    let before = server.snapshot().await;
    for (body, needle) in [
        (json!({"command": []}), "command is empty"),
        (json!({"command": ["x"], "count": 0}), "1 to"),
        (json!({"command": ["x"], "priority": 5000}), "priority"),
        (
            json!({"command": ["x"], "count": 2, "tasks": [{}]}),
            "either count or tasks",
        ),
        (
            json!({"command": ["x"], "upload_id": "../../x"}),
            "invalid upload id",
        ),
    ] {
        let resp = server.post("/v1/jobs", &server.admin, body).await;
        let p = problem(resp, StatusCode::BAD_REQUEST).await;
        assert!(p.detail.contains(needle), "{needle}: {}", p.detail);
    }
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn a_bulk_cancel_needs_a_valid_selector_and_changes_nothing_without_one() {
    let server = Server::start().await;
    let mut labelled = simple_job();
    labelled["labels"] = json!({"team": "a"});
    let job = server.submit(&server.admin, labelled).await;
    let before = server.snapshot().await;
    for (body, says) in [
        (json!({}), "needs a selector"),
        (json!({"dry_run": true}), "needs a selector"),
        (json!({"state": "succeeded"}), "finished"),
        (json!({"labels": ["bad key=1"]}), "bad key=1"),
        (json!({"queue": "Bad Name"}), "Bad Name"),
    ] {
        let resp = server
            .post("/v1/jobs/cancel", &server.admin, body.clone())
            .await;
        let p = problem(resp, StatusCode::BAD_REQUEST).await;
        assert!(p.detail.contains(says), "{body}: {}", p.detail);
    }
    assert_eq!(server.snapshot().await, before, "a refused cancel wrote");
    // A dry run names the job and cancels nothing; the real one cancels it.
    let resp = server
        .post(
            "/v1/jobs/cancel",
            &server.admin,
            json!({"labels": ["team=a"], "dry_run": true}),
        )
        .await;
    let dry: serde_json::Value = crate::support::ok(resp, StatusCode::OK).await;
    assert_eq!(dry["jobs"], json!([job.clone()]));
    assert_eq!(server.snapshot().await, before, "a dry run wrote");
    let resp = server
        .post(
            "/v1/jobs/cancel",
            &server.admin,
            json!({"labels": ["team"]}),
        )
        .await;
    let done: serde_json::Value = crate::support::ok(resp, StatusCode::OK).await;
    assert_eq!(done["jobs"], json!([job]));
    assert_eq!(done["dry_run"], false);
}
