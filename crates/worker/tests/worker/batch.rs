//! A worker reports the outcomes of tasks that end together in a few calls, not one each.
//!
//! The worker speaks to the real server through a small proxy that counts report calls and
//! holds the first one until every task has run, so the other outcomes arrive while a report
//! is in flight, as they do when a busy worker's tasks end close together.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use spillway_core::api::SubmitJob;
use spillway_core::state::JobState;
use spillway_testkit::DEFAULT_DEADLINE;
use tokio_util::sync::CancellationToken;

use crate::Server;

/// Tasks, and the worker's concurrency.
const TASKS: usize = 8;

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// Report calls seen (complete, fail or release, batched or one task's).
    reports: AtomicUsize,
    /// Where each task leaves a file once it ran.
    ran: PathBuf,
}

fn is_report(path: &str) -> bool {
    path.starts_with("/v1/tasks/")
        && ["/complete", "/fail", "/release"]
            .iter()
            .any(|end| path.ends_with(end))
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    if is_report(&path) && proxy.reports.fetch_add(1, Ordering::SeqCst) == 0 {
        // The first report waits until every task has run: the others end meanwhile.
        let deadline = tokio::time::Instant::now() + DEFAULT_DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while std::fs::read_dir(&proxy.ran).unwrap().count() < TASKS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the tasks did not all run"
            );
            tick.tick().await;
        }
    }
    let url = format!(
        "{}{}",
        proxy.upstream.trim_end_matches('/'),
        request.uri().path_and_query().unwrap().as_str()
    );
    let method = request.method().clone();
    let mut headers = request.headers().clone();
    headers.remove("host");
    let body = to_bytes(request.into_body(), usize::MAX).await.unwrap();
    let answer = proxy
        .http
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            headers.append(name.clone(), value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[tokio::test]
async fn tasks_that_end_together_are_reported_in_fewer_calls_than_tasks() {
    let server = Server::start().await;
    let ran = tempfile::tempdir().unwrap();
    let proxy = Arc::new(Proxy {
        upstream: server.server.base.to_string(),
        http: reqwest::Client::new(),
        reports: AtomicUsize::new(0),
        ran: ran.path().to_path_buf(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut submit = SubmitJob::command(
        "default",
        vec![
            "sh".into(),
            "-c".into(),
            "touch \"$0/$SPILLWAY_TASK_INDEX\"".into(),
            ran.path().to_string_lossy().into_owned(),
        ],
    );
    submit.count = Some(TASKS as u32);
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    let scratch = tempfile::tempdir().unwrap();
    let mut config = server.worker_config(scratch.path());
    config.server_url = proxy_url;
    config.concurrency = TASKS as u32;
    config.exit_when_idle = true;
    let summary = spillway_worker::run(config, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.succeeded, TASKS as u64, "{summary:?}");
    let job = server.admin.job_get(&job.id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    let reports = proxy.reports.load(Ordering::SeqCst);
    assert!(
        reports < TASKS,
        "{TASKS} tasks were reported in {reports} calls"
    );
    serving.abort();
}
