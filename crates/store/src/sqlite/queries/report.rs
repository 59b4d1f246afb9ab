//! Reports on leases (complete, fail, release), the lease reaper and dead letters.
//!
//! Every transition names the state the row must be in and, for leased work, the lease token,
//! so a report on a lease that is no longer current changes nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::api::{Page, ReleaseReason};
use spillway_core::model::Task;
use spillway_core::retry::{FailureDecision, decide_failure};
use spillway_core::{Result, TaskId, Timestamp};

use super::jobs::{finish_if_done, reopen};
use super::tasks::page_of;
use crate::sqlite::rows::{TASK_COLS, db, micros, page_size, task_cursor, task_row, to_json};
use crate::{DeadList, DeadRequeue, Reported, TaskComplete, TaskFail, TaskRelease, Woken};

/// Close the attempt a lease opened.
#[allow(clippy::too_many_arguments)]
fn end_attempt(
    conn: &Connection,
    task_id: TaskId,
    attempt: u32,
    outcome: &str,
    exit_code: Option<i32>,
    error: Option<&str>,
    log_tail: &str,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE attempts SET ended_at = ?3, outcome = ?4, exit_code = ?5, error = ?6, log_tail = ?7
         WHERE task_id = ?1 AND attempt = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![
            task_id,
            attempt,
            micros(now),
            outcome,
            exit_code,
            error,
            log_tail
        ])
    })
    .map_err(db("close an attempt"))?;
    Ok(())
}

pub(crate) fn task_complete(conn: &Connection, p: &TaskComplete) -> Result<Vec<Reported>> {
    // Read, then update by id: only the writer changes rows, and a plain UPDATE (no
    // RETURNING) avoids a statement journal per row.
    let mut check = conn
        .prepare_cached(
            "SELECT job_id, attempt, state = 'leased' AND lease_token IS ?2 FROM tasks
             WHERE id = ?1 AND (?3 IS NULL OR tenant = ?3)",
        )
        .map_err(db("prepare the completion"))?;
    let mut stmt = conn
        .prepare_cached(
            "UPDATE tasks SET state = 'succeeded', exit_code = ?2, result = ?3, finished_at = ?4,
                              lease_token = NULL, lease_worker = NULL, lease_expires_at = NULL
             WHERE id = ?1",
        )
        .map_err(db("prepare the completion"))?;
    let mut results = Vec::with_capacity(p.items.len());
    let mut jobs = BTreeSet::new();
    for item in &p.items {
        let result = item.result.as_ref().map(to_json).transpose()?;
        let row: Option<(String, u32, bool)> = check
            .query_row(params![item.task_id, item.lease_token, p.tenant], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(db("check a lease"))?;
        let (job_id, attempt) = match row {
            None => {
                results.push(Reported::not_found(item.task_id));
                continue;
            }
            Some((_, _, false)) => {
                results.push(Reported::not_current(item.task_id));
                continue;
            }
            Some((job_id, attempt, true)) => (job_id, attempt),
        };
        stmt.execute(params![item.task_id, item.exit_code, result, micros(p.now)])
            .map_err(db("complete a task"))?;
        end_attempt(
            conn,
            item.task_id,
            attempt,
            "succeeded",
            item.exit_code,
            None,
            &item.log_tail,
            p.now,
        )?;
        jobs.insert(job_id);
        results.push(Reported::applied(item.task_id));
    }
    for job in &jobs {
        finish_if_done(conn, job, p.now)?;
    }
    Ok(results)
}

/// What the caller of [`fail_leased`] reports.
struct FailReport<'a> {
    outcome: &'a str,
    error: &'a str,
    exit_code: Option<i32>,
    retryable: bool,
    log_tail: &'a str,
}

/// Fail the leased task `id` (if `token` is its lease, or any lease when `None`, and it is a
/// task of `tenant` unless that is `None`): retrying
/// with backoff while attempts remain, else dead; cancelled if its job asked for that.
fn fail_leased(
    conn: &Connection,
    id: TaskId,
    token: Option<&str>,
    tenant: Option<&str>,
    r: &FailReport<'_>,
    now: Timestamp,
) -> Result<Reported> {
    // (lease current, failures, max_attempts, attempt, job_id, cancel_requested, backoff ms).
    type Row = (bool, u32, u32, u32, String, bool, i64, i64);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT t.state = 'leased' AND (?2 IS NULL OR t.lease_token IS ?2),
                    t.failures, t.max_attempts, t.attempt, t.job_id, t.cancel_requested,
                    q.backoff_base_ms, q.backoff_max_ms
             FROM tasks t JOIN queues q ON q.tenant = t.tenant AND q.name = t.queue
             WHERE t.id = ?1 AND (?3 IS NULL OR t.tenant = ?3)",
        )
        .and_then(|mut s| {
            s.query_row(params![id, token, tenant], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .optional()
        })
        .map_err(db("read a leased task"))?;
    let (failures, max_attempts, attempt, job_id, cancel, base_ms, max_ms) = match row {
        None => return Ok(Reported::not_found(id)),
        Some((false, ..)) => return Ok(Reported::not_current(id)),
        Some((true, f, m, a, j, c, b, x)) => (f, m, a, j, c, b, x),
    };
    let failures = failures + 1;
    let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let decision = decide_failure(
        failures,
        max_attempts,
        r.retryable,
        ms(base_ms),
        ms(max_ms),
        now,
        rand::random::<f64>(),
    );
    let (state, run_at, finished) = match decision {
        _ if cancel => ("cancelled", None, Some(micros(now))),
        FailureDecision::Retry { at } => ("retrying", Some(micros(at)), None),
        FailureDecision::Dead => ("dead", None, Some(micros(now))),
    };
    conn.prepare_cached(
        "UPDATE tasks SET state = ?2, failures = ?3, run_at = coalesce(?4, run_at),
                          finished_at = ?5, exit_code = ?6, last_error = ?7,
                          lease_token = NULL, lease_worker = NULL, lease_expires_at = NULL
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            state,
            failures,
            run_at,
            finished,
            r.exit_code,
            r.error
        ])
    })
    .map_err(db("fail a task"))?;
    end_attempt(
        conn,
        id,
        attempt,
        r.outcome,
        r.exit_code,
        Some(r.error),
        r.log_tail,
        now,
    )?;
    if finished.is_some() {
        finish_if_done(conn, &job_id, now)?;
    }
    Ok(Reported::applied(id))
}

pub(crate) fn task_fail(conn: &Connection, p: &TaskFail) -> Result<Vec<Reported>> {
    let mut results = Vec::with_capacity(p.items.len());
    for item in &p.items {
        let report = FailReport {
            outcome: "failed",
            error: &item.error,
            exit_code: item.exit_code,
            retryable: item.retryable,
            log_tail: &item.log_tail,
        };
        results.push(fail_leased(
            conn,
            item.task_id,
            Some(&item.lease_token),
            p.tenant.as_deref(),
            &report,
            p.now,
        )?);
    }
    Ok(results)
}

/// Hand leases back. Returns the results and the (tenant, queue) pairs that got work back.
pub(crate) fn task_release(conn: &Connection, p: &TaskRelease) -> Result<(Vec<Reported>, Woken)> {
    let mut read = conn
        .prepare_cached(
            "SELECT state = 'leased' AND lease_token IS ?2, attempt, job_id, tenant, queue,
                    cancel_requested
             FROM tasks WHERE id = ?1 AND (?3 IS NULL OR tenant = ?3)",
        )
        .map_err(db("prepare the release"))?;
    let mut results = Vec::with_capacity(p.items.len());
    let mut woken = BTreeSet::new();
    for item in &p.items {
        let row: Option<(bool, u32, String, String, String, bool)> = read
            .query_row(params![item.task_id, item.lease_token, p.tenant], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()
            .map_err(db("read a leased task"))?;
        let (attempt, job_id, tenant, queue, cancel) = match row {
            None => {
                results.push(Reported::not_found(item.task_id));
                continue;
            }
            Some((false, ..)) => {
                results.push(Reported::not_current(item.task_id));
                continue;
            }
            Some((true, a, j, t, q, c)) => (a, j, t, q, c),
        };
        let cancelled = cancel || item.reason == ReleaseReason::Cancelled;
        if cancelled {
            conn.prepare_cached(
                "UPDATE tasks SET state = 'cancelled', finished_at = ?2,
                                  lease_token = NULL, lease_worker = NULL, lease_expires_at = NULL
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![item.task_id, micros(p.now)]))
            .map_err(db("cancel a released task"))?;
        } else {
            // The task keeps its run_at, so it goes back to the front of its queue.
            conn.prepare_cached(
                "UPDATE tasks SET state = 'available', preemptions = preemptions + 1,
                                  avoid_pool = coalesce(?2, avoid_pool),
                                  lease_token = NULL, lease_worker = NULL, lease_expires_at = NULL
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![item.task_id, p.worker_pool]))
            .map_err(db("requeue a preempted task"))?;
            woken.insert((tenant, queue));
        }
        let outcome = if cancelled { "cancelled" } else { "preempted" };
        end_attempt(
            conn,
            item.task_id,
            attempt,
            outcome,
            None,
            None,
            &item.log_tail,
            p.now,
        )?;
        if cancelled {
            finish_if_done(conn, &job_id, p.now)?;
        }
        results.push(Reported::applied(item.task_id));
    }
    Ok((results, woken))
}

pub(crate) fn lease_reap(conn: &Connection, now: Timestamp) -> Result<u64> {
    let expired: Vec<(TaskId, String)> = conn
        .prepare_cached(
            "SELECT id, lease_worker FROM tasks WHERE state = 'leased' AND lease_expires_at < ?1",
        )
        .and_then(|mut s| {
            s.query_map([micros(now)], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            })?
            .collect()
        })
        .map_err(db("find expired leases"))?;
    let mut n = 0;
    for (id, worker) in expired {
        let error = format!("lease expired: worker {worker:?} stopped sending heartbeats");
        let report = FailReport {
            outcome: "lease_expired",
            error: &error,
            exit_code: None,
            retryable: true,
            log_tail: "",
        };
        if fail_leased(conn, id, None, None, &report, now)?.ok() {
            n += 1;
        }
    }
    if n > 0 {
        tracing::info!(expired = n, "reaped expired leases");
    }
    Ok(n)
}

pub(crate) fn dead_list(conn: &Connection, p: &DeadList) -> Result<Page<Task>> {
    let limit = page_size(p.limit);
    let after = task_cursor(p.cursor.as_deref())?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLS} FROM tasks
             WHERE state = 'dead' AND id > ?1 AND (?2 IS NULL OR tenant = ?2)
               AND (?3 IS NULL OR queue = ?3)
             ORDER BY id LIMIT ?4"
        ))
        .map_err(db("list dead tasks"))?;
    let items = stmt
        .query_map(params![after, p.tenant, p.queue, limit + 1], task_row)
        .map_err(db("list dead tasks"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db("list dead tasks"))?;
    Ok(page_of(items, limit as usize))
}

/// Requeue dead tasks. Returns how many and the (tenant, queue) pairs that got work back.
pub(crate) fn dead_requeue(conn: &Connection, p: &DeadRequeue) -> Result<(u64, Woken)> {
    const SET: &str =
        "UPDATE tasks SET state = 'available', failures = 0, finished_at = NULL, run_at = ?1";
    let mut changed: Vec<(String, String, String)> = Vec::new();
    let collect = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    if !p.task_ids.is_empty() {
        let mut stmt = conn
            .prepare_cached(&format!(
                "{SET} WHERE id = ?2 AND state = 'dead' AND (?3 IS NULL OR tenant = ?3)
                 RETURNING job_id, tenant, queue"
            ))
            .map_err(db("requeue a dead task"))?;
        for id in &p.task_ids {
            if let Some(row) = stmt
                .query_row(params![micros(p.now), id, p.tenant], collect)
                .optional()
                .map_err(db("requeue a dead task"))?
            {
                changed.push(row);
            }
        }
    }
    if let Some(queue) = &p.queue {
        let mut stmt = conn
            .prepare_cached(&format!(
                "{SET} WHERE state = 'dead' AND queue = ?2 AND (?3 IS NULL OR tenant = ?3)
                 RETURNING job_id, tenant, queue"
            ))
            .map_err(db("requeue a queue's dead tasks"))?;
        let rows = stmt
            .query_map(params![micros(p.now), queue, p.tenant], collect)
            .map_err(db("requeue a queue's dead tasks"))?;
        for row in rows {
            changed.push(row.map_err(db("requeue a queue's dead tasks"))?);
        }
    }
    let jobs: BTreeSet<String> = changed.iter().map(|c| c.0.clone()).collect();
    reopen(conn, &jobs)?;
    let woken = changed.iter().map(|c| (c.1.clone(), c.2.clone())).collect();
    Ok((changed.len() as u64, woken))
}
