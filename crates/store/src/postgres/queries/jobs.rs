//! Jobs: submit, read, list, cancel, retry, input clean-up and retention.

use deadpool_postgres::GenericClient;
use spillway_core::api::Page;
use spillway_core::model::Job;
use spillway_core::state::{StateCounts, TaskState};
use spillway_core::{Error, JobId, Result, Timestamp};

use crate::postgres::error::ctx;
use crate::postgres::rows::{self, JOB_COLUMNS, get, int, jobs_with_counts};
use crate::{JobList, JobSubmit, Woken};
use deadpool_postgres::Object;

/// Jobs read per round while filtering a listing by derived state.
const STATE_FILTER_BATCH: i64 = 500;

/// Ids of jobs one of whose tasks just reached a final state: once that is committed, each may
/// be finished ([`finish_jobs`]).
pub(crate) type JobsToFinish = std::collections::BTreeSet<String>;

/// A finished job's state in SQL, for `j` in scope: derived as `JobState::derive` derives it
/// from the counts of a job none of whose tasks is unfinished.
const FINISHED_STATE: &str = "CASE
        WHEN j.cancel_requested
             AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'cancelled')
            THEN 'cancelled'
        WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'dead')
            THEN 'failed'
        WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'cancelled')
            THEN 'cancelled'
        ELSE 'succeeded'
    END";

/// "None of job `j`'s tasks can run again", in SQL.
const NOTHING_LEFT: &str = "NOT EXISTS (
        SELECT 1 FROM tasks t
        WHERE t.job_id = j.id AND t.state IN ('scheduled', 'available', 'leased', 'retrying')
    )";

/// Mark the listed jobs finished at `now` (with their final state) if none of their tasks can
/// run again. Their rows are locked in id order, as retention's catch-up does, so two marks of
/// overlapping jobs cannot deadlock. Run after the commit that moved their tasks, never inside it: two transactions
/// finishing a job's last two tasks each see the other's task still leased, but whichever
/// checks last after both committed sees neither.
pub(crate) async fn finish_jobs(
    client: &impl GenericClient,
    ids: &JobsToFinish,
    now: Timestamp,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    client
        .execute(
            &format!(
                "UPDATE jobs j SET finished_at = $2, finished_state = {FINISHED_STATE}
                 FROM (SELECT id FROM jobs WHERE id = ANY($1) AND finished_at IS NULL
                       ORDER BY id FOR UPDATE) locked
                 WHERE j.id = locked.id AND {NOTHING_LEFT}"
            ),
            &[&ids, &now],
        )
        .await
        .map_err(ctx("could not mark jobs finished"))?;
    Ok(())
}

pub(crate) async fn job_submit(conn: &mut Object, p: &JobSubmit) -> Result<(Job, bool)> {
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not start the submit"))?;
    if let Some(key) = &p.idempotency_key
        && let Some(job) = job_by_key(&tx, &p.tenant, key).await?
    {
        return Ok((job, false));
    }
    let max_attempts: i32 = match tx
        .query_opt(
            "SELECT max_attempts FROM queues WHERE tenant = $1 AND name = $2",
            &[&p.tenant, &p.queue],
        )
        .await
        .map_err(ctx("could not read the queue"))?
    {
        Some(row) => get(&row, "max_attempts")?,
        None => {
            return Err(Error::not_found(format!(
                "queue {:?} not found in tenant {:?}: create it with `spillway queues create NAME` or POST /v1/queues",
                p.queue, p.tenant
            )));
        }
    };
    let labels = serde_json::to_value(&p.labels)
        .map_err(|e| Error::internal("could not encode job labels").with_source(e))?;
    let spec = serde_json::to_value(&p.spec)
        .map_err(|e| Error::internal("could not encode the task spec").with_source(e))?;
    let task_count = u32::try_from(p.payloads.len()).unwrap_or(u32::MAX);
    let sql = format!(
        "INSERT INTO jobs (id, tenant, queue, name, labels, spec, priority, burstable,
                               idempotency_key, delete_inputs_on_success, has_inputs,
                               task_count, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (tenant, idempotency_key) DO NOTHING
             RETURNING {JOB_COLUMNS}"
    );
    let inserted = tx
        .query_opt(
            &sql,
            &[
                &p.id,
                &p.tenant,
                &p.queue,
                &p.name,
                &labels,
                &spec,
                &p.priority,
                &p.burstable,
                &p.idempotency_key,
                &p.delete_inputs_on_success,
                &p.has_inputs,
                &int(task_count),
                &p.now,
            ],
        )
        .await
        .map_err(ctx("could not insert the job"))?;
    let Some(job_row) = inserted else {
        // A concurrent submit with the same key committed first: answer with its job.
        tx.rollback()
            .await
            .map_err(ctx("could not roll back the submit"))?;
        let key = p.idempotency_key.as_deref().unwrap_or_default();
        return match job_by_key(&*conn, &p.tenant, key).await? {
            Some(job) => Ok((job, false)),
            None => Err(Error::unavailable(format!(
                "idempotency key {key:?} was taken by a submit that then vanished: retry the submit"
            ))),
        };
    };
    let state = if p.run_at > p.now {
        TaskState::Scheduled
    } else {
        TaskState::Available
    };
    tx.execute(
        "INSERT INTO tasks (job_id, tenant, queue, idx, state, priority, burstable, run_at,
                                max_attempts, payload, created_at)
             SELECT $1, $2, $3, (u.o - 1)::int, $4, $5, $6, $7, $8, u.p, $9
             FROM unnest($10::jsonb[]) WITH ORDINALITY AS u(p, o)",
        &[
            &p.id,
            &p.tenant,
            &p.queue,
            &state.as_str(),
            &p.priority,
            &p.burstable,
            &p.run_at,
            &max_attempts,
            &p.now,
            &p.payloads,
        ],
    )
    .await
    .map_err(ctx("could not insert the tasks"))?;
    tx.commit()
        .await
        .map_err(ctx("could not commit the submit"))?;
    let mut counts = StateCounts::default();
    counts.add(state, u64::from(task_count));
    Ok((rows::job(&job_row, counts, None)?, true))
}

pub(crate) async fn job_get(conn: &Object, tenant: Option<&str>, id: &str) -> Result<Job> {
    load_job(conn, tenant, id).await
}

pub(crate) async fn job_list(conn: &Object, p: &JobList) -> Result<Page<Job>> {
    let limit = usize::try_from(rows::page_limit(p.limit) - 1).unwrap_or(1);
    let mut after: Option<String> = rows::cursor::<String>(p.cursor.as_deref())?;
    let batch = if p.state.is_some() {
        STATE_FILTER_BATCH
    } else {
        rows::page_limit(p.limit)
    };
    if p.labels_contradict() {
        return Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        });
    }
    // `@>` with every `{key: value}` pair at once (the GIN index serves it); `?&` for the
    // keys that must merely be present.
    let (label_pairs, label_keys) = p.label_params();
    let narrowed = p.state_condition();
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs
             WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR queue = $2)
               AND labels @> $3::jsonb AND labels ?& $4::text[]
               AND ($5::text IS NULL OR id < $5) {narrowed}
             ORDER BY id DESC LIMIT $6"
    );
    let mut items = Vec::new();
    loop {
        let found = conn
            .query(
                &sql,
                &[
                    &p.tenant,
                    &p.queue,
                    &label_pairs,
                    &label_keys,
                    &after,
                    &batch,
                ],
            )
            .await
            .map_err(ctx("could not list jobs"))?;
        let exhausted = i64::try_from(found.len()).unwrap_or(i64::MAX) < batch;
        for job in jobs_with_counts(conn, &found).await? {
            after = Some(job.id.clone());
            if p.state.is_none_or(|s| s == job.state) {
                items.push(job);
                if items.len() > limit {
                    break;
                }
            }
        }
        if exhausted || items.len() > limit {
            break;
        }
    }
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

pub(crate) async fn job_cancel(
    conn: &mut Object,
    tenant: Option<&str>,
    id: &str,
    now: Timestamp,
) -> Result<Job> {
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not start the cancel"))?;
    let n = tx
            .execute(
                "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)",
                &[&id, &tenant],
            )
            .await
            .map_err(ctx("could not cancel the job"))?;
    if n == 0 {
        return Err(job_not_found(id));
    }
    tx.execute(
        "UPDATE tasks SET state = 'cancelled', finished_at = $2
             WHERE job_id = $1 AND state IN ('scheduled', 'available', 'retrying')",
        &[&id, &now],
    )
    .await
    .map_err(ctx("could not cancel the job's waiting tasks"))?;
    let job = load_job(&tx, tenant, id).await?;
    tx.commit()
        .await
        .map_err(ctx("could not commit the cancel"))?;
    Ok(job)
}

pub(crate) async fn job_retry(
    conn: &mut Object,
    tenant: Option<&str>,
    id: &str,
    now: Timestamp,
) -> Result<(u64, Woken)> {
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not start the retry"))?;
    // The job is no longer cancelled once its tasks are asked to run again.
    let job = tx
        .query_opt(
            "UPDATE jobs SET cancel_requested = FALSE
                 WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) RETURNING tenant, queue",
            &[&id, &tenant],
        )
        .await
        .map_err(ctx("could not retry the job"))?
        .ok_or_else(|| job_not_found(id))?;
    let n = tx
        .execute(
            "UPDATE tasks SET state = 'available', run_at = $2, failures = 0, finished_at = NULL
                 WHERE job_id = $1 AND state IN ('dead', 'cancelled')",
            &[&id, &now],
        )
        .await
        .map_err(ctx("could not requeue the job's tasks"))?;
    if n > 0 {
        tx.execute(
            "UPDATE jobs SET finished_at = NULL, finished_state = NULL WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(ctx("could not reopen the job"))?;
    }
    let woken = Woken::from([(
        get::<String>(&job, "tenant")?,
        get::<String>(&job, "queue")?,
    )]);
    tx.commit()
        .await
        .map_err(ctx("could not commit the retry"))?;
    Ok((n, woken))
}

pub(crate) async fn job_inputs_to_delete(
    conn: &Object,
    limit: u32,
) -> Result<Vec<(String, JobId)>> {
    let found = conn
        .query(
            "SELECT j.tenant, j.id FROM jobs j
                 WHERE j.finished_state = 'succeeded'
                   AND j.delete_inputs_on_success AND j.has_inputs AND NOT j.inputs_deleted
                 ORDER BY j.id LIMIT $1",
            &[&i64::from(limit)],
        )
        .await
        .map_err(ctx("could not find jobs whose inputs to delete"))?;
    found
        .iter()
        .map(|row| Ok((get(row, "tenant")?, get(row, "id")?)))
        .collect()
}

pub(crate) async fn job_inputs_deleted(conn: &Object, id: &str) -> Result<()> {
    let n = conn
        .execute(
            "UPDATE jobs SET inputs_deleted = TRUE WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(ctx("could not record deleted inputs"))?;
    if n == 0 {
        return Err(job_not_found(id));
    }
    Ok(())
}

pub(crate) async fn retention_sweep(
    conn: &Object,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<(String, JobId, bool)>> {
    // Jobs whose last task's commit was not followed by their finishing (the replica died in
    // between): one look per unfinished job, not per task.
    conn.execute(
        &format!(
            "UPDATE jobs j SET
                 finished_at = coalesce((SELECT max(t.finished_at) FROM tasks t WHERE t.job_id = j.id), $1::timestamptz),
                 finished_state = {FINISHED_STATE}
             FROM (SELECT id FROM jobs WHERE finished_at IS NULL
                   ORDER BY id FOR UPDATE SKIP LOCKED) locked
             WHERE j.id = locked.id AND {NOTHING_LEFT}"
        ),
        &[&now],
    )
    .await
    .map_err(ctx("could not mark finished jobs"))?;
    // Per queue, the range of its jobs finished before its retention began.
    let deleted = conn
        .query(
            "WITH expired AS (
                    SELECT e.id FROM queues q
                    CROSS JOIN LATERAL (
                        SELECT j.id FROM jobs j
                        WHERE j.tenant = q.tenant AND j.queue = q.name
                          AND j.finished_at IS NOT NULL
                          AND j.finished_at <= $1::timestamptz - q.retention_ms * interval '1 millisecond'
                        ORDER BY j.finished_at LIMIT $2
                    ) e
                    LIMIT $2
                 ), locked AS (
                    SELECT id FROM jobs WHERE id IN (SELECT id FROM expired)
                    ORDER BY id FOR UPDATE SKIP LOCKED
                 )
                 DELETE FROM jobs WHERE id IN (SELECT id FROM locked)
                 RETURNING tenant, id, has_inputs",
            &[&now, &i64::from(limit)],
        )
        .await
        .map_err(ctx("could not delete expired jobs"))?;
    deleted
        .iter()
        .map(|row| {
            Ok((
                get(row, "tenant")?,
                get(row, "id")?,
                get(row, "has_inputs")?,
            ))
        })
        .collect()
}

async fn load_job(client: &impl GenericClient, tenant: Option<&str>, id: &str) -> Result<Job> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"
    );
    let row = client
        .query_opt(&sql, &[&id, &tenant])
        .await
        .map_err(ctx("could not read the job"))?
        .ok_or_else(|| job_not_found(id))?;
    jobs_with_counts(client, std::slice::from_ref(&row))
        .await?
        .pop()
        .ok_or_else(|| job_not_found(id))
}

async fn job_by_key(client: &impl GenericClient, tenant: &str, key: &str) -> Result<Option<Job>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND idempotency_key = $2");
    let Some(row) = client
        .query_opt(&sql, &[&tenant, &key])
        .await
        .map_err(ctx("could not look up the idempotency key"))?
    else {
        return Ok(None);
    };
    Ok(jobs_with_counts(client, std::slice::from_ref(&row))
        .await?
        .pop())
}

pub(super) fn job_not_found(id: &str) -> Error {
    Error::not_found(format!("job {id:?} not found: list jobs to see their ids"))
}
