//! Demand per queue for the autoscaler, and asking workers to drain.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::{Error, Result, Timestamp};

use crate::QueueDemand;
use crate::autoscale::ARRIVALS_WINDOW_SECONDS;
use crate::sqlite::rows::{db, micros};

pub(crate) fn queue_demand(conn: &Connection, now: Timestamp) -> Result<Vec<QueueDemand>> {
    let mut demand: BTreeMap<(String, String), (QueueDemand, bool)> = BTreeMap::new();
    let mut queues = conn
        .prepare_cached("SELECT tenant, name, paused FROM queues ORDER BY tenant, name")
        .map_err(db("list queues for demand"))?;
    let rows = queues
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })
        .map_err(db("list queues for demand"))?;
    for row in rows {
        let (tenant, queue, paused) = row.map_err(db("list queues for demand"))?;
        let entry = QueueDemand {
            tenant: tenant.clone(),
            queue: queue.clone(),
            waiting: 0,
            waiting_burstable: 0,
            leased: 0,
            mean_duration_seconds: None,
            arrivals: 0,
        };
        demand.insert((tenant, queue), (entry, paused));
    }
    // Available and leased tasks from the counters; an available task is always due.
    let mut counted = conn
        .prepare_cached(
            "SELECT tenant, queue, state, burstable, n FROM queue_counts
             WHERE (state = 'available' OR state = 'leased') AND n > 0",
        )
        .map_err(db("read task counters"))?;
    let rows = counted
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .map_err(db("read task counters"))?;
    for row in rows {
        let (tenant, queue, state, burstable, n) = row.map_err(db("read task counters"))?;
        let Some((d, paused)) = demand.get_mut(&(tenant, queue)) else {
            continue;
        };
        let n = u64::try_from(n).unwrap_or(0);
        if state == "leased" {
            d.leased += n;
        } else if !*paused {
            d.waiting += n;
            if burstable {
                d.waiting_burstable += n;
            }
        }
    }
    // Scheduled and retrying tasks whose time has come: a range of the small delayed index.
    let mut due = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(burstable), 0) FROM tasks
             WHERE tenant = ?1 AND queue = ?2 AND (state = 'scheduled' OR state = 'retrying')
               AND run_at <= ?3",
        )
        .map_err(db("count due delayed tasks"))?;
    for (d, paused) in demand.values_mut() {
        if *paused {
            continue;
        }
        let (n, burstable): (i64, i64) = due
            .query_row(params![d.tenant, d.queue, micros(now)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db("count due delayed tasks"))?;
        d.waiting += u64::try_from(n).unwrap_or(0);
        d.waiting_burstable += u64::try_from(burstable).unwrap_or(0);
    }
    let mut demand: BTreeMap<(String, String), QueueDemand> =
        demand.into_iter().map(|(k, (d, _))| (k, d)).collect();
    let mut mean = conn
        .prepare_cached(
            "SELECT mean_us FROM queue_runtimes WHERE tenant = ?1 AND queue = ?2 AND samples > 0",
        )
        .map_err(db("read task run times"))?;
    let mut arrivals = conn
        .prepare_cached(
            "SELECT coalesce(sum(task_count), 0) FROM jobs INDEXED BY jobs_by_queue_created
             WHERE tenant = ?1 AND queue = ?2 AND created_at > ?3 AND created_at <= ?4",
        )
        .map_err(db("count arrivals"))?;
    let since = now - chrono::Duration::seconds(ARRIVALS_WINDOW_SECONDS);
    for d in demand.values_mut() {
        let us: Option<f64> = mean
            .query_row(params![d.tenant, d.queue], |r| r.get(0))
            .optional()
            .map_err(db("read task run times"))?;
        d.mean_duration_seconds = us.map(|us| us / 1e6);
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
