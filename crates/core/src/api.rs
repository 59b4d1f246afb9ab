//! Request and response bodies of the HTTP API under `/v1`, shared by server and client.
//!
//! Every request body rejects unknown fields, so a typo is an error rather than a silent no-op.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Role;
use crate::model::{Attempt, Job, QueueSettings, QueueStats, Task, TaskSpec, TokenInfo, Worker};
use crate::{JobId, TaskId};
use chrono::{DateTime, Utc};

/// Most tasks accepted in one submit.
pub const MAX_TASKS_PER_SUBMIT: u32 = 100_000;
/// Most tasks one lease call may take.
pub const MAX_LEASE_BATCH: u32 = 1000;
/// Longest long-poll wait of a lease call.
pub const MAX_LEASE_WAIT: Duration = Duration::from_secs(60);
/// Default and largest page size of list calls.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size of list calls.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// One task of a submit: its payload (optional) for the command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Any JSON; written to `$SPILLWAY_PAYLOAD` (a file) and given on stdin.
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

/// Longest container image reference accepted in a task spec.
pub const MAX_IMAGE_LEN: usize = 512;
/// Most labels on one job. Labels are shown on every page that lists the job and sent with
/// it on every read; Pub/Sub's 100 message attributes plus the bridge's own two fit.
pub const MAX_LABELS: usize = 128;
/// Most environment variables in a task spec.
pub const MAX_ENV_VARS: usize = 256;
/// Longest environment variable name, in bytes.
pub const MAX_ENV_NAME_LEN: usize = 256;
/// Longest environment variable value, in bytes.
pub const MAX_ENV_VALUE_LEN: usize = 32 * 1024;
/// Most bytes of all environment variable names and values of a task spec together (well
/// under what an `execve` accepts).
pub const MAX_ENV_BYTES: usize = 128 * 1024;
/// Longest error message of a failure report, in bytes; the server cuts longer ones (keeping
/// the start, where the cause is said) and marks the cut.
pub const MAX_ERROR_LEN: usize = 4 * 1024;

/// Submit a job: `count` identical tasks, or one task per entry of `tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// The queue (it must exist); default `"default"`.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Act in this tenant (only for admins of every tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// How each task runs.
    #[serde(flatten)]
    pub spec: TaskSpec,
    /// Number of tasks when `tasks` is not given; default 1.
    #[serde(default)]
    pub count: Option<u32>,
    /// One entry per task, each with its own payload.
    #[serde(default)]
    pub tasks: Option<Vec<NewTask>>,
    /// Higher runs first; default 0, range -1000..=1000.
    #[serde(default)]
    pub priority: i32,
    /// Tasks may run on burst capacity.
    #[serde(default)]
    pub burstable: bool,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Submitting again with the same key returns the first job instead of a new one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Delete staged inputs once every task has succeeded.
    #[serde(default)]
    pub delete_inputs_on_success: bool,
    /// Attach the files of this upload (see `POST /v1/uploads`) as the job's inputs.
    #[serde(default)]
    pub upload_id: Option<String>,
    /// Do not start before this delay has passed.
    #[serde(default, with = "humantime_serde")]
    #[schema(value_type = Option<String>, example = "5m")]
    pub delay: Option<Duration>,
}

fn default_queue() -> String {
    crate::model::DEFAULT_QUEUE.to_string()
}

impl SubmitJob {
    /// A one-task job running `command` on `queue`, with every other field at its default.
    pub fn command(queue: &str, command: Vec<String>) -> Self {
        Self {
            queue: queue.to_string(),
            tenant: None,
            name: None,
            spec: TaskSpec {
                command,
                shell: false,
                env: BTreeMap::new(),
                timeout: None,
                resources: Default::default(),
                image: None,
                trace: None,
            },
            count: None,
            tasks: None,
            priority: 0,
            burstable: false,
            labels: BTreeMap::new(),
            idempotency_key: None,
            delete_inputs_on_success: false,
            upload_id: None,
            delay: None,
        }
    }

    /// The number of tasks this submit creates.
    pub fn task_count(&self) -> u32 {
        match (&self.tasks, self.count) {
            (Some(tasks), _) => u32::try_from(tasks.len()).unwrap_or(u32::MAX),
            (None, Some(n)) => n,
            (None, None) => 1,
        }
    }

    /// Check everything that can be checked without the store; errors say what to change.
    pub fn validate(&self, max_payload_bytes: usize) -> crate::Result<()> {
        use crate::Error;
        crate::names::validate_name("queue", &self.queue)?;
        if self.spec.command.is_empty() || self.spec.command[0].is_empty() {
            return Err(Error::invalid(
                "command is empty: give the program to run and its arguments, e.g. [\"python3\", \"task.py\"]",
            ));
        }
        if self.spec.command.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid("command contains a NUL byte"));
        }
        validate_env(&self.spec.env)?;
        if let Some(trace) = &self.spec.trace {
            trace.validate()?;
        }
        if self.tasks.is_some() && self.count.is_some() {
            return Err(Error::invalid(
                "give either count or tasks, not both: tasks already sets the count",
            ));
        }
        let n = self.task_count();
        if n == 0 || n > MAX_TASKS_PER_SUBMIT {
            return Err(Error::invalid(format!(
                "a job needs 1 to {MAX_TASKS_PER_SUBMIT} tasks, got {n}: split larger batches into several jobs"
            )));
        }
        if !(-1000..=1000).contains(&self.priority) {
            return Err(Error::invalid(format!(
                "priority {} is out of range: use -1000 to 1000",
                self.priority
            )));
        }
        let r = &self.spec.resources;
        if !(r.cpu.is_finite() && r.cpu > 0.0 && r.cpu <= 1024.0) || r.gpu > 64 {
            return Err(Error::invalid(
                "resources out of range: cpu must be above 0 and at most 1024, gpu at most 64",
            ));
        }
        if let Some(timeout) = self.spec.timeout
            && timeout.is_zero()
        {
            return Err(Error::invalid("timeout must be above zero, e.g. \"10m\""));
        }
        if let Some(image) = &self.spec.image
            && (image.is_empty()
                || image.len() > MAX_IMAGE_LEN
                || image.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::invalid(format!(
                "image {image:?} is not a container image reference: give one such as \"python:3.12-slim\" (no spaces, at most {MAX_IMAGE_LEN} characters)"
            )));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(Error::invalid(format!(
                "labels: {} labels are over the limit of {MAX_LABELS} per job: keep the labels you filter by and put the rest in the payload",
                self.labels.len()
            )));
        }
        for (k, v) in &self.labels {
            crate::names::validate_label_key(k)?;
            crate::names::validate_label_value(k, v)?;
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(Error::invalid(
                "idempotency_key must be 1 to 200 characters",
            ));
        }
        if let Some(name) = &self.name
            && name.len() > 200
        {
            return Err(Error::invalid("name must be at most 200 characters"));
        }
        if let Some(tasks) = &self.tasks {
            for (i, t) in tasks.iter().enumerate() {
                if let Some(p) = &t.payload {
                    let size = serde_json::to_vec(p).map(|v| v.len()).unwrap_or(usize::MAX);
                    if size > max_payload_bytes {
                        return Err(Error::too_large(format!(
                            "payload of task {i} is {size} bytes, over the limit of {max_payload_bytes}: stage large data as inputs instead"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Check a task spec's environment: names of letters, digits and '_' (not starting with a
/// digit), and the counts and sizes within [`MAX_ENV_VARS`], [`MAX_ENV_NAME_LEN`],
/// [`MAX_ENV_VALUE_LEN`] and [`MAX_ENV_BYTES`].
pub fn validate_env(env: &BTreeMap<String, String>) -> crate::Result<()> {
    use crate::Error;
    use crate::names::preview;
    if env.len() > MAX_ENV_VARS {
        return Err(Error::invalid(format!(
            "env: {} variables are over the limit of {MAX_ENV_VARS}: pass the rest in the payload or an input file",
            env.len()
        )));
    }
    let mut total = 0usize;
    for (key, value) in env {
        if key.len() > MAX_ENV_NAME_LEN {
            return Err(Error::invalid(format!(
                "env: variable name {} is over the limit of {MAX_ENV_NAME_LEN} bytes: use a shorter name",
                preview(key)
            )));
        }
        let ok = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(Error::invalid(format!(
                "invalid environment variable name {}: use letters, digits and '_', not starting with a digit",
                preview(key)
            )));
        }
        if value.len() > MAX_ENV_VALUE_LEN {
            return Err(Error::invalid(format!(
                "env: the value of {key} is {} bytes, over the limit of {MAX_ENV_VALUE_LEN}: pass large values in the payload or an input file",
                value.len()
            )));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ENV_BYTES {
        return Err(Error::invalid(format!(
            "env: the variables' names and values are {total} bytes together, over the limit of {MAX_ENV_BYTES}: pass large values in the payload or an input file"
        )));
    }
    Ok(())
}

/// The answer to a submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The job (the earlier one when the idempotency key matched).
    pub job: Job,
    /// False when an earlier job with the same idempotency key was returned.
    pub created: bool,
}

/// A page of results and the cursor to the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]

pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A task with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    /// The task.
    pub task: Task,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

/// Register a worker before it leases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterWorker {
    /// The pool it belongs to; default `"default"`.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Its host name.
    pub hostname: String,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// Tasks it runs at once.
    pub concurrency: u32,
    /// Act in this tenant (only for admins of every tenant).
    #[serde(default)]
    pub tenant: Option<String>,
}

fn default_pool() -> String {
    "default".to_string()
}

/// Most tasks one worker may run at once.
pub const MAX_CONCURRENCY: u32 = 4096;
/// Longest worker host name accepted.
pub const MAX_HOSTNAME_LEN: usize = 255;

impl RegisterWorker {
    /// Check everything that can be checked without the store; errors say what to change.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        crate::names::validate_name("pool", &self.pool)?;
        if self.queues.is_empty() {
            return Err(Error::invalid(
                "queues is empty: name at least one queue to serve",
            ));
        }
        for queue in &self.queues {
            crate::names::validate_name("queue", queue)?;
        }
        if self.hostname.is_empty() || self.hostname.len() > MAX_HOSTNAME_LEN {
            return Err(Error::invalid(format!(
                "hostname must be 1 to {MAX_HOSTNAME_LEN} characters"
            )));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(Error::invalid(format!(
                "concurrency {} is out of range: use 1 to {MAX_CONCURRENCY}",
                self.concurrency
            )));
        }
        Ok(())
    }
}

/// A worker's periodic sign of life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerHeartbeat {
    /// Tasks it is running now.
    pub running: u32,
    /// It has stopped leasing and is finishing its tasks.
    #[serde(default)]
    pub draining: bool,
}

/// What the server asks of a worker in answer to its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerHeartbeatReply {
    /// The worker should stop leasing, finish its tasks and exit.
    pub drain: bool,
}

/// Lease up to `max_tasks` tasks, waiting up to `wait` for work to arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The registered worker asking.
    pub worker_id: String,
    /// The queues to take from.
    pub queues: Vec<String>,
    /// Most tasks to take; default 1, at most 1000.
    #[serde(default = "one")]
    pub max_tasks: u32,
    /// Long-poll: wait this long for work before answering with none; default 0, at most 60s.
    #[serde(default, with = "humantime_serde")]
    #[schema(value_type = Option<String>, example = "20s")]
    pub wait: Option<Duration>,
    /// Act in this tenant (only for admins of every tenant).
    #[serde(default)]
    pub tenant: Option<String>,
}

fn one() -> u32 {
    1
}

impl LeaseRequest {
    /// Check everything that can be checked without the store; errors say what to change. A
    /// `max_tasks` above [`MAX_LEASE_BATCH`] or a `wait` above [`MAX_LEASE_WAIT`] is not an
    /// error: the server takes at most those.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if self.queues.is_empty() {
            return Err(Error::invalid(
                "queues is empty: name at least one queue to lease from",
            ));
        }
        if self.max_tasks == 0 {
            return Err(Error::invalid("max_tasks is 0: ask for at least 1 task"));
        }
        for queue in &self.queues {
            crate::names::validate_name("queue", queue)?;
        }
        Ok(())
    }
}

/// A task handed to a worker, with everything needed to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeasedTask {
    /// The task's id.
    pub task_id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// Its index in the job.
    pub index: u32,
    /// Its queue.
    pub queue: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The fencing token every report on this lease must carry.
    pub lease_token: String,
    /// When the lease runs out without a heartbeat.
    pub lease_expires_at: DateTime<Utc>,
    /// How long the lease runs from its grant, in milliseconds: what a worker paces its
    /// heartbeats by, since its own clock may disagree with the server's. Absent from servers
    /// before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// How to run it (from the job).
    pub spec: TaskSpec,
    /// Its payload.
    pub payload: Option<serde_json::Value>,
    /// Whether the job staged inputs to download.
    pub has_inputs: bool,
    /// When this attempt became due, which is when its wait for a worker began: its job's
    /// submit, the end of its delay or of its retry backoff. Absent from servers before it
    /// was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
}

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    /// Tasks now leased to the worker; empty when nothing came within the wait.
    pub tasks: Vec<LeasedTask>,
}

/// A reference to one lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    /// The task.
    pub task_id: TaskId,
    /// The lease token from the lease.
    pub lease_token: String,
}

/// Extend several leases at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The leases to extend.
    pub leases: Vec<LeaseRef>,
}

/// The fate of one lease after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseStatus {
    /// Extended; keep going.
    Extended,
    /// Extended, but the job was cancelled: stop the task and report it failed or released.
    CancelRequested,
    /// This worker no longer holds the lease: stop the task and report nothing.
    Lost,
}

/// One entry of a heartbeat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResult {
    /// The task.
    pub task_id: TaskId,
    /// What happened to its lease.
    pub status: LeaseStatus,
    /// The new expiry when extended.
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// One entry per lease asked about, in order.
    pub results: Vec<HeartbeatResult>,
}

/// Report one task done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// The task.
    pub task_id: TaskId,
    /// The lease token from the lease.
    pub lease_token: String,
    /// The command's exit code (0).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Metadata about the result, e.g. the files uploaded.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// The last 64 KiB of the command's output; the server keeps only the last 64 KiB of a
    /// longer one, behind a line saying how much it cut.
    #[serde(default)]
    pub log_tail: String,
}

/// Report one task failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// The task.
    pub task_id: TaskId,
    /// The lease token from the lease.
    pub lease_token: String,
    /// What went wrong, for people; the server keeps the first 4 KiB of a longer message.
    pub error: String,
    /// The command's exit code, if it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// False to make the task dead at once instead of retrying; default true.
    #[serde(default = "yes")]
    pub retryable: bool,
    /// The last 64 KiB of the command's output; the server keeps only the last 64 KiB of a
    /// longer one, behind a line saying how much it cut.
    #[serde(default)]
    pub log_tail: String,
}

fn yes() -> bool {
    true
}

/// Why a worker hands a lease back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The worker is stopping (SIGTERM, spot preemption, scale-in): requeue at once and do
    /// not count a failure.
    Preempted,
    /// The job was cancelled and the worker stopped the task.
    Cancelled,
}

/// Hand one lease back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The task.
    pub task_id: TaskId,
    /// The lease token from the lease.
    pub lease_token: String,
    /// Why.
    pub reason: ReleaseReason,
    /// The last 64 KiB of the command's output; the server keeps only the last 64 KiB of a
    /// longer one, behind a line saying how much it cut.
    #[serde(default)]
    pub log_tail: String,
}

/// Cut `text` to at most `cap` bytes keeping its end, behind a line that says how much was
/// cut; a character is never split.
fn keep_end(text: &mut String, cap: usize) {
    if text.len() <= cap {
        return;
    }
    let marker = |cut: usize| format!("[{cut} earlier bytes cut by the server]\n");
    // The marker for the whole length is at least as long as the one finally written.
    let keep = cap.saturating_sub(marker(text.len()).len());
    let mut start = text.len() - keep;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    *text = marker(start) + &text[start..];
}

/// Cut `text` to at most `cap` bytes keeping its start, followed by a note of how much was
/// cut; a character is never split.
fn keep_start(text: &mut String, cap: usize) {
    if text.len() <= cap {
        return;
    }
    let marker = |cut: usize| format!(" [{cut} more bytes cut by the server]");
    let mut end = cap.saturating_sub(marker(text.len()).len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&marker(cut));
}

/// Cut a reported log tail to the last [`LOG_TAIL_BYTES`](crate::model::LOG_TAIL_BYTES)
/// bytes, as the worker does, behind a line saying how much was cut.
pub fn cap_log_tail(log_tail: &mut String) {
    keep_end(log_tail, crate::model::LOG_TAIL_BYTES);
}

/// Cut a reported error message to [`MAX_ERROR_LEN`] bytes, keeping its start.
pub fn cap_error(error: &mut String) {
    keep_start(error, MAX_ERROR_LEN);
}

impl Completion {
    /// Cut what is stored of this report to the server's limits (see [`cap_log_tail`]).
    pub fn cap_texts(&mut self) {
        cap_log_tail(&mut self.log_tail);
    }
}

impl Failure {
    /// Cut what is stored of this report to the server's limits (see [`cap_log_tail`] and
    /// [`cap_error`]).
    pub fn cap_texts(&mut self) {
        cap_log_tail(&mut self.log_tail);
        cap_error(&mut self.error);
    }
}

impl Release {
    /// Cut what is stored of this report to the server's limits (see [`cap_log_tail`]).
    pub fn cap_texts(&mut self) {
        cap_log_tail(&mut self.log_tail);
    }
}

/// Report several completions at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The completions.
    pub completions: Vec<Completion>,
}

/// Report several failures at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The failures.
    pub failures: Vec<Failure>,
}

/// Hand several leases back at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The releases.
    pub releases: Vec<Release>,
}

/// The outcome of one entry of a batched report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportResult {
    /// The task.
    pub task_id: TaskId,
    /// True when the report was applied.
    pub ok: bool,
    /// Why not, when `ok` is false (e.g. the lease is no longer held).
    pub error: Option<String>,
}

/// The answer to a batched report: one entry per item, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportResponse {
    /// The outcomes.
    pub results: Vec<ReportResult>,
}

/// Create a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    /// Its name.
    pub name: String,
    /// In this tenant (only for admins of every tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Its behaviour; defaults for fields left out.
    #[serde(default)]
    pub settings: QueueSettings,
}

/// A queue with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// The queue's name.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its behaviour.
    pub settings: QueueSettings,
    /// Its numbers.
    pub stats: QueueStats,
}

/// Requeue dead letters: the listed tasks, or every dead task of a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequeueRequest {
    /// These dead tasks.
    #[serde(default)]
    pub task_ids: Vec<TaskId>,
    /// Or every dead task of this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// In this tenant (only for admins of every tenant).
    #[serde(default)]
    pub tenant: Option<String>,
}

/// How many tasks an operation changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Changed {
    /// The number of tasks changed.
    pub changed: u64,
}

/// The server's version (`GET /v1/version`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerVersion {
    /// The server's release, e.g. `0.4.0`.
    pub version: String,
}

/// Cancel every job of the caller's tenant that matches a filter (`POST /v1/jobs/cancel`).
/// At least one of `labels`, `queue` and `state` must be given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelJobs {
    /// Only jobs carrying every one of these labels: `key=value`, or `key` for any value.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Only jobs of this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Only jobs in this state: `queued` or `running` (default: both; finished jobs cannot
    /// be cancelled).
    #[serde(default)]
    pub state: Option<crate::state::JobState>,
    /// Only say which jobs would be cancelled; cancel nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Act in this tenant (only for admins of every tenant).
    #[serde(default)]
    pub tenant: Option<String>,
}

/// What a bulk cancel did (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobsCancelled {
    /// The jobs cancelled (or that would be), newest first.
    pub jobs: Vec<JobId>,
    /// True when nothing was cancelled because the request was a dry run.
    pub dry_run: bool,
}

/// Create a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name for people.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its tenant (default: the caller's own). An admin of every tenant who omits it makes an
    /// admin or a metrics token of every tenant; tokens of other roles go to `default`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// When it stops working (RFC 3339, in the future); absent: it works until revoked.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The queues of its tenant it may use (they must exist); absent: every queue. Not for
    /// admin tokens, which can mint tokens of any scope.
    #[serde(default)]
    pub queues: Option<Vec<String>>,
}

impl CreateToken {
    /// Check everything that can be checked without the store and the clock (the tenant and
    /// the queues' existence are checked there, the expiry against the server's clock).
    pub fn validate(&self) -> crate::Result<()> {
        crate::names::validate_token_name(&self.name)?;
        if let Some(queues) = &self.queues {
            crate::auth::validate_queue_scope(self.role, queues)?;
        }
        Ok(())
    }
}

/// A new token: the secret is shown once and stored only as a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The secret to send as `Authorization: Bearer …`.
    pub token: String,
    /// What it is.
    pub info: TokenInfo,
}

/// Create a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Its name, also its storage prefix.
    pub name: String,
}

/// A new upload area for a job's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadCreated {
    /// Pass as `upload_id` when submitting.
    pub upload_id: String,
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObjectInfo {
    /// Its path relative to the listing's prefix.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Workers known to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// The workers.
    pub workers: Vec<Worker>,
}

/// The body of every error answer (`application/problem+json`, RFC 9457).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What was wrong and how to fix it.
    pub detail: String,
    /// A stable machine-readable code (`invalid_argument`, `not_found`, `conflict`, …).
    pub code: String,
}

/// Why a task is not running (yet): one cause, with its words for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitReasonKind {
    /// Its queue is paused: nothing is leased from it until it is resumed.
    QueuePaused,
    /// It failed and waits out its backoff until `until`.
    Backoff,
    /// Its job asked to start no earlier than `until`.
    Scheduled,
    /// Pools are configured but none serves its queue, so no autoscaled worker will take it.
    NoPool,
    /// Every pool that may take it is at its maximum.
    PoolsAtMaximum,
    /// Its job is not burstable and every tier-0 pool serving its queue is full.
    HomePoolFull,
    /// A pool that may take it cannot reach the size asked for (quota, stock-out, permission,
    /// instances failing to start, or its provider unreachable).
    PoolProblem,
    /// It is leasable and waits for a worker to lease it.
    WaitingForWorker,
}

/// One reason a task is not running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WaitReason {
    /// The kind of reason, for programs.
    pub kind: WaitReasonKind,
    /// The reason in words, for people.
    pub message: String,
    /// When the reason ends by itself (backoff or schedule), if it does.
    pub until: Option<DateTime<Utc>>,
}

/// The answer to `GET /v1/tasks/{id}/why`: where a task stands and why it is not running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskWhy {
    /// The task.
    pub task_id: TaskId,
    /// Its state.
    pub state: crate::state::TaskState,
    /// Its queue.
    pub queue: String,
    /// Leasable tasks of its queue that a worker takes before it (priority, then `run_at`,
    /// then id); 0 means next. `None` when the task is not waiting or the count was not
    /// finished (queues with more waiting tasks than the server counts on one call).
    pub position: Option<u64>,
    /// When it is expected to start, from its position and the rate at which its queue's
    /// tasks are finishing; `None` when that cannot be estimated.
    pub estimated_start: Option<DateTime<Utc>>,
    /// Why it is not running, most important first; empty when it is running or finished.
    pub reasons: Vec<WaitReason>,
}

/// One autoscaled pool as listed by `GET /v1/pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolStatus {
    /// The pool's name (`[[pools]] name`).
    pub name: String,
    /// What starts its workers: `local`, `external`, `kubernetes`, ...
    pub provider: String,
    /// 0 for a home pool, 1, 2, ... for burst tiers (which take only burstable tasks).
    pub tier: u32,
    /// Fewest workers kept.
    pub min: u32,
    /// Most workers.
    pub max: u32,
    /// Live workers (starting or running) last asked of the provider.
    pub desired: u32,
    /// Live instances the provider reports (starting or running).
    pub actual: u32,
    /// Registered workers of the pool holding at least one lease.
    pub busy: u32,
    /// Registered workers of the pool holding no lease.
    pub idle: u32,
    /// Instances told to finish their tasks and exit.
    pub draining: u32,
    /// Instances gone (exited, crashed, preempted) that the provider still reports.
    pub down: u32,
    /// Why the pool has fewer workers than asked for, in the provider's words.
    pub problems: Vec<String>,
    /// The latest changes of its size, oldest first (at most 20).
    pub decisions: Vec<PoolDecisionRecord>,
}

/// One change of a pool's size, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolDecisionRecord {
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// Live workers before.
    pub from: u32,
    /// Live workers asked for.
    pub to: u32,
    /// Why, in words.
    pub reason: String,
}

/// `PATCH /v1/pools/{name}`: change a pool's bounds (kept across restarts), or reset them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolUpdate {
    /// New fewest workers.
    #[serde(default)]
    pub min: Option<u32>,
    /// New most workers.
    #[serde(default)]
    pub max: Option<u32>,
    /// Forget the bounds set at run time and go back to the configured ones (without `min`
    /// and `max`).
    #[serde(default)]
    pub reset: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(queues: &[&str], max_tasks: u32) -> LeaseRequest {
        LeaseRequest {
            worker_id: "w1".into(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            max_tasks,
            wait: None,
            tenant: None,
        }
    }

    #[test]
    fn lease_requests_need_queues_and_tasks() {
        assert!(lease(&["default"], 1).validate().is_ok());
        assert!(lease(&["default"], MAX_LEASE_BATCH + 1).validate().is_ok());
        for (bad, want) in [
            (lease(&[], 1), "queues is empty"),
            (lease(&["default"], 0), "max_tasks is 0"),
            (lease(&["Bad Queue"], 1), "invalid queue name"),
        ] {
            let err = bad.validate().expect_err(want);
            assert!(err.message().contains(want), "{err}");
        }
    }

    #[test]
    fn workers_register_with_bounded_fields() {
        let ok = RegisterWorker {
            pool: "default".into(),
            hostname: "host-1".into(),
            queues: vec!["default".into()],
            concurrency: 4,
            tenant: None,
        };
        assert!(ok.validate().is_ok());
        let cases = [
            (
                RegisterWorker {
                    pool: "-".into(),
                    ..ok.clone()
                },
                "invalid pool name",
            ),
            (
                RegisterWorker {
                    queues: vec![],
                    ..ok.clone()
                },
                "queues is empty",
            ),
            (
                RegisterWorker {
                    hostname: String::new(),
                    ..ok.clone()
                },
                "hostname",
            ),
            (
                RegisterWorker {
                    hostname: "h".repeat(MAX_HOSTNAME_LEN + 1),
                    ..ok.clone()
                },
                "hostname",
            ),
            (
                RegisterWorker {
                    concurrency: 0,
                    ..ok.clone()
                },
                "concurrency 0",
            ),
            (
                RegisterWorker {
                    concurrency: MAX_CONCURRENCY + 1,
                    ..ok.clone()
                },
                "concurrency",
            ),
        ];
        for (bad, want) in cases {
            let err = bad.validate().expect_err(want);
            assert!(err.message().contains(want), "{err}");
        }
    }

    #[test]
    fn token_names_are_not_blank_nor_long() {
        let token = |name: &str| CreateToken {
            expires_at: None,
            queues: None,
            name: name.into(),
            role: Role::Submitter,
            tenant: None,
        };
        assert!(token("ci-submitter").validate().is_ok());
        assert!(token(" \t").validate().is_err());
        assert!(token(&"x".repeat(201)).validate().is_err());
    }

    use crate::model::LOG_TAIL_BYTES;

    #[test]
    fn a_long_log_tail_keeps_its_end_within_the_cap() {
        let mut tail = format!("{}é{}", "a".repeat(LOG_TAIL_BYTES), "the last line\n");
        cap_log_tail(&mut tail);
        assert!(tail.len() <= LOG_TAIL_BYTES, "{}", tail.len());
        assert!(tail.starts_with('['), "{}", &tail[..60]);
        assert!(tail.contains("earlier bytes cut by the server]\n"));
        assert!(tail.ends_with("éthe last line\n"), "the end is kept");
        let mut short = "fits\n".to_string();
        cap_log_tail(&mut short);
        assert_eq!(short, "fits\n");
    }

    #[test]
    fn a_long_error_keeps_its_start_within_the_cap() {
        let mut error = format!("exit code 3: {}", "€".repeat(MAX_ERROR_LEN));
        cap_error(&mut error);
        assert!(error.len() <= MAX_ERROR_LEN, "{}", error.len());
        assert!(error.starts_with("exit code 3: €"));
        assert!(error.ends_with("more bytes cut by the server]"), "{error}");
    }

    #[test]
    fn env_limits_name_the_field_and_the_limit() {
        let many: BTreeMap<String, String> = (0..=MAX_ENV_VARS)
            .map(|i| (format!("V{i}"), String::new()))
            .collect();
        let err = validate_env(&many).expect_err("too many");
        assert!(err.message().contains("env") && err.message().contains("256"));
        let big = BTreeMap::from([("BIG".to_string(), "x".repeat(MAX_ENV_VALUE_LEN + 1))]);
        let err = validate_env(&big).expect_err("too big");
        assert!(err.message().contains("BIG") && err.message().contains("32768"));
        let long_name = BTreeMap::from([("N".repeat(MAX_ENV_NAME_LEN + 1), String::new())]);
        assert!(validate_env(&long_name).is_err());
        let total: BTreeMap<String, String> = (0..5)
            .map(|i| (format!("V{i}"), "x".repeat(MAX_ENV_VALUE_LEN)))
            .collect();
        let err = validate_env(&total).expect_err("too much together");
        assert!(err.message().contains("131072"), "{err}");
        let fine = BTreeMap::from([("OK".to_string(), "x".repeat(MAX_ENV_VALUE_LEN))]);
        assert!(validate_env(&fine).is_ok());
    }
}
