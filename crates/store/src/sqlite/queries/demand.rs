//! Demand per queue for the autoscaler, and asking workers to drain.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use spillway_core::{Error, Result, Timestamp};

use crate::QueueDemand;
use crate::autoscale::{ARRIVALS_WINDOW_SECONDS, MEAN_DURATION_SAMPLE};
use crate::sqlite::rows::{WAITING, db, micros};

pub(crate) fn queue_demand(conn: &Connection, now: Timestamp) -> Result<Vec<QueueDemand>> {
    let mut demand: BTreeMap<(String, String), QueueDemand> = BTreeMap::new();
    let mut queues = conn
        .prepare_cached("SELECT tenant, name FROM queues ORDER BY tenant, name")
        .map_err(db("list queues for demand"))?;
    let rows = queues
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(db("list queues for demand"))?;
    for row in rows {
        let (tenant, queue) = row.map_err(db("list queues for demand"))?;
        demand.insert(
            (tenant.clone(), queue.clone()),
            QueueDemand {
                tenant,
                queue,
                waiting: 0,
                waiting_burstable: 0,
                leased: 0,
                mean_duration_seconds: None,
                arrivals: 0,
            },
        );
    }
    // Leasable exactly as the lease query sees it: due, queue not paused, job not cancelled.
    let mut waiting = conn
        .prepare_cached(&format!(
            "SELECT t.tenant, t.queue, count(*), coalesce(sum(t.burstable), 0) FROM tasks t
             JOIN queues q ON q.tenant = t.tenant AND q.name = t.queue
             JOIN jobs j ON j.key = t.job_key
             WHERE {WAITING} AND t.run_at <= ?1 AND NOT q.paused AND NOT j.cancel_requested
             GROUP BY t.tenant, t.queue"
        ))
        .map_err(db("count leasable tasks"))?;
    let rows = waiting
        .query_map([micros(now)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(db("count leasable tasks"))?;
    for row in rows {
        let (tenant, queue, n, burstable) = row.map_err(db("count leasable tasks"))?;
        if let Some(d) = demand.get_mut(&(tenant, queue)) {
            d.waiting = u64::try_from(n).unwrap_or(0);
            d.waiting_burstable = u64::try_from(burstable).unwrap_or(0);
        }
    }
    let mut leased = conn
        .prepare_cached(
            "SELECT tenant, queue, count(*) FROM tasks WHERE state = 'leased'
             GROUP BY tenant, queue",
        )
        .map_err(db("count leased tasks"))?;
    let rows = leased
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db("count leased tasks"))?;
    for row in rows {
        let (tenant, queue, n) = row.map_err(db("count leased tasks"))?;
        if let Some(d) = demand.get_mut(&(tenant, queue)) {
            d.leased = u64::try_from(n).unwrap_or(0);
        }
    }
    // Walks task ids from the newest down, so it stops after the sample in a busy queue.
    let mut mean = conn
        .prepare_cached(
            "SELECT avg(a.ended_at - a.started_at), count(*) FROM (
                 SELECT id, attempt FROM tasks
                 WHERE tenant = ?1 AND queue = ?2 AND state = 'succeeded'
                 ORDER BY id DESC LIMIT ?3
             ) t JOIN attempts a ON a.task_id = t.id AND a.attempt = t.attempt
             WHERE a.ended_at IS NOT NULL",
        )
        .map_err(db("measure task run times"))?;
    let mut arrivals = conn
        .prepare_cached(
            "SELECT coalesce(sum(task_count), 0) FROM jobs
             WHERE tenant = ?1 AND queue = ?2 AND created_at > ?3 AND created_at <= ?4",
        )
        .map_err(db("count arrivals"))?;
    let since = now - chrono::Duration::seconds(ARRIVALS_WINDOW_SECONDS);
    for d in demand.values_mut() {
        let (avg, n): (Option<f64>, i64) = mean
            .query_row(params![d.tenant, d.queue, MEAN_DURATION_SAMPLE], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db("measure task run times"))?;
        // Stored in microseconds.
        d.mean_duration_seconds = avg.filter(|_| n > 0).map(|us| us / 1e6);
        let n: i64 = arrivals
            .query_row(
                params![d.tenant, d.queue, micros(since), micros(now)],
                |r| r.get(0),
            )
            .map_err(db("count arrivals"))?;
        d.arrivals = u64::try_from(n).unwrap_or(0);
    }
    Ok(demand.into_values().collect())
}

pub(crate) fn worker_drain(conn: &Connection, id: &str) -> Result<()> {
    let changed = conn
        .execute(
            "UPDATE workers SET state = 'draining' WHERE id = ?1 AND state = 'active'",
            [id],
        )
        .map_err(db("mark a worker draining"))?;
    if changed == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM workers WHERE id = ?1")
            .and_then(|mut s| s.exists([id]))
            .map_err(db("look up a worker"))?;
        if !exists {
            return Err(Error::not_found(format!(
                "worker {id:?} not found: it may have exited and been forgotten"
            )));
        }
    }
    Ok(())
}
