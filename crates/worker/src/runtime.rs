//! The worker's loops: registration, leasing into free slots, heartbeats, and shutdown.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use spillway_client::Client;
use spillway_core::api::{
    HeartbeatRequest, LeaseRef, LeaseRequest, LeaseStatus, LeasedTask, RegisterWorker, Release,
    ReleaseReason, ReleaseRequest, WorkerHeartbeat,
};
use spillway_core::backoff::Retries;
use spillway_core::{Error, ErrorKind, Result, TaskId};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::config::{WorkerConfig, WorkerSummary};
use crate::report::Reporter;
use crate::scratch::ScratchRoot;
use crate::task::{self, StopHandle, StopReason};
use spillway_executor::Executor;

/// A task this worker is running.
struct Running {
    lease_token: String,
    /// How long the lease lasted when it was handed out; heartbeats come at a third of it.
    lease_length: Duration,
    stop: StopHandle,
}

/// The shortest pause between heartbeats, however short a queue's lease is.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
/// How long `task`'s lease runs: as the server says, else (an older server) from its expiry
/// by this host's clock, which is off by however far the two clocks disagree.
fn lease_length(task: &spillway_core::api::LeasedTask) -> Duration {
    match task.lease_ms {
        Some(ms) => Duration::from_millis(ms),
        None => (task.lease_expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or(MIN_HEARTBEAT_INTERVAL),
    }
}

/// The pause before the next heartbeat: the configured interval, or a third of the shortest
/// lease held, so that a queue with short leases keeps them alive.
fn heartbeat_period(configured: Duration, leases: impl Iterator<Item = Duration>) -> Duration {
    leases
        .map(|length| length / 3)
        .fold(configured, Duration::min)
        .max(MIN_HEARTBEAT_INTERVAL)
}

/// State shared by the loops and the tasks of one worker.
pub(crate) struct Shared {
    pub(crate) client: Client,
    /// Sends the tasks' outcomes, several in one call.
    pub(crate) reporter: Reporter,
    pub(crate) config: WorkerConfig,
    /// This worker's private folder for task folders (see [`ScratchRoot`]).
    pub(crate) scratch_root: PathBuf,
    pub(crate) executor: Arc<dyn Executor>,
    worker_id: Mutex<String>,
    /// Serialises re-registration so two loops noticing a forgotten worker register once.
    register_lock: tokio::sync::Mutex<()>,
    running: Mutex<HashMap<TaskId, Running>>,
    slot_freed: Notify,
    /// Signalled when a task is leased, so the heartbeat loop can shorten its pause.
    lease_taken: Notify,
    /// Set when the server asks this worker to drain.
    drain: CancellationToken,
    summary: Mutex<WorkerSummary>,
}

impl Shared {
    pub(crate) fn count(&self, f: impl FnOnce(&mut WorkerSummary)) {
        f(&mut self.summary.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub(crate) fn worker_id(&self) -> String {
        self.worker_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn running_count(&self) -> u32 {
        u32::try_from(self.running().len()).unwrap_or(u32::MAX)
    }

    fn stop_all(&self, reason: StopReason) {
        for task in self.running().values() {
            task.stop.stop(reason);
        }
    }
}

/// Removes a task from the running set when its future ends (or is dropped) and frees a slot.
struct SlotGuard {
    shared: Arc<Shared>,
    task_id: TaskId,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.shared.running().remove(&self.task_id);
        self.shared.slot_freed.notify_one();
    }
}

/// Run a worker until `shutdown`, a drain request, or (with `exit_when_idle`) an empty queue.
pub async fn run_with(
    config: WorkerConfig,
    executor: Arc<dyn Executor>,
    shutdown: CancellationToken,
) -> Result<WorkerSummary> {
    config.validate()?;
    // Our own token, so a lost parent can ask for the same graceful shutdown as a signal.
    let shutdown = shutdown.child_token();
    if let Some(parent) = config.exit_with_parent {
        tokio::spawn(crate::parent::watch(parent, shutdown.clone()));
    }
    let client =
        Client::new(&config.server_url, config.token.clone())?.with_tenant(config.tenant.clone());
    // Removed when this function returns, whichever way. Tasks of another user (task_user)
    // must pass through it to reach their own folders.
    let scratch = ScratchRoot::create(&config.scratch_dir, config.task_user.is_some())?;
    if let Some(user) = config.task_user {
        crate::scratch_owner::check_reachable(scratch.path(), user)?;
    }
    tracing::info!(scratch = %scratch.path().display(), "task folders go in this worker's private folder");
    let shared = Arc::new(Shared {
        reporter: Reporter::start(&client),
        client,
        config,
        scratch_root: scratch.path().to_path_buf(),
        executor,
        worker_id: Mutex::new(String::new()),
        register_lock: tokio::sync::Mutex::new(()),
        running: Mutex::new(HashMap::new()),
        slot_freed: Notify::new(),
        lease_taken: Notify::new(),
        drain: CancellationToken::new(),
        summary: Mutex::new(WorkerSummary::default()),
    });

    if !register(&shared, "", &shutdown).await? {
        return Ok(WorkerSummary::default());
    }
    let beats_stop = CancellationToken::new();
    let beats = tokio::spawn(heartbeat_loop(
        shared.clone(),
        shutdown.clone(),
        beats_stop.clone(),
    ));

    let mut tasks = JoinSet::new();
    let leased = lease_loop(&shared, &shutdown, &mut tasks).await;
    if leased.is_err() {
        shared.stop_all(StopReason::Shutdown);
    }
    finish(&shared, &shutdown, &mut tasks).await;

    beats_stop.cancel();
    let _ = beats.await;
    let id = shared.worker_id();
    if let Err(e) = shared.client.worker_deregister(&id).await {
        tracing::warn!(worker_id = %id, error = %e, "could not deregister; the server will mark the worker down");
    }
    let summary = shared
        .summary
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    tracing::info!(worker_id = %id, succeeded = summary.succeeded, failed = summary.failed, released = summary.released, lost = summary.lost, "worker stopped");
    scratch.remove();
    leased.map(|()| summary)
}

/// Register (again, when `stale_id` is the id the server forgot), retrying while the server
/// is unreachable. False when shutdown came first.
async fn register(shared: &Shared, stale_id: &str, shutdown: &CancellationToken) -> Result<bool> {
    let _one_at_a_time = shared.register_lock.lock().await;
    if shared.worker_id() != stale_id {
        return Ok(true); // another loop already registered again
    }
    let config = &shared.config;
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string());
    let body = RegisterWorker {
        pool: config.pool.clone(),
        hostname,
        queues: config.queues.clone(),
        concurrency: config.concurrency,
        tenant: config.tenant.clone(),
    };
    let mut backoff = backoff::retries(config.retry_backoff_max);
    loop {
        let call = shared.client.worker_register(&body);
        tokio::pin!(call);
        let answer = tokio::select! {
            a = &mut call => a,
            () = shutdown.cancelled() => {
                // A registration the server made as shutdown came must not stay active.
                if let Ok(worker) = call.await {
                    let _ = shared.client.worker_deregister(&worker.id).await;
                }
                return Ok(false);
            }
        };
        match answer {
            Ok(worker) => {
                tracing::info!(worker_id = %worker.id, pool = %worker.pool, queues = ?worker.queues, "worker registered");
                *shared
                    .worker_id
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = worker.id;
                return Ok(true);
            }
            Err(e) if passing(&e) => {
                tracing::warn!(error = %e, "could not register; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = shutdown.cancelled() => return Ok(false),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Errors worth waiting out: the server is down, restarting or had a hiccup.
fn passing(e: &Error) -> bool {
    e.is_retryable() || e.kind() == ErrorKind::Internal
}

/// Lease into free slots until shutdown, drain or idle exit; errors only on a call the
/// server will never accept (bad token, missing permission).
async fn lease_loop(
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<()> {
    let config = &shared.config;
    let mut backoff = backoff::retries(config.retry_backoff_max);
    loop {
        while tasks.try_join_next().is_some() {}
        if shutdown.is_cancelled() || shared.drain.is_cancelled() {
            return Ok(());
        }
        let free = config.concurrency.saturating_sub(shared.running_count());
        if free == 0 {
            tokio::select! {
                () = shared.slot_freed.notified() => {}
                () = shutdown.cancelled() => {}
                () = shared.drain.cancelled() => {}
            }
            continue;
        }
        let worker_id = shared.worker_id();
        let request = LeaseRequest {
            worker_id: worker_id.clone(),
            queues: config.queues.clone(),
            max_tasks: free.min(config.max_lease_batch),
            wait: Some(config.lease_wait),
            tenant: config.tenant.clone(),
        };
        let mut call = Box::pin({
            let shared = shared.clone();
            async move { shared.client.task_lease(&request).await }
        });
        let answer = tokio::select! {
            a = &mut call => a,
            () = shutdown.cancelled() => {
                // Dropping the call would strand whatever the server hands out at this very
                // moment until its lease expires: let it answer (the server does within the
                // wait, alongside the running tasks' grace period) and give back at once what
                // it brought.
                let shared = shared.clone();
                tasks.spawn(async move {
                    if let Ok(leased) = call.await {
                        release_unstarted(&shared, leased.tasks).await;
                    }
                });
                return Ok(());
            }
        };
        match answer {
            Ok(leased) => {
                backoff.reset();
                if leased.tasks.is_empty() {
                    if config.exit_when_idle && shared.running_count() == 0 {
                        tracing::info!("queue is empty and nothing runs; exiting as asked");
                        return Ok(());
                    }
                    continue;
                }
                for task in leased.tasks {
                    let stop = StopHandle::default();
                    shared.running().insert(
                        task.task_id,
                        Running {
                            lease_token: task.lease_token.clone(),
                            lease_length: lease_length(&task),
                            stop: stop.clone(),
                        },
                    );
                    shared.lease_taken.notify_one();
                    let guard = SlotGuard {
                        shared: shared.clone(),
                        task_id: task.task_id,
                    };
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        let _guard = guard;
                        task::run(shared, task, stop).await;
                    });
                }
            }
            // Not found: the server forgot the worker (a fresh database); conflict: the worker
            // was marked exited. Either way its id is spent.
            Err(e) if forgotten(&e) => {
                tracing::warn!(worker_id = %worker_id, error = %e, "the server does not know this worker as active; registering again");
                if !register(shared, &worker_id, shutdown).await? {
                    return Ok(());
                }
                pause(&mut backoff, shutdown).await;
            }
            Err(e) if passing(&e) => {
                tracing::warn!(error = %e, "lease failed; retrying");
                pause(&mut backoff, shutdown).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether an answer about the worker itself means its id is spent and it must register again.
fn forgotten(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict)
}

/// Hand back, as preempted, tasks leased while shutting down; they never started.
async fn release_unstarted(shared: &Shared, tasks: Vec<LeasedTask>) {
    if tasks.is_empty() {
        return;
    }
    let releases: Vec<Release> = tasks
        .into_iter()
        .map(|t| Release {
            task_id: t.task_id,
            lease_token: t.lease_token,
            reason: ReleaseReason::Preempted,
            log_tail: String::new(),
        })
        .collect();
    let asked = releases.len();
    match shared
        .client
        .task_release(&ReleaseRequest { releases })
        .await
    {
        Ok(answer) => {
            let released = answer.results.iter().filter(|r| r.ok).count() as u64;
            shared.count(|s| s.released += released);
            tracing::info!(
                tasks = asked,
                released,
                "released tasks leased during shutdown"
            );
        }
        Err(e) => {
            tracing::warn!(tasks = asked, error = %e, "could not release tasks leased during shutdown; their leases will expire on the server");
        }
    }
}

async fn pause(backoff: &mut Retries, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(backoff.next_delay()) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Let running tasks end; once shutdown is asked, give them the grace period, then stop the
/// rest (they release their leases as preempted) and wait for their reports.
async fn finish(shared: &Shared, shutdown: &CancellationToken, tasks: &mut JoinSet<()>) {
    let grace = shared.config.grace_period;
    {
        let all_done = async { while tasks.join_next().await.is_some() {} };
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = all_done => return,
            () = grace_over => {}
        }
    }
    let left = shared.running_count();
    tracing::info!(
        tasks = left,
        "grace period over; stopping tasks and releasing their leases"
    );
    shared.stop_all(StopReason::Shutdown);
    while tasks.join_next().await.is_some() {}
}

/// Every interval: extend all leases in one call, stop tasks whose lease is lost or whose
/// job was cancelled, and send the worker's own heartbeat (obeying a drain request).
async fn heartbeat_loop(shared: Arc<Shared>, shutdown: CancellationToken, stop: CancellationToken) {
    let mut draining_told = false;
    let mut last_beat = tokio::time::Instant::now();
    loop {
        let period = heartbeat_period(
            shared.config.heartbeat_interval,
            shared.running().values().map(|r| r.lease_length),
        );
        tokio::select! {
            () = tokio::time::sleep_until(last_beat + period) => {}
            // A new task may hold a shorter lease than any before: look again.
            () = shared.lease_taken.notified() => continue,
            // Say "draining" at once, so a waiting lease call ends before tasks are released
            // (else it could take them straight back).
            () = shutdown.cancelled(), if !draining_told => draining_told = true,
            () = stop.cancelled() => return,
        }
        last_beat = tokio::time::Instant::now();
        tokio::select! {
            () = beat(&shared, &shutdown) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn beat(shared: &Shared, shutdown: &CancellationToken) {
    let leases: Vec<LeaseRef> = shared
        .running()
        .iter()
        .map(|(id, r)| LeaseRef {
            task_id: *id,
            lease_token: r.lease_token.clone(),
        })
        .collect();
    if !leases.is_empty() {
        match shared
            .client
            .task_heartbeat(&HeartbeatRequest { leases })
            .await
        {
            Ok(answer) => {
                let running = shared.running();
                for result in answer.results {
                    let reason = match result.status {
                        LeaseStatus::Extended => continue,
                        LeaseStatus::Lost => StopReason::LeaseLost,
                        LeaseStatus::CancelRequested => StopReason::Cancelled,
                    };
                    if let Some(task) = running.get(&result.task_id) {
                        tracing::info!(task_id = result.task_id, reason = ?reason, "stopping task");
                        task.stop.stop(reason);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "lease heartbeat failed; tasks keep running"),
        }
    }
    let worker_id = shared.worker_id();
    let body = WorkerHeartbeat {
        running: shared.running_count(),
        draining: shared.drain.is_cancelled() || shutdown.is_cancelled(),
    };
    match shared.client.worker_heartbeat(&worker_id, &body).await {
        Ok(reply) => {
            if reply.drain && !shared.drain.is_cancelled() {
                tracing::info!(worker_id = %worker_id, "server asked this worker to drain");
                shared.drain.cancel();
                shared.slot_freed.notify_one();
            }
        }
        Err(e) if forgotten(&e) => {
            tracing::warn!(worker_id = %worker_id, error = %e, "the server does not know this worker as active; registering again");
            if let Err(e) = register(shared, &worker_id, shutdown).await {
                tracing::warn!(error = %e, "registering again failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "worker heartbeat failed"),
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;

    #[test]
    fn heartbeats_come_at_a_third_of_the_shortest_lease() {
        let configured = Duration::from_secs(10);
        assert_eq!(heartbeat_period(configured, std::iter::empty()), configured);
        let leases = [Duration::from_secs(60), Duration::from_secs(3)];
        assert_eq!(
            heartbeat_period(configured, leases.into_iter()),
            Duration::from_secs(1)
        );
        let tiny = [Duration::from_millis(30)];
        assert_eq!(
            heartbeat_period(configured, tiny.into_iter()),
            MIN_HEARTBEAT_INTERVAL
        );
    }
}
