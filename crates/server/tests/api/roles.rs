//! The `metrics` role and `metrics_auth`: who may read `/metrics`, which series they see, and
//! what else a metrics token may do (pool sizes only); and only admins list tokens.

use reqwest::StatusCode;
use serde_json::{Value, json};
use spillway_server::ServerConfig;

use crate::support::{Server, ok, problem, simple_job};

/// `GET /metrics` with `token` (none when `None`).
async fn scrape(server: &Server, token: Option<&str>) -> reqwest::Response {
    let mut req = server.http.get(format!("{}/metrics", server.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("send")
}

/// The text of a 200 answer from `/metrics`.
async fn scraped(server: &Server, token: Option<&str>) -> String {
    let resp = scrape(server, token).await;
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "body: {text}");
    text
}

/// A server with `metrics_auth` on, a job queued in tenant `default` and one in `globex`.
async fn two_tenants_with_metrics_auth() -> Server {
    let server = Server::with_config(ServerConfig {
        metrics_auth: true,
        ..Default::default()
    })
    .await;
    ok::<Value>(
        server
            .post("/v1/tenants", &server.admin, json!({"name": "globex"}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    server.submit(&server.admin, simple_job()).await;
    let mut globex_job = simple_job();
    globex_job["tenant"] = json!("globex");
    server.submit(&server.admin, globex_job).await;
    server
}

const DEFAULT_SERIES: &str =
    r#"spillway_tasks{tenant="default",queue="default",state="available"} 1"#;
const GLOBEX_SERIES: &str =
    r#"spillway_tasks{tenant="globex",queue="default",state="available"} 1"#;
const SERVER_WIDE_SERIES: &str = "spillway_http_requests_total";

#[tokio::test]
async fn metrics_auth_asks_for_a_metrics_or_admin_token() {
    let server = two_tenants_with_metrics_auth().await;

    let resp = scrape(&server, None).await;
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let p = problem(resp, StatusCode::UNAUTHORIZED).await;
    assert!(p.detail.contains("missing bearer token"), "{}", p.detail);
    problem(
        scrape(&server, Some("sw_not-a-real-token")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    for role in ["viewer", "submitter", "worker"] {
        let token = server.token(role, "default").await;
        let p = problem(scrape(&server, Some(&token)).await, StatusCode::FORBIDDEN).await;
        assert!(p.detail.contains("read metrics"), "{role}: {}", p.detail);
    }

    // A metrics token made without a tenant by an admin of every tenant sees every series.
    let created: Value = ok(
        server
            .post(
                "/v1/tokens",
                &server.admin,
                json!({"name": "prometheus", "role": "metrics"}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["info"]["role"], "metrics");
    assert_eq!(created["info"]["tenant"], Value::Null);
    let every = created["token"].as_str().expect("secret");
    let text = scraped(&server, Some(every)).await;
    for series in [DEFAULT_SERIES, GLOBEX_SERIES, SERVER_WIDE_SERIES] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    let text = scraped(&server, Some(&server.admin)).await;
    assert!(
        text.contains(GLOBEX_SERIES),
        "admin of every tenant: {text}"
    );

    // A tenant's metrics or admin token sees only its tenant's queue series.
    for role in ["metrics", "admin"] {
        let token = server.token(role, "globex").await;
        let text = scraped(&server, Some(&token)).await;
        assert!(text.contains(GLOBEX_SERIES), "{role}: {text}");
        assert!(!text.contains(r#"tenant="default""#), "{role}: {text}");
        assert!(!text.contains(SERVER_WIDE_SERIES), "{role}: {text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_metrics_token_reads_pools_and_nothing_else() {
    let server = two_tenants_with_metrics_auth().await;
    let metrics = server.token("metrics", "default").await;
    let pools: Value = ok(server.get("/v1/pools", &metrics).await, StatusCode::OK).await;
    assert!(pools.is_array(), "{pools}");
    for path in [
        "/v1/jobs",
        "/v1/queues",
        "/v1/workers",
        "/v1/tenants",
        "/v1/tokens",
        "/v1/dead",
    ] {
        let p = problem(server.get(path, &metrics).await, StatusCode::FORBIDDEN).await;
        assert!(
            p.detail.contains("a metrics token may not"),
            "{path}: {}",
            p.detail
        );
    }
    let p = problem(
        server.post("/v1/jobs", &metrics, simple_job()).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(p.detail.contains("submit"), "{}", p.detail);
    // Nor tasks: reading one, leasing, registering as a worker.
    let job = server.submit(&server.admin, simple_job()).await;
    let tasks: Value = ok(
        server
            .get(&format!("/v1/jobs/{job}/tasks"), &server.admin)
            .await,
        StatusCode::OK,
    )
    .await;
    let task = &tasks["items"][0]["id"];
    assert!(!task.is_null(), "{tasks}");
    let p = problem(
        server.get(&format!("/v1/tasks/{task}"), &metrics).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(p.detail.contains("a metrics token may not"), "{}", p.detail);
    for (path, body) in [
        (
            "/v1/tasks/lease",
            json!({"worker_id": "w", "queues": ["default"], "max_tasks": 1}),
        ),
        (
            "/v1/workers",
            json!({"hostname": "h", "queues": ["default"], "concurrency": 1}),
        ),
        ("/v1/tokens", json!({"name": "more", "role": "admin"})),
    ] {
        let p = problem(
            server.post(path, &metrics, body).await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert!(
            p.detail.contains("a metrics token may not"),
            "{path}: {}",
            p.detail
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn without_metrics_auth_metrics_stay_open() {
    let server = Server::start().await;
    server.submit(&server.admin, simple_job()).await;
    let text = scraped(&server, None).await;
    assert!(text.contains(DEFAULT_SERIES), "{text}");
    // A token sent anyway is not looked at, so a scraper with an old token keeps working.
    let text = scraped(&server, Some("sw_revoked-long-ago")).await;
    assert!(text.contains(DEFAULT_SERIES), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_metrics_role() {
    let server = Server::start().await;
    let resp = server
        .http
        .get(format!("{}/v1/openapi.json", server.base))
        .send()
        .await
        .expect("send");
    let doc: Value = ok(resp, StatusCode::OK).await;
    let roles = doc["components"]["schemas"]["Role"]["enum"]
        .as_array()
        .expect("roles listed");
    assert!(roles.contains(&json!("metrics")), "{roles:?}");
    assert!(
        doc["paths"]["/metrics"]["get"]["responses"]["401"].is_object(),
        "/metrics documents its 401"
    );
    server.stop().await;
}

#[tokio::test]
async fn only_admins_list_tokens() {
    let server = Server::start().await;
    for role in ["viewer", "submitter", "worker", "metrics"] {
        let token = server.token(role, "default").await;
        let p = problem(
            server.get("/v1/tokens", &token).await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert!(p.detail.contains("manage tokens"), "{role}: {}", p.detail);
    }
    let admin = server.token("admin", "default").await;
    let tokens: Vec<Value> = ok(server.get("/v1/tokens", &admin).await, StatusCode::OK).await;
    assert!(
        tokens.iter().any(|t| t["role"] == "viewer"),
        "a tenant's admin lists its tokens: {tokens:?}"
    );
    server.stop().await;
}
