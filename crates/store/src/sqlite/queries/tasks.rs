//! Tasks: read, list, lease, heartbeat and lease checks.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::api::{HeartbeatResult, LeaseStatus, LeasedTask, Page};
use spillway_core::model::{Attempt, Task, TaskSpec};
use spillway_core::state::TaskState;
use spillway_core::{Error, Result, TaskId};

use super::counts::CountChanges;

use crate::sqlite::rows::{
    ATTEMPT_COLS, TASK_COLS, WAITING, attempt_row, db, micros, page_size, task_cursor, task_row,
    time,
};
use crate::{LeaseCheck, TaskHeartbeat, TaskLease, TaskList};

pub(crate) fn task_get(conn: &Connection, tenant: Option<&str>, id: TaskId) -> Result<Task> {
    conn.prepare_cached(&format!(
        "SELECT {TASK_COLS} FROM tasks WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
    ))
    .and_then(|mut s| s.query_row(params![id, tenant], task_row).optional())
    .map_err(db("read a task"))?
    .ok_or_else(|| Error::not_found(format!("task {id} not found")))
}

pub(crate) fn task_list(conn: &Connection, p: &TaskList) -> Result<Page<Task>> {
    let limit = page_size(p.limit);
    let after = task_cursor(p.cursor.as_deref())?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLS} FROM tasks
             WHERE id > ?1 AND (?2 IS NULL OR tenant = ?2) AND (?3 IS NULL OR job_id = ?3)
               AND (?4 IS NULL OR queue = ?4) AND (?5 IS NULL OR state = ?5)
             ORDER BY id LIMIT ?6"
        ))
        .map_err(db("list tasks"))?;
    let state = p.state.map(|s| s.as_str());
    let items = stmt
        .query_map(
            params![after, p.tenant, p.job_id, p.queue, state, limit + 1],
            task_row,
        )
        .map_err(db("list tasks"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db("list tasks"))?;
    Ok(page_of(items, limit as usize))
}

/// Cut a `limit + 1` fetch down to a page, with a cursor when there was more.
pub(crate) fn page_of(mut items: Vec<Task>, limit: usize) -> Page<Task> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|t| t.id.to_string())
    } else {
        None
    };
    Page { items, next_cursor }
}

pub(crate) fn task_attempts(
    conn: &Connection,
    tenant: Option<&str>,
    id: TaskId,
) -> Result<Vec<Attempt>> {
    task_get(conn, tenant, id)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ATTEMPT_COLS} FROM attempts WHERE task_id = ?1 ORDER BY attempt"
        ))
        .map_err(db("list attempts"))?;
    let rows = stmt
        .query_map([id], attempt_row)
        .map_err(db("list attempts"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(db("list attempts"))
}

/// A lease candidate: its sort key, what the lease hands out, and its queue's lease length.
struct Candidate {
    avoided: bool,
    priority: i32,
    run_at: i64,
    id: TaskId,
    lease_ms: i64,
    job_id: String,
    index: u32,
    queue: String,
    attempt: u32,
    payload: Option<String>,
    state: String,
    burstable: bool,
}

/// 128 random bits as 32 lowercase hex digits.
fn lease_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The lease query: walks the partial index `tasks_leasable` in order (a test checks the plan).
fn pick_sql() -> String {
    format!(
        "SELECT id, priority, run_at, job_id, idx, attempt, payload, state, burstable FROM tasks
         WHERE tenant = ?1 AND queue = ?2 AND {WAITING} AND run_at <= ?3
           AND (?4 = 0 OR burstable = 1)
           AND ((?5 = 0 AND (avoid_pool IS NULL OR avoid_pool != ?6))
                OR (?5 = 1 AND avoid_pool = ?6))
         ORDER BY priority DESC, run_at, id LIMIT ?7"
    )
}

/// Hand one task out (a test checks it builds no ephemeral table).
const TAKE_SQL: &str = "UPDATE tasks SET state = 'leased', attempt = ?5, lease_token = ?2,
                                         lease_worker = ?3, lease_expires_at = ?4
                        WHERE id = ?1";

/// Lease up to `max` tasks. Runs on the writer, so no other lease can interleave.
pub(crate) fn task_lease(conn: &Connection, p: &TaskLease) -> Result<Vec<LeasedTask>> {
    let max = p.max.min(spillway_core::api::MAX_LEASE_BATCH) as usize;
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut queue_stmt = conn
        .prepare_cached("SELECT lease_ms, paused FROM queues WHERE tenant = ?1 AND name = ?2")
        .map_err(db("read a queue"))?;
    // Walks the partial index tasks_leasable in order; `avoid` picks which side of the
    // avoid_pool preference to take.
    let mut pick = conn
        .prepare_cached(&pick_sql())
        .map_err(db("prepare the lease query"))?;
    let mut candidates = Vec::new();
    for queue in &p.queues {
        let settings: Option<(i64, bool)> = queue_stmt
            .query_row([&p.tenant, queue], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db("read a queue"))?;
        let Some((lease_ms, false)) = settings else {
            continue;
        };
        for avoided in [false, true] {
            let rows = pick
                .query_map(
                    params![
                        p.tenant,
                        queue,
                        micros(p.now),
                        p.burstable_only,
                        avoided,
                        p.worker_pool,
                        max as i64
                    ],
                    |r| {
                        Ok(Candidate {
                            avoided,
                            id: r.get(0)?,
                            priority: r.get(1)?,
                            run_at: r.get(2)?,
                            lease_ms,
                            job_id: r.get(3)?,
                            index: r.get(4)?,
                            queue: queue.clone(),
                            attempt: r.get::<_, u32>(5)? + 1,
                            payload: r.get(6)?,
                            state: r.get(7)?,
                            burstable: r.get(8)?,
                        })
                    },
                )
                .map_err(db("find leasable tasks"))?;
            let before = candidates.len();
            for row in rows {
                candidates.push(row.map_err(db("find leasable tasks"))?);
            }
            // Tasks that avoid this pool are only looked at when the rest do not fill `max`.
            if candidates.len() - before >= max {
                break;
            }
        }
    }
    candidates.sort_by(|a, b| {
        (a.avoided, -i64::from(a.priority), a.run_at, a.id).cmp(&(
            b.avoided,
            -i64::from(b.priority),
            b.run_at,
            b.id,
        ))
    });
    candidates.truncate(max);

    // No RETURNING in hot updates: SQLite runs RETURNING as a trigger, which makes each
    // statement open a statement journal inside the per-request savepoint (slow).
    let mut take = conn
        .prepare_cached(TAKE_SQL)
        .map_err(db("prepare the lease update"))?;
    let mut attempt = conn
        .prepare_cached(
            "INSERT INTO attempts (task_id, attempt, worker_id, started_at, outcome)
             VALUES (?1, ?2, ?3, ?4, 'running')",
        )
        .map_err(db("prepare the attempt insert"))?;
    let mut jobs: HashMap<String, (TaskSpec, bool)> = HashMap::new();
    let mut leased = Vec::with_capacity(candidates.len());
    let mut counted = CountChanges::default();
    for c in candidates {
        let token = lease_token();
        let expires = micros(p.now) + c.lease_ms * 1000;
        let Candidate {
            id,
            job_id,
            index,
            queue,
            attempt: attempt_no,
            payload,
            state,
            burstable,
            run_at,
            ..
        } = c;
        take.execute(params![id, token, p.worker_id, expires, attempt_no])
            .map_err(db("lease a task"))?;
        let from = TaskState::parse(&state)?;
        counted.moved(&p.tenant, &queue, from, TaskState::Leased, burstable, 1);
        attempt
            .execute(params![id, attempt_no, p.worker_id, micros(p.now)])
            .map_err(db("record an attempt"))?;
        if !jobs.contains_key(&job_id) {
            let (spec, has_inputs): (String, bool) = conn
                .prepare_cached(
                    "SELECT spec, has_inputs AND NOT inputs_deleted FROM jobs WHERE id = ?1",
                )
                .and_then(|mut s| s.query_row([&job_id], |r| Ok((r.get(0)?, r.get(1)?))))
                .map_err(db("read a leased task's job"))?;
            let spec: TaskSpec = serde_json::from_str(&spec).map_err(|e| {
                Error::internal(format!("job {job_id} has an unreadable spec")).with_source(e)
            })?;
            jobs.insert(job_id.clone(), (spec, has_inputs));
        }
        let (spec, has_inputs) = jobs
            .get(&job_id)
            .cloned()
            .ok_or_else(|| Error::internal("leased task's job vanished from the cache"))?;
        let payload = payload
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| {
                Error::internal(format!("task {id} has an unreadable payload")).with_source(e)
            })?;
        leased.push(LeasedTask {
            task_id: id,
            job_id,
            index,
            queue,
            attempt: attempt_no,
            lease_token: token,
            lease_expires_at: time(expires),
            // The server adds it, from the time it leased at.
            lease_ms: None,
            spec,
            payload,
            has_inputs,
            due_at: Some(time(run_at)),
        });
    }
    counted.apply(conn)?;
    Ok(leased)
}

pub(crate) fn task_heartbeat(conn: &Connection, p: &TaskHeartbeat) -> Result<Vec<HeartbeatResult>> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE tasks SET lease_expires_at = ?3 + 1000 * (
                 SELECT lease_ms FROM queues q WHERE q.tenant = tasks.tenant AND q.name = tasks.queue)
             WHERE id = ?1 AND state = 'leased' AND lease_token = ?2 AND (?4 IS NULL OR tenant = ?4)
             RETURNING lease_expires_at, cancel_requested",
        )
        .map_err(db("prepare the heartbeat"))?;
    let mut results = Vec::with_capacity(p.leases.len());
    for lease in &p.leases {
        let row: Option<(i64, bool)> = stmt
            .query_row(
                params![lease.task_id, lease.lease_token, micros(p.now), p.tenant],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db("extend a lease"))?;
        results.push(match row {
            Some((expires, cancel)) => HeartbeatResult {
                task_id: lease.task_id,
                status: if cancel {
                    LeaseStatus::CancelRequested
                } else {
                    LeaseStatus::Extended
                },
                lease_expires_at: Some(time(expires)),
            },
            None => HeartbeatResult {
                task_id: lease.task_id,
                status: LeaseStatus::Lost,
                lease_expires_at: None,
            },
        });
    }
    Ok(results)
}

/// The task if it is the caller's and `p.lease_token` is its current lease. An expired lease
/// stays current until the reaper or a new lease replaces it.
pub(crate) fn lease_check(conn: &Connection, p: &LeaseCheck) -> Result<Task> {
    let task = task_get(conn, p.tenant.as_deref(), p.task_id)?;
    let current: Option<String> = conn
        .prepare_cached("SELECT lease_token FROM tasks WHERE id = ?1 AND state = 'leased'")
        .and_then(|mut s| s.query_row([p.task_id], |r| r.get(0)).optional())
        .map_err(db("check a lease"))?;
    if current.as_deref() != Some(p.lease_token.as_str()) {
        return Err(Error::conflict(format!(
            "the lease on task {} is not current: it was reaped, reported or handed to another worker; stop working on it",
            p.task_id
        )));
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{TAKE_SQL, pick_sql};

    fn schema() -> Connection {
        let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("open: {e}"));
        conn.execute_batch(include_str!("../../../migrations/sqlite/0001_init.sql"))
            .unwrap_or_else(|e| panic!("schema: {e}"));
        crate::sqlite::pool::stable_plans(&conn).unwrap_or_else(|e| panic!("config: {e}"));
        conn
    }

    /// The waiting-state predicate must match the partial index's text for SQLite to use it.
    #[test]
    fn lease_query_walks_the_leasable_index_in_order() {
        let conn = schema();
        let mut plan = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", pick_sql()))
            .unwrap_or_else(|e| panic!("prepare: {e}"));
        let details: Vec<String> = plan
            .query_map(
                rusqlite::params!["t", "q", 0, 0, 0, Option::<String>::None, 10],
                |r| r.get(3),
            )
            .and_then(|rows| rows.collect())
            .unwrap_or_else(|e| panic!("plan: {e}"));
        let plan = details.join("; ");
        assert!(plan.contains("USING INDEX tasks_leasable"), "{plan}");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "sorts instead of walking the index: {plan}"
        );
    }

    /// The lease query runs on every lease call: the statement cache must hand it back
    /// compiled, not re-prepared because a bound value (such as the LIMIT) was rebound.
    #[test]
    fn lease_query_is_not_prepared_again_per_call() {
        let conn = schema();
        let sql = pick_sql();
        for limit in [10, 10, 500] {
            let mut pick = conn
                .prepare_cached(&sql)
                .unwrap_or_else(|e| panic!("prepare: {e}"));
            let rows = pick
                .query_map(
                    rusqlite::params!["t", "q", 0, 0, 0, Option::<String>::None, limit],
                    |r| r.get::<_, i64>(0),
                )
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .unwrap_or_else(|e| panic!("pick: {e}"));
            assert!(rows.is_empty());
        }
        let pick = conn
            .prepare_cached(&sql)
            .unwrap_or_else(|e| panic!("prepare: {e}"));
        assert_eq!(pick.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// A constant `IN (...)` list of three or more values in a partial index's predicate makes
    /// every UPDATE of a task build ephemeral tables; the schema must avoid it.
    #[test]
    fn task_updates_build_no_ephemeral_tables() {
        let conn = schema();
        let mut explain = conn
            .prepare(&format!("EXPLAIN {TAKE_SQL}"))
            .unwrap_or_else(|e| panic!("prepare: {e}"));
        let opcodes: Vec<String> = explain
            .query_map(rusqlite::params![1, "t", "w", 0, 1], |r| r.get(1))
            .and_then(|rows| rows.collect())
            .unwrap_or_else(|e| panic!("explain: {e}"));
        assert!(!opcodes.iter().any(|o| o == "OpenEphemeral"), "{opcodes:?}");
    }
}
