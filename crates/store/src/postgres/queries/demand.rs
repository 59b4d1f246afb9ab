//! Demand per queue for the autoscaler, and asking workers to drain.

use spillway_core::{Error, Result, Timestamp};

use crate::QueueDemand;
use crate::autoscale::{ARRIVALS_WINDOW_SECONDS, MEAN_DURATION_SAMPLE};
use crate::postgres::error::ctx;
use crate::postgres::rows::get;
use deadpool_postgres::Object;

/// One row per queue. Available and leased tasks come from the counters (see migration
/// 0005), due scheduled and retrying ones from the small `tasks_delayed` index (an available
/// task is always due); a paused queue has nothing leasable. The mean walks the queue's newest
/// succeeded tasks only (`tasks_succeeded`), arrivals the last minute of jobs.
const DEMAND_SQL: &str = "
WITH counted AS (
    SELECT tenant, queue, state, burstable, sum(n) AS n FROM (
        SELECT tenant, queue, state, burstable, n FROM queue_counts
        WHERE state IN ('available', 'leased')
        UNION ALL
        SELECT tenant, queue, state, burstable, n FROM queue_count_changes
        WHERE state IN ('available', 'leased')
    ) c
    GROUP BY tenant, queue, state, burstable
)
SELECT q.tenant, q.name,
    CASE WHEN q.paused THEN 0 ELSE
        coalesce((SELECT sum(c.n) FROM counted c WHERE c.tenant = q.tenant AND c.queue = q.name
                  AND c.state = 'available'), 0) + d.due
    END::bigint AS waiting,
    CASE WHEN q.paused THEN 0 ELSE
        coalesce((SELECT sum(c.n) FROM counted c WHERE c.tenant = q.tenant AND c.queue = q.name
                  AND c.state = 'available' AND c.burstable), 0) + d.due_burstable
    END::bigint AS waiting_burstable,
    coalesce((SELECT sum(c.n) FROM counted c WHERE c.tenant = q.tenant AND c.queue = q.name
              AND c.state = 'leased'), 0)::bigint AS leased,
    (SELECT avg(extract(epoch FROM a.ended_at - a.started_at))::float8
     FROM (SELECT t.id, t.attempt FROM tasks t
           WHERE t.tenant = q.tenant AND t.queue = q.name AND t.state = 'succeeded'
           ORDER BY t.id DESC LIMIT $2) s
     JOIN attempts a ON a.task_id = s.id AND a.attempt = s.attempt
     WHERE a.ended_at IS NOT NULL) AS mean_seconds,
    (SELECT coalesce(sum(j.task_count), 0)::bigint FROM jobs j
     WHERE j.tenant = q.tenant AND j.queue = q.name
       AND j.created_at > $3 AND j.created_at <= $1) AS arrivals
FROM queues q
CROSS JOIN LATERAL (
    SELECT count(*) AS due, count(*) FILTER (WHERE t.burstable) AS due_burstable
    FROM tasks t
    WHERE t.tenant = q.tenant AND t.queue = q.name
      AND t.state IN ('scheduled', 'retrying') AND t.run_at <= $1
) d
ORDER BY q.tenant, q.name";

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) async fn queue_demand(conn: &Object, now: Timestamp) -> Result<Vec<QueueDemand>> {
    let since = now - chrono::Duration::seconds(ARRIVALS_WINDOW_SECONDS);
    let sample = i64::from(MEAN_DURATION_SAMPLE);
    let rows = conn
        .query(DEMAND_SQL, &[&now, &sample, &since])
        .await
        .map_err(ctx("could not measure queue demand"))?;
    rows.iter()
        .map(|row| {
            Ok(QueueDemand {
                tenant: get(row, "tenant")?,
                queue: get(row, "name")?,
                waiting: non_negative(get(row, "waiting")?),
                waiting_burstable: non_negative(get(row, "waiting_burstable")?),
                leased: non_negative(get(row, "leased")?),
                mean_duration_seconds: get(row, "mean_seconds")?,
                arrivals: non_negative(get(row, "arrivals")?),
            })
        })
        .collect()
}

pub(crate) async fn worker_drain(conn: &Object, id: &str) -> Result<()> {
    // Only an active worker is asked; a down, exited or already draining one is left as is.
    let changed = conn
        .execute(
            "UPDATE workers SET state = 'draining' WHERE id = $1 AND state = 'active'",
            &[&id],
        )
        .await
        .map_err(ctx("could not mark the worker draining"))?;
    if changed == 0 {
        let found = conn
            .query_opt("SELECT 1 FROM workers WHERE id = $1", &[&id])
            .await
            .map_err(ctx("could not look up the worker"))?;
        if found.is_none() {
            return Err(Error::not_found(format!(
                "worker {id:?} not found: it may have exited and been forgotten"
            )));
        }
    }
    Ok(())
}
