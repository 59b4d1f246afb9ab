//! Conversions between SQLite rows and the domain types, and error mapping.

use std::str::FromStr;
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, Row};
use spillway_core::auth::Role;
use spillway_core::model::{
    Attempt, Job, LeaseInfo, Queue, QueueSettings, Task, TokenInfo, Worker, WorkerState,
};
use spillway_core::state::{AttemptOutcome, JobState, StateCounts, TaskState};
use spillway_core::{Error, Result, Timestamp};

/// "The task waits to be leased" in SQL, written exactly as the partial index `tasks_leasable`
/// is (so queries can use it). Comparisons, not `IN (...)`: SQLite evaluates a constant IN
/// list of more than two values through an ephemeral table, built again for every UPDATE
/// that checks the partial index.
pub(crate) const WAITING: &str =
    "(state = 'scheduled' OR state = 'available' OR state = 'retrying')";
/// Task states that are not final, as they appear in SQL.
pub(crate) const UNFINISHED: &str = "('scheduled', 'available', 'leased', 'retrying')";

/// A timestamp as stored: microseconds since the epoch.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// A stored timestamp back as a [`Timestamp`].
pub(crate) fn time(us: i64) -> Timestamp {
    Timestamp::from_timestamp_micros(us).unwrap_or(Timestamp::MIN_UTC)
}

/// A duration as stored: whole milliseconds.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Map a database error to a store error, naming what was being done.
pub(crate) fn db(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        let full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        if busy {
            Error::unavailable(format!("sqlite is busy while trying to {what}: retry"))
                .with_source(e)
        } else if full {
            Error::unavailable(format!(
                "the database's disk is full, so sqlite could not {what} (nothing was written): free space on the server's data disk, then retry"
            ))
            .with_source(e)
        } else {
            Error::internal(format!("sqlite failed to {what}")).with_source(e)
        }
    }
}

/// True when `e` is a uniqueness or primary key violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

/// Serialize a JSON value for a TEXT column.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| Error::internal("could not serialize a value for sqlite").with_source(e))
}

fn conv<T, E>(col: usize, r: std::result::Result<T, E>) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    r.map_err(|e| rusqlite::Error::FromSqlConversionFailure(col, Type::Text, Box::new(e)))
}

fn json_col<T: serde::de::DeserializeOwned>(row: &Row<'_>, col: usize) -> rusqlite::Result<T> {
    let text: String = row.get(col)?;
    conv(col, serde_json::from_str(&text))
}

fn opt_json_col(row: &Row<'_>, col: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = row.get(col)?;
    text.map(|t| conv(col, serde_json::from_str(&t)))
        .transpose()
}

fn opt_time(row: &Row<'_>, col: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(col)?.map(time))
}

/// Columns read by [`tenant_row`].
pub(crate) const TENANT_COLS: &str = "name, created_at";

/// A tenant row.
pub(crate) fn tenant_row(row: &Row<'_>) -> rusqlite::Result<spillway_core::model::Tenant> {
    Ok(spillway_core::model::Tenant {
        name: row.get(0)?,
        created_at: time(row.get(1)?),
    })
}

/// Columns read by [`token_row`].
pub(crate) const TOKEN_COLS: &str = "id, name, tenant, role, created_at, expires_at, queues";

/// A token row ([`TOKEN_COLS`], from column `at` on).
pub(crate) fn token_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<TokenInfo> {
    let role: String = row.get(at + 3)?;
    let queues: Option<String> = row.get(at + 6)?;
    Ok(TokenInfo {
        id: row.get(at)?,
        name: row.get(at + 1)?,
        tenant: row.get(at + 2)?,
        role: conv(at + 3, Role::parse(&role))?,
        created_at: time(row.get(at + 4)?),
        expires_at: opt_time(row, at + 5)?,
        queues: queues
            .map(|text| conv(at + 6, serde_json::from_str(&text)))
            .transpose()?,
    })
}

/// A token row.
pub(crate) fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    token_row_at(row, 0)
}

/// Columns read by [`queue_row`].
pub(crate) const QUEUE_COLS: &str = "tenant, name, max_attempts, backoff_base_ms, backoff_max_ms, \
     lease_ms, retention_ms, paused, created_at";

/// A queue row.
pub(crate) fn queue_row(row: &Row<'_>) -> rusqlite::Result<Queue> {
    Ok(Queue {
        tenant: row.get(0)?,
        name: row.get(1)?,
        settings: QueueSettings {
            max_attempts: row.get(2)?,
            backoff_base: duration(row.get(3)?),
            backoff_max: duration(row.get(4)?),
            lease_duration: duration(row.get(5)?),
            retention: duration(row.get(6)?),
            paused: row.get(7)?,
        },
        created_at: time(row.get(8)?),
    })
}

/// Columns read by [`job_row`].
pub(crate) const JOB_COLS: &str = "id, tenant, queue, name, labels, spec, priority, burstable, \
     idempotency_key, delete_inputs_on_success, has_inputs, task_count, cancel_requested, \
     created_at, finished_at";

/// A job row, with empty counts (see [`with_counts`]).
pub(crate) fn job_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: row.get(0)?,
        tenant: row.get(1)?,
        queue: row.get(2)?,
        name: row.get(3)?,
        labels: json_col(row, 4)?,
        spec: json_col(row, 5)?,
        priority: row.get(6)?,
        burstable: row.get(7)?,
        idempotency_key: row.get(8)?,
        delete_inputs_on_success: row.get(9)?,
        has_inputs: row.get(10)?,
        task_count: row.get(11)?,
        counts: StateCounts::default(),
        state: JobState::Queued,
        cancel_requested: row.get(12)?,
        created_at: time(row.get(13)?),
        finished_at: opt_time(row, 14)?,
    })
}

/// Fill a job's counts from its tasks and derive its state.
pub(crate) fn with_counts(conn: &Connection, mut job: Job) -> Result<Job> {
    let mut stmt = conn
        .prepare_cached("SELECT state, count(*) FROM tasks WHERE job_key = (SELECT key FROM jobs WHERE id = ?1) GROUP BY state")
        .map_err(db("prepare the job counts query"))?;
    let rows = stmt
        .query_map([&job.id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(db("count a job's tasks"))?;
    let mut counts = StateCounts::default();
    for row in rows {
        let (state, n) = row.map_err(db("count a job's tasks"))?;
        counts.add(TaskState::parse(&state)?, u64::try_from(n).unwrap_or(0));
    }
    job.state = JobState::derive(&counts, job.cancel_requested);
    job.counts = counts;
    Ok(job)
}

/// Columns read by [`task_row`].
pub(crate) const TASK_COLS: &str = "id, job_id, tenant, queue, idx, state, priority, burstable, \
     run_at, attempt, failures, preemptions, max_attempts, payload, lease_worker, \
     lease_expires_at, cancel_requested, exit_code, last_error, result, avoid_pool, created_at, \
     finished_at";

/// A task row.
pub(crate) fn task_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    let state: String = row.get(5)?;
    let lease_worker: Option<String> = row.get(14)?;
    let lease_expires: Option<i64> = row.get(15)?;
    let lease = match (lease_worker, lease_expires) {
        (Some(worker_id), Some(at)) => Some(LeaseInfo {
            worker_id,
            expires_at: time(at),
        }),
        _ => None,
    };
    Ok(Task {
        id: row.get(0)?,
        job_id: row.get(1)?,
        tenant: row.get(2)?,
        queue: row.get(3)?,
        index: row.get(4)?,
        state: conv(5, TaskState::parse(&state))?,
        priority: row.get(6)?,
        burstable: row.get(7)?,
        run_at: time(row.get(8)?),
        attempt: row.get(9)?,
        failures: row.get(10)?,
        preemptions: row.get(11)?,
        max_attempts: row.get(12)?,
        payload: opt_json_col(row, 13)?,
        lease,
        cancel_requested: row.get(16)?,
        exit_code: row.get(17)?,
        last_error: row.get(18)?,
        result: opt_json_col(row, 19)?,
        avoid_pool: row.get(20)?,
        created_at: time(row.get(21)?),
        finished_at: opt_time(row, 22)?,
    })
}

/// Columns read by [`attempt_row`].
pub(crate) const ATTEMPT_COLS: &str =
    "task_id, attempt, worker_id, started_at, ended_at, outcome, exit_code, error, log_tail";

/// An attempt row.
pub(crate) fn attempt_row(row: &Row<'_>) -> rusqlite::Result<Attempt> {
    let outcome: String = row.get(5)?;
    Ok(Attempt {
        task_id: row.get(0)?,
        attempt: row.get(1)?,
        worker_id: row.get(2)?,
        started_at: time(row.get(3)?),
        ended_at: opt_time(row, 4)?,
        outcome: conv(5, AttemptOutcome::parse(&outcome))?,
        exit_code: row.get(6)?,
        error: row.get(7)?,
        log_tail: row.get(8)?,
    })
}

/// Columns read by [`worker_row`].
pub(crate) const WORKER_COLS: &str =
    "id, tenant, pool, hostname, queues, concurrency, state, running, started_at, last_seen";

/// A worker row.
pub(crate) fn worker_row(row: &Row<'_>) -> rusqlite::Result<Worker> {
    let state: String = row.get(6)?;
    Ok(Worker {
        id: row.get(0)?,
        tenant: row.get(1)?,
        pool: row.get(2)?,
        hostname: row.get(3)?,
        queues: json_col(row, 4)?,
        concurrency: row.get(5)?,
        state: conv(6, WorkerState::parse(&state))?,
        running: row.get(7)?,
        started_at: time(row.get(8)?),
        last_seen: time(row.get(9)?),
    })
}

/// Parse a task-id cursor.
pub(crate) fn task_cursor(cursor: Option<&str>) -> Result<i64> {
    match cursor {
        None => Ok(0),
        Some(c) => i64::from_str(c).map_err(|_| {
            Error::invalid(format!(
                "invalid cursor {c:?}: pass the next_cursor of the previous page unchanged"
            ))
        }),
    }
}

/// A page size within 1..=1000.
pub(crate) fn page_size(limit: u32) -> i64 {
    i64::from(limit.clamp(1, spillway_core::api::MAX_PAGE_SIZE))
}
