//! Spillway's durable state.
//!
//! [`Store`] is the one seam between the queue's logic and a database. Two backends implement
//! it: SQLite (the embedded default) and PostgreSQL (several server replicas on one database).
//! Both pass the same conformance suite in [`conformance`].
//!
//! Every state change is conditional on the state the caller believes the row is in and, for
//! leased work, on the lease token, so a stale worker can never complete a task that has since
//! been handed to another.

pub mod autoscale;
#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod ending;
pub mod logs;
mod migrations;
pub mod params;
pub mod postgres;
pub mod report;
mod session;
pub mod sqlite;
pub mod wakeups;

use async_trait::async_trait;
use spillway_core::api::{HeartbeatResult, LeasedTask, Page, PoolStatus};
use spillway_core::model::{
    Attempt, Job, Queue, QueueSettings, QueueStats, Task, Tenant, TokenInfo, Worker,
};
use spillway_core::{JobId, Result, TaskId, Timestamp};

pub use autoscale::{LeaderLease, QueueDemand};
pub use logs::{LogAppend, LogAppended, LogChunk, LogChunks, LogChunksDelete, SealableLog};
pub use params::*;
pub use report::{ReportOutcome, Reported};
pub use session::StoredSession;
pub use wakeups::{Leasable, Takes, Waiter, Wakeups};
pub(crate) use wakeups::{Woken, released};

/// A shared handle to any store.
pub type DynStore = std::sync::Arc<dyn Store>;

/// Durable state of queues, jobs, tasks, workers and tokens.
///
/// Methods are named noun first and take a params struct. Every time-dependent method carries
/// `now` (or its cut-off) in that struct: time always comes from the caller's clock, never
/// from the database or the host, so that tests can move time. The one place the store's own
/// time shows is [`Store::clock_now`], which the caller may build its clock on.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and metrics (`"sqlite"`, `"postgres"`).
    fn backend(&self) -> &'static str;

    /// The in-process wake-up hub: the store signals it after every commit that makes work
    /// leasable (submit, release, requeue, retry becoming due is found by polling). On
    /// PostgreSQL, signals from other replicas arrive here too (LISTEN/NOTIFY).
    fn wakeups(&self) -> &Wakeups;

    /// Check the database answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// The store's own clock, now: on PostgreSQL the database server's `clock_timestamp()`,
    /// one time for every replica (their lease expiries are compared with each other's); on
    /// SQLite, used by one process only, the host's clock. Unavailable when the database does
    /// not answer.
    async fn clock_now(&self) -> Result<Timestamp>;

    /// Create a tenant; conflict if it exists.
    async fn tenant_create(&self, params: TenantCreate) -> Result<Tenant>;
    /// Every tenant.
    async fn tenant_list(&self) -> Result<Vec<Tenant>>;

    /// Store a token (by the hash of its secret); conflict if the id exists.
    async fn token_create(&self, params: TokenCreate) -> Result<TokenInfo>;
    /// The token whose secret hashes to `secret_hash`, if any and not revoked.
    async fn token_lookup(&self, secret_hash: &str) -> Result<Option<TokenInfo>>;
    /// Tokens of one tenant, or of every tenant for `None`.
    async fn token_list(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>>;
    /// Revoke a token at `now`; not found if it is not visible to the tenant (None sees all).
    async fn token_revoke(&self, params: TokenRevoke) -> Result<()>;

    /// Store a dashboard session; conflict if its id hash exists.
    async fn session_create(&self, params: SessionCreate) -> Result<()>;
    /// The session whose cookie value hashes to `id_hash`, with its token, if it has not
    /// ended by `now` and its token is neither revoked nor expired by `now`.
    async fn session_get(&self, id_hash: &str, now: Timestamp) -> Result<Option<StoredSession>>;
    /// Mark a session used and move its end on; false when it had already ended (or never
    /// existed), in which case nothing changes.
    async fn session_touch(&self, params: SessionTouch) -> Result<bool>;
    /// End a session (signing out); ending one that does not exist is not an error.
    async fn session_delete(&self, id_hash: &str) -> Result<()>;
    /// Delete up to `params.limit` sessions that ended, or whose token was revoked or
    /// expired, by `params.now`; returns how many.
    async fn session_sweep(&self, params: SessionSweep) -> Result<u64>;

    /// Create a queue; not found if the tenant does not exist, conflict if the queue does.
    async fn queue_create(&self, params: QueueCreate) -> Result<Queue>;
    /// One queue; not found with a message naming it.
    async fn queue_get(&self, tenant: &str, name: &str) -> Result<Queue>;
    /// Replace a queue's settings.
    async fn queue_update(
        &self,
        tenant: &str,
        name: &str,
        settings: QueueSettings,
    ) -> Result<Queue>;
    /// Queues of one tenant or of all.
    async fn queue_list(&self, tenant: Option<&str>) -> Result<Vec<Queue>>;
    /// Counts by state and age of the oldest leasable task, per queue.
    async fn queue_stats(&self, params: QueueStatsQuery) -> Result<Vec<QueueStats>>;

    /// Insert a job and its tasks in one transaction. With an idempotency key that the tenant
    /// already used, insert nothing and return the earlier job with `created == false`.
    /// Not found if the queue does not exist.
    async fn job_submit(&self, params: JobSubmit) -> Result<(Job, bool)>;
    /// One job with its counts; not found if missing or not visible to `tenant`.
    async fn job_get(&self, tenant: Option<&str>, id: &str) -> Result<Job>;
    /// Jobs newest first, filtered and paged.
    async fn job_list(&self, params: JobList) -> Result<Page<Job>>;
    /// Cancel a job: waiting tasks become cancelled, leased ones get `cancel_requested`.
    async fn job_cancel(&self, params: JobCancel) -> Result<Job>;
    /// Requeue a job's dead and cancelled tasks (failures reset); returns how many.
    async fn job_retry(&self, params: JobRetry) -> Result<u64>;
    /// Jobs that succeeded, asked for their inputs to be deleted, and still have them.
    async fn job_inputs_to_delete(&self, limit: u32) -> Result<Vec<(String, JobId)>>;
    /// Record that a job's inputs were deleted.
    async fn job_inputs_deleted(&self, id: &str) -> Result<()>;

    /// One task; not found if missing or not visible to `tenant`.
    async fn task_get(&self, tenant: Option<&str>, id: TaskId) -> Result<Task>;
    /// Tasks in id order, filtered and paged.
    async fn task_list(&self, params: TaskList) -> Result<Page<Task>>;
    /// A task's attempts, oldest first.
    async fn task_attempts(&self, tenant: Option<&str>, id: TaskId) -> Result<Vec<Attempt>>;

    /// Lease up to `max` leasable tasks (state scheduled, available or retrying with
    /// `run_at <= now`, queue not paused, job not cancelled) from the given queues: highest
    /// priority first, then earliest `run_at`, then lowest id. Each gets a fresh random lease
    /// token, `attempt + 1`, an attempt row and `lease_expires_at = now + queue lease_duration`.
    /// Never hands one task to two callers, however many call at once.
    async fn task_lease(&self, params: TaskLease) -> Result<Vec<LeasedTask>>;
    /// Extend leases still held (state leased and token matching).
    async fn task_heartbeat(&self, params: TaskHeartbeat) -> Result<Vec<HeartbeatResult>>;
    /// The task whose current lease is `params.lease_token` (for result uploads): not found
    /// if the task is missing or not visible to the caller's tenant, conflict if the lease is
    /// not current.
    async fn lease_check(&self, params: LeaseCheck) -> Result<Task>;
    /// Complete leased tasks. Each entry is answered in order: applied, not found (no such
    /// task in the caller's tenant) or not current (stale token); refused ones change nothing.
    async fn task_complete(&self, params: TaskComplete) -> Result<Vec<Reported>>;
    /// Fail leased tasks: retrying with backoff while attempts remain, else dead. Answered
    /// per entry as [`Store::task_complete`] is.
    async fn task_fail(&self, params: TaskFail) -> Result<Vec<Reported>>;
    /// Hand leases back: preempted ones become available at once without counting a failure
    /// (`preemptions + 1`, `avoid_pool` set); cancelled ones become cancelled. Answered per
    /// entry as [`Store::task_complete`] is.
    async fn task_release(&self, params: TaskRelease) -> Result<Vec<Reported>>;
    /// Fail every lease that expired before `params.now` (attempt outcome `lease_expired`); returns
    /// how many.
    async fn lease_reap(&self, params: LeaseReap) -> Result<u64>;

    /// Dead tasks, oldest first, paged.
    async fn dead_list(&self, params: DeadList) -> Result<Page<Task>>;
    /// Requeue dead tasks (the listed ones, or all of a queue): available now, failures reset.
    async fn dead_requeue(&self, params: DeadRequeue) -> Result<u64>;

    /// Register a worker.
    async fn worker_register(&self, params: WorkerRegister) -> Result<Worker>;
    /// Record a worker heartbeat; answers the worker as now stored.
    async fn worker_heartbeat(&self, params: WorkerBeat) -> Result<Worker>;
    /// Mark a worker exited.
    async fn worker_exit(&self, params: WorkerExit) -> Result<()>;
    /// Workers of a tenant or of all, newest first; ones that exited more than a day before
    /// `now` are left out.
    async fn worker_list(&self, params: WorkerList) -> Result<Vec<Worker>>;
    /// Mark active or draining workers not seen since `silent_since` as down; returns how many.
    async fn worker_mark_down(&self, params: WorkerMarkDown) -> Result<u64>;
    /// Ask a worker to drain: its state becomes draining (sticky until it exits or goes
    /// down), so its next heartbeat answer says drain. Not found if it does not exist;
    /// exited and down workers are left as they are. Takes no time: draining is a state, not
    /// a deadline.
    async fn worker_drain(&self, id: &str) -> Result<()>;

    /// What every queue asks of the workers now: leasable and leased tasks, mean run time and
    /// recent arrivals, one entry per queue of every tenant.
    async fn queue_demand(&self, params: QueueDemandQuery) -> Result<Vec<QueueDemand>>;
    /// Try to become the one replica that acts for `key` (e.g. the autoscaler); `None` when
    /// another replica holds it. Keep the lease while acting and check
    /// [`LeaderLease::is_held`] before each pass.
    async fn leader_try(&self, key: i64) -> Result<Option<LeaderLease>>;
    /// Keep what the autoscaler's leader last saw and decided of every configured pool, in
    /// place of what was kept (pools not listed are forgotten), for every replica to show and
    /// for the next leader to go on from.
    async fn pool_status_save(&self, params: PoolStatusSave) -> Result<()>;
    /// What [`Store::pool_status_save`] kept last, by pool name.
    async fn pool_status_list(&self) -> Result<Vec<PoolStatus>>;
    /// Keep the bounds a pool was given at run time, so that they outlive a restart and every
    /// replica applies them; replaces what was kept for that pool.
    async fn pool_bounds_save(&self, params: PoolBoundsSave) -> Result<()>;
    /// Forget a pool's run-time bounds (nothing happens when none were kept).
    async fn pool_bounds_clear(&self, params: PoolBoundsClear) -> Result<()>;
    /// Every pool's kept run-time bounds, by pool name.
    async fn pool_bounds_list(&self) -> Result<Vec<PoolBounds>>;

    /// Delete finished jobs (with tasks and attempts) whose queue's retention has passed;
    /// returns the deleted jobs as (tenant, job id, had inputs) so their blobs can go too.
    async fn retention_sweep(&self, params: RetentionSweep) -> Result<Vec<(String, JobId, bool)>>;

    /// Append a chunk to the live log of a task's current attempt, only while `lease_token` is
    /// its current lease (checked in the same transaction, so no chunk lands after the attempt
    /// ended): not found if the task is missing or not the caller's tenant's, conflict if the
    /// lease is not current, too large if the attempt's chunks would pass `max_bytes`. A chunk
    /// whose `seq` is already stored is left as it is (`stored == false`).
    async fn log_append(&self, params: LogAppend) -> Result<LogAppended>;
    /// Chunks of one attempt's live log after `after_seq`, in order, at most `limit`. Readers
    /// check the task is the caller's first; chunks of a sealed attempt are gone.
    async fn log_chunks(&self, params: LogChunks) -> Result<Vec<LogChunk>>;
    /// Up to `limit` attempts that have ended and still have live chunks, to be sealed.
    async fn log_sealable(&self, limit: u32) -> Result<Vec<SealableLog>>;
    /// Delete every live chunk of one attempt; returns how many.
    async fn log_chunks_delete(&self, params: LogChunksDelete) -> Result<u64>;
}
