//! Tenants, tokens, queues, queue stats and workers.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::api::PoolStatus;
use spillway_core::model::{Queue, QueueSettings, QueueStats, Tenant, TokenInfo, Worker};
use spillway_core::state::{StateCounts, TaskState};
use spillway_core::{Error, Result, Timestamp};

use crate::sqlite::rows::{
    QUEUE_COLS, TENANT_COLS, TOKEN_COLS, WAITING, WORKER_COLS, db, is_unique_violation, micros,
    millis, queue_row, tenant_row, time, to_json, token_row, worker_row,
};
use crate::{PoolBounds, PoolBoundsSave, TokenCreate, WorkerBeat, WorkerRegister};

/// How long exited workers stay in listings.
const EXITED_WORKERS_KEPT: chrono::Duration = chrono::Duration::days(1);

fn tenant_exists(conn: &Connection, tenant: &str) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM tenants WHERE name = ?1")
        .and_then(|mut s| s.exists([tenant]))
        .map_err(db("look up a tenant"))
}

pub(crate) fn tenant_create(conn: &Connection, name: &str, now: Timestamp) -> Result<Tenant> {
    conn.execute(
        "INSERT INTO tenants (name, created_at) VALUES (?1, ?2)",
        params![name, micros(now)],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!("tenant {name:?} already exists"))
        } else {
            db("create a tenant")(e)
        }
    })?;
    Ok(Tenant {
        name: name.to_string(),
        created_at: now,
    })
}

pub(crate) fn tenant_list(conn: &Connection) -> Result<Vec<Tenant>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {TENANT_COLS} FROM tenants ORDER BY name"))
        .map_err(db("list tenants"))?;
    let rows = stmt.query_map([], tenant_row).map_err(db("list tenants"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(db("list tenants"))
}

pub(crate) fn token_create(conn: &Connection, p: &TokenCreate) -> Result<TokenInfo> {
    if let Some(tenant) = &p.tenant
        && !tenant_exists(conn, tenant)?
    {
        return Err(Error::not_found(format!(
            "tenant {tenant:?} not found: create it before its tokens"
        )));
    }
    let queues = p.queues.as_ref().map(to_json).transpose()?;
    conn.execute(
        "INSERT INTO tokens (id, name, tenant, role, secret_hash, created_at, expires_at, queues)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            p.id,
            p.name,
            p.tenant,
            p.role.as_str(),
            p.secret_hash,
            micros(p.now),
            p.expires_at.map(micros),
            queues,
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!("token {:?} already exists", p.id))
        } else {
            db("create a token")(e)
        }
    })?;
    Ok(TokenInfo {
        id: p.id.clone(),
        name: p.name.clone(),
        tenant: p.tenant.clone(),
        role: p.role,
        created_at: p.now,
        expires_at: p.expires_at,
        queues: p.queues.clone(),
    })
}

pub(crate) fn token_lookup(conn: &Connection, secret_hash: &str) -> Result<Option<TokenInfo>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLS} FROM tokens WHERE secret_hash = ?1 AND revoked_at IS NULL"
    ))
    .and_then(|mut s| s.query_row([secret_hash], token_row).optional())
    .map_err(db("look up a token"))
}

pub(crate) fn token_list(conn: &Connection, tenant: Option<&str>) -> Result<Vec<TokenInfo>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM tokens
             WHERE revoked_at IS NULL AND (?1 IS NULL OR tenant = ?1)
             ORDER BY created_at, id"
        ))
        .map_err(db("list tokens"))?;
    let rows = stmt
        .query_map([tenant], token_row)
        .map_err(db("list tokens"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(db("list tokens"))
}

pub(crate) fn token_revoke(
    conn: &Connection,
    tenant: Option<&str>,
    id: &str,
    now: Timestamp,
) -> Result<()> {
    let changed = conn
        .execute(
            "UPDATE tokens SET revoked_at = ?3
             WHERE id = ?1 AND revoked_at IS NULL AND (?2 IS NULL OR tenant = ?2)",
            params![id, tenant, micros(now)],
        )
        .map_err(db("revoke a token"))?;
    if changed == 0 {
        return Err(Error::not_found(format!("token {id:?} not found")));
    }
    Ok(())
}

pub(crate) fn queue_create(
    conn: &Connection,
    tenant: &str,
    name: &str,
    s: &QueueSettings,
    now: Timestamp,
) -> Result<Queue> {
    if !tenant_exists(conn, tenant)? {
        return Err(Error::not_found(format!(
            "tenant {tenant:?} not found: create it before its queues"
        )));
    }
    conn.execute(
        "INSERT INTO queues (tenant, name, max_attempts, backoff_base_ms, backoff_max_ms,
                             lease_ms, retention_ms, paused, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            tenant,
            name,
            s.max_attempts,
            millis(s.backoff_base),
            millis(s.backoff_max),
            millis(s.lease_duration),
            millis(s.retention),
            s.paused,
            micros(now)
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!(
                "queue {name:?} already exists in tenant {tenant:?}"
            ))
        } else {
            db("create a queue")(e)
        }
    })?;
    queue_get(conn, tenant, name)
}

pub(crate) fn queue_get(conn: &Connection, tenant: &str, name: &str) -> Result<Queue> {
    conn.prepare_cached(&format!(
        "SELECT {QUEUE_COLS} FROM queues WHERE tenant = ?1 AND name = ?2"
    ))
    .and_then(|mut s| s.query_row([tenant, name], queue_row).optional())
    .map_err(db("read a queue"))?
    .ok_or_else(|| {
        Error::not_found(format!(
            "queue {name:?} not found in tenant {tenant:?}: create it with `spillway queues create {name}` or POST /v1/queues"
        ))
    })
}

pub(crate) fn queue_update(
    conn: &Connection,
    tenant: &str,
    name: &str,
    s: &QueueSettings,
) -> Result<Queue> {
    let changed = conn
        .execute(
            "UPDATE queues SET max_attempts = ?3, backoff_base_ms = ?4, backoff_max_ms = ?5,
                               lease_ms = ?6, retention_ms = ?7, paused = ?8
             WHERE tenant = ?1 AND name = ?2",
            params![
                tenant,
                name,
                s.max_attempts,
                millis(s.backoff_base),
                millis(s.backoff_max),
                millis(s.lease_duration),
                millis(s.retention),
                s.paused
            ],
        )
        .map_err(db("update a queue"))?;
    if changed == 0 {
        return Err(Error::not_found(format!(
            "queue {name:?} not found in tenant {tenant:?}: create it with `spillway queues create {name}` or POST /v1/queues"
        )));
    }
    queue_get(conn, tenant, name)
}

pub(crate) fn queue_list(conn: &Connection, tenant: Option<&str>) -> Result<Vec<Queue>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {QUEUE_COLS} FROM queues WHERE (?1 IS NULL OR tenant = ?1) ORDER BY tenant, name"
        ))
        .map_err(db("list queues"))?;
    let rows = stmt
        .query_map([tenant], queue_row)
        .map_err(db("list queues"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(db("list queues"))
}

pub(crate) fn queue_stats(
    conn: &Connection,
    tenant: Option<&str>,
    now: Timestamp,
) -> Result<Vec<QueueStats>> {
    let mut stats: BTreeMap<(String, String), QueueStats> = queue_list(conn, tenant)?
        .into_iter()
        .map(|q| {
            let key = (q.tenant.clone(), q.name.clone());
            let value = QueueStats {
                tenant: q.tenant,
                queue: q.name,
                counts: StateCounts::default(),
                oldest_available_age_seconds: None,
                paused: q.settings.paused,
            };
            (key, value)
        })
        .collect();
    // Kept by triggers (migration 0004), so this reads a few rows however many tasks there are.
    let mut counts = conn
        .prepare_cached(
            "SELECT tenant, queue, state, sum(n) FROM queue_counts
             WHERE (?1 IS NULL OR tenant = ?1) GROUP BY tenant, queue, state",
        )
        .map_err(db("count tasks per queue"))?;
    let rows = counts
        .query_map([tenant], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(db("count tasks per queue"))?;
    for row in rows {
        let (t, q, state, n) = row.map_err(db("count tasks per queue"))?;
        if let Some(s) = stats.get_mut(&(t, q)) {
            s.counts
                .add(TaskState::parse(&state)?, u64::try_from(n).unwrap_or(0));
        }
    }
    let mut oldest = conn
        .prepare_cached(&oldest_waiting_sql())
        .map_err(db("find the oldest leasable task"))?;
    for s in stats.values_mut() {
        if s.counts.scheduled + s.counts.available + s.counts.retrying == 0 {
            continue;
        }
        let at: Option<i64> = oldest
            .query_row(params![s.tenant, s.queue], |r| r.get(0))
            .map_err(db("find the oldest leasable task"))?;
        s.oldest_available_age_seconds = at
            .filter(|at| *at <= micros(now))
            .map(|at| (now - time(at)).num_microseconds().unwrap_or(0) as f64 / 1e6);
    }
    Ok(stats.into_values().collect())
}

/// The earliest `run_at` among a queue's waiting tasks (?1 tenant, ?2 queue). The leasable
/// index is ordered by priority first, so a plain `min(run_at)` would read every waiting task;
/// this seeks the first entry of each priority present instead (a loose index scan: one seek
/// per distinct priority), which is exact because within a priority the index is in
/// `run_at` order. When the earliest is in the future nothing is due.
fn oldest_waiting_sql() -> String {
    format!(
        "WITH RECURSIVE levels(priority) AS (
             SELECT max(priority) FROM tasks WHERE tenant = ?1 AND queue = ?2 AND {WAITING}
             UNION ALL
             SELECT (SELECT max(priority) FROM tasks
                     WHERE tenant = ?1 AND queue = ?2 AND {WAITING} AND priority < levels.priority)
             FROM levels WHERE levels.priority IS NOT NULL
         )
         SELECT min((SELECT min(run_at) FROM tasks
                     WHERE tenant = ?1 AND queue = ?2 AND {WAITING} AND priority = levels.priority))
         FROM levels WHERE levels.priority IS NOT NULL"
    )
}

pub(crate) fn worker_register(conn: &Connection, p: &WorkerRegister) -> Result<Worker> {
    conn.execute(
        "INSERT INTO workers (id, tenant, pool, hostname, queues, concurrency, state, running,
                              started_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', 0, ?7, ?7)",
        params![
            p.id,
            p.tenant,
            p.pool,
            p.hostname,
            to_json(&p.queues)?,
            p.concurrency,
            micros(p.now)
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!("worker {:?} is already registered", p.id))
        } else {
            db("register a worker")(e)
        }
    })?;
    worker_get(conn, &p.id)
}

fn worker_get(conn: &Connection, id: &str) -> Result<Worker> {
    conn.prepare_cached(&format!("SELECT {WORKER_COLS} FROM workers WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], worker_row).optional())
        .map_err(db("read a worker"))?
        .ok_or_else(|| Error::not_found(format!("worker {id:?} not found: register it first")))
}

pub(crate) fn worker_heartbeat(conn: &Connection, p: &WorkerBeat) -> Result<Worker> {
    // A heartbeat brings a down worker back; draining is sticky (the autoscaler may have
    // asked for it); an exited one stays exited.
    let changed = conn
        .prepare_cached(
            "UPDATE workers SET running = ?2, last_seen = ?3,
                 state = CASE WHEN state = 'exited' THEN 'exited'
                              WHEN ?4 OR state = 'draining' THEN 'draining' ELSE 'active' END
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![p.id, p.running, micros(p.now), p.draining]))
        .map_err(db("record a worker heartbeat"))?;
    if changed == 0 {
        return Err(Error::not_found(format!(
            "worker {:?} not found: register it first",
            p.id
        )));
    }
    worker_get(conn, &p.id)
}

pub(crate) fn worker_exit(conn: &Connection, id: &str, now: Timestamp) -> Result<()> {
    let changed = conn
        .execute(
            "UPDATE workers SET state = 'exited', running = 0, last_seen = ?2 WHERE id = ?1",
            params![id, micros(now)],
        )
        .map_err(db("mark a worker exited"))?;
    if changed == 0 {
        return Err(Error::not_found(format!("worker {id:?} not found")));
    }
    Ok(())
}

pub(crate) fn worker_list(
    conn: &Connection,
    tenant: Option<&str>,
    now: Timestamp,
) -> Result<Vec<Worker>> {
    let cutoff = micros(now - EXITED_WORKERS_KEPT);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {WORKER_COLS} FROM workers
             WHERE (?1 IS NULL OR tenant = ?1) AND NOT (state = 'exited' AND last_seen < ?2)
             ORDER BY started_at DESC, id DESC"
        ))
        .map_err(db("list workers"))?;
    let rows = stmt
        .query_map(params![tenant, cutoff], worker_row)
        .map_err(db("list workers"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(db("list workers"))
}

pub(crate) fn worker_mark_down(conn: &Connection, silent_since: Timestamp) -> Result<u64> {
    let n = conn
        .execute(
            "UPDATE workers SET state = 'down'
             WHERE state IN ('active', 'draining') AND last_seen < ?1",
            [micros(silent_since)],
        )
        .map_err(db("mark silent workers down"))?;
    Ok(n as u64)
}

/// Each status as (pool, JSON), encoded before the writer thread sees it.
pub(crate) fn pool_status_rows(statuses: &[PoolStatus]) -> Result<Vec<(String, String)>> {
    statuses
        .iter()
        .map(|status| {
            serde_json::to_string(status)
                .map(|json| (status.name.clone(), json))
                .map_err(|e| {
                    Error::internal(format!(
                        "could not encode the status of pool {:?}",
                        status.name
                    ))
                    .with_source(e)
                })
        })
        .collect()
}

pub(crate) fn pool_status_save(
    conn: &Connection,
    rows: &[(String, String)],
    now: Timestamp,
) -> Result<()> {
    // The writer runs each call atomically (its own transaction or savepoint).
    conn.execute("DELETE FROM pool_status", [])
        .map_err(db("forget pool statuses"))?;
    for (pool, status) in rows {
        conn.execute(
            "INSERT INTO pool_status (pool, status, saved_at) VALUES (?1, ?2, ?3)",
            params![pool, status, micros(now)],
        )
        .map_err(db("save a pool status"))?;
    }
    Ok(())
}

pub(crate) fn pool_status_list(conn: &Connection) -> Result<Vec<PoolStatus>> {
    let mut stmt = conn
        .prepare_cached("SELECT pool, status FROM pool_status ORDER BY pool")
        .map_err(db("list pool statuses"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(db("list pool statuses"))?;
    let mut out = Vec::new();
    for row in rows {
        let (pool, json) = row.map_err(db("read a pool status"))?;
        out.push(serde_json::from_str(&json).map_err(|e| {
            Error::internal(format!("the kept status of pool {pool:?} is not readable"))
                .with_source(e)
        })?);
    }
    Ok(out)
}

pub(crate) fn pool_bounds_save(conn: &Connection, p: &PoolBoundsSave) -> Result<()> {
    conn.execute(
        "INSERT INTO pool_bounds (pool, min_workers, max_workers, set_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (pool) DO UPDATE SET min_workers = excluded.min_workers,
             max_workers = excluded.max_workers, set_at = excluded.set_at",
        params![p.bounds.pool, p.bounds.min, p.bounds.max, micros(p.now)],
    )
    .map_err(db("keep a pool's bounds"))?;
    Ok(())
}

pub(crate) fn pool_bounds_clear(conn: &Connection, pool: &str) -> Result<()> {
    conn.execute("DELETE FROM pool_bounds WHERE pool = ?1", params![pool])
        .map_err(db("forget a pool's bounds"))?;
    Ok(())
}

pub(crate) fn pool_bounds_list(conn: &Connection) -> Result<Vec<PoolBounds>> {
    let mut stmt = conn
        .prepare_cached("SELECT pool, min_workers, max_workers FROM pool_bounds ORDER BY pool")
        .map_err(db("list pool bounds"))?;
    stmt.query_map([], |row| {
        Ok(PoolBounds {
            pool: row.get(0)?,
            min: row.get(1)?,
            max: row.get(2)?,
        })
    })
    .map_err(db("list pool bounds"))?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(db("read pool bounds"))
}
