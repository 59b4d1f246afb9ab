//! Tenants, tokens, queues and workers.

use spillway_core::api::PoolStatus;
use spillway_core::model::{Queue, QueueSettings, QueueStats, Tenant, TokenInfo, Worker};
use spillway_core::state::StateCounts;
use spillway_core::{Error, ErrorKind, Result, Timestamp};

use crate::postgres::error::{ctx, db};
use crate::postgres::rows::{
    self, QUEUE_COLUMNS, TOKEN_COLUMNS, WORKER_COLUMNS, get, int, millis, task_state,
};
use crate::{PoolBounds, PoolBoundsSave, QueueCreate, TokenCreate, WorkerBeat, WorkerRegister};
use deadpool_postgres::Object;

/// How long exited workers stay in the list.
const EXITED_WORKER_LISTED_FOR: chrono::Duration = chrono::Duration::days(1);

pub(crate) async fn ping(conn: &Object) -> Result<()> {
    conn.simple_query("SELECT 1")
        .await
        .map_err(ctx("postgresql did not answer a ping"))?;
    Ok(())
}

pub(crate) async fn clock_now(conn: &Object) -> Result<Timestamp> {
    // clock_timestamp(), not now(): the time of the answer, not of the transaction's start.
    let row = conn
        .query_one("SELECT clock_timestamp() AS now", &[])
        .await
        .map_err(ctx("postgresql did not answer its clock"))?;
    get(&row, "now")
}

pub(crate) async fn tenant_create(conn: &Object, name: &str, now: Timestamp) -> Result<Tenant> {
    let row = conn
        .query_one(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING name, created_at",
            &[&name, &now],
        )
        .await
        .map_err(|e| match db("could not create the tenant", e) {
            e if e.kind() == ErrorKind::Conflict => {
                Error::conflict(format!("tenant {name:?} already exists: pick another name"))
            }
            e => e,
        })?;
    rows::tenant(&row)
}

pub(crate) async fn tenant_list(conn: &Object) -> Result<Vec<Tenant>> {
    conn.query("SELECT name, created_at FROM tenants ORDER BY name", &[])
        .await
        .map_err(ctx("could not list tenants"))?
        .iter()
        .map(rows::tenant)
        .collect()
}

pub(crate) async fn token_create(conn: &Object, p: &TokenCreate) -> Result<TokenInfo> {
    let sql = format!(
        "INSERT INTO tokens (id, name, tenant, role, secret_hash, created_at, expires_at, queues)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {TOKEN_COLUMNS}"
    );
    let row = conn
        .query_one(
            &sql,
            &[
                &p.id,
                &p.name,
                &p.tenant,
                &p.role.as_str(),
                &p.secret_hash,
                &p.now,
                &p.expires_at,
                &p.queues,
            ],
        )
        .await
        .map_err(|e| match db("could not create the token", e) {
            e if e.kind() == ErrorKind::Conflict => {
                Error::conflict(format!("token {:?} already exists", p.id))
            }
            e => e,
        })?;
    rows::token(&row)
}

pub(crate) async fn token_lookup(conn: &Object, secret_hash: &str) -> Result<Option<TokenInfo>> {
    let sql =
        format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1 AND revoked_at IS NULL");
    conn.query_opt(&sql, &[&secret_hash])
        .await
        .map_err(ctx("could not look up the token"))?
        .as_ref()
        .map(rows::token)
        .transpose()
}

pub(crate) async fn token_list(conn: &Object, tenant: Option<&str>) -> Result<Vec<TokenInfo>> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens
             WHERE revoked_at IS NULL AND ($1::text IS NULL OR tenant = $1)
             ORDER BY created_at, id"
    );
    conn.query(&sql, &[&tenant])
        .await
        .map_err(ctx("could not list tokens"))?
        .iter()
        .map(rows::token)
        .collect()
}

pub(crate) async fn token_revoke(
    conn: &Object,
    tenant: Option<&str>,
    id: &str,
    now: Timestamp,
) -> Result<()> {
    let n = conn
        .execute(
            "UPDATE tokens SET revoked_at = $3
                 WHERE id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR tenant = $2)",
            &[&id, &tenant, &now],
        )
        .await
        .map_err(ctx("could not revoke the token"))?;
    if n == 0 {
        return Err(Error::not_found(format!(
            "token {id:?} not found: list tokens to see their ids"
        )));
    }
    Ok(())
}

pub(crate) async fn queue_create(conn: &Object, p: &QueueCreate) -> Result<Queue> {
    let s = &p.settings;
    let sql = format!(
            "INSERT INTO queues (tenant, name, max_attempts, backoff_base_ms, backoff_max_ms,
                                 lease_ms, retention_ms, paused, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM tenants WHERE name = $1)
             RETURNING {QUEUE_COLUMNS}"
        );
    let row = conn
        .query_opt(
            &sql,
            &[
                &p.tenant,
                &p.name,
                &int(s.max_attempts),
                &millis(s.backoff_base),
                &millis(s.backoff_max),
                &millis(s.lease_duration),
                &millis(s.retention),
                &s.paused,
                &p.now,
            ],
        )
        .await
        .map_err(|e| match db("could not create the queue", e) {
            e if e.kind() == ErrorKind::Conflict => Error::conflict(format!(
                "queue {:?} already exists in tenant {:?}: change it with an update instead",
                p.name, p.tenant
            )),
            e => e,
        })?;
    match row {
        Some(row) => rows::queue(&row),
        None => Err(Error::not_found(format!(
            "tenant {:?} not found: create it with `spillway tenants create NAME` or POST /v1/tenants",
            p.tenant
        ))),
    }
}

pub(crate) async fn queue_get(conn: &Object, tenant: &str, name: &str) -> Result<Queue> {
    let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant = $1 AND name = $2");
    match conn
        .query_opt(&sql, &[&tenant, &name])
        .await
        .map_err(ctx("could not read the queue"))?
    {
        Some(row) => rows::queue(&row),
        None => Err(queue_not_found(tenant, name)),
    }
}

pub(crate) async fn queue_update(
    conn: &Object,
    tenant: &str,
    name: &str,
    s: QueueSettings,
) -> Result<Queue> {
    let sql = format!(
        "UPDATE queues SET max_attempts = $3, backoff_base_ms = $4, backoff_max_ms = $5,
                lease_ms = $6, retention_ms = $7, paused = $8
             WHERE tenant = $1 AND name = $2 RETURNING {QUEUE_COLUMNS}"
    );
    let row = conn
        .query_opt(
            &sql,
            &[
                &tenant,
                &name,
                &int(s.max_attempts),
                &millis(s.backoff_base),
                &millis(s.backoff_max),
                &millis(s.lease_duration),
                &millis(s.retention),
                &s.paused,
            ],
        )
        .await
        .map_err(ctx("could not update the queue"))?;
    let row = row.ok_or_else(|| queue_not_found(tenant, name))?;
    rows::queue(&row)
}

pub(crate) async fn queue_list(conn: &Object, tenant: Option<&str>) -> Result<Vec<Queue>> {
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE ($1::text IS NULL OR tenant = $1)
             ORDER BY tenant, name"
    );
    conn.query(&sql, &[&tenant])
        .await
        .map_err(ctx("could not list queues"))?
        .iter()
        .map(rows::queue)
        .collect()
}

pub(crate) async fn queue_stats(
    conn: &Object,
    tenant: Option<&str>,
    now: Timestamp,
) -> Result<Vec<QueueStats>> {
    // Counters kept by triggers (migration 0005): the folded counts plus the changes not yet
    // folded, added up in one statement so both come from one snapshot.
    let counts = conn
        .query(
            "SELECT tenant, queue, state, sum(n)::bigint AS n FROM (
                 SELECT tenant, queue, state, n FROM queue_counts
                 WHERE ($1::text IS NULL OR tenant = $1)
                 UNION ALL
                 SELECT tenant, queue, state, n FROM queue_count_changes
                 WHERE ($1::text IS NULL OR tenant = $1)
             ) c
             GROUP BY tenant, queue, state",
            &[&tenant],
        )
        .await
        .map_err(ctx("could not count tasks per queue"))?;
    let queues = queue_list(conn, tenant).await?;
    let mut stats: Vec<QueueStats> = queues
        .into_iter()
        .map(|q| QueueStats {
            tenant: q.tenant,
            queue: q.name,
            counts: StateCounts::default(),
            oldest_available_age_seconds: None,
            paused: q.settings.paused,
        })
        .collect();
    for row in &counts {
        let tenant: String = get(row, "tenant")?;
        let queue: String = get(row, "queue")?;
        let Some(entry) = stats
            .iter_mut()
            .find(|s| s.tenant == tenant && s.queue == queue)
        else {
            continue;
        };
        let n: i64 = get(row, "n")?;
        entry
            .counts
            .add(task_state(row)?, u64::try_from(n).unwrap_or(0));
    }
    let oldest = conn
        .prepare_cached(OLDEST_WAITING_SQL)
        .await
        .map_err(ctx("could not find the oldest leasable task"))?;
    for entry in &mut stats {
        let c = &entry.counts;
        if c.scheduled + c.available + c.retrying == 0 {
            continue;
        }
        let row = conn
            .query_one(&oldest, &[&entry.tenant, &entry.queue])
            .await
            .map_err(ctx("could not find the oldest leasable task"))?;
        let at: Option<Timestamp> = row
            .try_get(0)
            .map_err(ctx("could not read the oldest leasable task"))?;
        entry.oldest_available_age_seconds = at
            .filter(|at| *at <= now)
            .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0);
    }
    Ok(stats)
}

/// The earliest `run_at` among a queue's waiting tasks ($1 tenant, $2 queue). The leasable
/// index is ordered by priority first, so a plain `min(run_at)` would read every waiting task;
/// this seeks the first entry of each priority present instead (a loose index scan: one seek
/// per distinct priority), exact because within a priority the index is in `run_at` order.
/// When the earliest is in the future nothing is due.
const OLDEST_WAITING_SQL: &str = "
WITH RECURSIVE levels(priority) AS (
    (SELECT priority FROM tasks
     WHERE tenant = $1 AND queue = $2 AND state IN ('scheduled', 'available', 'retrying')
     ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT t.priority FROM tasks t
            WHERE t.tenant = $1 AND t.queue = $2
              AND t.state IN ('scheduled', 'available', 'retrying') AND t.priority < l.priority
            ORDER BY t.priority DESC LIMIT 1)
    FROM levels l WHERE l.priority IS NOT NULL
)
SELECT min((SELECT min(t.run_at) FROM tasks t
            WHERE t.tenant = $1 AND t.queue = $2
              AND t.state IN ('scheduled', 'available', 'retrying') AND t.priority = l.priority))
FROM levels l WHERE l.priority IS NOT NULL";

pub(crate) async fn worker_register(conn: &Object, p: &WorkerRegister) -> Result<Worker> {
    let sql = format!(
        "INSERT INTO workers (id, tenant, pool, hostname, queues, concurrency, state, running,
                                  started_at, last_seen)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', 0, $7, $7) RETURNING {WORKER_COLUMNS}"
    );
    let row = conn
        .query_one(
            &sql,
            &[
                &p.id,
                &p.tenant,
                &p.pool,
                &p.hostname,
                &p.queues,
                &int(p.concurrency),
                &p.now,
            ],
        )
        .await
        .map_err(ctx("could not register the worker"))?;
    rows::worker(&row)
}

pub(crate) async fn worker_heartbeat(conn: &Object, p: &WorkerBeat) -> Result<Worker> {
    // A worker heard from again is no longer down; draining is sticky; exited stays exited.
    let sql = format!(
        "UPDATE workers SET running = $2, last_seen = $4,
                state = CASE WHEN state = 'exited' THEN 'exited'
                             WHEN $3 OR state = 'draining' THEN 'draining'
                             ELSE 'active' END
             WHERE id = $1 RETURNING {WORKER_COLUMNS}"
    );
    let row = conn
        .query_opt(&sql, &[&p.id, &int(p.running), &p.draining, &p.now])
        .await
        .map_err(ctx("could not record the worker heartbeat"))?;
    match row {
        Some(row) => rows::worker(&row),
        None => Err(worker_not_found(&p.id)),
    }
}

pub(crate) async fn worker_exit(conn: &Object, id: &str, now: Timestamp) -> Result<()> {
    let n = conn
        .execute(
            "UPDATE workers SET state = 'exited', running = 0, last_seen = $2 WHERE id = $1",
            &[&id, &now],
        )
        .await
        .map_err(ctx("could not mark the worker exited"))?;
    if n == 0 {
        return Err(worker_not_found(id));
    }
    Ok(())
}

pub(crate) async fn worker_list(
    conn: &Object,
    tenant: Option<&str>,
    now: Timestamp,
) -> Result<Vec<Worker>> {
    let cutoff = now - EXITED_WORKER_LISTED_FOR;
    let sql = format!(
        "SELECT {WORKER_COLUMNS} FROM workers
             WHERE ($1::text IS NULL OR tenant = $1) AND (state <> 'exited' OR last_seen >= $2)
             ORDER BY started_at DESC, id DESC"
    );
    conn.query(&sql, &[&tenant, &cutoff])
        .await
        .map_err(ctx("could not list workers"))?
        .iter()
        .map(rows::worker)
        .collect()
}

pub(crate) async fn worker_mark_down(conn: &Object, silent_since: Timestamp) -> Result<u64> {
    conn.execute(
        "UPDATE workers SET state = 'down'
             WHERE state IN ('active', 'draining') AND last_seen < $1",
        &[&silent_since],
    )
    .await
    .map_err(ctx("could not mark silent workers down"))
}

fn queue_not_found(tenant: &str, name: &str) -> Error {
    Error::not_found(format!(
        "queue {name:?} not found in tenant {tenant:?}: create it with `spillway queues create {name}` or POST /v1/queues"
    ))
}

fn worker_not_found(id: &str) -> Error {
    Error::not_found(format!(
        "worker {id:?} not found: register the worker again"
    ))
}

pub(crate) async fn pool_status_save(
    conn: &mut Object,
    statuses: &[PoolStatus],
    now: Timestamp,
) -> Result<()> {
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not begin saving pool statuses"))?;
    tx.execute("DELETE FROM pool_status", &[])
        .await
        .map_err(ctx("could not forget pool statuses"))?;
    for status in statuses {
        let json = serde_json::to_value(status).map_err(|e| {
            Error::internal(format!(
                "could not encode the status of pool {:?}",
                status.name
            ))
            .with_source(e)
        })?;
        tx.execute(
            "INSERT INTO pool_status (pool, status, saved_at) VALUES ($1, $2, $3)",
            &[&status.name, &json, &now],
        )
        .await
        .map_err(ctx("could not save a pool status"))?;
    }
    tx.commit()
        .await
        .map_err(ctx("could not save pool statuses"))
}

pub(crate) async fn pool_status_list(conn: &Object) -> Result<Vec<PoolStatus>> {
    let rows = conn
        .query("SELECT pool, status FROM pool_status ORDER BY pool", &[])
        .await
        .map_err(ctx("could not list pool statuses"))?;
    rows.iter()
        .map(|row| {
            let pool: String = row.get(0);
            let json: serde_json::Value = row.get(1);
            serde_json::from_value(json).map_err(|e| {
                Error::internal(format!("the kept status of pool {pool:?} is not readable"))
                    .with_source(e)
            })
        })
        .collect()
}

pub(crate) async fn pool_bounds_save(conn: &Object, p: &PoolBoundsSave) -> Result<()> {
    conn.execute(
        "INSERT INTO pool_bounds (pool, min_workers, max_workers, set_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (pool) DO UPDATE SET min_workers = excluded.min_workers,
             max_workers = excluded.max_workers, set_at = excluded.set_at",
        &[
            &p.bounds.pool,
            &i64::from(p.bounds.min),
            &i64::from(p.bounds.max),
            &p.now,
        ],
    )
    .await
    .map_err(ctx("could not keep a pool's bounds"))?;
    Ok(())
}

pub(crate) async fn pool_bounds_clear(conn: &Object, pool: &str) -> Result<()> {
    conn.execute("DELETE FROM pool_bounds WHERE pool = $1", &[&pool])
        .await
        .map_err(ctx("could not forget a pool's bounds"))?;
    Ok(())
}

pub(crate) async fn pool_bounds_list(conn: &Object) -> Result<Vec<PoolBounds>> {
    let rows = conn
        .query(
            "SELECT pool, min_workers, max_workers FROM pool_bounds ORDER BY pool",
            &[],
        )
        .await
        .map_err(ctx("could not list pool bounds"))?;
    rows.iter()
        .map(|row| {
            let pool: String = row.get(0);
            let bound = |i: usize| {
                u32::try_from(row.get::<_, i64>(i)).map_err(|_| {
                    Error::internal(format!("the kept bounds of pool {pool:?} are out of range"))
                })
            };
            Ok(PoolBounds {
                min: bound(1)?,
                max: bound(2)?,
                pool,
            })
        })
        .collect()
}
