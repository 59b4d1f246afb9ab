//! Column lists and conversions between PostgreSQL rows and the domain types.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use spillway_core::auth::Role;
use spillway_core::model::{
    Attempt, Job, LeaseInfo, Queue, QueueSettings, Task, Tenant, TokenInfo, Worker, WorkerState,
};
use spillway_core::state::{AttemptOutcome, JobState, StateCounts, TaskState};
use spillway_core::{Error, Result, Timestamp};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use super::error::{corrupt, ctx, db};

/// Columns of a task joined with its job (`tasks t JOIN jobs j`), as read by [`task`].
pub(super) const TASK_COLUMNS: &str = "t.id, t.job_id, t.tenant, t.queue, t.idx, t.state, \
    t.priority, t.burstable, t.run_at, t.attempt, t.failures, t.preemptions, t.max_attempts, \
    t.payload, t.lease_worker, t.lease_expires_at, j.cancel_requested, t.exit_code, \
    t.last_error, t.result, t.avoid_pool, t.created_at, t.finished_at";

/// Columns of a job, as read by [`jobs_with_counts`].
pub(super) const JOB_COLUMNS: &str = "id, tenant, queue, name, labels, spec, priority, \
    burstable, idempotency_key, delete_inputs_on_success, has_inputs, task_count, \
    cancel_requested, created_at";

/// Columns of a queue, as read by [`queue`].
pub(super) const QUEUE_COLUMNS: &str = "tenant, name, max_attempts, backoff_base_ms, \
    backoff_max_ms, lease_ms, retention_ms, paused, created_at";

/// Columns of a worker, as read by [`worker`].
pub(super) const WORKER_COLUMNS: &str =
    "id, tenant, pool, hostname, queues, concurrency, state, running, started_at, last_seen";

/// Columns of a token, as read by [`token`].
pub(super) const TOKEN_COLUMNS: &str = "id, name, tenant, role, created_at, expires_at, queues";

/// Columns of an attempt, as read by [`attempt`].
pub(super) const ATTEMPT_COLUMNS: &str =
    "task_id, attempt, worker_id, started_at, ended_at, outcome, exit_code, error, log_tail";

/// Read one column, turning a type mismatch into an internal error that names it.
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, column: &str) -> Result<T> {
    row.try_get(column)
        .map_err(|e| db(&format!("could not read column {column}"), e))
}

/// A stored non-negative count.
pub(super) fn count(row: &Row, column: &str) -> Result<u32> {
    let value: i32 = get(row, column)?;
    u32::try_from(value).map_err(|e| corrupt(column, e))
}

/// A count for an INTEGER column; larger values are clamped (they are validated far below).
pub(super) fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// A duration as stored (milliseconds, as in the SQLite backend), saturating.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration(row: &Row, column: &str) -> Result<Duration> {
    let ms: i64 = get(row, column)?;
    Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// A tenant row (`name, created_at`).
pub(super) fn tenant(row: &Row) -> Result<Tenant> {
    Ok(Tenant {
        name: get(row, "name")?,
        created_at: get(row, "created_at")?,
    })
}

/// A token row.
pub(super) fn token(row: &Row) -> Result<TokenInfo> {
    let role: String = get(row, "role")?;
    Ok(TokenInfo {
        id: get(row, "id")?,
        name: get(row, "name")?,
        tenant: get(row, "tenant")?,
        role: Role::parse(&role).map_err(|e| corrupt("token role", e))?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        queues: get(row, "queues")?,
    })
}

/// A queue row.
pub(super) fn queue(row: &Row) -> Result<Queue> {
    Ok(Queue {
        tenant: get(row, "tenant")?,
        name: get(row, "name")?,
        settings: QueueSettings {
            max_attempts: count(row, "max_attempts")?,
            backoff_base: duration(row, "backoff_base_ms")?,
            backoff_max: duration(row, "backoff_max_ms")?,
            lease_duration: duration(row, "lease_ms")?,
            retention: duration(row, "retention_ms")?,
            paused: get(row, "paused")?,
        },
        created_at: get(row, "created_at")?,
    })
}

/// A task row read with [`TASK_COLUMNS`].
pub(super) fn task(row: &Row) -> Result<Task> {
    let state = task_state(row)?;
    let lease = if state == TaskState::Leased {
        let worker_id: Option<String> = get(row, "lease_worker")?;
        let expires_at: Option<Timestamp> = get(row, "lease_expires_at")?;
        worker_id
            .zip(expires_at)
            .map(|(worker_id, expires_at)| LeaseInfo {
                worker_id,
                expires_at,
            })
    } else {
        None
    };
    Ok(Task {
        id: get(row, "id")?,
        job_id: get(row, "job_id")?,
        tenant: get(row, "tenant")?,
        queue: get(row, "queue")?,
        index: count(row, "idx")?,
        state,
        priority: get(row, "priority")?,
        burstable: get(row, "burstable")?,
        run_at: get(row, "run_at")?,
        attempt: count(row, "attempt")?,
        failures: count(row, "failures")?,
        preemptions: count(row, "preemptions")?,
        max_attempts: count(row, "max_attempts")?,
        payload: get(row, "payload")?,
        lease,
        cancel_requested: get(row, "cancel_requested")?,
        exit_code: get(row, "exit_code")?,
        last_error: get(row, "last_error")?,
        result: get(row, "result")?,
        avoid_pool: get(row, "avoid_pool")?,
        created_at: get(row, "created_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

/// The `state` column of a task row.
pub(super) fn task_state(row: &Row) -> Result<TaskState> {
    let state: String = get(row, "state")?;
    TaskState::parse(&state).map_err(|e| corrupt("task state", e))
}

/// An attempt row.
pub(super) fn attempt(row: &Row) -> Result<Attempt> {
    let outcome: String = get(row, "outcome")?;
    Ok(Attempt {
        task_id: get(row, "task_id")?,
        attempt: count(row, "attempt")?,
        worker_id: get(row, "worker_id")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        outcome: AttemptOutcome::parse(&outcome).map_err(|e| corrupt("attempt outcome", e))?,
        exit_code: get(row, "exit_code")?,
        error: get(row, "error")?,
        log_tail: get(row, "log_tail")?,
    })
}

/// A worker row.
pub(super) fn worker(row: &Row) -> Result<Worker> {
    let state: String = get(row, "state")?;
    Ok(Worker {
        id: get(row, "id")?,
        tenant: get(row, "tenant")?,
        pool: get(row, "pool")?,
        hostname: get(row, "hostname")?,
        queues: get(row, "queues")?,
        concurrency: count(row, "concurrency")?,
        state: WorkerState::parse(&state).map_err(|e| corrupt("worker state", e))?,
        running: count(row, "running")?,
        started_at: get(row, "started_at")?,
        last_seen: get(row, "last_seen")?,
    })
}

/// Jobs from rows read with [`JOB_COLUMNS`], with their counts and finish time computed from
/// their tasks (one grouped query for all of them).
pub(super) async fn jobs_with_counts(
    client: &impl GenericClient,
    rows: &[Row],
) -> Result<Vec<Job>> {
    let ids = rows
        .iter()
        .map(|row| get::<String>(row, "id"))
        .collect::<Result<Vec<_>>>()?;
    let tallies = client
        .query(
            "SELECT job_id, state, count(*) AS n, max(finished_at) AS finished_at
             FROM tasks WHERE job_id = ANY($1) GROUP BY job_id, state",
            &[&ids],
        )
        .await
        .map_err(ctx("could not count tasks of jobs"))?;
    let mut counts: HashMap<String, (StateCounts, Option<Timestamp>)> = HashMap::new();
    for row in &tallies {
        let entry = counts.entry(get(row, "job_id")?).or_default();
        let n: i64 = get(row, "n")?;
        entry.0.add(task_state(row)?, u64::try_from(n).unwrap_or(0));
        let finished: Option<Timestamp> = get(row, "finished_at")?;
        entry.1 = entry.1.max(finished);
    }
    rows.iter()
        .map(|row| {
            let id: String = get(row, "id")?;
            let (counts, last_finished) = counts.remove(&id).unwrap_or_default();
            job(row, counts, last_finished)
        })
        .collect()
}

/// A job row read with [`JOB_COLUMNS`] and counts already known.
pub(super) fn job(row: &Row, counts: StateCounts, last_finished: Option<Timestamp>) -> Result<Job> {
    let cancel_requested: bool = get(row, "cancel_requested")?;
    let state = JobState::derive(&counts, cancel_requested);
    let labels: serde_json::Value = get(row, "labels")?;
    let spec: serde_json::Value = get(row, "spec")?;
    Ok(Job {
        id: get(row, "id")?,
        tenant: get(row, "tenant")?,
        queue: get(row, "queue")?,
        name: get(row, "name")?,
        labels: serde_json::from_value(labels).map_err(|e| corrupt("job labels", e))?,
        spec: serde_json::from_value(spec).map_err(|e| corrupt("job spec", e))?,
        priority: get(row, "priority")?,
        burstable: get(row, "burstable")?,
        idempotency_key: get(row, "idempotency_key")?,
        delete_inputs_on_success: get(row, "delete_inputs_on_success")?,
        has_inputs: get(row, "has_inputs")?,
        task_count: count(row, "task_count")?,
        counts,
        state,
        cancel_requested,
        created_at: get(row, "created_at")?,
        finished_at: if state.is_final() {
            last_finished
        } else {
            None
        },
    })
}

/// Parse a page cursor (the id of the last item of the previous page).
pub(super) fn cursor<T: std::str::FromStr>(cursor: Option<&str>) -> Result<Option<T>> {
    cursor
        .map(|c| {
            c.parse().map_err(|_| {
                Error::invalid(format!(
                    "invalid cursor {c:?}: pass the next_cursor of the previous page unchanged"
                ))
            })
        })
        .transpose()
}

/// A page size within 1..=MAX_PAGE_SIZE, as a LIMIT one larger to see whether more follow.
pub(super) fn page_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, spillway_core::api::MAX_PAGE_SIZE)) + 1
}
