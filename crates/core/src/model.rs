//! The nouns of Spillway as they are stored and returned by the API.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Role;
use crate::retry::{DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_ATTEMPTS};
use crate::state::{AttemptOutcome, JobState, StateCounts, TaskState};
use crate::trace_context::TraceContext;
use crate::{JobId, TaskId};
use chrono::{DateTime, Utc};

/// The tenant used when none is named.
pub const DEFAULT_TENANT: &str = "default";
/// The queue used when none is named.
pub const DEFAULT_QUEUE: &str = "default";
/// Default lease length: a worker that stays silent this long loses its task.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);
/// Default time finished jobs are kept before the retention cleaner removes them.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default largest payload of one task.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;
/// How much of a task's stdout/stderr is kept per attempt.
pub const LOG_TAIL_BYTES: usize = 64 * 1024;
/// Default most bytes of output kept per attempt in the whole log (live chunks, then the log
/// object); the worker counts what goes beyond and says so at the end of the log.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 100 * 1024 * 1024;
/// Largest live log chunk a worker sends in one request.
pub const MAX_LOG_CHUNK_BYTES: usize = 64 * 1024;

/// A team or line of business: owns queues, jobs, tokens and a storage prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// The tenant's name, also its storage prefix.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A queue's tunable behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Failed attempts before a task becomes a dead letter.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each failure.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String, example = "1s")]
    pub backoff_base: Duration,
    /// Longest delay between retries.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String, example = "10m")]
    pub backoff_max: Duration,
    /// How long a lease lasts without a heartbeat.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String, example = "30s")]
    pub lease_duration: Duration,
    /// How long finished jobs are kept.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String, example = "7days")]
    pub retention: Duration,
    /// A paused queue keeps accepting jobs but leases nothing.
    pub paused: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            lease_duration: DEFAULT_LEASE_DURATION,
            retention: DEFAULT_RETENTION,
            paused: false,
        }
    }
}

impl QueueSettings {
    /// Check the settings are usable; the error names the field and its allowed range.
    pub fn validate(&self) -> crate::Result<()> {
        if !(1..=1000).contains(&self.max_attempts) {
            return Err(crate::Error::invalid(format!(
                "max_attempts {} is out of range: use 1 to 1000",
                self.max_attempts
            )));
        }
        if self.lease_duration < Duration::from_secs(1)
            || self.lease_duration > Duration::from_secs(24 * 3600)
        {
            return Err(crate::Error::invalid(
                "lease_duration is out of range: use 1s to 24h",
            ));
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            return Err(crate::Error::invalid(
                "backoff_base must be above zero and backoff_max at least backoff_base",
            ));
        }
        Ok(())
    }
}

/// A named queue in a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    /// The tenant that owns it.
    pub tenant: String,
    /// Its name, unique within the tenant.
    pub name: String,
    /// Its behaviour.
    pub settings: QueueSettings,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// What one task needs from a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// GPUs.
    pub gpu: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu: 1.0,
            memory_mb: 512,
            gpu: 0,
        }
    }
}

/// How to run each task of a job. `{index}` in any argument is replaced by the task's index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The program and its arguments, run directly (no shell) unless `shell` is true.
    pub command: Vec<String>,
    /// Run `command` joined by spaces through `sh -c`.
    #[serde(default)]
    pub shell: bool,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the task's process group after this long.
    #[serde(default, with = "humantime_serde")]
    #[schema(value_type = Option<String>, example = "10m")]
    pub timeout: Option<Duration>,
    /// What one task needs.
    #[serde(default)]
    pub resources: Resources,
    /// The container image to run `command` in, for executors that run containers (the
    /// Kubernetes job-per-task executor); local workers run the command on their host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "python:3.12-slim")]
    pub image: Option<String>,
    /// The W3C trace context the job's tasks continue (see [`TraceContext`]). The server sets
    /// it at submit from its span of the submit, or from the request's `traceparent` header;
    /// a client may give one to tie the job into its own trace. Workers pass it on to each
    /// task as `TRACEPARENT` and `TRACESTATE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// A job: one or many tasks sharing a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Its id (UUIDv7).
    pub id: JobId,
    /// The tenant that owns it.
    pub tenant: String,
    /// The queue its tasks wait in.
    pub queue: String,
    /// A name for people.
    pub name: Option<String>,
    /// Free-form labels to filter by.
    pub labels: BTreeMap<String, String>,
    /// How its tasks run.
    pub spec: TaskSpec,
    /// Higher runs first.
    pub priority: i32,
    /// May run on burst capacity.
    pub burstable: bool,
    /// The submitter's key that makes submit idempotent.
    pub idempotency_key: Option<String>,
    /// Delete staged inputs once every task has succeeded.
    pub delete_inputs_on_success: bool,
    /// Whether inputs were staged for this job.
    pub has_inputs: bool,
    /// Number of tasks.
    pub task_count: u32,
    /// Tasks per state.
    pub counts: StateCounts,
    /// Derived from `counts`.
    pub state: JobState,
    /// Cancellation was asked for.
    pub cancel_requested: bool,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When its last task finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The lease a task is under while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseInfo {
    /// The worker holding it.
    pub worker_id: String,
    /// When it runs out without a heartbeat.
    pub expires_at: DateTime<Utc>,
}

/// One task of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// The tenant that owns it.
    pub tenant: String,
    /// The queue it waits in.
    pub queue: String,
    /// Its position in the job, from 0.
    pub index: u32,
    /// Its lifecycle state.
    pub state: TaskState,
    /// Higher runs first.
    pub priority: i32,
    /// May run on burst capacity (copied from the job).
    pub burstable: bool,
    /// Not leased before this time.
    pub run_at: DateTime<Utc>,
    /// Leases handed out so far (the current attempt's number while leased).
    pub attempt: u32,
    /// Failed attempts so far; at `max_attempts` the task is dead.
    pub failures: u32,
    /// Attempts handed back as preempted; not counted against `max_attempts`.
    pub preemptions: u32,
    /// Failures allowed (from the queue at submit).
    pub max_attempts: u32,
    /// The task's own input, given to the command as a file and on stdin.
    pub payload: Option<serde_json::Value>,
    /// The current lease, while leased.
    pub lease: Option<LeaseInfo>,
    /// The job was cancelled: the worker should stop at its next heartbeat.
    pub cancel_requested: bool,
    /// The last attempt's exit code.
    pub exit_code: Option<i32>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Metadata reported on completion.
    pub result: Option<serde_json::Value>,
    /// The pool of the worker that was last preempted on it, to prefer another pool next time.
    pub avoid_pool: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When it reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One lease of a task and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// The task.
    pub task_id: TaskId,
    /// 1 for the first lease.
    pub attempt: u32,
    /// The worker that held it.
    pub worker_id: String,
    /// When it was leased.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The command's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
    /// The last 64 KiB of stdout and stderr.
    pub log_tail: String,
}

/// A worker's state as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Leasing and running tasks.
    Active,
    /// Finishing its tasks and leasing no more.
    Draining,
    /// Missed its heartbeats; its leases will expire.
    Down,
    /// Said goodbye.
    Exited,
}

impl WorkerState {
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Draining => "draining",
            WorkerState::Down => "down",
            WorkerState::Exited => "exited",
        }
    }

    /// Parse the stable name.
    pub fn parse(value: &str) -> crate::Result<Self> {
        match value {
            "active" => Ok(WorkerState::Active),
            "draining" => Ok(WorkerState::Draining),
            "down" => Ok(WorkerState::Down),
            "exited" => Ok(WorkerState::Exited),
            other => Err(crate::Error::invalid(format!(
                "unknown worker state {other:?}: use one of active, draining, down, exited"
            ))),
        }
    }
}

/// A worker process known to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Worker {
    /// Its id, chosen by the server at registration.
    pub id: String,
    /// The tenant it works for.
    pub tenant: String,
    /// The pool it belongs to (`"default"` when started by hand).
    pub pool: String,
    /// The host it runs on.
    pub hostname: String,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// Tasks it runs at once.
    pub concurrency: u32,
    /// Its state.
    pub state: WorkerState,
    /// Tasks it holds now.
    pub running: u32,
    /// When it registered.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_seen: DateTime<Utc>,
}

/// An API token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The tenant it acts for; none for an admin or a metrics token of every tenant.
    pub tenant: Option<String>,
    /// Its role.
    pub role: Role,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working; none: it works until revoked.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The queues of its tenant it may use; none: every queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
}

/// Per-queue numbers for stats and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueStats {
    /// The tenant.
    pub tenant: String,
    /// The queue.
    pub queue: String,
    /// Tasks per state.
    pub counts: StateCounts,
    /// Age in seconds of the oldest task that could be leased now.
    pub oldest_available_age_seconds: Option<f64>,
    /// Whether the queue is paused.
    pub paused: bool,
}
