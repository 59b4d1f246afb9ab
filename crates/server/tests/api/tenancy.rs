//! Tokens, roles and tenants: who may do what, and another tenant's objects stay invisible.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, ok, problem, simple_job};

#[tokio::test]
async fn missing_and_unknown_tokens_are_401_with_a_challenge() {
    let server = Server::start().await;
    let before = server.snapshot().await;
    let resp = server
        .http
        .post(format!("{}/v1/jobs", server.base))
        .json(&simple_job())
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let p = problem(resp, StatusCode::UNAUTHORIZED).await;
    assert!(p.detail.contains("missing bearer token"), "{}", p.detail);

    let resp = server
        .post("/v1/jobs", "sw_not-a-real-token", simple_job())
        .await;
    assert!(resp.headers().contains_key("www-authenticate"));
    let p = problem(resp, StatusCode::UNAUTHORIZED).await;
    assert!(p.detail.contains("unknown or revoked"), "{}", p.detail);

    let resp = server
        .http
        .get(format!("{}/v1/jobs", server.base))
        .header("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
        .send()
        .await
        .expect("send");
    problem(resp, StatusCode::UNAUTHORIZED).await;
    assert_eq!(server.snapshot().await, before);
    server.stop().await;
}

#[tokio::test]
async fn roles_limit_what_a_token_may_do() {
    let server = Server::start().await;
    let viewer = server.token("viewer", "default").await;
    let worker = server.token("worker", "default").await;
    let submitter = server.token("submitter", "default").await;
    let before = server.snapshot().await;

    let p = problem(
        server.post("/v1/jobs", &viewer, simple_job()).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(p.detail.contains("viewer"), "{}", p.detail);
    assert_eq!(p.code, "permission_denied");
    problem(
        server.post("/v1/jobs", &worker, simple_job()).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        server
            .post("/v1/queues", &submitter, json!({"name": "mine"}))
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        server
            .post(
                "/v1/tokens",
                &submitter,
                json!({"name": "x", "role": "admin"}),
            )
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        server
            .post(
                "/v1/workers",
                &submitter,
                json!({"hostname": "h", "queues": ["default"], "concurrency": 1}),
            )
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    // The role is checked before the body is even parsed.
    let resp = server
        .req(Method::POST, "/v1/jobs", &viewer)
        .body("not json")
        .send()
        .await
        .expect("send");
    problem(resp, StatusCode::FORBIDDEN).await;
    assert_eq!(server.snapshot().await, before);

    // Viewers still read.
    let page: Value = ok(server.get("/v1/jobs", &viewer).await, StatusCode::OK).await;
    assert!(page["items"].as_array().is_some());
    server.stop().await;
}

#[tokio::test]
async fn another_tenants_objects_are_404() {
    let server = Server::start().await;
    ok::<Value>(
        server
            .post("/v1/tenants", &server.admin, json!({"name": "acme"}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let acme = server.token("admin", "acme").await;
    let ours = server.token("submitter", "default").await;
    let job = server.submit(&ours, simple_job()).await;
    let before = server.snapshot().await;

    for path in [
        format!("/v1/jobs/{job}"),
        format!("/v1/jobs/{job}/tasks"),
        format!("/v1/jobs/{job}/inputs"),
        format!("/v1/jobs/{job}/results"),
    ] {
        let p = problem(server.get(&path, &acme).await, StatusCode::NOT_FOUND).await;
        assert!(
            !p.detail.contains("default"),
            "leaks the tenant: {}",
            p.detail
        );
    }
    problem(
        server
            .post(&format!("/v1/jobs/{job}/cancel"), &acme, json!({}))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Asking for the other tenant by name does not help a tenant-bound token.
    problem(
        server
            .get(&format!("/v1/jobs/{job}?tenant=default"), &acme)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let task = server
        .store
        .task_list(spillway_store::TaskList {
            job_id: Some(job.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("tasks")
        .items[0]
        .id;
    problem(
        server.get(&format!("/v1/tasks/{task}"), &acme).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(server.snapshot().await, before);

    // The acme admin's lists show only acme.
    let jobs: Value = ok(server.get("/v1/jobs", &acme).await, StatusCode::OK).await;
    assert_eq!(jobs["items"].as_array().map(Vec::len), Some(0));
    let tenants: Value = ok(server.get("/v1/tenants", &acme).await, StatusCode::OK).await;
    assert_eq!(tenants, json!([tenants[0].clone()]));
    assert_eq!(tenants[0]["name"], "acme");
    // The admin of every tenant sees the job.
    ok::<Value>(
        server.get(&format!("/v1/jobs/{job}"), &server.admin).await,
        StatusCode::OK,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn revoked_tokens_stop_working_at_once() {
    let server = Server::start().await;
    let created: Value = ok(
        server
            .post(
                "/v1/tokens",
                &server.admin,
                json!({"name": "ci", "role": "submitter", "tenant": "default"}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await;
    let secret = created["token"].as_str().expect("secret");
    assert!(secret.starts_with("sw_"));
    let id = created["info"]["id"].as_str().expect("id");
    ok::<Value>(server.get("/v1/jobs", secret).await, StatusCode::OK).await;
    let listed: Value = ok(
        server.get("/v1/tokens", &server.admin).await,
        StatusCode::OK,
    )
    .await;
    assert!(listed.to_string().contains(id));
    assert!(
        !listed.to_string().contains(secret),
        "secrets are never listed"
    );
    let resp = server
        .req(Method::DELETE, &format!("/v1/tokens/{id}"), &server.admin)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    problem(
        server.get("/v1/jobs", secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn an_admin_of_every_tenant_names_the_tenant_in_the_query_or_the_body() {
    let server = Server::start().await;
    ok::<Value>(
        server
            .post("/v1/tenants", &server.admin, json!({"name": "acme"}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let by_query: Value = ok(
        server
            .post("/v1/jobs?tenant=acme", &server.admin, simple_job())
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(by_query["job"]["tenant"], "acme");
    let by_body: Value = ok(
        server
            .post(
                "/v1/jobs",
                &server.admin,
                json!({"command": ["x"], "tenant": "acme"}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(by_body["job"]["tenant"], "acme");
    let before = server.snapshot().await;
    let p = problem(
        server
            .post(
                "/v1/jobs?tenant=default",
                &server.admin,
                json!({"command": ["x"], "tenant": "acme"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(p.detail.contains("differs"), "{}", p.detail);
    assert_eq!(server.snapshot().await, before);
    let listed: Value = ok(
        server.get("/v1/jobs?tenant=acme", &server.admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2));
    let default: Value = ok(
        server.get("/v1/jobs?tenant=default", &server.admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(default["items"].as_array().map(Vec::len), Some(0));
    server.stop().await;
}
