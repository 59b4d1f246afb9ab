//! Reading tasks, leasing them, heartbeats and lease checks.

use std::collections::HashMap;

use spillway_core::api::{HeartbeatResult, LeaseStatus, LeasedTask, Page};
use spillway_core::model::{Attempt, Task};
use spillway_core::{Error, Result, TaskId, Timestamp};

use crate::postgres::error::ctx;
use crate::postgres::rows::{self, ATTEMPT_COLUMNS, TASK_COLUMNS, count, get, page_limit};
use crate::{LeaseCheck, TaskHeartbeat, TaskLease, TaskList};
use deadpool_postgres::Object;

/// One lease pass: for each asked-for queue that is not paused, the first `$6` waiting tasks in
/// lease order (walking the partial index `tasks_leasable`), locked with SKIP LOCKED so
/// concurrent leasers pass each other by; then the best `$6` of those are leased, each with a
/// fresh 128-bit token, and given an attempt row, all in one statement.
///
/// `$5` is the pool to avoid: the first pass leaves out tasks last preempted on the caller's
/// pool, the second (`$5` NULL) takes them when nothing else was left.
const LEASE_SQL: &str = "
WITH picked AS (
    SELECT c.id, c.priority, c.run_at
    FROM queues q
    CROSS JOIN LATERAL (
        SELECT t.id, t.priority, t.run_at FROM tasks t
        WHERE t.tenant = q.tenant AND t.queue = q.name
          AND t.state IN ('scheduled', 'available', 'retrying')
          AND t.run_at <= $3
          AND (NOT $4 OR t.burstable)
          AND ($5::text IS NULL OR t.avoid_pool IS DISTINCT FROM $5)
          -- A scalar subquery, not NOT EXISTS: an anti-join would trade the ordered index
          -- walk for a sort of every waiting task.
          AND NOT (SELECT j.cancel_requested FROM jobs j WHERE j.id = t.job_id)
        ORDER BY t.priority DESC, t.run_at, t.id
        LIMIT $6
        FOR UPDATE OF t SKIP LOCKED
    ) c
    WHERE q.tenant = $1 AND q.name = ANY($2) AND NOT q.paused
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT $6
), leased AS (
    UPDATE tasks t
    SET state = 'leased',
        attempt = t.attempt + 1,
        lease_token = replace(gen_random_uuid()::text, '-', ''),
        lease_worker = $7,
        lease_expires_at = $3 + q.lease_ms * interval '1 millisecond'
    FROM picked p, queues q
    WHERE t.id = p.id AND q.tenant = t.tenant AND q.name = t.queue
    RETURNING t.id, t.job_id, t.idx, t.queue, t.attempt, t.lease_token, t.lease_expires_at,
              t.payload, t.priority, t.run_at
), started AS (
    INSERT INTO attempts (task_id, attempt, worker_id, started_at, outcome)
    SELECT id, attempt, $7, $3, 'running' FROM leased
)
SELECT l.id, l.job_id, l.idx, l.queue, l.attempt, l.lease_token, l.lease_expires_at, l.payload,
       l.run_at, j.spec, j.has_inputs
FROM leased l JOIN jobs j ON j.id = l.job_id
ORDER BY l.priority DESC, l.run_at, l.id";

pub(crate) async fn task_get(conn: &Object, tenant: Option<&str>, id: TaskId) -> Result<Task> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN jobs j ON j.id = t.job_id
             WHERE t.id = $1 AND ($2::text IS NULL OR t.tenant = $2)"
    );
    match conn
        .query_opt(&sql, &[&id, &tenant])
        .await
        .map_err(ctx("could not read the task"))?
    {
        Some(row) => rows::task(&row),
        None => Err(task_not_found(id)),
    }
}

pub(crate) async fn task_list(conn: &Object, p: &TaskList) -> Result<Page<Task>> {
    let after = rows::cursor::<TaskId>(p.cursor.as_deref())?;
    let limit = page_limit(p.limit);
    let state = p.state.map(|s| s.as_str());
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN jobs j ON j.id = t.job_id
             WHERE ($1::text IS NULL OR t.tenant = $1) AND ($2::text IS NULL OR t.job_id = $2)
               AND ($3::text IS NULL OR t.queue = $3) AND ($4::text IS NULL OR t.state = $4)
               AND ($5::bigint IS NULL OR t.id > $5)
             ORDER BY t.id LIMIT $6"
    );
    let found = conn
        .query(
            &sql,
            &[&p.tenant, &p.job_id, &p.queue, &state, &after, &limit],
        )
        .await
        .map_err(ctx("could not list tasks"))?;
    task_page(&found, limit)
}

pub(crate) async fn task_attempts(
    conn: &Object,
    tenant: Option<&str>,
    id: TaskId,
) -> Result<Vec<Attempt>> {
    let visible = conn
        .query_opt(
            "SELECT 1 FROM tasks WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)",
            &[&id, &tenant],
        )
        .await
        .map_err(ctx("could not read the task"))?;
    if visible.is_none() {
        return Err(task_not_found(id));
    }
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = $1 ORDER BY attempt");
    conn.query(&sql, &[&id])
        .await
        .map_err(ctx("could not read the task's attempts"))?
        .iter()
        .map(rows::attempt)
        .collect()
}

pub(crate) async fn task_lease(conn: &Object, p: &TaskLease) -> Result<Vec<LeasedTask>> {
    if p.max == 0 || p.queues.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = conn
        .prepare_cached(LEASE_SQL)
        .await
        .map_err(ctx("could not prepare the lease"))?;
    let mut leased = Vec::new();
    for avoid in [Some(p.worker_pool.as_str()), None] {
        let want = i64::from(p.max) - i64::try_from(leased.len()).unwrap_or(i64::MAX);
        if want <= 0 {
            break;
        }
        // Each pass is one statement that commits on its own: no BEGIN and COMMIT round
        // trips, and most leases are served by the first pass alone.
        let got = conn
            .query(
                &stmt,
                &[
                    &p.tenant,
                    &p.queues,
                    &p.now,
                    &p.burstable_only,
                    &avoid,
                    &want,
                    &p.worker_id,
                ],
            )
            .await;
        let got = match got {
            Ok(rows) => rows,
            Err(error) if !leased.is_empty() => {
                // The first pass's leases are committed: hand them out rather than leave
                // them to expire unworked.
                tracing::warn!(%error, leased = leased.len(), "second lease pass failed; returning the first pass's tasks");
                break;
            }
            Err(error) => return Err(ctx("could not lease tasks")(error)),
        };
        for row in &got {
            leased.push(leased_task(row)?);
        }
    }
    if !leased.is_empty() {
        tracing::debug!(tenant = %p.tenant, worker = %p.worker_id, count = leased.len(), "leased tasks");
    }
    Ok(leased)
}

pub(crate) async fn task_heartbeat(
    conn: &Object,
    p: &TaskHeartbeat,
) -> Result<Vec<HeartbeatResult>> {
    if p.leases.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<TaskId> = p.leases.iter().map(|l| l.task_id).collect();
    let tokens: Vec<&str> = p.leases.iter().map(|l| l.lease_token.as_str()).collect();
    let extended = conn
        .query(
            "UPDATE tasks t
                 SET lease_expires_at = $3::timestamptz + q.lease_ms * interval '1 millisecond'
                 FROM unnest($1::bigint[], $2::text[]) AS i(id, token), queues q, jobs j
                 WHERE t.id = i.id AND t.state = 'leased' AND t.lease_token = i.token
                   AND ($4::text IS NULL OR t.tenant = $4)
                   AND q.tenant = t.tenant AND q.name = t.queue AND j.id = t.job_id
                 RETURNING t.id, t.lease_expires_at, j.cancel_requested",
            &[&ids, &tokens, &p.now, &p.tenant],
        )
        .await
        .map_err(ctx("could not extend leases"))?;
    let mut held: HashMap<TaskId, (Timestamp, bool)> = HashMap::new();
    for row in &extended {
        held.insert(
            get(row, "id")?,
            (get(row, "lease_expires_at")?, get(row, "cancel_requested")?),
        );
    }
    Ok(p.leases
        .iter()
        .map(|l| match held.get(&l.task_id) {
            Some((expires, cancel)) => HeartbeatResult {
                task_id: l.task_id,
                status: if *cancel {
                    LeaseStatus::CancelRequested
                } else {
                    LeaseStatus::Extended
                },
                lease_expires_at: Some(*expires),
            },
            None => HeartbeatResult {
                task_id: l.task_id,
                status: LeaseStatus::Lost,
                lease_expires_at: None,
            },
        })
        .collect())
}

/// The task if it is the caller's and `p.lease_token` is its current lease. An expired lease
/// stays current until the reaper or a new lease replaces it.
pub(crate) async fn lease_check(conn: &Object, p: &LeaseCheck) -> Result<Task> {
    let sql = format!(
        "SELECT {TASK_COLUMNS}, t.lease_token FROM tasks t JOIN jobs j ON j.id = t.job_id
             WHERE t.id = $1 AND ($2::text IS NULL OR t.tenant = $2)"
    );
    let id = p.task_id;
    let row = conn
        .query_opt(&sql, &[&id, &p.tenant])
        .await
        .map_err(ctx("could not check the lease"))?
        .ok_or_else(|| task_not_found(id))?;
    let current: Option<String> = get(&row, "lease_token")?;
    let task = rows::task(&row)?;
    if task.lease.is_none() || current.as_deref() != Some(p.lease_token.as_str()) {
        return Err(Error::conflict(format!(
            "the lease on task {id} is not current: it was reaped, reported or handed to another worker; stop working on it"
        )));
    }
    Ok(task)
}

/// A page of tasks from rows fetched with one extra row beyond the page size.
pub(super) fn task_page(found: &[tokio_postgres::Row], limit: i64) -> Result<Page<Task>> {
    let size = usize::try_from(limit - 1).unwrap_or(0);
    let mut items = found
        .iter()
        .take(size)
        .map(rows::task)
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = if found.len() > size {
        items.last().map(|t| t.id.to_string())
    } else {
        None
    };
    items.shrink_to_fit();
    Ok(Page { items, next_cursor })
}

fn leased_task(row: &tokio_postgres::Row) -> Result<LeasedTask> {
    let spec: serde_json::Value = get(row, "spec")?;
    Ok(LeasedTask {
        task_id: get(row, "id")?,
        job_id: get(row, "job_id")?,
        index: count(row, "idx")?,
        queue: get(row, "queue")?,
        attempt: count(row, "attempt")?,
        lease_token: get(row, "lease_token")?,
        lease_expires_at: get(row, "lease_expires_at")?,
        // The server adds it, from the time it leased at.
        lease_ms: None,
        spec: serde_json::from_value(spec)
            .map_err(|e| crate::postgres::error::corrupt("job spec", e))?,
        payload: get(row, "payload")?,
        has_inputs: get(row, "has_inputs")?,
        due_at: Some(get(row, "run_at")?),
    })
}

pub(super) fn task_not_found(id: TaskId) -> Error {
    Error::not_found(format!(
        "task {id} not found: list a job's tasks to see their ids"
    ))
}
