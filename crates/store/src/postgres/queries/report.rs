//! Reports on leases (complete, fail, release), the lease reaper and dead letters.
//!
//! Every change is conditional on `state = 'leased'`, the caller's lease token and tenant.
//! Fail, release and reap first lock the matching rows, work out each task's [`Ending`] with
//! the functions both backends share (`crate::ending`), then write all of them with one
//! batched statement.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use deadpool_postgres::GenericClient;
use spillway_core::api::Page;
use spillway_core::model::Task;
use spillway_core::state::{AttemptOutcome, TaskState};
use spillway_core::{Result, TaskId, Timestamp};
use tokio_postgres::Row;

use super::jobs::{JobsToFinish, finish_jobs};
use super::tasks::task_page;
use crate::ending::{Ending, Failed, Held};
use crate::postgres::error::ctx;
use crate::postgres::rows::{TASK_COLUMNS, count, get, page_limit};
use crate::{DeadList, DeadRequeue, Reported, TaskComplete, TaskFail, TaskRelease, Woken};
use deadpool_postgres::Object;

/// Expired leases reaped per transaction.
const REAP_BATCH: i64 = 500;

/// The leased rows matching (id, token) pairs, locked in id order (so concurrent batches
/// cannot deadlock), with what deciding their fate needs.
const LOCK_LEASED_SQL: &str = "
SELECT t.id, t.lease_token, t.tenant, t.queue, t.job_id, t.attempt, t.failures,
       t.preemptions, t.max_attempts, t.lease_worker, q.backoff_base_ms, q.backoff_max_ms,
       j.cancel_requested, t.burstable
FROM tasks t
JOIN queues q ON q.tenant = t.tenant AND q.name = t.queue
JOIN jobs j ON j.id = t.job_id
WHERE t.state = 'leased'
  AND (t.id, t.lease_token) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))
  AND ($3::text IS NULL OR t.tenant = $3)
ORDER BY t.id
FOR UPDATE OF t";

/// Writes the end of many attempts at once: the task's new state and the attempt's outcome.
const APPLY_SQL: &str = "
WITH u AS (
    SELECT * FROM unnest($1::bigint[], $2::int4[], $3::text[], $4::int4[], $5::int4[],
                         $6::timestamptz[], $7::timestamptz[], $8::int4[], $9::text[],
                         $10::text[], $11::text[], $12::text[])
        AS u(id, attempt, state, failures, preemptions, run_at, finished_at, exit_code, error,
             avoid_pool, outcome, log_tail)
), moved AS (
    UPDATE tasks t
    SET state = u.state, failures = u.failures, preemptions = u.preemptions,
        run_at = COALESCE(u.run_at, t.run_at), finished_at = u.finished_at,
        exit_code = u.exit_code, last_error = COALESCE(u.error, t.last_error),
        avoid_pool = COALESCE(u.avoid_pool, t.avoid_pool),
        lease_token = NULL, lease_worker = NULL, lease_expires_at = NULL
    FROM u WHERE t.id = u.id
)
UPDATE attempts a
SET ended_at = $13, outcome = u.outcome, exit_code = u.exit_code, error = u.error,
    log_tail = u.log_tail
FROM u WHERE a.task_id = u.id AND a.attempt = u.attempt";

/// A locked leased task, as read by [`LOCK_LEASED_SQL`] or the reaper.
fn held(row: &Row) -> Result<Held> {
    let ms = |c: &str| -> Result<Duration> {
        let v: i64 = get(row, c)?;
        Ok(Duration::from_millis(u64::try_from(v).unwrap_or(0)))
    };
    Ok(Held {
        id: get(row, "id")?,
        token: get(row, "lease_token")?,
        tenant: get(row, "tenant")?,
        queue: get(row, "queue")?,
        job_id: get(row, "job_id")?,
        attempt: get(row, "attempt")?,
        failures: count(row, "failures")?,
        preemptions: count(row, "preemptions")?,
        max_attempts: count(row, "max_attempts")?,
        worker: get(row, "lease_worker")?,
        backoff_base: ms("backoff_base_ms")?,
        backoff_max: ms("backoff_max_ms")?,
        cancel_requested: get(row, "cancel_requested")?,
        burstable: get(row, "burstable")?,
    })
}

async fn lock_leased(
    client: &impl GenericClient,
    ids: &[TaskId],
    tokens: &[&str],
    tenant: Option<&str>,
) -> Result<HashMap<(TaskId, String), Held>> {
    client
        .query(LOCK_LEASED_SQL, &[&ids, &tokens, &tenant])
        .await
        .map_err(ctx("could not lock leased tasks"))?
        .iter()
        .map(|row| held(row).map(|h| ((h.id, h.token.clone()), h)))
        .collect()
}

/// The jobs of the endings that left a task in a final state: once committed, check whether
/// they are finished.
fn finishing(endings: &[Ending]) -> JobsToFinish {
    endings
        .iter()
        .filter(|e| e.finished())
        .map(|e| e.job_id.clone())
        .collect()
}

async fn apply(client: &impl GenericClient, endings: &[Ending], now: Timestamp) -> Result<()> {
    if endings.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Ending) -> i32| endings.iter().map(f).collect::<Vec<i32>>();
    let ids: Vec<TaskId> = endings.iter().map(|e| e.id).collect();
    let attempts = col(|e| e.attempt);
    let states: Vec<&str> = endings.iter().map(|e| e.state.as_str()).collect();
    let failures = col(|e| crate::postgres::rows::int(e.failures));
    let preemptions = col(|e| crate::postgres::rows::int(e.preemptions));
    let run_at: Vec<Option<Timestamp>> = endings.iter().map(|e| e.run_at).collect();
    let finished_at: Vec<Option<Timestamp>> = endings.iter().map(|e| e.finished_at).collect();
    let exit_codes: Vec<Option<i32>> = endings.iter().map(|e| e.exit_code).collect();
    let errors: Vec<Option<&str>> = endings.iter().map(|e| e.error.as_deref()).collect();
    let pools: Vec<Option<&str>> = endings.iter().map(|e| e.avoid_pool.as_deref()).collect();
    let outcomes: Vec<&str> = endings.iter().map(|e| e.outcome.as_str()).collect();
    let tails: Vec<&str> = endings.iter().map(|e| e.log_tail.as_str()).collect();
    client
        .execute(
            APPLY_SQL,
            &[
                &ids,
                &attempts,
                &states,
                &failures,
                &preemptions,
                &run_at,
                &finished_at,
                &exit_codes,
                &errors,
                &pools,
                &outcomes,
                &tails,
                &now,
            ],
        )
        .await
        .map_err(ctx("could not record the end of attempts"))?;
    Ok(())
}

/// One answer per item (task id and token), in order: applied when that lease was applied,
/// else not current when the task is the caller's, else not found. Only refusals cost a look
/// at the tasks (in the caller's transaction when it has one).
async fn answers(
    client: &impl GenericClient,
    ids: &[TaskId],
    tokens: &[&str],
    applied: &BTreeSet<(TaskId, String)>,
    tenant: Option<&str>,
) -> Result<Vec<Reported>> {
    let is_applied = |id: TaskId, token: &str| applied.contains(&(id, token.to_string()));
    let refused: Vec<TaskId> = ids
        .iter()
        .zip(tokens)
        .filter(|(id, token)| !is_applied(**id, token))
        .map(|(id, _)| *id)
        .collect();
    let visible: BTreeSet<TaskId> = if refused.is_empty() {
        BTreeSet::new()
    } else {
        client
            .query(
                "SELECT id FROM tasks WHERE id = ANY($1) AND ($2::text IS NULL OR tenant = $2)",
                &[&refused, &tenant],
            )
            .await
            .map_err(ctx("could not look up refused tasks"))?
            .iter()
            .map(|row| get::<TaskId>(row, "id"))
            .collect::<Result<_>>()?
    };
    Ok(ids
        .iter()
        .zip(tokens)
        .map(|(&id, token)| {
            if is_applied(id, token) {
                Reported::applied(id)
            } else if visible.contains(&id) {
                Reported::not_current(id)
            } else {
                Reported::not_found(id)
            }
        })
        .collect())
}

pub(crate) async fn task_complete(
    conn: &Object,
    p: &TaskComplete,
) -> Result<(Vec<Reported>, JobsToFinish)> {
    if p.items.is_empty() {
        return Ok((Vec::new(), JobsToFinish::new()));
    }
    let ids: Vec<TaskId> = p.items.iter().map(|c| c.task_id).collect();
    let tokens: Vec<&str> = p.items.iter().map(|c| c.lease_token.as_str()).collect();
    let exit_codes: Vec<Option<i32>> = p.items.iter().map(|c| c.exit_code).collect();
    let results_json: Vec<Option<&serde_json::Value>> =
        p.items.iter().map(|c| c.result.as_ref()).collect();
    let tails: Vec<&str> = p.items.iter().map(|c| c.log_tail.as_str()).collect();
    // One statement: the task moves to succeeded only if the lease is current, and its
    // attempt ends in the same snapshot.
    let done = conn
            .query(
                "WITH i AS (
                    SELECT * FROM unnest($1::bigint[], $2::text[], $3::int4[], $4::jsonb[], $5::text[])
                        AS i(id, token, exit_code, result, log_tail)
                 ), done AS (
                    UPDATE tasks t
                    SET state = 'succeeded', finished_at = $6, exit_code = i.exit_code,
                        result = i.result, lease_token = NULL, lease_worker = NULL,
                        lease_expires_at = NULL
                    FROM i WHERE t.id = i.id AND t.state = 'leased' AND t.lease_token = i.token
                      AND ($7::text IS NULL OR t.tenant = $7)
                    RETURNING t.id, t.attempt, t.job_id, i.token
                 ), ended AS (
                    UPDATE attempts a
                    SET ended_at = $6, outcome = 'succeeded', exit_code = i.exit_code,
                        log_tail = i.log_tail
                    FROM done d JOIN i ON i.id = d.id
                    WHERE a.task_id = d.id AND a.attempt = d.attempt
                 )
                 SELECT id, token, job_id FROM done",
                &[
                &ids,
                &tokens,
                &exit_codes,
                &results_json,
                &tails,
                &p.now,
                &p.tenant,
            ],
            )
            .await
            .map_err(ctx("could not complete tasks"))?;
    let applied = done
        .iter()
        .map(|row| Ok((get::<TaskId>(row, "id")?, get::<String>(row, "token")?)))
        .collect::<Result<BTreeSet<_>>>()?;
    let jobs = done
        .iter()
        .map(|row| get::<String>(row, "job_id"))
        .collect::<Result<JobsToFinish>>()?;
    let answers = answers(conn, &ids, &tokens, &applied, p.tenant.as_deref()).await?;
    Ok((answers, jobs))
}

pub(crate) async fn task_fail(
    conn: &mut Object,
    p: &TaskFail,
) -> Result<(Vec<Reported>, JobsToFinish)> {
    if p.items.is_empty() {
        return Ok((Vec::new(), JobsToFinish::new()));
    }
    let ids: Vec<TaskId> = p.items.iter().map(|f| f.task_id).collect();
    let tokens: Vec<&str> = p.items.iter().map(|f| f.lease_token.as_str()).collect();
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not start recording failures"))?;
    let held = lock_leased(&tx, &ids, &tokens, p.tenant.as_deref()).await?;
    let mut endings = Vec::new();
    let mut applied = BTreeSet::new();
    for f in &p.items {
        let key = (f.task_id, f.lease_token.clone());
        let Some(h) = held.get(&key) else { continue };
        if !applied.insert(key) {
            continue;
        }
        let failed = Failed {
            error: f.error.clone(),
            exit_code: f.exit_code,
            retryable: f.retryable,
            log_tail: f.log_tail.clone(),
        };
        endings.push(h.failed(failed, AttemptOutcome::Failed, p.now, rand::random()));
    }
    apply(&tx, &endings, p.now).await?;
    let answers = answers(&tx, &ids, &tokens, &applied, p.tenant.as_deref()).await?;
    tx.commit()
        .await
        .map_err(ctx("could not commit failures"))?;
    Ok((answers, finishing(&endings)))
}

pub(crate) async fn task_release(
    conn: &mut Object,
    p: &TaskRelease,
) -> Result<(Vec<Reported>, Woken, JobsToFinish)> {
    if p.items.is_empty() {
        return Ok((Vec::new(), Woken::new(), JobsToFinish::new()));
    }
    let ids: Vec<TaskId> = p.items.iter().map(|r| r.task_id).collect();
    let tokens: Vec<&str> = p.items.iter().map(|r| r.lease_token.as_str()).collect();
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not start releasing leases"))?;
    let held = lock_leased(&tx, &ids, &tokens, p.tenant.as_deref()).await?;
    let mut endings = Vec::new();
    let mut applied = BTreeSet::new();
    let mut woken = BTreeSet::new();
    for r in &p.items {
        let key = (r.task_id, r.lease_token.clone());
        let Some(h) = held.get(&key) else { continue };
        if !applied.insert(key) {
            continue;
        }
        let end = h.released(r.reason, p.worker_pool.clone(), r.log_tail.clone(), p.now);
        if end.state == TaskState::Available {
            woken.insert((h.tenant.clone(), h.queue.clone()));
        }
        endings.push(end);
    }
    apply(&tx, &endings, p.now).await?;
    let answers = answers(&tx, &ids, &tokens, &applied, p.tenant.as_deref()).await?;
    tx.commit()
        .await
        .map_err(ctx("could not commit releases"))?;
    Ok((answers, woken, finishing(&endings)))
}

pub(crate) async fn lease_reap(conn: &mut Object, now: Timestamp) -> Result<u64> {
    let mut total = 0u64;
    let mut jobs = JobsToFinish::new();
    loop {
        let tx = conn
            .transaction()
            .await
            .map_err(ctx("could not start reaping leases"))?;
        // SKIP LOCKED: a lease being reported right now is left to its report.
        let expired = tx
            .query(
                "SELECT t.id, t.lease_token, t.tenant, t.queue, t.job_id, t.attempt, t.failures,
                            t.preemptions, t.max_attempts, t.lease_worker, q.backoff_base_ms,
                            q.backoff_max_ms, j.cancel_requested, t.burstable
                     FROM tasks t
                     JOIN queues q ON q.tenant = t.tenant AND q.name = t.queue
                     JOIN jobs j ON j.id = t.job_id
                     WHERE t.state = 'leased' AND t.lease_expires_at < $1
                     ORDER BY t.lease_expires_at, t.id
                     LIMIT $2
                     FOR UPDATE OF t SKIP LOCKED",
                &[&now, &REAP_BATCH],
            )
            .await
            .map_err(ctx("could not find expired leases"))?;
        let endings = expired
            .iter()
            .map(|row| Ok(held(row)?.expired(now, rand::random())))
            .collect::<Result<Vec<_>>>()?;
        apply(&tx, &endings, now).await?;
        tx.commit()
            .await
            .map_err(ctx("could not commit reaped leases"))?;
        jobs.extend(finishing(&endings));
        total += endings.len() as u64;
        if endings.is_empty() || i64::try_from(endings.len()).unwrap_or(i64::MAX) < REAP_BATCH {
            break;
        }
    }
    if total > 0 {
        tracing::info!(count = total, "reaped expired leases");
    }
    finish_jobs(&*conn, &jobs, now).await?;
    Ok(total)
}

pub(crate) async fn dead_list(conn: &Object, p: &DeadList) -> Result<Page<Task>> {
    let after = crate::postgres::rows::cursor::<TaskId>(p.cursor.as_deref())?;
    let limit = page_limit(p.limit);
    if p.labels_contradict() {
        return task_page(&[], limit);
    }
    let (label_pairs, label_keys) = p.label_params();
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN jobs j ON j.id = t.job_id
             WHERE t.state = 'dead' AND ($1::text IS NULL OR t.tenant = $1)
               AND ($2::text IS NULL OR t.queue = $2) AND ($3::bigint IS NULL OR t.id > $3)
               AND j.labels @> $5::jsonb AND j.labels ?& $6::text[]
             ORDER BY t.id LIMIT $4"
    );
    let found = conn
        .query(
            &sql,
            &[
                &p.tenant,
                &p.queue,
                &after,
                &limit,
                &label_pairs,
                &label_keys,
            ],
        )
        .await
        .map_err(ctx("could not list dead tasks"))?;
    task_page(&found, limit)
}

pub(crate) async fn dead_requeue(conn: &mut Object, p: &DeadRequeue) -> Result<(u64, Woken)> {
    if p.task_ids.is_empty() && p.queue.is_none() {
        return Ok((0, Woken::new()));
    }
    let by_ids = !p.task_ids.is_empty();
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not start requeueing"))?;
    // Their jobs are unfinished again, in the same transaction.
    let moved = tx
        .query(
            "WITH moved AS (
                 UPDATE tasks SET state = 'available', run_at = $5, failures = 0, finished_at = NULL
                 WHERE state = 'dead' AND ($1::text IS NULL OR tenant = $1)
                   AND (NOT $2 OR id = ANY($3)) AND ($4::text IS NULL OR queue = $4)
                 RETURNING tenant, queue, job_id
             ), reopened AS (
                 UPDATE jobs SET finished_at = NULL, finished_state = NULL
                 WHERE id IN (SELECT job_id FROM moved) AND finished_at IS NOT NULL
             )
             SELECT tenant, queue FROM moved",
            &[&p.tenant, &by_ids, &p.task_ids, &p.queue, &p.now],
        )
        .await
        .map_err(ctx("could not requeue dead tasks"))?;
    let woken = moved
        .iter()
        .map(|row| Ok((get::<String>(row, "tenant")?, get::<String>(row, "queue")?)))
        .collect::<Result<Woken>>()?;
    tx.commit()
        .await
        .map_err(ctx("could not commit the requeue"))?;
    Ok((moved.len() as u64, woken))
}
