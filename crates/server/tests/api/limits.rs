//! Input limits over HTTP: labels, environment, reported log tails and errors, object names,
//! and the security headers every answer carries.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spillway_core::api::{MAX_ENV_VALUE_LEN, MAX_ENV_VARS, MAX_ERROR_LEN, MAX_LABELS};
use spillway_core::keys::MAX_SEGMENT_LEN;
use spillway_core::model::LOG_TAIL_BYTES;
use spillway_server::testkit::TestServer;

use crate::support::{Server, ok, problem};

#[tokio::test]
async fn too_many_or_too_long_labels_are_a_400_naming_the_limit() {
    let server = Server::start().await;
    let before = server.snapshot().await;
    let labels: BTreeMap<String, String> = (0..=MAX_LABELS)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["true"], "labels": labels}),
        )
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        p.detail.contains("labels") && p.detail.contains(&MAX_LABELS.to_string()),
        "{}",
        p.detail
    );
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["true"], "labels": {"team": "v".repeat(257)}}),
        )
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        p.detail.contains("\"team\"") && p.detail.contains("256"),
        "{}",
        p.detail
    );
    assert_eq!(server.snapshot().await, before);
    // At the limit is fine.
    let labels: BTreeMap<String, String> = (0..MAX_LABELS)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    server
        .submit(
            &server.admin,
            json!({"command": ["true"], "labels": labels}),
        )
        .await;
    server.stop().await;
}

#[tokio::test]
async fn too_many_or_too_large_env_variables_are_a_400_naming_the_limit() {
    let server = Server::start().await;
    let before = server.snapshot().await;
    let env: BTreeMap<String, String> = (0..=MAX_ENV_VARS)
        .map(|i| (format!("V{i}"), String::new()))
        .collect();
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["true"], "env": env}),
        )
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        p.detail.contains("env") && p.detail.contains(&MAX_ENV_VARS.to_string()),
        "{}",
        p.detail
    );
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["true"], "env": {"BIG": "x".repeat(MAX_ENV_VALUE_LEN + 1)}}),
        )
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        p.detail.contains("BIG") && p.detail.contains(&MAX_ENV_VALUE_LEN.to_string()),
        "{}",
        p.detail
    );
    let resp = server
        .post(
            "/v1/jobs",
            &server.admin,
            json!({"command": ["true"], "env": {"N".repeat(300): "x"}}),
        )
        .await;
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.contains("256 bytes"), "{}", p.detail);
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

/// Lease the only task of a new one-task job; its id and lease token.
async fn leased(server: &Server) -> (i64, String) {
    server
        .submit(&server.admin, json!({"command": ["true"]}))
        .await;
    let worker = server.worker(&server.admin, &["default"]).await;
    let tasks = server.lease(&server.admin, &worker, &["default"], 1).await;
    let task = &tasks[0];
    (
        task["task_id"].as_i64().expect("task id"),
        task["lease_token"].as_str().expect("token").to_string(),
    )
}

async fn attempt(server: &Server, id: i64) -> Value {
    let detail: Value = ok(
        server.get(&format!("/v1/tasks/{id}"), &server.admin).await,
        StatusCode::OK,
    )
    .await;
    detail["attempts"][0].clone()
}

#[tokio::test]
async fn reported_log_tails_and_errors_are_cut_to_the_limits_keeping_the_telling_part() {
    let server = Server::start().await;
    let (id, token) = leased(&server).await;
    let tail = format!("{}the last line\n", "a".repeat(3 * LOG_TAIL_BYTES));
    let error = format!("exited with code 3: {}", "e".repeat(10 * MAX_ERROR_LEN));
    let resp = server
        .post(
            "/v1/tasks/fail",
            &server.admin,
            json!({"failures": [{"task_id": id, "lease_token": token, "error": error,
                                 "retryable": false, "log_tail": tail}]}),
        )
        .await;
    let answer: Value = ok(resp, StatusCode::OK).await;
    assert_eq!(answer["results"][0]["ok"], true, "{answer}");
    let a = attempt(&server, id).await;
    let stored_tail = a["log_tail"].as_str().expect("log tail");
    assert!(stored_tail.len() <= LOG_TAIL_BYTES, "{}", stored_tail.len());
    assert!(stored_tail.ends_with("the last line\n"));
    assert!(
        stored_tail.starts_with(&format!(
            "[{} earlier bytes cut by the server]\n",
            tail.len() - (stored_tail.len() - stored_tail.find('\n').expect("marker") - 1)
        )),
        "{}",
        &stored_tail[..80]
    );
    let stored_error = a["error"].as_str().expect("error");
    assert!(
        stored_error.len() <= MAX_ERROR_LEN,
        "{}",
        stored_error.len()
    );
    assert!(stored_error.starts_with("exited with code 3: eee"));
    assert!(stored_error.ends_with("more bytes cut by the server]"));
    let log = server
        .get(&format!("/v1/tasks/{id}/logs"), &server.admin)
        .await;
    assert_eq!(log.text().await.expect("log"), stored_tail);

    // The same for a completion.
    let (id, token) = leased(&server).await;
    let resp = server
        .post(
            "/v1/tasks/complete",
            &server.admin,
            json!({"completions": [{"task_id": id, "lease_token": token, "exit_code": 0,
                                    "log_tail": tail}]}),
        )
        .await;
    let answer: Value = ok(resp, StatusCode::OK).await;
    assert_eq!(answer["results"][0]["ok"], true, "{answer}");
    let stored = attempt(&server, id).await["log_tail"]
        .as_str()
        .expect("log tail")
        .to_string();
    assert!(stored.len() <= LOG_TAIL_BYTES && stored.ends_with("the last line\n"));
    server.stop().await;
}

#[tokio::test]
async fn an_object_name_over_255_bytes_is_a_400_not_a_retryable_503() {
    // On local disk such a name fails in the file system (ENAMETOOLONG), and so does one a
    // little shorter, once the partial upload's suffix is added.
    let server = TestServer::builder().disk_blobs().start().await;
    let http = reqwest::Client::new();
    let upload: Value = ok(
        http.post(format!("{}/v1/uploads", server.base))
            .bearer_auth(&server.admin)
            .json(&json!({}))
            .send()
            .await
            .expect("send"),
        StatusCode::CREATED,
    )
    .await;
    let id = upload["upload_id"].as_str().expect("upload id");
    let put = |path: String| {
        http.request(
            Method::PUT,
            format!("{}/v1/uploads/{id}/files/{path}", server.base),
        )
        .bearer_auth(&server.admin)
        .body("data")
        .send()
    };
    let long = "n".repeat(300);
    let p = problem(
        put(format!("dir/{long}.txt")).await.expect("send"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p.code, "invalid_argument");
    assert!(
        p.detail.contains(&format!("{MAX_SEGMENT_LEN} bytes")),
        "{}",
        p.detail
    );
    let fits = "n".repeat(MAX_SEGMENT_LEN);
    let stored: Value = ok(
        put(format!("dir/{fits}")).await.expect("send"),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(stored["size"], 4);
    server.stop().await;
}

#[tokio::test]
async fn api_answers_carry_the_security_headers() {
    let server = Server::start().await;
    let ok_answer = server.get("/v1/queues", &server.admin).await;
    let refused = server.get("/v1/queues", "sw_wrong").await;
    let unknown = server.get("/v1/nothing-here", &server.admin).await;
    for resp in [ok_answer, refused, unknown] {
        let h = resp.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{}", resp.url());
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }
    server.stop().await;
}
