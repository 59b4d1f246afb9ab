//! The [`Store`] trait, delegating to the backend's files by concern.

use async_trait::async_trait;
use spillway_core::api::{HeartbeatResult, LeasedTask, Page, ReportResult};
use spillway_core::model::{
    Attempt, Job, Queue, QueueSettings, QueueStats, Task, Tenant, TokenInfo, Worker,
};
use spillway_core::{JobId, Result, TaskId, Timestamp};

use super::PostgresStore;
use crate::{
    DeadList, DeadRequeue, JobList, JobSubmit, LeaderLease, QueueCreate, QueueDemand, Store,
    TaskComplete, TaskFail, TaskHeartbeat, TaskLease, TaskList, TaskRelease, TokenCreate, Wakeups,
    WorkerBeat, WorkerRegister,
};

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    async fn ping(&self) -> Result<()> {
        self.ping_db().await
    }

    async fn tenant_create(&self, name: &str, now: Timestamp) -> Result<Tenant> {
        self.tenant_insert(name, now).await
    }

    async fn tenant_list(&self) -> Result<Vec<Tenant>> {
        self.tenants().await
    }

    async fn token_create(&self, params: TokenCreate) -> Result<TokenInfo> {
        self.token_insert(params).await
    }

    async fn token_lookup(&self, secret_hash: &str) -> Result<Option<TokenInfo>> {
        self.token_by_hash(secret_hash).await
    }

    async fn token_list(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>> {
        self.tokens(tenant).await
    }

    async fn token_revoke(&self, tenant: Option<&str>, id: &str) -> Result<()> {
        self.token_delete(tenant, id).await
    }

    async fn queue_create(&self, params: QueueCreate) -> Result<Queue> {
        self.queue_insert(params).await
    }

    async fn queue_get(&self, tenant: &str, name: &str) -> Result<Queue> {
        self.queue_by_name(tenant, name).await
    }

    async fn queue_update(
        &self,
        tenant: &str,
        name: &str,
        settings: QueueSettings,
    ) -> Result<Queue> {
        self.queue_set(tenant, name, settings).await
    }

    async fn queue_list(&self, tenant: Option<&str>) -> Result<Vec<Queue>> {
        self.queues(tenant).await
    }

    async fn queue_stats(&self, tenant: Option<&str>, now: Timestamp) -> Result<Vec<QueueStats>> {
        self.stats(tenant, now).await
    }

    async fn job_submit(&self, params: JobSubmit) -> Result<(Job, bool)> {
        self.submit(params).await
    }

    async fn job_get(&self, tenant: Option<&str>, id: &str) -> Result<Job> {
        self.job_by_id(tenant, id).await
    }

    async fn job_list(&self, params: JobList) -> Result<Page<Job>> {
        self.jobs(params).await
    }

    async fn job_cancel(&self, tenant: Option<&str>, id: &str, now: Timestamp) -> Result<Job> {
        self.cancel(tenant, id, now).await
    }

    async fn job_retry(&self, tenant: Option<&str>, id: &str, now: Timestamp) -> Result<u64> {
        self.retry(tenant, id, now).await
    }

    async fn job_inputs_to_delete(&self, limit: u32) -> Result<Vec<(String, JobId)>> {
        self.inputs_to_delete(limit).await
    }

    async fn job_inputs_deleted(&self, id: &str) -> Result<()> {
        self.inputs_deleted(id).await
    }

    async fn task_get(&self, tenant: Option<&str>, id: TaskId) -> Result<Task> {
        self.task_by_id(tenant, id).await
    }

    async fn task_list(&self, params: TaskList) -> Result<Page<Task>> {
        self.tasks(params).await
    }

    async fn task_attempts(&self, tenant: Option<&str>, id: TaskId) -> Result<Vec<Attempt>> {
        self.attempts(tenant, id).await
    }

    async fn task_lease(&self, params: TaskLease) -> Result<Vec<LeasedTask>> {
        self.lease(params).await
    }

    async fn task_heartbeat(&self, params: TaskHeartbeat) -> Result<Vec<HeartbeatResult>> {
        self.heartbeat(params).await
    }

    async fn lease_check(&self, id: TaskId, token: &str, _now: Timestamp) -> Result<Task> {
        // An expired lease stays current until reaped, as for complete and fail.
        self.check_lease(id, token).await
    }

    async fn task_complete(&self, params: TaskComplete) -> Result<Vec<ReportResult>> {
        self.complete(params).await
    }

    async fn task_fail(&self, params: TaskFail) -> Result<Vec<ReportResult>> {
        self.fail(params).await
    }

    async fn task_release(&self, params: TaskRelease) -> Result<Vec<ReportResult>> {
        self.release(params).await
    }

    async fn lease_reap(&self, now: Timestamp) -> Result<u64> {
        self.reap(now).await
    }

    async fn dead_list(&self, params: DeadList) -> Result<Page<Task>> {
        self.dead(params).await
    }

    async fn dead_requeue(&self, params: DeadRequeue) -> Result<u64> {
        self.requeue_dead(params).await
    }

    async fn worker_register(&self, params: WorkerRegister) -> Result<Worker> {
        self.worker_insert(params).await
    }

    async fn worker_heartbeat(&self, params: WorkerBeat) -> Result<Worker> {
        self.worker_beat(params).await
    }

    async fn worker_exit(&self, id: &str, now: Timestamp) -> Result<()> {
        self.worker_gone(id, now).await
    }

    async fn worker_list(&self, tenant: Option<&str>) -> Result<Vec<Worker>> {
        self.workers(tenant).await
    }

    async fn worker_mark_down(&self, silent_since: Timestamp) -> Result<u64> {
        self.workers_mark_down(silent_since).await
    }

    async fn worker_drain(&self, id: &str, _now: Timestamp) -> Result<()> {
        self.drain_worker(id).await
    }

    async fn queue_demand(&self, now: Timestamp) -> Result<Vec<QueueDemand>> {
        self.demand(now).await
    }

    async fn leader_try(&self, key: i64) -> Result<Option<LeaderLease>> {
        let guard = self.try_advisory_leader(key).await?;
        Ok(guard.map(|g| LeaderLease::new(g, super::LeaderGuard::is_held)))
    }

    async fn retention_sweep(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, JobId, bool)>> {
        self.sweep(now, limit).await
    }
}
