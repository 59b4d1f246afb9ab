//! The client against a small axum server over real HTTP on 127.0.0.1: error mapping,
//! auth, path encoding and streaming in both directions.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use spillway_client::{Client, JobListQuery, file_body, stream_to_file};
use spillway_core::ErrorKind;
use spillway_core::api::{LeaseRequest, ObjectInfo};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank", "title": "t", "status": status.as_u16(),
        "detail": detail, "code": "x",
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

#[tokio::test]
async fn problem_answers_keep_the_detail_and_map_the_status() {
    let router = Router::new()
        .route(
            "/v1/jobs/{id}",
            get(|Path(id): Path<String>| async move {
                problem(StatusCode::NOT_FOUND, &format!("job {id:?} not found"))
            }),
        )
        .route(
            "/v1/jobs/{id}/cancel",
            post(|| async { problem(StatusCode::CONFLICT, "job already finished") }),
        )
        .route(
            "/v1/queues",
            get(|| async { (StatusCode::BAD_GATEWAY, "proxy says no") }),
        );
    let client = Client::new(&serve(router).await, None).unwrap();

    let err = client.job_get("j1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.message(), "job \"j1\" not found");

    let err = client.job_cancel("j1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.message(), "job already finished");

    let err = client.queue_list().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(err.message().contains("proxy says no"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_named() {
    // Bind then drop a listener so the port is known to be closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = Client::new(&url, None).unwrap();
    let err = client
        .task_lease(&LeaseRequest {
            worker_id: "w".into(),
            queues: vec!["default".into()],
            max_tasks: 1,
            wait: Some(Duration::from_secs(1)),
            tenant: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(err.message().contains(&url), "{err}");
}

#[tokio::test]
async fn a_bad_base_url_is_invalid() {
    let err = Client::new("ftp://x", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = Client::new("not a url", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn the_token_is_sent_as_bearer_and_queries_are_encoded() {
    let router = Router::new().route(
        "/v1/jobs",
        get(|headers: HeaderMap, req: Request| async move {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            let body = serde_json::json!({
                "items": [], "next_cursor": format!("{auth}|{query}"),
            });
            axum::Json(body)
        }),
    );
    let client = Client::new(&serve(router).await, Some("s3cret".into())).unwrap();
    let query = JobListQuery {
        queue: Some("q1".into()),
        labels: [("team".to_string(), "a b".to_string())].into(),
        ..Default::default()
    };
    let page = client.job_list(&query).await.unwrap();
    assert_eq!(
        page.next_cursor.as_deref(),
        Some("Bearer s3cret|queue=q1&label=team%3Da+b")
    );
}

#[tokio::test]
async fn result_uploads_stream_the_file_with_the_lease_token_and_path() {
    let router = Router::new().route(
        "/v1/tasks/{id}/results/{*path}",
        put(
            |Path((id, path)): Path<(i64, String)>, headers: HeaderMap, body: AxumBody| async move {
                let token = headers
                    .get("spillway-lease-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let mut size = 0u64;
                let mut stream = body.into_data_stream();
                while let Some(chunk) = stream.next().await {
                    size += chunk.unwrap().len() as u64;
                }
                let info = ObjectInfo {
                    path: format!("{id}/{token}/{path}"),
                    size,
                };
                (StatusCode::CREATED, axum::Json(info))
            },
        ),
    );
    let client = Client::new(&serve(router).await, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.bin");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let (body, size) = file_body(&file).await.unwrap();
    let info = client
        .task_result_put(42, "tok-1", "sub dir/a#b.txt", body, Some(size))
        .await
        .unwrap();
    assert_eq!(info.path, "42/tok-1/sub dir/a#b.txt");
    assert_eq!(info.size, 300_000);
}

#[tokio::test]
async fn input_downloads_stream_to_a_file() {
    let router = Router::new().route(
        "/v1/jobs/{id}/inputs/{*path}",
        get(|Path((_, path)): Path<(String, String)>| async move {
            let chunks = (0..50)
                .map(move |i| Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{path}:{i}\n"))));
            AxumBody::from_stream(futures::stream::iter(chunks))
        }),
    );
    let client = Client::new(&serve(router).await, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("in.txt");
    let stream = client.job_input_get("j1", "data/x.csv").await.unwrap();
    let written = stream_to_file(stream, &dest).await.unwrap();
    let text = std::fs::read_to_string(&dest).unwrap();
    assert_eq!(written as usize, text.len());
    assert!(text.starts_with("data/x.csv:0\n"), "{text}");
    assert!(text.ends_with("data/x.csv:49\n"), "{text}");
}
