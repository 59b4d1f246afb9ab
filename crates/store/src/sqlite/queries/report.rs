//! Reports on leases (complete, fail, release), the lease reaper and dead letters.
//!
//! Every transition names the state the row must be in and, for leased work, the lease token
//! and the caller's tenant, so a report on a lease that is no longer current (or not the
//! caller's) changes nothing. Fail, release and reap read the leased rows, work out each
//! task's [`Ending`] with the functions both backends share (`crate::ending`), then write
//! them all.

use std::collections::BTreeSet;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::api::Page;
use spillway_core::model::Task;
use spillway_core::state::{AttemptOutcome, TaskState};
use spillway_core::{Result, TaskId, Timestamp};

use super::counts::{CountChanges, RuntimeChanges};
use super::jobs::{finish_if_done, reopen};
use super::tasks::page_of;
use crate::ending::{Ending, Failed, Held};
use crate::sqlite::rows::{TASK_COLS, db, micros, page_size, task_cursor, task_row, to_json};
use crate::{DeadList, DeadRequeue, Reported, TaskComplete, TaskFail, TaskRelease, Woken};

/// Close the attempt a lease opened.
#[allow(clippy::too_many_arguments)]
fn end_attempt(
    conn: &Connection,
    task_id: TaskId,
    attempt: i32,
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

/// The answer to a completion that matched no current lease of the caller's tenant: not
/// current when the task is the caller's, else not found. Looked up only for refusals, so
/// an applied completion reads its row once.
fn refused(conn: &Connection, id: TaskId, tenant: Option<&str>) -> Result<Reported> {
    let visible = conn
        .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)")
        .and_then(|mut s| s.exists(params![id, tenant]))
        .map_err(db("look up a refused task"))?;
    Ok(if visible {
        Reported::not_current(id)
    } else {
        Reported::not_found(id)
    })
}

pub(crate) fn task_complete(conn: &Connection, p: &TaskComplete) -> Result<Vec<Reported>> {
    // Read, then update by id: only the writer changes rows, and a plain UPDATE (no
    // RETURNING) avoids a statement journal per row.
    let mut check = conn
        .prepare_cached(
            "SELECT t.job_id, t.attempt, t.tenant, t.queue, t.burstable, a.started_at
             FROM tasks t JOIN attempts a ON a.task_id = t.id AND a.attempt = t.attempt
             WHERE t.id = ?1 AND t.state = 'leased' AND t.lease_token = ?2
               AND (?3 IS NULL OR t.tenant = ?3)",
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
    let mut counted = CountChanges::default();
    let mut runtimes = RuntimeChanges::default();
    for item in &p.items {
        let result = item.result.as_ref().map(to_json).transpose()?;
        let row: Option<(String, i32, String, String, bool, i64)> = check
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
            .map_err(db("check a lease"))?;
        let Some((job_id, attempt, tenant, queue, burstable, started_at)) = row else {
            results.push(refused(conn, item.task_id, p.tenant.as_deref())?);
            continue;
        };
        stmt.execute(params![item.task_id, item.exit_code, result, micros(p.now)])
            .map_err(db("complete a task"))?;
        let done = TaskState::Succeeded;
        counted.moved(&tenant, &queue, TaskState::Leased, done, burstable, 1);
        runtimes.add(&tenant, &queue, micros(p.now) - started_at);
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
    counted.apply(conn)?;
    runtimes.apply(conn)?;
    for job in &jobs {
        finish_if_done(conn, job, p.now)?;
    }
    Ok(results)
}

/// The columns [`held`] reads, of `tasks t JOIN queues q`.
const HELD_COLS: &str = "t.id, t.lease_token, t.tenant, t.queue, t.job_id, t.attempt, t.failures,
     t.preemptions, t.max_attempts, t.lease_worker, q.backoff_base_ms, q.backoff_max_ms,
     t.cancel_requested, t.burstable";

/// The reported leases, each read by task id in the caller's tenant: the ones still current
/// (`(id, token)` first seen; a repeat is answered as the first was and ends nothing twice),
/// and one answer per item, in order.
fn read_held<'a>(
    conn: &Connection,
    items: impl Iterator<Item = (TaskId, &'a str)>,
    tenant: Option<&str>,
) -> Result<(Vec<Option<Held>>, Vec<Reported>)> {
    let mut read = conn
        .prepare_cached(&format!(
            "SELECT t.state = 'leased' AND t.lease_token IS ?2, {HELD_COLS}
             FROM tasks t JOIN queues q ON q.tenant = t.tenant AND q.name = t.queue
             WHERE t.id = ?1 AND (?3 IS NULL OR t.tenant = ?3)"
        ))
        .map_err(db("prepare reading leased tasks"))?;
    let mut seen = BTreeSet::new();
    let (mut held_rows, mut answers) = (Vec::new(), Vec::new());
    for (id, token) in items {
        let row: Option<Option<Held>> = read
            .query_row(params![id, token, tenant], |r| {
                if r.get::<_, bool>(0)? {
                    // The columns after the flag are HELD_COLS.
                    held(r, 1).map(Some)
                } else {
                    Ok(None)
                }
            })
            .optional()
            .map_err(db("read a leased task"))?;
        answers.push(match &row {
            None => Reported::not_found(id),
            Some(None) => Reported::not_current(id),
            Some(Some(_)) => Reported::applied(id),
        });
        held_rows.push(row.flatten().filter(|_| seen.insert((id, token))));
    }
    Ok((held_rows, answers))
}

/// A leased task as read with [`HELD_COLS`], whose first column is number `at`.
fn held(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Held> {
    let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    Ok(Held {
        id: r.get(at)?,
        token: r.get(at + 1)?,
        tenant: r.get(at + 2)?,
        queue: r.get(at + 3)?,
        job_id: r.get(at + 4)?,
        attempt: r.get(at + 5)?,
        failures: r.get(at + 6)?,
        preemptions: r.get(at + 7)?,
        max_attempts: r.get(at + 8)?,
        worker: r.get(at + 9)?,
        backoff_base: ms(r.get(at + 10)?),
        backoff_max: ms(r.get(at + 11)?),
        cancel_requested: r.get(at + 12)?,
        burstable: r.get(at + 13)?,
    })
}

/// Write how each attempt ends: the task's new state with its lease cleared, the attempt's
/// outcome, then the end of every job whose last task finished.
fn apply(conn: &Connection, endings: &[Ending], now: Timestamp) -> Result<()> {
    let mut task = conn
        .prepare_cached(
            "UPDATE tasks SET state = ?2, failures = ?3, preemptions = ?4,
                              run_at = coalesce(?5, run_at), finished_at = ?6, exit_code = ?7,
                              last_error = coalesce(?8, last_error),
                              avoid_pool = coalesce(?9, avoid_pool),
                              lease_token = NULL, lease_worker = NULL, lease_expires_at = NULL
             WHERE id = ?1",
        )
        .map_err(db("prepare ending attempts"))?;
    let mut counted = CountChanges::default();
    let mut jobs = BTreeSet::new();
    for e in endings {
        // Every ending's task is leased until this write.
        counted.moved(
            &e.tenant,
            &e.queue,
            TaskState::Leased,
            e.state,
            e.burstable,
            1,
        );
        task.execute(params![
            e.id,
            e.state.as_str(),
            e.failures,
            e.preemptions,
            e.run_at.map(micros),
            e.finished_at.map(micros),
            e.exit_code,
            e.error,
            e.avoid_pool,
        ])
        .map_err(db("end a task's attempt"))?;
        end_attempt(
            conn,
            e.id,
            e.attempt,
            e.outcome.as_str(),
            e.exit_code,
            e.error.as_deref(),
            &e.log_tail,
            now,
        )?;
        if e.finished() {
            jobs.insert(e.job_id.as_str());
        }
    }
    counted.apply(conn)?;
    for job in jobs {
        finish_if_done(conn, job, now)?;
    }
    Ok(())
}

pub(crate) fn task_fail(conn: &Connection, p: &TaskFail) -> Result<Vec<Reported>> {
    let items = p.items.iter().map(|f| (f.task_id, f.lease_token.as_str()));
    let (held, answers) = read_held(conn, items, p.tenant.as_deref())?;
    let endings: Vec<Ending> = p
        .items
        .iter()
        .zip(held)
        .filter_map(|(f, h)| {
            let failed = Failed {
                error: f.error.clone(),
                exit_code: f.exit_code,
                retryable: f.retryable,
                log_tail: f.log_tail.clone(),
            };
            h.map(|h| h.failed(failed, AttemptOutcome::Failed, p.now, rand::random()))
        })
        .collect();
    apply(conn, &endings, p.now)?;
    Ok(answers)
}

/// Hand leases back. Returns the results and the (tenant, queue) pairs that got work back.
pub(crate) fn task_release(conn: &Connection, p: &TaskRelease) -> Result<(Vec<Reported>, Woken)> {
    let items = p.items.iter().map(|r| (r.task_id, r.lease_token.as_str()));
    let (held, answers) = read_held(conn, items, p.tenant.as_deref())?;
    let mut woken = BTreeSet::new();
    let mut endings = Vec::with_capacity(p.items.len());
    for (r, h) in p.items.iter().zip(held) {
        let Some(h) = h else { continue };
        let end = h.released(r.reason, p.worker_pool.clone(), r.log_tail.clone(), p.now);
        if end.state == TaskState::Available {
            woken.insert((h.tenant, h.queue));
        }
        endings.push(end);
    }
    apply(conn, &endings, p.now)?;
    Ok((answers, woken))
}

/// Fail up to `limit` leases that expired before `now`, soonest expired first; returns how many.
pub(crate) fn lease_reap(conn: &Connection, now: Timestamp, limit: u32) -> Result<u64> {
    let endings: Vec<Ending> = conn
        .prepare_cached(&format!(
            "SELECT {HELD_COLS}
             FROM tasks t JOIN queues q ON q.tenant = t.tenant AND q.name = t.queue
             WHERE t.state = 'leased' AND t.lease_expires_at < ?1
             ORDER BY t.lease_expires_at LIMIT ?2"
        ))
        .and_then(|mut s| {
            s.query_map(params![micros(now), i64::from(limit)], |r| held(r, 0))?
                .map(|h| h.map(|h| h.expired(now, rand::random())))
                .collect()
        })
        .map_err(db("find expired leases"))?;
    apply(conn, &endings, now)?;
    Ok(endings.len() as u64)
}

pub(crate) fn dead_list(conn: &Connection, p: &DeadList) -> Result<Page<Task>> {
    let limit = page_size(p.limit);
    let after = task_cursor(p.cursor.as_deref())?;
    if p.labels_contradict() {
        return Ok(page_of(Vec::new(), limit as usize));
    }
    // The job's labels, as `job_list` filters them; no look-up when there are no conditions.
    let (pairs, keys) = p.label_params();
    let any_labels = !p.labels.is_empty();
    let pairs = pairs.to_string();
    let keys = serde_json::Value::from(keys).to_string();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLS} FROM tasks
             WHERE state = 'dead' AND id > ?1 AND (?2 IS NULL OR tenant = ?2)
               AND (?3 IS NULL OR queue = ?3)
               AND (NOT ?5 OR EXISTS (
                   SELECT 1 FROM jobs WHERE jobs.key = tasks.job_key
                     AND NOT EXISTS (SELECT 1 FROM json_each(?6) want
                                     WHERE json_extract(jobs.labels, '$.\"' || want.key || '\"')
                                           IS NOT want.value)
                     AND NOT EXISTS (SELECT 1 FROM json_each(?7) want
                                     WHERE json_type(jobs.labels, '$.\"' || want.value || '\"') IS NULL)))
             ORDER BY id LIMIT ?4"
        ))
        .map_err(db("list dead tasks"))?;
    let items = stmt
        .query_map(
            params![after, p.tenant, p.queue, limit + 1, any_labels, pairs, keys],
            task_row,
        )
        .map_err(db("list dead tasks"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db("list dead tasks"))?;
    Ok(page_of(items, limit as usize))
}

/// Requeue dead tasks. Returns how many and the (tenant, queue) pairs that got work back.
pub(crate) fn dead_requeue(conn: &Connection, p: &DeadRequeue) -> Result<(u64, Woken)> {
    const SET: &str =
        "UPDATE tasks SET state = 'available', failures = 0, finished_at = NULL, run_at = ?1";
    let mut changed: Vec<(String, String, String, bool)> = Vec::new();
    let collect = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
    if !p.task_ids.is_empty() {
        let mut stmt = conn
            .prepare_cached(&format!(
                "{SET} WHERE id = ?2 AND state = 'dead' AND (?3 IS NULL OR tenant = ?3)
                 RETURNING job_id, tenant, queue, burstable"
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
                 RETURNING job_id, tenant, queue, burstable"
            ))
            .map_err(db("requeue a queue's dead tasks"))?;
        let rows = stmt
            .query_map(params![micros(p.now), queue, p.tenant], collect)
            .map_err(db("requeue a queue's dead tasks"))?;
        for row in rows {
            changed.push(row.map_err(db("requeue a queue's dead tasks"))?);
        }
    }
    let mut counted = CountChanges::default();
    for (_, tenant, queue, burstable) in &changed {
        counted.moved(
            tenant,
            queue,
            TaskState::Dead,
            TaskState::Available,
            *burstable,
            1,
        );
    }
    counted.apply(conn)?;
    let jobs: BTreeSet<String> = changed.iter().map(|c| c.0.clone()).collect();
    reopen(conn, &jobs)?;
    let woken = changed.iter().map(|c| (c.1.clone(), c.2.clone())).collect();
    Ok((changed.len() as u64, woken))
}
