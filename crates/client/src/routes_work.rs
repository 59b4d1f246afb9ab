//! The worker's routes: registration, leases, heartbeats, reports and result uploads.

use reqwest::{Body, Method, header};
use spillway_core::api::{
    CompleteRequest, Completion, FailRequest, Failure, HeartbeatRequest, HeartbeatResponse,
    LeaseRequest, LeaseResponse, ObjectInfo, RegisterWorker, ReleaseRequest, ReportResponse,
    WorkerHeartbeat, WorkerHeartbeatReply, WorkerList,
};
use spillway_core::model::Worker;
use spillway_core::{Result, TaskId};

use crate::{Client, REQUEST_TIMEOUT};

/// The header that carries the lease token on a result upload.
pub const LEASE_TOKEN_HEADER: &str = "spillway-lease-token";

impl Client {
    /// `POST /v1/workers`: register a worker; the answer carries its id.
    pub async fn worker_register(&self, body: &RegisterWorker) -> Result<Worker> {
        self.send_json(self.request(Method::POST, &["v1", "workers"]).json(body))
            .await
    }

    /// `GET /v1/workers`: the workers the server knows.
    pub async fn worker_list(&self) -> Result<WorkerList> {
        self.send_json(self.request(Method::GET, &["v1", "workers"]))
            .await
    }

    /// `POST /v1/workers/{id}/heartbeat`: a worker's sign of life; the answer may ask it to
    /// drain. Not found when the server has forgotten the worker (register again).
    pub async fn worker_heartbeat(
        &self,
        id: &str,
        body: &WorkerHeartbeat,
    ) -> Result<WorkerHeartbeatReply> {
        self.send_json(
            self.request(Method::POST, &["v1", "workers", id, "heartbeat"])
                .json(body),
        )
        .await
    }

    /// `DELETE /v1/workers/{id}`: the worker is exiting.
    pub async fn worker_deregister(&self, id: &str) -> Result<()> {
        self.send_empty(self.request(Method::DELETE, &["v1", "workers", id]))
            .await
    }

    /// `POST /v1/tasks/lease`: lease up to `max_tasks`, long-polling up to `wait`. The request
    /// is allowed its `wait` on top of the ordinary timeout, so a quiet queue is not mistaken for a dead server.
    pub async fn task_lease(&self, body: &LeaseRequest) -> Result<LeaseResponse> {
        let timeout = REQUEST_TIMEOUT + body.wait.unwrap_or_default();
        let url = self.url(&["v1", "tasks", "lease"]);
        self.send_json(self.request_to(Method::POST, url, Some(timeout)).json(body))
            .await
    }

    /// `POST /v1/tasks/heartbeat`: extend several leases in one call.
    pub async fn task_heartbeat(&self, body: &HeartbeatRequest) -> Result<HeartbeatResponse> {
        self.send_json(
            self.request(Method::POST, &["v1", "tasks", "heartbeat"])
                .json(body),
        )
        .await
    }

    /// `POST /v1/tasks/complete`: report several tasks done; one outcome per item.
    pub async fn task_complete(&self, body: &CompleteRequest) -> Result<ReportResponse> {
        self.send_json(
            self.request(Method::POST, &["v1", "tasks", "complete"])
                .json(body),
        )
        .await
    }

    /// `POST /v1/tasks/fail`: report several tasks failed; one outcome per item.
    pub async fn task_fail(&self, body: &FailRequest) -> Result<ReportResponse> {
        self.send_json(
            self.request(Method::POST, &["v1", "tasks", "fail"])
                .json(body),
        )
        .await
    }

    /// `POST /v1/tasks/release`: hand several leases back; one outcome per item.
    pub async fn task_release(&self, body: &ReleaseRequest) -> Result<ReportResponse> {
        self.send_json(
            self.request(Method::POST, &["v1", "tasks", "release"])
                .json(body),
        )
        .await
    }

    /// `POST /v1/tasks/{id}/complete`: report one task done; a conflict when the lease is
    /// no longer this caller's.
    pub async fn task_complete_one(&self, body: &Completion) -> Result<()> {
        let id = body.task_id.to_string();
        self.send_empty(
            self.request(Method::POST, &["v1", "tasks", &id, "complete"])
                .json(body),
        )
        .await
    }

    /// `POST /v1/tasks/{id}/fail`: report one task failed; a conflict when the lease is
    /// no longer this caller's.
    pub async fn task_fail_one(&self, body: &Failure) -> Result<()> {
        let id = body.task_id.to_string();
        self.send_empty(
            self.request(Method::POST, &["v1", "tasks", &id, "fail"])
                .json(body),
        )
        .await
    }

    /// `PUT /v1/tasks/{id}/logs/chunks/{seq}`: one chunk of the live log of a leased task's
    /// current attempt; a conflict when the lease is no longer current, too large once the
    /// attempt's log is full. A chunk sent again under its number is stored once.
    pub async fn task_log_chunk_put(
        &self,
        task_id: TaskId,
        lease_token: &str,
        seq: u64,
        data: Vec<u8>,
    ) -> Result<()> {
        let (id, seq) = (task_id.to_string(), seq.to_string());
        self.send_empty(
            self.request(Method::PUT, &["v1", "tasks", &id, "logs", "chunks", &seq])
                .header(LEASE_TOKEN_HEADER, lease_token)
                .body(data),
        )
        .await
    }

    /// `PUT /v1/tasks/{id}/results/{path}`: stream one result file under the current lease;
    /// a conflict when the lease is no longer current.
    pub async fn task_result_put(
        &self,
        task_id: TaskId,
        lease_token: &str,
        path: &str,
        body: Body,
        size: Option<u64>,
    ) -> Result<ObjectInfo> {
        let id = task_id.to_string();
        let url = self.url_with_path(&["v1", "tasks", &id, "results"], path);
        let mut rb = self
            .request_to(Method::PUT, url, None)
            .header(LEASE_TOKEN_HEADER, lease_token)
            .body(body);
        if let Some(size) = size {
            rb = rb.header(header::CONTENT_LENGTH, size);
        }
        self.send_json(rb).await
    }
}
