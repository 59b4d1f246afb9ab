//! Uploads, jobs, their tasks, inputs and results, and dead letters.

use reqwest::{Body, Method, header};
use spillway_core::api::{
    CancelJobs, Changed, JobsCancelled, ObjectInfo, Page, RequeueRequest, SubmitJob, Submitted,
    TaskDetail, TaskWhy, UploadCreated,
};
use spillway_core::model::{Job, Task};
use spillway_core::{Result, TaskId};

use crate::stream::{ByteStream, response_stream};
use crate::{Client, DeadListQuery, JobListQuery, TaskListQuery};

impl Client {
    /// `POST /v1/uploads`: open an upload area for a job's inputs.
    pub async fn upload_create(&self) -> Result<UploadCreated> {
        self.send_json(self.request(Method::POST, &["v1", "uploads"]))
            .await
    }

    /// `PUT /v1/uploads/{id}/files/{path}`: stream one input file into an upload. Give the
    /// size when known (see [`file_body`](crate::file_body)) so the server can refuse an
    /// oversized file before it is sent.
    pub async fn upload_put_file(
        &self,
        upload_id: &str,
        path: &str,
        body: Body,
        size: Option<u64>,
    ) -> Result<ObjectInfo> {
        let url = self.url_with_path(&["v1", "uploads", upload_id, "files"], path);
        let mut rb = self.request_to(Method::PUT, url, None).body(body);
        if let Some(size) = size {
            rb = rb.header(header::CONTENT_LENGTH, size);
        }
        self.send_json(rb).await
    }

    /// `POST /v1/jobs`: submit a job; `created` is false on an idempotency-key hit.
    pub async fn job_submit(&self, body: &SubmitJob) -> Result<Submitted> {
        self.send_json(self.request(Method::POST, &["v1", "jobs"]).json(body))
            .await
    }

    /// `GET /v1/jobs`: one page of jobs matching `query`.
    pub async fn job_list(&self, query: &JobListQuery) -> Result<Page<Job>> {
        self.send_json(
            self.request(Method::GET, &["v1", "jobs"])
                .query(&query.pairs()),
        )
        .await
    }

    /// `GET /v1/jobs/{id}`: one job with its counts.
    pub async fn job_get(&self, id: &str) -> Result<Job> {
        self.send_json(self.request(Method::GET, &["v1", "jobs", id]))
            .await
    }

    /// `POST /v1/jobs/{id}/cancel`: cancel a job; running tasks stop at their next heartbeat.
    pub async fn job_cancel(&self, id: &str) -> Result<Job> {
        self.send_json(self.request(Method::POST, &["v1", "jobs", id, "cancel"]))
            .await
    }

    /// `POST /v1/jobs/cancel`: cancel every job of the tenant matching a filter (labels,
    /// queue, state), or with `dry_run` only list them.
    pub async fn job_cancel_matching(&self, body: &CancelJobs) -> Result<JobsCancelled> {
        self.send_json(
            self.request(Method::POST, &["v1", "jobs", "cancel"])
                .json(body),
        )
        .await
    }

    /// `POST /v1/jobs/{id}/retry`: requeue a job's dead tasks.
    pub async fn job_retry(&self, id: &str) -> Result<Changed> {
        self.send_json(self.request(Method::POST, &["v1", "jobs", id, "retry"]))
            .await
    }

    /// `GET /v1/jobs/{id}/tasks`: one page of a job's tasks.
    pub async fn job_task_list(&self, id: &str, query: &TaskListQuery) -> Result<Page<Task>> {
        self.send_json(
            self.request(Method::GET, &["v1", "jobs", id, "tasks"])
                .query(&query.pairs()),
        )
        .await
    }

    /// `GET /v1/jobs/{id}/inputs`: the job's staged input files.
    pub async fn job_input_list(&self, id: &str) -> Result<Vec<ObjectInfo>> {
        self.send_json(self.request(Method::GET, &["v1", "jobs", id, "inputs"]))
            .await
    }

    /// `GET /v1/jobs/{id}/inputs/{path}`: stream one input file.
    pub async fn job_input_get(&self, id: &str, path: &str) -> Result<ByteStream> {
        let url = self.url_with_path(&["v1", "jobs", id, "inputs"], path);
        let response = self.send(self.request_to(Method::GET, url, None)).await?;
        Ok(response_stream(response))
    }

    /// `GET /v1/jobs/{id}/results`: every result file, with paths `<index>/<file>`.
    pub async fn job_result_list(&self, id: &str) -> Result<Vec<ObjectInfo>> {
        self.send_json(self.request(Method::GET, &["v1", "jobs", id, "results"]))
            .await
    }

    /// `GET /v1/jobs/{id}/results/{index}/{path}`: stream one result file of one task.
    pub async fn job_result_get(&self, id: &str, index: u32, path: &str) -> Result<ByteStream> {
        let index = index.to_string();
        let url = self.url_with_path(&["v1", "jobs", id, "results", &index], path);
        let response = self.send(self.request_to(Method::GET, url, None)).await?;
        Ok(response_stream(response))
    }

    /// `GET /v1/tasks/{id}`: a task with its attempts.
    pub async fn task_get(&self, id: TaskId) -> Result<TaskDetail> {
        let id = id.to_string();
        self.send_json(self.request(Method::GET, &["v1", "tasks", &id]))
            .await
    }

    /// `GET /v1/tasks/{id}/logs`: the log tail of `attempt` (the latest when `None`).
    pub async fn task_logs(&self, id: TaskId, attempt: Option<u32>) -> Result<String> {
        let id = id.to_string();
        let mut rb = self.request(Method::GET, &["v1", "tasks", &id, "logs"]);
        if let Some(attempt) = attempt {
            rb = rb.query(&[("attempt", attempt)]);
        }
        self.send_text(rb).await
    }

    /// `GET /v1/tasks/{id}/why`: where a task stands in its queue and why it is not running.
    pub async fn task_why(&self, id: TaskId) -> Result<TaskWhy> {
        let id = id.to_string();
        self.send_json(self.request(Method::GET, &["v1", "tasks", &id, "why"]))
            .await
    }

    /// `GET /v1/dead`: one page of dead letters.
    pub async fn dead_list(&self, query: &DeadListQuery) -> Result<Page<Task>> {
        self.send_json(
            self.request(Method::GET, &["v1", "dead"])
                .query(&query.pairs()),
        )
        .await
    }

    /// `POST /v1/dead/requeue`: give dead tasks new attempts.
    pub async fn dead_requeue(&self, body: &RequeueRequest) -> Result<Changed> {
        self.send_json(
            self.request(Method::POST, &["v1", "dead", "requeue"])
                .json(body),
        )
        .await
    }
}
