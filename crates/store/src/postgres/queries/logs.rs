//! The live log's chunks (see [`crate::logs`]).

use deadpool_postgres::Object;
use spillway_core::{Error, Result};

use crate::logs::{not_current, over_limit, seq_column};
use crate::postgres::error::ctx;
use crate::{LogAppend, LogAppended, LogChunk, LogChunks, LogChunksDelete, SealableLog};

/// The lease check, the size check and the insert in one transaction. The task row is
/// share-locked, so a report ending the attempt waits for this chunk's commit (and a chunk
/// arriving after the report sees the attempt ended): no chunk lands after its attempt ended,
/// which the sealer relies on.
pub(crate) async fn log_append(conn: &mut Object, p: &LogAppend) -> Result<LogAppended> {
    let seq = seq_column(p.seq)?;
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not start storing a log chunk"))?;
    let row = tx
        .query_opt(
            "SELECT state, lease_token, attempt FROM tasks
             WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) FOR SHARE",
            &[&p.task_id, &p.tenant],
        )
        .await
        .map_err(ctx("could not check the lease of a log chunk"))?
        .ok_or_else(|| {
            Error::not_found(format!(
                "task {} not found: list a job's tasks to see their ids",
                p.task_id
            ))
        })?;
    let state: String = row.get(0);
    let token: Option<String> = row.get(1);
    let attempt: i32 = row.get(2);
    if state != "leased" || token.as_deref() != Some(p.lease_token.as_str()) {
        return Err(not_current(p.task_id));
    }
    let attempt_number = u32::try_from(attempt).unwrap_or(0);
    let kept: i64 = tx
        .query_one(
            "SELECT COALESCE(SUM(octet_length(data)), 0)::bigint FROM log_chunks
             WHERE task_id = $1 AND attempt = $2",
            &[&p.task_id, &attempt],
        )
        .await
        .map_err(ctx("could not measure a live log"))?
        .get(0);
    let kept = u64::try_from(kept).unwrap_or(0);
    if kept.saturating_add(p.data.len() as u64) > p.max_bytes {
        return Err(over_limit(p.task_id, attempt_number, p.max_bytes));
    }
    let stored = tx
        .execute(
            "INSERT INTO log_chunks (task_id, attempt, seq, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (task_id, attempt, seq) DO NOTHING",
            &[&p.task_id, &attempt, &seq, &p.data],
        )
        .await
        .map_err(ctx("could not store a log chunk"))?;
    tx.commit()
        .await
        .map_err(ctx("could not commit a log chunk"))?;
    Ok(LogAppended {
        attempt: attempt_number,
        stored: stored > 0,
    })
}

pub(crate) async fn log_chunks(conn: &Object, p: &LogChunks) -> Result<Vec<LogChunk>> {
    let after = match p.after_seq {
        Some(seq) => seq_column(seq)?,
        None => -1,
    };
    let attempt = i32::try_from(p.attempt).unwrap_or(i32::MAX);
    let limit = i64::from(p.limit);
    let rows = conn
        .query(
            "SELECT seq, data FROM log_chunks WHERE task_id = $1 AND attempt = $2 AND seq > $3
             ORDER BY seq LIMIT $4",
            &[&p.task_id, &attempt, &after, &limit],
        )
        .await
        .map_err(ctx("could not read a live log"))?;
    Ok(rows
        .iter()
        .map(|r| LogChunk {
            seq: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
            data: r.get(1),
        })
        .collect())
}

pub(crate) async fn log_sealable(conn: &Object, limit: u32) -> Result<Vec<SealableLog>> {
    let limit = i64::from(limit);
    let rows = conn
        .query(
            "SELECT t.tenant, t.job_id, t.idx, c.task_id, c.attempt
             FROM (SELECT DISTINCT task_id, attempt FROM log_chunks) c
             JOIN attempts a ON a.task_id = c.task_id AND a.attempt = c.attempt
             JOIN tasks t ON t.id = c.task_id
             WHERE a.ended_at IS NOT NULL
             LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(ctx("could not find ended attempts with live logs"))?;
    Ok(rows
        .iter()
        .map(|r| SealableLog {
            tenant: r.get(0),
            job_id: r.get(1),
            index: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
            task_id: r.get(3),
            attempt: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
        })
        .collect())
}

pub(crate) async fn log_chunks_delete(conn: &Object, p: LogChunksDelete) -> Result<u64> {
    let attempt = i32::try_from(p.attempt).unwrap_or(i32::MAX);
    conn.execute(
        "DELETE FROM log_chunks WHERE task_id = $1 AND attempt = $2",
        &[&p.task_id, &attempt],
    )
    .await
    .map_err(ctx("could not delete a sealed live log"))
}
