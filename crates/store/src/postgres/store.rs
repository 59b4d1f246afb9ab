//! [`Store`] for [`PostgresStore`]: each method takes a pooled connection, runs its query
//! (`queries`, one function per method, named as the method) and wakes the queues that got
//! leasable work once the commit is done.

use async_trait::async_trait;
use spillway_core::api::{HeartbeatResult, LeasedTask, Page, PoolStatus};
use spillway_core::model::{
    Attempt, Job, Queue, QueueSettings, QueueStats, Task, Tenant, TokenInfo, Worker,
};
use spillway_core::{JobId, Result, TaskId, Timestamp};

use super::PostgresStore;
use super::queries::{admin, demand, jobs, logs, report, sessions, tasks};
use crate::{
    DeadList, DeadRequeue, JobCancel, JobList, JobRetry, JobSubmit, LeaderLease, Leasable,
    LeaseCheck, LeaseReap, LogAppend, LogAppended, LogChunk, LogChunks, LogChunksDelete,
    PoolBounds, PoolBoundsClear, PoolBoundsSave, PoolStatusSave, QueueCreate, QueueDemand,
    QueueDemandQuery, QueueStatsQuery, Reported, RetentionSweep, SealableLog, SessionCreate,
    SessionSweep, SessionTouch, Store, StoredSession, TaskComplete, TaskFail, TaskHeartbeat,
    TaskLease, TaskList, TaskRelease, TenantCreate, TokenCreate, TokenRevoke, Wakeups, Woken,
    WorkerBeat, WorkerExit, WorkerList, WorkerMarkDown, WorkerRegister, released,
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
        admin::ping(&self.conn().await?).await
    }

    async fn clock_now(&self) -> Result<Timestamp> {
        admin::clock_now(&self.conn().await?).await
    }

    async fn tenant_create(&self, p: TenantCreate) -> Result<Tenant> {
        admin::tenant_create(&self.conn().await?, &p.name, p.now).await
    }

    async fn tenant_list(&self) -> Result<Vec<Tenant>> {
        admin::tenant_list(&self.conn().await?).await
    }

    async fn token_create(&self, params: TokenCreate) -> Result<TokenInfo> {
        admin::token_create(&self.conn().await?, &params).await
    }

    async fn token_lookup(&self, secret_hash: &str) -> Result<Option<TokenInfo>> {
        admin::token_lookup(&self.conn().await?, secret_hash).await
    }

    async fn token_list(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>> {
        admin::token_list(&self.conn().await?, tenant).await
    }

    async fn token_revoke(&self, p: TokenRevoke) -> Result<()> {
        admin::token_revoke(&self.conn().await?, p.tenant.as_deref(), &p.id, p.now).await
    }

    async fn session_create(&self, params: SessionCreate) -> Result<()> {
        sessions::session_create(&self.conn().await?, &params).await
    }

    async fn session_get(&self, id_hash: &str, now: Timestamp) -> Result<Option<StoredSession>> {
        sessions::session_get(&self.conn().await?, id_hash, now).await
    }

    async fn session_touch(&self, params: SessionTouch) -> Result<bool> {
        sessions::session_touch(&self.conn().await?, &params).await
    }

    async fn session_delete(&self, id_hash: &str) -> Result<()> {
        sessions::session_delete(&self.conn().await?, id_hash).await
    }

    async fn session_sweep(&self, params: SessionSweep) -> Result<u64> {
        sessions::session_sweep(&self.conn().await?, &params).await
    }

    async fn queue_create(&self, params: QueueCreate) -> Result<Queue> {
        admin::queue_create(&self.conn().await?, &params).await
    }

    async fn queue_get(&self, tenant: &str, name: &str) -> Result<Queue> {
        admin::queue_get(&self.conn().await?, tenant, name).await
    }

    async fn queue_update(
        &self,
        tenant: &str,
        name: &str,
        settings: QueueSettings,
    ) -> Result<Queue> {
        let queue = admin::queue_update(&self.conn().await?, tenant, name, settings).await?;
        // Resuming a paused queue makes its tasks leasable.
        if !queue.settings.paused {
            let queues = Woken::from([(queue.tenant.clone(), queue.name.clone())]);
            self.wake(&queues, Leasable::All);
        }
        Ok(queue)
    }

    async fn queue_list(&self, tenant: Option<&str>) -> Result<Vec<Queue>> {
        admin::queue_list(&self.conn().await?, tenant).await
    }

    async fn queue_stats(&self, p: QueueStatsQuery) -> Result<Vec<QueueStats>> {
        admin::queue_stats(&self.conn().await?, p.tenant.as_deref(), p.now).await
    }

    async fn job_submit(&self, params: JobSubmit) -> Result<(Job, bool)> {
        let (job, created) = jobs::job_submit(&mut self.conn().await?, &params).await?;
        // Scheduled tasks are found by the lease polls when they come due.
        if created && job.counts.available > 0 {
            let queues = Woken::from([(job.tenant.clone(), job.queue.clone())]);
            self.wake(&queues, Leasable::Tasks(job.counts.available));
        }
        Ok((job, created))
    }

    async fn job_get(&self, tenant: Option<&str>, id: &str) -> Result<Job> {
        jobs::job_get(&self.conn().await?, tenant, id).await
    }

    async fn job_list(&self, params: JobList) -> Result<Page<Job>> {
        if params.state.is_some() {
            // The filter reads whether jobs are finished.
            self.finisher.flush().await?;
        }
        jobs::job_list(&self.conn().await?, &params).await
    }

    async fn job_cancel(&self, p: JobCancel) -> Result<Job> {
        let mut conn = self.conn().await?;
        let job = jobs::job_cancel(&mut conn, p.tenant.as_deref(), &p.id, p.now).await?;
        self.finisher.send(jobs::JobsToFinish::from([p.id]), p.now);
        Ok(job)
    }

    async fn job_retry(&self, p: JobRetry) -> Result<u64> {
        let (n, woken) =
            jobs::job_retry(&mut self.conn().await?, p.tenant.as_deref(), &p.id, p.now).await?;
        if n > 0 {
            self.wake(&woken, Leasable::Tasks(n));
        }
        Ok(n)
    }

    async fn job_inputs_to_delete(&self, limit: u32) -> Result<Vec<(String, JobId)>> {
        self.finisher.flush().await?;
        jobs::job_inputs_to_delete(&self.conn().await?, limit).await
    }

    async fn job_inputs_deleted(&self, id: &str) -> Result<()> {
        jobs::job_inputs_deleted(&self.conn().await?, id).await
    }

    async fn task_get(&self, tenant: Option<&str>, id: TaskId) -> Result<Task> {
        tasks::task_get(&self.conn().await?, tenant, id).await
    }

    async fn task_list(&self, params: TaskList) -> Result<Page<Task>> {
        tasks::task_list(&self.conn().await?, &params).await
    }

    async fn task_attempts(&self, tenant: Option<&str>, id: TaskId) -> Result<Vec<Attempt>> {
        tasks::task_attempts(&self.conn().await?, tenant, id).await
    }

    async fn task_lease(&self, params: TaskLease) -> Result<Vec<LeasedTask>> {
        tasks::task_lease(&self.conn().await?, &params).await
    }

    async fn task_heartbeat(&self, params: TaskHeartbeat) -> Result<Vec<HeartbeatResult>> {
        tasks::task_heartbeat(&self.conn().await?, &params).await
    }

    async fn lease_check(&self, params: LeaseCheck) -> Result<Task> {
        tasks::lease_check(&self.conn().await?, &params).await
    }

    async fn task_complete(&self, params: TaskComplete) -> Result<Vec<Reported>> {
        let conn = self.conn().await?;
        let (results, finishing) = report::task_complete(&conn, &params).await?;
        self.finisher.send(finishing, params.now);
        Ok(results)
    }

    async fn task_fail(&self, params: TaskFail) -> Result<Vec<Reported>> {
        let mut conn = self.conn().await?;
        let (results, finishing) = report::task_fail(&mut conn, &params).await?;
        self.finisher.send(finishing, params.now);
        Ok(results)
    }

    async fn task_release(&self, params: TaskRelease) -> Result<Vec<Reported>> {
        let mut conn = self.conn().await?;
        let (results, woken, finishing) = report::task_release(&mut conn, &params).await?;
        self.wake(&woken, released(&results));
        self.finisher.send(finishing, params.now);
        Ok(results)
    }

    async fn lease_reap(&self, p: LeaseReap) -> Result<u64> {
        report::lease_reap(&mut self.conn().await?, p.now).await
    }

    async fn dead_list(&self, params: DeadList) -> Result<Page<Task>> {
        report::dead_list(&self.conn().await?, &params).await
    }

    async fn dead_requeue(&self, params: DeadRequeue) -> Result<u64> {
        let (n, woken) = report::dead_requeue(&mut self.conn().await?, &params).await?;
        self.wake(&woken, Leasable::Tasks(n));
        Ok(n)
    }

    async fn worker_register(&self, params: WorkerRegister) -> Result<Worker> {
        admin::worker_register(&self.conn().await?, &params).await
    }

    async fn worker_heartbeat(&self, params: WorkerBeat) -> Result<Worker> {
        admin::worker_heartbeat(&self.conn().await?, &params).await
    }

    async fn worker_exit(&self, p: WorkerExit) -> Result<()> {
        admin::worker_exit(&self.conn().await?, &p.id, p.now).await
    }

    async fn worker_list(&self, p: WorkerList) -> Result<Vec<Worker>> {
        admin::worker_list(&self.conn().await?, p.tenant.as_deref(), p.now).await
    }

    async fn worker_mark_down(&self, p: WorkerMarkDown) -> Result<u64> {
        admin::worker_mark_down(&self.conn().await?, p.silent_since).await
    }

    async fn worker_drain(&self, id: &str) -> Result<()> {
        demand::worker_drain(&self.conn().await?, id).await
    }

    async fn queue_demand(&self, p: QueueDemandQuery) -> Result<Vec<QueueDemand>> {
        demand::queue_demand(&self.conn().await?, p.now).await
    }

    async fn leader_try(&self, key: i64) -> Result<Option<LeaderLease>> {
        let guard = self.try_advisory_leader(key).await?;
        Ok(guard.map(|g| LeaderLease::new(g, super::LeaderGuard::is_held)))
    }

    async fn pool_status_save(&self, p: PoolStatusSave) -> Result<()> {
        admin::pool_status_save(&mut self.conn().await?, &p.statuses, p.now).await
    }

    async fn pool_status_list(&self) -> Result<Vec<PoolStatus>> {
        admin::pool_status_list(&self.conn().await?).await
    }

    async fn pool_bounds_save(&self, p: PoolBoundsSave) -> Result<()> {
        admin::pool_bounds_save(&self.conn().await?, &p).await
    }

    async fn pool_bounds_clear(&self, p: PoolBoundsClear) -> Result<()> {
        admin::pool_bounds_clear(&self.conn().await?, &p.pool).await
    }

    async fn pool_bounds_list(&self) -> Result<Vec<PoolBounds>> {
        admin::pool_bounds_list(&self.conn().await?).await
    }

    async fn retention_sweep(&self, p: RetentionSweep) -> Result<Vec<(String, JobId, bool)>> {
        self.finisher.flush().await?;
        jobs::retention_sweep(&self.conn().await?, p.now, p.limit).await
    }

    async fn log_append(&self, params: LogAppend) -> Result<LogAppended> {
        logs::log_append(&mut self.conn().await?, &params).await
    }

    async fn log_chunks(&self, params: LogChunks) -> Result<Vec<LogChunk>> {
        logs::log_chunks(&self.conn().await?, &params).await
    }

    async fn log_sealable(&self, limit: u32) -> Result<Vec<SealableLog>> {
        logs::log_sealable(&self.conn().await?, limit).await
    }

    async fn log_chunks_delete(&self, params: LogChunksDelete) -> Result<u64> {
        logs::log_chunks_delete(&self.conn().await?, params).await
    }
}
