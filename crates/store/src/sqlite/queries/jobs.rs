//! Jobs: submit, read, list, cancel, retry, input deletion and retention.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::api::Page;
use spillway_core::model::Job;
use spillway_core::state::{StateCounts, TaskState};
use spillway_core::{Error, JobId, Result, Timestamp};

use super::counts::CountChanges;
use crate::sqlite::rows::{
    JOB_COLS, UNFINISHED, WAITING, db, is_unique_violation, job_row, micros, page_size, to_json,
    with_counts,
};
use crate::{JobList, JobSubmit};

/// Insert a job and its tasks, or return the job that already has its idempotency key.
pub(crate) fn job_submit(conn: &Connection, p: &JobSubmit) -> Result<(Job, bool)> {
    if let Some(key) = &p.idempotency_key {
        let earlier: Option<String> = conn
            .prepare_cached("SELECT id FROM jobs WHERE tenant = ?1 AND idempotency_key = ?2")
            .and_then(|mut s| s.query_row([&p.tenant, key], |r| r.get(0)).optional())
            .map_err(db("look up an idempotency key"))?;
        if let Some(id) = earlier {
            return Ok((job_get(conn, Some(&p.tenant), &id)?, false));
        }
    }
    let max_attempts: u32 = conn
        .prepare_cached("SELECT max_attempts FROM queues WHERE tenant = ?1 AND name = ?2")
        .and_then(|mut s| s.query_row([&p.tenant, &p.queue], |r| r.get(0)).optional())
        .map_err(db("read a queue"))?
        .ok_or_else(|| {
            Error::not_found(format!(
                "queue {:?} not found in tenant {:?}: create it before submitting to it",
                p.queue, p.tenant
            ))
        })?;
    let task_count =
        u32::try_from(p.payloads.len()).map_err(|_| Error::invalid("too many tasks in one job"))?;
    conn.prepare_cached(
        "INSERT INTO jobs (id, tenant, queue, name, labels, spec, priority, burstable,
                           idempotency_key, delete_inputs_on_success, has_inputs, task_count,
                           created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut s| {
        s.execute(params![
            p.id,
            p.tenant,
            p.queue,
            p.name,
            to_json(&p.labels).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            to_json(&p.spec).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            p.priority,
            p.burstable,
            p.idempotency_key,
            p.delete_inputs_on_success,
            p.has_inputs,
            task_count,
            micros(p.now)
        ])
    })
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!("job {:?} already exists", p.id))
        } else {
            db("insert a job")(e)
        }
    })?;

    // Tasks point at their job by its integer key: the per-job index stays small and cheap.
    let job_key = conn.last_insert_rowid();
    let state = if p.run_at > p.now {
        TaskState::Scheduled
    } else {
        TaskState::Available
    };
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO tasks (job_id, job_key, tenant, queue, idx, state, priority, burstable,
                                run_at, max_attempts, payload, created_at)
             VALUES (?1, ?12, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(db("prepare the task insert"))?;
    for (index, payload) in p.payloads.iter().enumerate() {
        let payload = payload.as_ref().map(to_json).transpose()?;
        insert
            .execute(params![
                p.id,
                p.tenant,
                p.queue,
                index as i64,
                state.as_str(),
                p.priority,
                p.burstable,
                micros(p.run_at),
                max_attempts,
                payload,
                micros(p.now),
                job_key
            ])
            .map_err(db("insert a task"))?;
    }
    let mut counted = CountChanges::default();
    counted.add(
        &p.tenant,
        &p.queue,
        state,
        p.burstable,
        i64::from(task_count),
    );
    counted.apply(conn)?;
    let mut counts = StateCounts::default();
    counts.add(state, u64::from(task_count));
    let job = Job {
        id: p.id.clone(),
        tenant: p.tenant.clone(),
        queue: p.queue.clone(),
        name: p.name.clone(),
        labels: p.labels.clone(),
        spec: p.spec.clone(),
        priority: p.priority,
        burstable: p.burstable,
        idempotency_key: p.idempotency_key.clone(),
        delete_inputs_on_success: p.delete_inputs_on_success,
        has_inputs: p.has_inputs,
        task_count,
        state: spillway_core::state::JobState::derive(&counts, false),
        counts,
        cancel_requested: false,
        created_at: p.now,
        finished_at: None,
    };
    Ok((job, true))
}

/// One job with its counts, if `tenant` (None: any) may see it.
pub(crate) fn job_get(conn: &Connection, tenant: Option<&str>, id: &str) -> Result<Job> {
    let job = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
        ))
        .and_then(|mut s| s.query_row(params![id, tenant], job_row).optional())
        .map_err(db("read a job"))?
        .ok_or_else(|| Error::not_found(format!("job {id:?} not found")))?;
    with_counts(conn, job)
}

/// Jobs newest first. With a state filter only the jobs that can be in it are read: finished
/// ones of that state (an index range), or for queued and running the unfinished ones; each
/// job's state is still derived from its counts and checked, scanning on until the page is
/// full.
pub(crate) fn job_list(conn: &Connection, p: &JobList) -> Result<Page<Job>> {
    let limit = page_size(p.limit) as usize;
    if p.labels_contradict() {
        return Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        });
    }
    // Every `{key: value}` pair must be among the job's labels and every bare key present
    // (label keys are validated, so they can be quoted into a JSON path as they are).
    let (pairs, keys) = p.label_params();
    let pairs = pairs.to_string();
    let keys = serde_json::Value::from(keys).to_string();
    let narrowed = p.state_condition();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM jobs
             WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR queue = ?2)
               AND NOT EXISTS (SELECT 1 FROM json_each(?3) want
                               WHERE json_extract(jobs.labels, '$.\"' || want.key || '\"')
                                     IS NOT want.value)
               AND NOT EXISTS (SELECT 1 FROM json_each(?4) want
                               WHERE json_type(jobs.labels, '$.\"' || want.value || '\"') IS NULL)
               AND (?5 IS NULL OR id < ?5) {narrowed}
             ORDER BY id DESC LIMIT ?6"
        ))
        .map_err(db("list jobs"))?;
    let chunk = limit + 1;
    let mut scan_from = p.cursor.clone();
    let mut found = Vec::new();
    loop {
        let rows = stmt
            .query_map(
                params![p.tenant, p.queue, pairs, keys, scan_from, chunk as i64],
                job_row,
            )
            .map_err(db("list jobs"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db("list jobs"))?;
        let exhausted = rows.len() < chunk;
        scan_from = rows.last().map(|j| j.id.clone()).or(scan_from);
        for job in rows {
            let job = with_counts(conn, job)?;
            if p.state.is_none_or(|s| s == job.state) {
                found.push(job);
            }
        }
        if found.len() > limit || exhausted {
            break;
        }
    }
    let next_cursor = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Page {
        items: found,
        next_cursor,
    })
}

/// A finished job's state in SQL, for `jobs` in scope: derived as [`JobState::derive`] derives
/// it from the counts of a job none of whose tasks is unfinished.
///
/// [`JobState::derive`]: spillway_core::state::JobState::derive
pub(crate) const FINISHED_STATE: &str = "CASE
        WHEN jobs.cancel_requested
             AND EXISTS (SELECT 1 FROM tasks WHERE job_key = jobs.key AND state = 'cancelled')
            THEN 'cancelled'
        WHEN EXISTS (SELECT 1 FROM tasks WHERE job_key = jobs.key AND state = 'dead')
            THEN 'failed'
        WHEN EXISTS (SELECT 1 FROM tasks WHERE job_key = jobs.key AND state = 'cancelled')
            THEN 'cancelled'
        ELSE 'succeeded'
    END";

/// Set a job's `finished_at` and `finished_state` once none of its tasks is unfinished.
pub(crate) fn finish_if_done(conn: &Connection, job_id: &str, now: Timestamp) -> Result<()> {
    conn.prepare_cached(&format!(
        "UPDATE jobs SET finished_at = ?2, finished_state = {FINISHED_STATE}
         WHERE id = ?1 AND finished_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_key = jobs.key AND state IN {UNFINISHED})"
    ))
    .and_then(|mut s| s.execute(params![job_id, micros(now)]))
    .map_err(db("mark a job finished"))?;
    Ok(())
}

/// Mark jobs unfinished again after some of their tasks were requeued.
pub(crate) fn reopen(conn: &Connection, job_ids: &BTreeSet<String>) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("UPDATE jobs SET finished_at = NULL, finished_state = NULL WHERE id = ?1")
        .map_err(db("reopen a job"))?;
    for id in job_ids {
        stmt.execute([id]).map_err(db("reopen a job"))?;
    }
    Ok(())
}

pub(crate) fn job_cancel(
    conn: &Connection,
    tenant: Option<&str>,
    id: &str,
    now: Timestamp,
) -> Result<Job> {
    let job = job_get(conn, tenant, id)?;
    let mut counted = CountChanges::default();
    // The job's counts were just read on the writer: exactly the tasks the update moves.
    for state in TaskState::ALL.into_iter().filter(|s| s.is_waiting()) {
        let n = i64::try_from(job.counts.get(state)).unwrap_or(i64::MAX);
        counted.moved(
            &job.tenant,
            &job.queue,
            state,
            TaskState::Cancelled,
            job.burstable,
            n,
        );
    }
    conn.execute(
        &format!(
            "UPDATE tasks SET state = 'cancelled', finished_at = ?2
             WHERE job_key = (SELECT key FROM jobs WHERE id = ?1) AND {WAITING}"
        ),
        params![id, micros(now)],
    )
    .map_err(db("cancel a job's waiting tasks"))?;
    counted.apply(conn)?;
    conn.execute(
        "UPDATE tasks SET cancel_requested = 1 WHERE job_key = (SELECT key FROM jobs WHERE id = ?1) AND state = 'leased'",
        [id],
    )
    .map_err(db("flag a job's leased tasks"))?;
    conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1", [id])
        .map_err(db("cancel a job"))?;
    finish_if_done(conn, id, now)?;
    job_get(conn, tenant, id)
}

/// Requeue a job's dead and cancelled tasks; returns (how many, the job's queue).
pub(crate) fn job_retry(
    conn: &Connection,
    tenant: Option<&str>,
    id: &str,
    now: Timestamp,
) -> Result<(u64, Job)> {
    let job = job_get(conn, tenant, id)?;
    let mut counted = CountChanges::default();
    // The job's counts were just read on the writer: exactly the tasks the update moves.
    for state in [TaskState::Dead, TaskState::Cancelled] {
        let n = i64::try_from(job.counts.get(state)).unwrap_or(i64::MAX);
        counted.moved(
            &job.tenant,
            &job.queue,
            state,
            TaskState::Available,
            job.burstable,
            n,
        );
    }
    counted.apply(conn)?;
    let n = conn
        .execute(
            "UPDATE tasks SET state = 'available', failures = 0, finished_at = NULL,
                              cancel_requested = 0, run_at = ?2
             WHERE job_key = (SELECT key FROM jobs WHERE id = ?1) AND state IN ('dead', 'cancelled')",
            params![id, micros(now)],
        )
        .map_err(db("requeue a job's tasks"))?;
    conn.execute(
        "UPDATE jobs SET cancel_requested = 0,
                         finished_at = CASE WHEN ?2 > 0 THEN NULL ELSE finished_at END,
                         finished_state = CASE WHEN ?2 > 0 THEN NULL ELSE finished_state END
         WHERE id = ?1",
        params![id, n as i64],
    )
    .map_err(db("reopen a job"))?;
    Ok((n as u64, job))
}

pub(crate) fn job_inputs_to_delete(conn: &Connection, limit: u32) -> Result<Vec<(String, JobId)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT tenant, id FROM jobs
             WHERE finished_state = 'succeeded' AND delete_inputs_on_success = 1
               AND has_inputs = 1 AND inputs_deleted = 0
             ORDER BY finished_at LIMIT ?1",
        )
        .map_err(db("list jobs whose inputs to delete"))?;
    let rows = stmt
        .query_map([i64::from(limit)], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db("list jobs whose inputs to delete"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(db("list jobs whose inputs to delete"))
}

pub(crate) fn job_inputs_deleted(conn: &Connection, id: &str) -> Result<()> {
    let n = conn
        .execute("UPDATE jobs SET inputs_deleted = 1 WHERE id = ?1", [id])
        .map_err(db("record deleted inputs"))?;
    if n == 0 {
        return Err(Error::not_found(format!("job {id:?} not found")));
    }
    Ok(())
}

/// Jobs deleted by retention: (tenant, job id, whether it had inputs to delete).
pub(crate) type Expired = Vec<(String, JobId, bool)>;

/// One bounded step of retention: deletes at most `budget` tasks (with their attempts) of up
/// to `limit` jobs past their queue's retention, oldest finished first, and each job whose
/// tasks are all gone. Returns the deleted jobs and whether the budget ran out, so the caller
/// goes on in another step: one writer request never deletes a million-task job at once.
pub(crate) fn retention_step(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
    budget: u32,
) -> Result<(Expired, bool)> {
    let expired: Vec<(i64, String, JobId, bool)> = conn
        .prepare_cached(
            "SELECT j.key, j.tenant, j.id, j.has_inputs AND NOT j.inputs_deleted
             FROM jobs j JOIN queues q ON q.tenant = j.tenant AND q.name = j.queue
             WHERE j.finished_at IS NOT NULL AND j.finished_at + q.retention_ms * 1000 <= ?1
             ORDER BY j.finished_at LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![micros(now), i64::from(limit)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect()
        })
        .map_err(db("find jobs past retention"))?;
    let mut some_tasks = conn
        .prepare_cached(
            "SELECT id, tenant, queue, state, burstable FROM tasks WHERE job_key = ?1 LIMIT ?2",
        )
        .map_err(db("list a job's tasks to delete"))?;
    let mut delete_attempts = conn
        .prepare_cached("DELETE FROM attempts WHERE task_id = ?1")
        .map_err(db("delete a task's attempts"))?;
    let mut delete_task = conn
        .prepare_cached("DELETE FROM tasks WHERE id = ?1")
        .map_err(db("delete a task"))?;
    let mut left = budget;
    let mut deleted = Vec::new();
    for (key, tenant, id, had_inputs) in expired {
        let tasks: Vec<(i64, String, String, String, bool)> = some_tasks
            .query_map(params![key, i64::from(left) + 1], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(db("list a job's tasks to delete"))?;
        let all_of_them = tasks.len() <= left as usize;
        let mut counted = CountChanges::default();
        for (task, tenant, queue, state, burstable) in tasks.iter().take(left as usize) {
            delete_attempts
                .execute([task])
                .map_err(db("delete a task's attempts"))?;
            delete_task.execute([task]).map_err(db("delete a task"))?;
            counted.add(tenant, queue, TaskState::parse(state)?, *burstable, -1);
        }
        counted.apply(conn)?;
        let ids = tasks;
        if !all_of_them {
            return Ok((deleted, true));
        }
        left -= ids.len() as u32;
        conn.execute("DELETE FROM jobs WHERE key = ?1", [key])
            .map_err(db("delete a job"))?;
        deleted.push((tenant, id, had_inputs));
    }
    Ok((deleted, false))
}
