//! A server per test, and helpers to speak to it and to check that nothing was written.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use spillway_blob::{BlobStore, ObjectBlobs};
use spillway_core::api::Problem;
use spillway_core::clock::{Clock, ManualClock};
use spillway_server::{AppState, ServerConfig};
use spillway_store::WorkerList;
use spillway_store::sqlite::SqliteStore;
use spillway_store::{DynStore, JobList};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server and direct handles on what it writes to.
pub struct Server {
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
    pub store: DynStore,
    pub blobs: Arc<dyn BlobStore>,
    pub clock: ManualClock,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server with the default config.
    pub async fn start() -> Server {
        Server::with_config(ServerConfig::default()).await
    }

    /// A server with `config` (its listen address is ignored: port 0 on loopback).
    pub async fn with_config(config: ServerConfig) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: DynStore = Arc::new(
            SqliteStore::open(&dir.path().join("spillway.db"))
                .await
                .expect("open sqlite store"),
        );
        let blobs: Arc<dyn BlobStore> = Arc::new(
            ObjectBlobs::from_url("memory://", &Default::default()).expect("memory blobs"),
        );
        let clock = ManualClock::new(chrono::Utc::now());
        let admin = spillway_server::bootstrap(&store, clock.now())
            .await
            .expect("bootstrap")
            .expect("first start makes an admin token");
        let state = AppState::new(
            store.clone(),
            blobs.clone(),
            Arc::new(clock.clone()),
            config,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            spillway_server::serve(listener, serving, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        Server {
            base,
            admin,
            http: reqwest::Client::new(),
            store,
            blobs,
            clock,
            state,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stop the server and wait for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    pub fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.req(Method::GET, path, token)
            .send()
            .await
            .expect("send")
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.req(Method::POST, path, token)
            .json(&body)
            .send()
            .await
            .expect("send")
    }

    /// A new token with `role` in `tenant`, made through the API.
    pub async fn token(&self, role: &str, tenant: &str) -> String {
        let resp = self
            .post(
                "/v1/tokens",
                &self.admin,
                json!({"name": format!("{role}-{tenant}"), "role": role, "tenant": tenant}),
            )
            .await;
        let body: Value = ok(resp, StatusCode::CREATED).await;
        body["token"].as_str().expect("token secret").to_string()
    }

    /// Register a worker serving `queues` and return its id.
    pub async fn worker(&self, token: &str, queues: &[&str]) -> String {
        let resp = self
            .post(
                "/v1/workers",
                token,
                json!({"hostname": "test-host", "queues": queues, "concurrency": 4}),
            )
            .await;
        let body: Value = ok(resp, StatusCode::CREATED).await;
        body["id"].as_str().expect("worker id").to_string()
    }

    /// Submit `body` and return the job id.
    pub async fn submit(&self, token: &str, body: Value) -> String {
        let resp = self.post("/v1/jobs", token, body).await;
        let body: Value = ok(resp, StatusCode::CREATED).await;
        body["job"]["id"].as_str().expect("job id").to_string()
    }

    /// Lease from `queues` without waiting.
    pub async fn lease(&self, token: &str, worker: &str, queues: &[&str], max: u32) -> Vec<Value> {
        let resp = self
            .post(
                "/v1/tasks/lease",
                token,
                json!({"worker_id": worker, "queues": queues, "max_tasks": max}),
            )
            .await;
        let body: Value = ok(resp, StatusCode::OK).await;
        body["tasks"].as_array().expect("tasks").clone()
    }

    /// Everything the server could have written, to compare before and after a request.
    pub async fn snapshot(&self) -> Snapshot {
        let jobs = self
            .store
            .job_list(JobList {
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("job list");
        let tenants = self.store.tenant_list().await.expect("tenant list");
        let mut blobs = Vec::new();
        for tenant in &tenants {
            for object in self.blobs.list(&tenant.name).await.expect("blob list") {
                blobs.push(format!("{}/{}:{}", tenant.name, object.path, object.size));
            }
        }
        let mut jobs: Vec<String> = jobs
            .items
            .iter()
            .map(|j| format!("{} {} {:?}", j.id, j.state, j.counts))
            .collect();
        jobs.sort();
        Snapshot {
            jobs,
            blobs,
            tenants: tenants.len(),
            queues: self.store.queue_list(None).await.expect("queues").len(),
            tokens: self.store.token_list(None).await.expect("tokens").len(),
            workers: self
                .store
                .worker_list(WorkerList {
                    tenant: None,
                    now: self.clock.now(),
                })
                .await
                .expect("workers")
                .len(),
        }
    }
}

/// What [`Server::snapshot`] saw.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub jobs: Vec<String>,
    pub blobs: Vec<String>,
    pub tenants: usize,
    pub queues: usize,
    pub tokens: usize,
    pub workers: usize,
}

/// Read a JSON answer, failing with its body when the status is not `status`.
pub async fn ok<T: serde::de::DeserializeOwned>(resp: Response, status: StatusCode) -> T {
    let got = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {text}: {e}"))
}

/// Read a problem+json answer with `status`.
pub async fn problem(resp: Response, status: StatusCode) -> Problem {
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let got = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    assert_eq!(content_type, "application/problem+json", "body: {text}");
    let problem: Problem =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {text}: {e}"));
    assert_eq!(problem.status, status.as_u16());
    assert!(!problem.detail.is_empty());
    problem
}

/// Wait until `check` holds, failing after a generous deadline.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A one-task job on the default queue.
pub fn simple_job() -> Value {
    json!({"command": ["echo", "hi"]})
}
