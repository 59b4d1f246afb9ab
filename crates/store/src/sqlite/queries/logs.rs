//! The live log's chunks (see [`crate::logs`]).

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::{Error, Result};

use crate::logs::{not_current, over_limit, seq_column};
use crate::sqlite::rows::db;
use crate::{LogAppend, LogAppended, LogChunk, LogChunks, LogChunksDelete, SealableLog};

/// Runs on the writer: the lease check, the size check and the insert in one transaction.
pub(crate) fn log_append(conn: &Connection, p: &LogAppend) -> Result<LogAppended> {
    let seq = seq_column(p.seq)?;
    let row: Option<(String, Option<String>, u32)> = conn
        .prepare_cached(
            "SELECT state, lease_token, attempt FROM tasks
             WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)",
        )
        .and_then(|mut s| {
            s.query_row(params![p.task_id, p.tenant], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(db("check the lease of a log chunk"))?;
    let Some((state, token, attempt)) = row else {
        return Err(Error::not_found(format!(
            "task {} not found: list a job's tasks to see their ids",
            p.task_id
        )));
    };
    if state != "leased" || token.as_deref() != Some(p.lease_token.as_str()) {
        return Err(not_current(p.task_id));
    }
    let kept: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM log_chunks WHERE task_id = ?1 AND attempt = ?2",
        )
        .and_then(|mut s| s.query_row(params![p.task_id, attempt], |r| r.get(0)))
        .map_err(db("measure a live log"))?;
    let kept = u64::try_from(kept).unwrap_or(0);
    if kept.saturating_add(p.data.len() as u64) > p.max_bytes {
        return Err(over_limit(p.task_id, attempt, p.max_bytes));
    }
    let stored = conn
        .prepare_cached(
            "INSERT INTO log_chunks (task_id, attempt, seq, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (task_id, attempt, seq) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![p.task_id, attempt, seq, p.data]))
        .map_err(db("store a log chunk"))?;
    Ok(LogAppended {
        attempt,
        stored: stored > 0,
    })
}

pub(crate) fn log_chunks(conn: &Connection, p: &LogChunks) -> Result<Vec<LogChunk>> {
    let after = match p.after_seq {
        Some(seq) => seq_column(seq)?,
        None => -1,
    };
    conn.prepare_cached(
        "SELECT seq, data FROM log_chunks WHERE task_id = ?1 AND attempt = ?2 AND seq > ?3
         ORDER BY seq LIMIT ?4",
    )
    .and_then(|mut s| {
        s.query_map(params![p.task_id, p.attempt, after, p.limit], |r| {
            let seq: i64 = r.get(0)?;
            Ok(LogChunk {
                seq: u64::try_from(seq).unwrap_or(0),
                data: r.get(1)?,
            })
        })?
        .collect()
    })
    .map_err(db("read a live log"))
}

pub(crate) fn log_sealable(conn: &Connection, limit: u32) -> Result<Vec<SealableLog>> {
    conn.prepare_cached(
        "SELECT t.tenant, t.job_id, t.idx, c.task_id, c.attempt
         FROM (SELECT DISTINCT task_id, attempt FROM log_chunks) c
         JOIN attempts a ON a.task_id = c.task_id AND a.attempt = c.attempt
         JOIN tasks t ON t.id = c.task_id
         WHERE a.ended_at IS NOT NULL
         LIMIT ?1",
    )
    .and_then(|mut s| {
        s.query_map([limit], |r| {
            Ok(SealableLog {
                tenant: r.get(0)?,
                job_id: r.get(1)?,
                index: r.get(2)?,
                task_id: r.get(3)?,
                attempt: r.get(4)?,
            })
        })?
        .collect()
    })
    .map_err(db("find ended attempts with live logs"))
}

pub(crate) fn log_chunks_delete(conn: &Connection, p: LogChunksDelete) -> Result<u64> {
    conn.prepare_cached("DELETE FROM log_chunks WHERE task_id = ?1 AND attempt = ?2")
        .and_then(|mut s| s.execute(params![p.task_id, p.attempt]))
        .map(|n| n as u64)
        .map_err(db("delete a sealed live log"))
}
