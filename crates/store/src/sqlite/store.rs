//! [`Store`] for [`SqliteStore`]: each method sends its query to the writer or a reader.

use async_trait::async_trait;
use spillway_core::api::{HeartbeatResult, LeasedTask, Page, PoolStatus};
use spillway_core::model::{
    Attempt, Job, Queue, QueueSettings, QueueStats, Task, Tenant, TokenInfo, Worker,
};
use spillway_core::{JobId, Result, TaskId, Timestamp};

use super::SqliteStore;
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

/// Most expired leases one writer request reaps: about 10 ms of writer time.
const REAP_BATCH: u32 = 1_000;
/// Most tasks one writer request of retention deletes (with their attempts): about 20 ms.
const RETENTION_BATCH: u32 = 2_000;

impl SqliteStore {
    /// Wake the waiters of every queue that got leasable work in a committed write: as many
    /// as `leasable` says (a write over several queues gives its total to each, which wakes
    /// more waiters than needed, never fewer).
    fn wake(&self, queues: &Woken, leasable: Leasable) {
        for (tenant, queue) in queues {
            self.wakeups.signal(tenant, queue, leasable);
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    async fn ping(&self) -> Result<()> {
        self.readers
            .call(|c| {
                c.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(super::rows::db("ping"))
            })
            .await
    }

    async fn clock_now(&self) -> Result<Timestamp> {
        // One process uses the file, so there is no other clock to agree with than the host's.
        Ok(chrono::Utc::now())
    }

    async fn tenant_create(&self, p: TenantCreate) -> Result<Tenant> {
        self.writer
            .call(move |c| admin::tenant_create(c, &p.name, p.now))
            .await
    }

    async fn tenant_list(&self) -> Result<Vec<Tenant>> {
        self.readers.call(admin::tenant_list).await
    }

    async fn token_create(&self, params: TokenCreate) -> Result<TokenInfo> {
        self.writer
            .call(move |c| admin::token_create(c, &params))
            .await
    }

    async fn token_lookup(&self, secret_hash: &str) -> Result<Option<TokenInfo>> {
        let hash = secret_hash.to_string();
        self.readers
            .call(move |c| admin::token_lookup(c, &hash))
            .await
    }

    async fn token_list(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>> {
        let tenant = tenant.map(str::to_string);
        self.readers
            .call(move |c| admin::token_list(c, tenant.as_deref()))
            .await
    }

    async fn token_revoke(&self, p: TokenRevoke) -> Result<()> {
        self.writer
            .call(move |c| admin::token_revoke(c, p.tenant.as_deref(), &p.id, p.now))
            .await
    }

    async fn session_create(&self, p: SessionCreate) -> Result<()> {
        self.writer
            .call(move |c| sessions::session_create(c, &p))
            .await
    }

    async fn session_get(&self, id_hash: &str, now: Timestamp) -> Result<Option<StoredSession>> {
        let id_hash = id_hash.to_string();
        self.readers
            .call(move |c| sessions::session_get(c, &id_hash, now))
            .await
    }

    async fn session_touch(&self, p: SessionTouch) -> Result<bool> {
        self.writer
            .call(move |c| sessions::session_touch(c, &p))
            .await
    }

    async fn session_delete(&self, id_hash: &str) -> Result<()> {
        let id_hash = id_hash.to_string();
        self.writer
            .call(move |c| sessions::session_delete(c, &id_hash))
            .await
    }

    async fn session_sweep(&self, p: SessionSweep) -> Result<u64> {
        self.writer
            .call(move |c| sessions::session_sweep(c, &p))
            .await
    }

    async fn queue_create(&self, p: QueueCreate) -> Result<Queue> {
        self.writer
            .call(move |c| admin::queue_create(c, &p.tenant, &p.name, &p.settings, p.now))
            .await
    }

    async fn queue_get(&self, tenant: &str, name: &str) -> Result<Queue> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.readers
            .call(move |c| admin::queue_get(c, &tenant, &name))
            .await
    }

    async fn queue_update(
        &self,
        tenant: &str,
        name: &str,
        settings: QueueSettings,
    ) -> Result<Queue> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        let queue = self
            .writer
            .call(move |c| admin::queue_update(c, &tenant, &name, &settings))
            .await?;
        // Resuming a paused queue makes its tasks leasable.
        if !queue.settings.paused {
            self.wakeups
                .signal(&queue.tenant, &queue.name, Leasable::All);
        }
        Ok(queue)
    }

    async fn queue_list(&self, tenant: Option<&str>) -> Result<Vec<Queue>> {
        let tenant = tenant.map(str::to_string);
        self.readers
            .call(move |c| admin::queue_list(c, tenant.as_deref()))
            .await
    }

    async fn queue_stats(&self, p: QueueStatsQuery) -> Result<Vec<QueueStats>> {
        self.readers
            .call(move |c| admin::queue_stats(c, p.tenant.as_deref(), p.now))
            .await
    }

    async fn job_submit(&self, params: JobSubmit) -> Result<(Job, bool)> {
        let (job, created) = self
            .writer
            .call(move |c| jobs::job_submit(c, &params))
            .await?;
        // Scheduled tasks are found by the lease polls when they come due.
        if created && job.counts.available > 0 {
            let leasable = Leasable::Tasks(job.counts.available);
            self.wakeups.signal(&job.tenant, &job.queue, leasable);
        }
        Ok((job, created))
    }

    async fn job_get(&self, tenant: Option<&str>, id: &str) -> Result<Job> {
        let (tenant, id) = (tenant.map(str::to_string), id.to_string());
        self.readers
            .call(move |c| jobs::job_get(c, tenant.as_deref(), &id))
            .await
    }

    async fn job_list(&self, params: JobList) -> Result<Page<Job>> {
        self.readers.call(move |c| jobs::job_list(c, &params)).await
    }

    async fn job_cancel(&self, p: JobCancel) -> Result<Job> {
        self.writer
            .call(move |c| jobs::job_cancel(c, p.tenant.as_deref(), &p.id, p.now))
            .await
    }

    async fn job_retry(&self, p: JobRetry) -> Result<u64> {
        let (n, job) = self
            .writer
            .call(move |c| jobs::job_retry(c, p.tenant.as_deref(), &p.id, p.now))
            .await?;
        if n > 0 {
            self.wakeups
                .signal(&job.tenant, &job.queue, Leasable::Tasks(n));
        }
        Ok(n)
    }

    async fn job_inputs_to_delete(&self, limit: u32) -> Result<Vec<(String, JobId)>> {
        self.readers
            .call(move |c| jobs::job_inputs_to_delete(c, limit))
            .await
    }

    async fn job_inputs_deleted(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.writer
            .call(move |c| jobs::job_inputs_deleted(c, &id))
            .await
    }

    async fn task_get(&self, tenant: Option<&str>, id: TaskId) -> Result<Task> {
        let tenant = tenant.map(str::to_string);
        self.readers
            .call(move |c| tasks::task_get(c, tenant.as_deref(), id))
            .await
    }

    async fn task_list(&self, params: TaskList) -> Result<Page<Task>> {
        self.readers
            .call(move |c| tasks::task_list(c, &params))
            .await
    }

    async fn task_attempts(&self, tenant: Option<&str>, id: TaskId) -> Result<Vec<Attempt>> {
        let tenant = tenant.map(str::to_string);
        self.readers
            .call(move |c| tasks::task_attempts(c, tenant.as_deref(), id))
            .await
    }

    async fn task_lease(&self, params: TaskLease) -> Result<Vec<LeasedTask>> {
        self.writer
            .call(move |c| tasks::task_lease(c, &params))
            .await
    }

    async fn task_heartbeat(&self, params: TaskHeartbeat) -> Result<Vec<HeartbeatResult>> {
        self.writer
            .call(move |c| tasks::task_heartbeat(c, &params))
            .await
    }

    async fn lease_check(&self, params: LeaseCheck) -> Result<Task> {
        self.readers
            .call(move |c| tasks::lease_check(c, &params))
            .await
    }

    async fn task_complete(&self, params: TaskComplete) -> Result<Vec<Reported>> {
        self.writer
            .call(move |c| report::task_complete(c, &params))
            .await
    }

    async fn task_fail(&self, params: TaskFail) -> Result<Vec<Reported>> {
        self.writer
            .call(move |c| report::task_fail(c, &params))
            .await
    }

    async fn task_release(&self, params: TaskRelease) -> Result<Vec<Reported>> {
        let (results, woken) = self
            .writer
            .call(move |c| report::task_release(c, &params))
            .await?;
        self.wake(&woken, released(&results));
        Ok(results)
    }

    async fn lease_reap(&self, p: LeaseReap) -> Result<u64> {
        // In batches, each its own writer request, so a mass expiry (workers lost with an
        // outage) never holds the writer for long.
        let mut reaped = 0;
        loop {
            let n = self
                .writer
                .call(move |c| report::lease_reap(c, p.now, REAP_BATCH))
                .await?;
            reaped += n;
            if n < u64::from(REAP_BATCH) {
                break;
            }
        }
        if reaped > 0 {
            tracing::info!(count = reaped, "reaped expired leases");
        }
        Ok(reaped)
    }

    async fn dead_list(&self, params: DeadList) -> Result<Page<Task>> {
        self.readers
            .call(move |c| report::dead_list(c, &params))
            .await
    }

    async fn dead_requeue(&self, params: DeadRequeue) -> Result<u64> {
        let (n, woken) = self
            .writer
            .call(move |c| report::dead_requeue(c, &params))
            .await?;
        self.wake(&woken, Leasable::Tasks(n));
        Ok(n)
    }

    async fn worker_register(&self, params: WorkerRegister) -> Result<Worker> {
        self.writer
            .call(move |c| admin::worker_register(c, &params))
            .await
    }

    async fn worker_heartbeat(&self, params: WorkerBeat) -> Result<Worker> {
        self.writer
            .call(move |c| admin::worker_heartbeat(c, &params))
            .await
    }

    async fn worker_exit(&self, p: WorkerExit) -> Result<()> {
        self.writer
            .call(move |c| admin::worker_exit(c, &p.id, p.now))
            .await
    }

    async fn worker_list(&self, p: WorkerList) -> Result<Vec<Worker>> {
        self.readers
            .call(move |c| admin::worker_list(c, p.tenant.as_deref(), p.now))
            .await
    }

    async fn worker_mark_down(&self, p: WorkerMarkDown) -> Result<u64> {
        self.writer
            .call(move |c| admin::worker_mark_down(c, p.silent_since))
            .await
    }

    async fn worker_drain(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.writer
            .call(move |c| demand::worker_drain(c, &id))
            .await
    }

    async fn queue_demand(&self, p: QueueDemandQuery) -> Result<Vec<QueueDemand>> {
        self.readers
            .call(move |c| demand::queue_demand(c, p.now))
            .await
    }

    async fn leader_try(&self, _key: i64) -> Result<Option<LeaderLease>> {
        // One process owns the database file, so it is always the leader.
        Ok(Some(LeaderLease::always()))
    }

    async fn pool_status_save(&self, p: PoolStatusSave) -> Result<()> {
        let rows = admin::pool_status_rows(&p.statuses)?;
        self.writer
            .call(move |c| admin::pool_status_save(c, &rows, p.now))
            .await
    }

    async fn pool_status_list(&self) -> Result<Vec<PoolStatus>> {
        self.readers.call(admin::pool_status_list).await
    }

    async fn pool_bounds_save(&self, p: PoolBoundsSave) -> Result<()> {
        self.writer
            .call(move |c| admin::pool_bounds_save(c, &p))
            .await
    }

    async fn pool_bounds_clear(&self, p: PoolBoundsClear) -> Result<()> {
        self.writer
            .call(move |c| admin::pool_bounds_clear(c, &p.pool))
            .await
    }

    async fn pool_bounds_list(&self) -> Result<Vec<PoolBounds>> {
        self.readers.call(admin::pool_bounds_list).await
    }

    async fn retention_sweep(&self, p: RetentionSweep) -> Result<Vec<(String, JobId, bool)>> {
        // In steps of at most RETENTION_BATCH tasks, each its own writer request, so deleting
        // a big job never holds the writer for long.
        let mut deleted = Vec::new();
        loop {
            let limit = p.limit.saturating_sub(deleted.len() as u32);
            if limit == 0 {
                break;
            }
            let (jobs, more) = self
                .writer
                .call(move |c| jobs::retention_step(c, p.now, limit, RETENTION_BATCH))
                .await?;
            deleted.extend(jobs);
            if !more {
                break;
            }
        }
        Ok(deleted)
    }

    async fn log_append(&self, params: LogAppend) -> Result<LogAppended> {
        self.writer
            .call(move |c| logs::log_append(c, &params))
            .await
    }

    async fn log_chunks(&self, params: LogChunks) -> Result<Vec<LogChunk>> {
        self.readers
            .call(move |c| logs::log_chunks(c, &params))
            .await
    }

    async fn log_sealable(&self, limit: u32) -> Result<Vec<SealableLog>> {
        self.readers
            .call(move |c| logs::log_sealable(c, limit))
            .await
    }

    async fn log_chunks_delete(&self, params: LogChunksDelete) -> Result<u64> {
        self.writer
            .call(move |c| logs::log_chunks_delete(c, params))
            .await
    }
}
