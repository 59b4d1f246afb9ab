//! Health, readiness, metrics, the OpenAPI document and unknown routes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, ok, problem, simple_job};

/// Every route of the API contract, as (method, OpenAPI path).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/tenants"),
    ("get", "/v1/tenants"),
    ("post", "/v1/tokens"),
    ("get", "/v1/tokens"),
    ("delete", "/v1/tokens/{id}"),
    ("post", "/v1/queues"),
    ("get", "/v1/queues"),
    ("get", "/v1/queues/{name}"),
    ("patch", "/v1/queues/{name}"),
    ("post", "/v1/uploads"),
    ("put", "/v1/uploads/{id}/files/{path}"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{id}"),
    ("post", "/v1/jobs/cancel"),
    ("post", "/v1/jobs/{id}/cancel"),
    ("post", "/v1/jobs/{id}/retry"),
    ("get", "/v1/jobs/{id}/tasks"),
    ("get", "/v1/jobs/{id}/inputs"),
    ("get", "/v1/jobs/{id}/inputs/{path}"),
    ("get", "/v1/jobs/{id}/results"),
    ("get", "/v1/jobs/{id}/results/{index}/{path}"),
    ("get", "/v1/tasks/{id}"),
    ("get", "/v1/tasks/{id}/logs"),
    ("get", "/v1/tasks/{id}/logs/full"),
    ("get", "/v1/tasks/{id}/logs/follow"),
    ("put", "/v1/tasks/{id}/logs/chunks/{seq}"),
    ("get", "/v1/tasks/{id}/why"),
    ("put", "/v1/tasks/{id}/results/{path}"),
    ("post", "/v1/workers"),
    ("get", "/v1/workers"),
    ("post", "/v1/workers/{id}/heartbeat"),
    ("delete", "/v1/workers/{id}"),
    ("post", "/v1/tasks/lease"),
    ("post", "/v1/tasks/heartbeat"),
    ("post", "/v1/tasks/complete"),
    ("post", "/v1/tasks/fail"),
    ("post", "/v1/tasks/release"),
    ("post", "/v1/tasks/{id}/complete"),
    ("post", "/v1/tasks/{id}/fail"),
    ("get", "/v1/pools"),
    ("patch", "/v1/pools/{name}"),
    ("get", "/v1/dead"),
    ("post", "/v1/dead/requeue"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/version"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

#[tokio::test]
async fn openapi_lists_every_route_without_a_token() {
    let server = Server::start().await;
    let resp = server
        .http
        .get(format!("{}/v1/openapi.json", server.base))
        .send()
        .await
        .expect("send");
    let doc: Value = ok(resp, StatusCode::OK).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let mut missing = Vec::new();
    for (method, path) in CONTRACT {
        if doc["paths"][path][method].is_null() {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(
        documented,
        CONTRACT.len(),
        "the document lists routes outside the contract"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["SubmitJob"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    server.stop().await;
}

#[tokio::test]
async fn every_contract_route_is_served() {
    // A request without a token reaches every /v1 route (401) rather than the fallback (404).
    let server = Server::start().await;
    for (method, path) in CONTRACT {
        // The document and the version are open to all.
        if !path.starts_with("/v1/") || matches!(*path, "/v1/openapi.json" | "/v1/version") {
            continue;
        }
        let concrete = path
            .replace("{id}", "1")
            .replace("{name}", "default")
            .replace("{index}", "0")
            .replace("{seq}", "0")
            .replace("{path}", "f.txt");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let resp = server
            .http
            .request(method.clone(), format!("{}{concrete}", server.base))
            .send()
            .await
            .expect("send");
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {concrete}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_show_queues_outcomes_latencies_and_requests() {
    let server = Server::start().await;
    let worker = server.worker(&server.admin, &["default"]).await;
    server.submit(&server.admin, simple_job()).await;
    server.submit(&server.admin, simple_job()).await;
    let leased = server.lease(&server.admin, &worker, &["default"], 1).await;
    let report: Value = ok(
        server
            .post(
                "/v1/tasks/complete",
                &server.admin,
                json!({"completions": [{"task_id": leased[0]["task_id"], "lease_token": leased[0]["lease_token"]}]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["results"][0]["ok"], true);

    let resp = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("body");
    for series in [
        r#"spillway_tasks{tenant="default",queue="default",state="succeeded"} 1"#,
        r#"spillway_tasks{tenant="default",queue="default",state="available"} 1"#,
        r#"spillway_tasks{tenant="default",queue="default",state="dead"} 0"#,
        r#"spillway_oldest_available_age_seconds{tenant="default",queue="default"}"#,
        r#"spillway_task_outcomes_total{queue="default",outcome="succeeded"} 1"#,
        "spillway_lease_duration_seconds_count 1",
        "spillway_task_end_to_end_seconds_count 1",
        r#"spillway_http_requests_total{route="/v1/jobs",status="201"} 2"#,
        r#"spillway_http_requests_total{route="/v1/tasks/lease",status="200"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_and_unknown_routes() {
    let server = Server::start().await;
    let resp = server
        .http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "ok");
    let resp = server
        .http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);

    let p = problem(
        server.get("/v1/nothing-here", &server.admin).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(p.detail.contains("/v1/nothing-here"), "{}", p.detail);
    let resp = server
        .req(Method::DELETE, "/v1/jobs", &server.admin)
        .send()
        .await
        .expect("send");
    let p = problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    assert!(p.detail.contains("DELETE"), "{}", p.detail);
    server.stop().await;
}

/// `/metrics` answers OpenMetrics to a scraper that asks for it and the Prometheus text format
/// 0.0.4 to everyone else, each with its own media type and names.
#[tokio::test]
async fn metrics_negotiate_openmetrics_or_the_text_format() {
    let server = Server::start().await;
    server.submit(&server.admin, simple_job()).await;
    let scrape = |accept: Option<&'static str>| {
        let mut req = server.http.get(format!("{}/metrics", server.base));
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        async move {
            let resp = req.send().await.expect("send");
            assert_eq!(resp.status(), StatusCode::OK);
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (content_type, resp.text().await.expect("body"))
        }
    };
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, want) in [
        (None, TEXT),
        (Some("*/*"), TEXT),
        (Some("text/plain;version=0.0.4"), TEXT),
        (Some(prometheus), OPENMETRICS),
        (Some("application/openmetrics-text"), OPENMETRICS),
    ] {
        let (content_type, text) = scrape(accept).await;
        assert_eq!(content_type, want, "Accept: {accept:?}");
        let counter = r#"spillway_http_requests_total{route="/v1/jobs",status="201"} 1"#;
        assert!(text.contains(counter), "Accept: {accept:?}:\n{text}");
        if want == TEXT {
            assert!(!text.contains("# EOF"), "{text}");
            assert!(
                text.contains("# TYPE spillway_http_requests_total counter\n"),
                "{text}"
            );
            assert!(
                text.contains("# HELP spillway_http_requests_total "),
                "{text}"
            );
        } else {
            assert!(text.ends_with("# EOF\n"), "{text}");
            assert!(
                text.contains("# TYPE spillway_http_requests counter\n"),
                "{text}"
            );
        }
    }
    server.stop().await;
}

/// A task that fails for good is a dead letter of its queue in `spillway_tasks`, and the
/// store's reads are reported up.
#[tokio::test]
async fn metrics_show_dead_letters_by_queue() {
    let server = Server::start().await;
    let worker = server.worker(&server.admin, &["default"]).await;
    server.submit(&server.admin, simple_job()).await;
    let leased = server.lease(&server.admin, &worker, &["default"], 1).await;
    let answer: Value = ok(
        server
            .post(
                "/v1/tasks/fail",
                &server.admin,
                json!({"failures": [{"task_id": leased[0]["task_id"], "lease_token": leased[0]["lease_token"],
                                     "error": "broken", "retryable": false}]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["results"][0]["ok"], true, "{answer}");
    let text = server
        .get("/metrics", "")
        .await
        .text()
        .await
        .expect("metrics");
    for series in [
        r#"spillway_tasks{tenant="default",queue="default",state="dead"} 1"#,
        r#"spillway_task_outcomes_total{queue="default",outcome="dead"} 1"#,
        "spillway_store_up 1",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    server.stop().await;
}
