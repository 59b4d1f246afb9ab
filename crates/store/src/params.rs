//! Parameter structs of the [`Store`](crate::Store) methods.

use std::collections::BTreeMap;

use spillway_core::api::{Completion, Failure, LeaseRef, Release};
use spillway_core::auth::Role;
use spillway_core::model::{QueueSettings, TaskSpec};
use spillway_core::names::LabelSelector;
use spillway_core::state::{JobState, TaskState};
use spillway_core::{JobId, TaskId, Timestamp};

/// Create a tenant.
#[derive(Debug, Clone)]
pub struct TenantCreate {
    /// Its name (already validated).
    pub name: String,
    /// Creation time.
    pub now: Timestamp,
}

/// Store a new token.
#[derive(Debug, Clone)]
pub struct TokenCreate {
    /// Its id (public).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Its tenant; `None` for an admin of every tenant.
    pub tenant: Option<String>,
    /// Its role.
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    /// Creation time.
    pub now: Timestamp,
    /// When it stops working; `None`: never (until revoked).
    pub expires_at: Option<Timestamp>,
    /// The queues of its tenant it may use (already validated); `None`: every queue.
    pub queues: Option<Vec<String>>,
}

/// Start a dashboard session.
#[derive(Debug, Clone)]
pub struct SessionCreate {
    /// SHA-256 of the session's cookie value, hex (the value itself is never stored).
    pub id_hash: String,
    /// The token the person signed in with.
    pub token_id: String,
    /// The CSRF token every form of the session carries.
    pub csrf: String,
    /// Creation time (also its first use).
    pub now: Timestamp,
    /// When it ends unless used again.
    pub expires_at: Timestamp,
}

/// Mark a dashboard session used, moving its end on.
#[derive(Debug, Clone)]
pub struct SessionTouch {
    /// SHA-256 of the session's cookie value, hex.
    pub id_hash: String,
    /// The time of the use; a session that ended before it is not revived.
    pub now: Timestamp,
    /// Its new end.
    pub expires_at: Timestamp,
}

/// Delete ended dashboard sessions.
#[derive(Debug, Clone)]
pub struct SessionSweep {
    /// Sessions that ended before this, or whose token is revoked or expired by it, go.
    pub now: Timestamp,
    /// Most sessions deleted in one call, to bound its work.
    pub limit: u32,
}

/// Create a queue.
#[derive(Debug, Clone)]
pub struct QueueCreate {
    /// The tenant (must exist).
    pub tenant: String,
    /// The queue's name (already validated).
    pub name: String,
    /// Its settings (already validated).
    pub settings: QueueSettings,
    /// Creation time.
    pub now: Timestamp,
}

/// Insert a job with its tasks.
#[derive(Debug, Clone)]
pub struct JobSubmit {
    /// The new job's id (UUIDv7, made by the caller so inputs can be staged under it first).
    pub id: JobId,
    /// The tenant.
    pub tenant: String,
    /// The queue (must exist in the tenant).
    pub queue: String,
    /// A name for people.
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// How tasks run.
    pub spec: TaskSpec,
    /// Priority of every task.
    pub priority: i32,
    /// Whether tasks may burst.
    pub burstable: bool,
    /// Idempotency key, unique per tenant.
    pub idempotency_key: Option<String>,
    /// Delete inputs when the job succeeds.
    pub delete_inputs_on_success: bool,
    /// Whether inputs were staged under the job's prefix.
    pub has_inputs: bool,
    /// One payload per task; the task's index is its position.
    pub payloads: Vec<Option<serde_json::Value>>,
    /// Not-before time; tasks start `scheduled` when it is after `now`, else `available`.
    pub run_at: Timestamp,
    /// Submit time.
    pub now: Timestamp,
}

/// Filter and page jobs.
#[derive(Debug, Clone, Default)]
pub struct JobList {
    /// Only this tenant (None: all).
    pub tenant: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only jobs in this derived state.
    pub state: Option<JobState>,
    /// Only jobs satisfying every one of these label conditions (`key=value`, or a key
    /// alone for any value). The store filters by them, so pages stay full.
    pub labels: Vec<LabelSelector>,
    /// Page size (1..=1000).
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl DeadList {
    /// As [`JobList::label_params`], for the dead tasks' jobs.
    pub(crate) fn label_params(&self) -> (serde_json::Value, Vec<String>) {
        label_params(&self.labels)
    }

    /// As [`JobList::labels_contradict`].
    pub(crate) fn labels_contradict(&self) -> bool {
        labels_contradict(&self.labels)
    }
}

impl JobList {
    /// The label conditions with a value, as one JSON object `{key: value}` (a job matches
    /// when its labels contain it), and the bare keys (the job must have each): what both
    /// backends filter labels by. See [`JobList::labels_contradict`] for the one case the
    /// object cannot say.
    pub(crate) fn label_params(&self) -> (serde_json::Value, Vec<String>) {
        label_params(&self.labels)
    }

    /// True when two conditions ask one key for different values, which no job can
    /// satisfy: the listing is empty.
    pub(crate) fn labels_contradict(&self) -> bool {
        labels_contradict(&self.labels)
    }

    /// The SQL condition (`AND …`, on the `jobs` table of either backend) that narrows a
    /// listing to the jobs that can be in the state asked for: finished ones of that state
    /// (an index range), or for queued and running the unfinished ones. Each job's state is
    /// still derived from its counts and checked.
    pub(crate) fn state_condition(&self) -> &'static str {
        match self.state {
            None => "",
            Some(JobState::Queued | JobState::Running) => "AND finished_at IS NULL",
            Some(JobState::Succeeded) => "AND finished_state = 'succeeded'",
            Some(JobState::Failed) => "AND finished_state = 'failed'",
            Some(JobState::Cancelled) => "AND finished_state = 'cancelled'",
        }
    }
}

/// Label conditions as the backends filter by them: the pairs as one JSON object, and the
/// bare keys.
fn label_params(labels: &[LabelSelector]) -> (serde_json::Value, Vec<String>) {
    let mut pairs = serde_json::Map::new();
    let mut keys = Vec::new();
    for selector in labels {
        match &selector.value {
            Some(value) => {
                pairs.insert(selector.key.clone(), serde_json::Value::from(value.clone()));
            }
            None => keys.push(selector.key.clone()),
        }
    }
    (serde_json::Value::Object(pairs), keys)
}

/// Whether two conditions ask one key for different values (no job can match).
fn labels_contradict(labels: &[LabelSelector]) -> bool {
    labels.iter().enumerate().any(|(i, a)| {
        labels[i + 1..]
            .iter()
            .any(|b| a.key == b.key && a.value.is_some() && b.value.is_some() && a.value != b.value)
    })
}

/// Filter and page tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskList {
    /// Only this tenant (None: all).
    pub tenant: Option<String>,
    /// Only this job's tasks.
    pub job_id: Option<JobId>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<TaskState>,
    /// Page size (1..=1000).
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Lease tasks for a worker.
#[derive(Debug, Clone)]
pub struct TaskLease {
    /// The tenant whose queues to take from.
    pub tenant: String,
    /// The queues.
    pub queues: Vec<String>,
    /// The worker taking them.
    pub worker_id: String,
    /// The worker's pool: tasks whose `avoid_pool` names it are taken only when nothing
    /// else is leasable.
    pub worker_pool: String,
    /// Take only tasks of burstable jobs (for burst-tier pools).
    pub burstable_only: bool,
    /// Most tasks to take.
    pub max: u32,
    /// Lease time.
    pub now: Timestamp,
}

/// Extend leases.
#[derive(Debug, Clone)]
pub struct TaskHeartbeat {
    /// The caller's tenant, part of every lease's condition: a lease of another tenant's task
    /// is left as it is and answered as lost. `None` for a caller of every tenant.
    pub tenant: Option<String>,
    /// The leases.
    pub leases: Vec<LeaseRef>,
    /// Heartbeat time.
    pub now: Timestamp,
}

/// Check a lease before a result upload.
#[derive(Debug, Clone)]
pub struct LeaseCheck {
    /// The caller's tenant, part of the condition: another tenant's task is not found.
    /// `None` for a caller of every tenant.
    pub tenant: Option<String>,
    /// The task.
    pub task_id: TaskId,
    /// The lease token the caller holds.
    pub lease_token: String,
}

/// Complete tasks.
#[derive(Debug, Clone)]
pub struct TaskComplete {
    /// The caller's tenant, part of every lease's condition: a lease of another tenant's task
    /// is left as it is and answered as not found. `None` for a caller of every tenant.
    pub tenant: Option<String>,
    /// The completions.
    pub items: Vec<Completion>,
    /// Completion time.
    pub now: Timestamp,
}

/// Fail tasks.
#[derive(Debug, Clone)]
pub struct TaskFail {
    /// The caller's tenant, part of every lease's condition: a lease of another tenant's task
    /// is left as it is and answered as not found. `None` for a caller of every tenant.
    pub tenant: Option<String>,
    /// The failures.
    pub items: Vec<Failure>,
    /// Failure time.
    pub now: Timestamp,
}

/// Release leases.
#[derive(Debug, Clone)]
pub struct TaskRelease {
    /// The caller's tenant, part of every lease's condition: a lease of another tenant's task
    /// is left as it is and answered as not found. `None` for a caller of every tenant.
    pub tenant: Option<String>,
    /// The releases.
    pub items: Vec<Release>,
    /// The releasing worker's pool, remembered as the task's `avoid_pool`.
    pub worker_pool: Option<String>,
    /// Release time.
    pub now: Timestamp,
}

/// Page dead letters.
#[derive(Debug, Clone, Default)]
pub struct DeadList {
    /// Only this tenant (None: all).
    pub tenant: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only tasks whose job satisfies every one of these label conditions.
    pub labels: Vec<LabelSelector>,
    /// Page size (1..=1000).
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Requeue dead letters.
#[derive(Debug, Clone)]
pub struct DeadRequeue {
    /// Only tasks of this tenant (None: all).
    pub tenant: Option<String>,
    /// These tasks (ignored unless dead).
    pub task_ids: Vec<TaskId>,
    /// Or every dead task of this queue.
    pub queue: Option<String>,
    /// Requeue time.
    pub now: Timestamp,
}

/// Register a worker.
#[derive(Debug, Clone)]
pub struct WorkerRegister {
    /// Its id (made by the caller).
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its pool.
    pub pool: String,
    /// Its host.
    pub hostname: String,
    /// Queues served.
    pub queues: Vec<String>,
    /// Tasks at once.
    pub concurrency: u32,
    /// Registration time.
    pub now: Timestamp,
}

/// A worker's heartbeat.
#[derive(Debug, Clone)]
pub struct WorkerBeat {
    /// The worker.
    pub id: String,
    /// Tasks it runs now.
    pub running: u32,
    /// It is draining.
    pub draining: bool,
    /// Heartbeat time.
    pub now: Timestamp,
}

/// Revoke a token.
#[derive(Debug, Clone)]
pub struct TokenRevoke {
    /// Only a token of this tenant (None: any).
    pub tenant: Option<String>,
    /// The token's id.
    pub id: String,
    /// Revocation time.
    pub now: Timestamp,
}

/// Count each queue's tasks by state.
#[derive(Debug, Clone)]
pub struct QueueStatsQuery {
    /// Only this tenant's queues (None: all).
    pub tenant: Option<String>,
    /// The time the oldest leasable task's age is measured at.
    pub now: Timestamp,
}

/// Cancel a job.
#[derive(Debug, Clone)]
pub struct JobCancel {
    /// Only a job of this tenant (None: any).
    pub tenant: Option<String>,
    /// The job.
    pub id: String,
    /// Cancel time.
    pub now: Timestamp,
}

/// Requeue a job's dead and cancelled tasks.
#[derive(Debug, Clone)]
pub struct JobRetry {
    /// Only a job of this tenant (None: any).
    pub tenant: Option<String>,
    /// The job.
    pub id: String,
    /// Requeue time.
    pub now: Timestamp,
}

/// Fail expired leases.
#[derive(Debug, Clone, Copy)]
pub struct LeaseReap {
    /// Leases that expired before this time are reaped.
    pub now: Timestamp,
}

/// Mark silent workers down.
#[derive(Debug, Clone, Copy)]
pub struct WorkerMarkDown {
    /// Workers not seen since this time are down.
    pub silent_since: Timestamp,
}

/// The autoscaler leader's view of every configured pool, to keep.
#[derive(Debug, Clone)]
pub struct PoolStatusSave {
    /// One status per configured pool; kept statuses of other pools are removed.
    pub statuses: Vec<spillway_core::api::PoolStatus>,
    /// When the leader saw them.
    pub now: Timestamp,
}

/// What every queue asks of the workers.
#[derive(Debug, Clone, Copy)]
pub struct QueueDemandQuery {
    /// The time leasable tasks and recent arrivals are counted at.
    pub now: Timestamp,
}

/// Delete finished jobs past their queue's retention.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSweep {
    /// Retention is measured back from this time.
    pub now: Timestamp,
    /// Most jobs to delete in one sweep.
    pub limit: u32,
}

/// Mark a worker exited.
#[derive(Debug, Clone)]
pub struct WorkerExit {
    /// The worker.
    pub id: String,
    /// Exit time.
    pub now: Timestamp,
}

/// List workers.
#[derive(Debug, Clone)]
pub struct WorkerList {
    /// Only this tenant's workers (None: all).
    pub tenant: Option<String>,
    /// Workers that exited more than a day before this time are left out.
    pub now: Timestamp,
}

/// The bounds a pool was given at run time, kept over its configured ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolBounds {
    /// The pool's name.
    pub pool: String,
    /// Fewest workers.
    pub min: u32,
    /// Most workers.
    pub max: u32,
}

/// Keep a pool's run-time bounds (replacing any kept before).
#[derive(Debug, Clone)]
pub struct PoolBoundsSave {
    /// The bounds (already validated against the pool's config).
    pub bounds: PoolBounds,
    /// When they were set.
    pub now: Timestamp,
}

/// Forget a pool's run-time bounds: it goes back to its configured ones.
#[derive(Debug, Clone)]
pub struct PoolBoundsClear {
    /// The pool's name.
    pub pool: String,
}
