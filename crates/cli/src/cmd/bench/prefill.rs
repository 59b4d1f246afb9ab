//! Filling a store with a week of history for the big-table scenario, through the `Store`
//! trait alone (never SQL), so it keeps working whatever the schema becomes.
//!
//! The history: jobs of up to [`MAX_JOB_SIZE`] tasks over [`QUEUES`] queues, submitted one
//! after another over the [`HISTORY`] before the prefill started, each leased in batches of
//! [`MAX_LEASE_BATCH`] a second after its submit and reported a second later: every
//! [`DEAD_EVERY`]th task fails for good (a dead letter), the others succeed. Then a small
//! backlog of waiting tasks is submitted now. Timestamps are the history's own (the store takes
//! `now` from its caller), so retention keeps every job and the demand's recent-arrival window
//! sees only the latest.
//!
//! One pipeline per queue runs the jobs of that queue, so the store sees several writers at
//! once, as it does in a server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use spillway_core::Timestamp;
use spillway_core::api::{Completion, Failure, LeasedTask, MAX_LEASE_BATCH};
use spillway_core::model::{DEFAULT_TENANT, QueueSettings, TaskSpec};
use spillway_store::{
    DynStore, JobSubmit, QueueCreate, ReportOutcome, TaskComplete, TaskFail, TaskLease, WorkerExit,
    WorkerRegister,
};
use tokio::task::JoinSet;

/// The queues the history is spread over.
pub const QUEUES: [&str; 4] = ["big-0", "big-1", "big-2", "big-3"];
/// Most tasks in one job of the history.
pub const MAX_JOB_SIZE: u64 = 10_000;
/// Most tasks left waiting at the end.
pub const MAX_WAITING: u64 = 1_000;
/// One task in this many ends dead (0.5%).
pub const DEAD_EVERY: u32 = 200;
/// How far back the history reaches: within the default retention (7 days), so none of it
/// is due for deletion while the scenario runs.
pub const HISTORY: Duration = Duration::from_secs(6 * 24 * 3600);
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The pool the prefilling worker is in.
const POOL: &str = "default";

/// What the store holds after the prefill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    /// Every task.
    pub tasks: u64,
    /// Tasks left waiting.
    pub waiting: u64,
    /// Tasks per job of the history (the last may be smaller).
    pub job_size: u64,
    /// Jobs of the history (the waiting backlog's jobs not counted).
    pub jobs: u64,
}

impl Shape {
    /// The shape of a store of `tasks` tasks: a tenth of them (at most [`MAX_WAITING`])
    /// waiting, the rest finished in about twenty jobs or more, of at most [`MAX_JOB_SIZE`].
    pub fn of(tasks: u64) -> Self {
        let waiting = (tasks / 10).min(MAX_WAITING);
        let finished = tasks - waiting;
        let job_size = (finished / 20).clamp(1, MAX_JOB_SIZE);
        Self {
            tasks,
            waiting,
            job_size,
            jobs: finished.div_ceil(job_size),
        }
    }

    /// Tasks of the history (finished).
    pub fn finished(&self) -> u64 {
        self.tasks - self.waiting
    }

    /// The tasks of history job `job`.
    fn job_tasks(&self, job: u64) -> u64 {
        self.job_size.min(self.finished() - job * self.job_size)
    }

    /// Dead letters among the history's tasks.
    pub fn dead(&self) -> u64 {
        self.finished() / u64::from(DEAD_EVERY)
    }

    /// Whether task `index` of history job `job` ends dead: every [`DEAD_EVERY`]th task of
    /// the history, counted over all its jobs.
    fn is_dead(&self, job: u64, index: u32) -> bool {
        (job * self.job_size + u64::from(index)) % u64::from(DEAD_EVERY)
            == u64::from(DEAD_EVERY) - 1
    }
}

/// Create the queues and fill `store` to `shape`, printing progress to stderr as `label`.
pub async fn fill(store: &DynStore, shape: Shape, label: &str, now: Timestamp) -> Result<()> {
    let start = now - chrono::Duration::from_std(HISTORY).context("the history is too long")?;
    for queue in QUEUES {
        store
            .queue_create(QueueCreate {
                tenant: DEFAULT_TENANT.to_string(),
                name: queue.to_string(),
                settings: QueueSettings::default(),
                now: start,
            })
            .await
            .with_context(|| format!("cannot create queue {queue}"))?;
    }
    let worker = store
        .worker_register(WorkerRegister {
            id: spillway_server::ids::new_worker_id(),
            tenant: DEFAULT_TENANT.to_string(),
            pool: POOL.to_string(),
            hostname: "bench-prefill".to_string(),
            queues: QUEUES.iter().map(|q| q.to_string()).collect(),
            concurrency: MAX_LEASE_BATCH,
            now: start,
        })
        .await
        .context("cannot register the prefilling worker")?;

    let done = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut pipelines = JoinSet::new();
    for (lane, queue) in QUEUES.iter().enumerate() {
        let (store, done, worker) = (store.clone(), done.clone(), worker.id.clone());
        pipelines.spawn(async move {
            let mut job = lane as u64;
            while job < shape.jobs {
                let offset = HISTORY.mul_f64(job as f64 / shape.jobs as f64);
                let at = start + chrono::Duration::from_std(offset).unwrap_or_default();
                history_job(&store, shape, job, queue, &worker, at).await?;
                done.fetch_add(shape.job_tasks(job), Ordering::Relaxed);
                job += QUEUES.len() as u64;
            }
            anyhow::Ok(())
        });
    }
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    loop {
        tokio::select! {
            joined = pipelines.join_next() => match joined {
                Some(joined) => joined.context("a prefill pipeline panicked")??,
                None => break,
            },
            _ = progress.tick() => {
                let tasks = done.load(Ordering::Relaxed);
                let rate = tasks as f64 / began.elapsed().as_secs_f64();
                let left = shape.finished().saturating_sub(tasks) as f64 / rate.max(1.0);
                eprintln!(
                    "  prefill       {label}: {tasks} of {} tasks finished ({rate:.0} tasks/s, about {left:.0} s left)",
                    shape.finished()
                );
            }
        }
    }

    // The waiting backlog, submitted now, spread over the queues.
    let mut left = shape.waiting;
    for (i, queue) in QUEUES.iter().enumerate() {
        let size = left / (QUEUES.len() - i) as u64;
        if size > 0 {
            submit(store, queue, size, now).await?;
        }
        left -= size;
    }
    store
        .worker_exit(WorkerExit { id: worker.id, now })
        .await
        .context("cannot mark the prefilling worker exited")?;
    Ok(())
}

/// History job `job`: submitted at `at`, leased a second later, reported a second after.
async fn history_job(
    store: &DynStore,
    shape: Shape,
    job: u64,
    queue: &str,
    worker: &str,
    at: Timestamp,
) -> Result<()> {
    let tasks = shape.job_tasks(job);
    submit(store, queue, tasks, at).await?;
    let leased_at = at + chrono::Duration::seconds(1);
    let reported_at = at + chrono::Duration::seconds(2);
    let mut left = tasks;
    while left > 0 {
        let leased = store
            .task_lease(TaskLease {
                tenant: DEFAULT_TENANT.to_string(),
                queues: vec![queue.to_string()],
                worker_id: worker.to_string(),
                worker_pool: POOL.to_string(),
                burstable_only: false,
                max: u32::try_from(left).unwrap_or(u32::MAX).min(MAX_LEASE_BATCH),
                now: leased_at,
            })
            .await
            .with_context(|| format!("cannot lease from queue {queue}"))?;
        ensure!(
            !leased.is_empty(),
            "queue {queue} had no task to lease though {left} of its job's were not leased yet"
        );
        left = left.saturating_sub(leased.len() as u64);
        let (dead, done) = leased
            .into_iter()
            .partition(|t| shape.is_dead(job, t.index));
        report(store, done, dead, reported_at).await?;
    }
    Ok(())
}

/// A job of `tasks` tasks of the bench command, submitted at `at`.
async fn submit(store: &DynStore, queue: &str, tasks: u64, at: Timestamp) -> Result<()> {
    let spec: TaskSpec = super::throughput::job(queue, None).spec;
    let payloads = (0..tasks)
        .map(|i| Some(serde_json::json!({ "item": i })))
        .collect();
    store
        .job_submit(JobSubmit {
            id: spillway_server::ids::new_job_id(at),
            tenant: DEFAULT_TENANT.to_string(),
            queue: queue.to_string(),
            name: None,
            labels: Default::default(),
            spec,
            priority: 0,
            burstable: false,
            idempotency_key: None,
            delete_inputs_on_success: false,
            has_inputs: false,
            payloads,
            run_at: at,
            now: at,
        })
        .await
        .with_context(|| format!("cannot submit a job of {tasks} tasks to queue {queue}"))?;
    Ok(())
}

/// Complete the tasks `done`, fail those `dead` for good.
async fn report(
    store: &DynStore,
    done: Vec<LeasedTask>,
    dead: Vec<LeasedTask>,
    at: Timestamp,
) -> Result<()> {
    let completions: Vec<Completion> = done.iter().map(super::throughput::completion).collect();
    let failures: Vec<Failure> = dead
        .into_iter()
        .map(|t| Failure {
            task_id: t.task_id,
            lease_token: t.lease_token,
            error: "the bench's dead letter".to_string(),
            exit_code: Some(1),
            retryable: false,
            log_tail: String::new(),
        })
        .collect();
    let expected = completions.len() + failures.len();
    let mut reported = store
        .task_complete(TaskComplete {
            tenant: None,
            items: completions,
            now: at,
        })
        .await
        .context("cannot complete the leased tasks")?;
    if !failures.is_empty() {
        reported.extend(
            store
                .task_fail(TaskFail {
                    tenant: None,
                    items: failures,
                    now: at,
                })
                .await
                .context("cannot fail the leased tasks")?,
        );
    }
    let applied = reported
        .iter()
        .filter(|r| r.outcome == ReportOutcome::Applied)
        .count();
    ensure!(
        applied == expected,
        "the store applied {applied} of {expected} reports on tasks it had just leased"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_million_tasks_are_a_thousand_jobs_and_a_thousand_waiting() {
        let shape = Shape::of(10_000_000);
        assert_eq!(shape.waiting, 1_000);
        assert_eq!(shape.job_size, 10_000);
        assert_eq!(shape.jobs, 1_000);
        assert_eq!(shape.dead(), 9_999_000 / 200);
    }

    #[test]
    fn a_small_store_has_twenty_jobs_and_a_tenth_waiting() {
        let shape = Shape::of(10_000);
        assert_eq!(
            (shape.waiting, shape.job_size, shape.jobs),
            (1_000, 450, 20)
        );
        let tiny = Shape::of(15);
        assert_eq!((tiny.waiting, tiny.job_size, tiny.jobs), (1, 1, 14));
        let sum: u64 = (0..tiny.jobs).map(|j| tiny.job_tasks(j)).sum();
        assert_eq!(sum, tiny.finished());
    }

    #[test]
    fn dead_letters_are_counted_over_the_whole_history() {
        let shape = Shape::of(2_000);
        assert_eq!(shape.job_size, 90);
        let dead = (0..shape.jobs)
            .flat_map(|j| (0..shape.job_tasks(j) as u32).map(move |i| (j, i)))
            .filter(|&(j, i)| shape.is_dead(j, i))
            .count() as u64;
        assert_eq!(dead, shape.dead());
        assert_eq!(dead, 9);
    }
}
