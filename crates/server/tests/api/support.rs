//! A server per test (the shared [`TestServer`], on a manual clock), and helpers to speak to it
//! and to check that nothing was written.

use std::ops::Deref;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use spillway_core::api::Problem;
use spillway_core::clock::Clock;
use spillway_server::ServerConfig;
use spillway_server::testkit::TestServer;
use spillway_store::{JobList, WorkerList};

/// A running [`TestServer`] on a manual clock, and an HTTP client for it.
pub struct Server {
    server: TestServer,
    pub http: reqwest::Client,
}

impl Deref for Server {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl Server {
    /// A server with the default config.
    pub async fn start() -> Server {
        Server::with_config(ServerConfig::default()).await
    }

    /// A server with `config` (its listen address is ignored: port 0 on loopback).
    pub async fn with_config(config: ServerConfig) -> Server {
        let server = TestServer::builder()
            .config(config)
            .manual_clock()
            .start()
            .await;
        Server {
            server,
            http: reqwest::Client::new(),
        }
    }

    /// A server with the default config that reads its wall clock from `wall` through the
    /// server's steady clock, as a deployed server reads the system clock.
    pub async fn with_wall_clock(wall: std::sync::Arc<dyn Clock>) -> Server {
        let server = TestServer::builder().wall_clock(wall).start().await;
        Server {
            server,
            http: reqwest::Client::new(),
        }
    }

    /// Stop the server and wait for it.
    pub async fn stop(self) {
        self.server.stop().await;
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

/// A one-task job on the default queue.
pub fn simple_job() -> Value {
    json!({"command": ["echo", "hi"]})
}
