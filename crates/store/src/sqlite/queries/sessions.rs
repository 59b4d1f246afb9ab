//! Dashboard sessions.

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::{Error, Result, Timestamp};

use crate::sqlite::rows::{db, is_unique_violation, micros, time, token_row_at};
use crate::{SessionCreate, SessionSweep, SessionTouch, StoredSession};

/// "The token `t` works at `?now`" in SQL.
const TOKEN_LIVE: &str = "t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)";

pub(crate) fn session_create(conn: &Connection, p: &SessionCreate) -> Result<()> {
    conn.execute(
        "INSERT INTO dashboard_sessions
             (id_hash, token_id, csrf, created_at, last_used_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        params![
            p.id_hash,
            p.token_id,
            p.csrf,
            micros(p.now),
            micros(p.expires_at)
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("a dashboard session with this id already exists: sign in again")
        } else {
            db("create a dashboard session")(e)
        }
    })?;
    Ok(())
}

pub(crate) fn session_get(
    conn: &Connection,
    id_hash: &str,
    now: Timestamp,
) -> Result<Option<StoredSession>> {
    let sql = format!(
        "SELECT s.id_hash, s.csrf, s.created_at, s.last_used_at, s.expires_at,
                t.id, t.name, t.tenant, t.role, t.created_at, t.expires_at, t.queues
         FROM dashboard_sessions s JOIN tokens t ON t.id = s.token_id
         WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND {TOKEN_LIVE}"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row(params![id_hash, micros(now)], |row| {
                Ok(StoredSession {
                    id_hash: row.get(0)?,
                    csrf: row.get(1)?,
                    created_at: time(row.get(2)?),
                    last_used_at: time(row.get(3)?),
                    expires_at: time(row.get(4)?),
                    token: token_row_at(row, 5)?,
                })
            })
            .optional()
        })
        .map_err(db("read a dashboard session"))
}

pub(crate) fn session_touch(conn: &Connection, p: &SessionTouch) -> Result<bool> {
    let changed = conn
        .execute(
            "UPDATE dashboard_sessions SET last_used_at = ?2, expires_at = ?3
             WHERE id_hash = ?1 AND expires_at > ?2",
            params![p.id_hash, micros(p.now), micros(p.expires_at)],
        )
        .map_err(db("mark a dashboard session used"))?;
    Ok(changed > 0)
}

pub(crate) fn session_delete(conn: &Connection, id_hash: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM dashboard_sessions WHERE id_hash = ?1",
        [id_hash],
    )
    .map_err(db("end a dashboard session"))?;
    Ok(())
}

pub(crate) fn session_sweep(conn: &Connection, p: &SessionSweep) -> Result<u64> {
    // Sessions are few (one per person signed in), so the token condition's scan is cheap;
    // the limit bounds the delete all the same.
    let sql = format!(
        "DELETE FROM dashboard_sessions WHERE id_hash IN (
             SELECT s.id_hash FROM dashboard_sessions s LEFT JOIN tokens t ON t.id = s.token_id
             WHERE s.expires_at <= ?2 OR t.id IS NULL OR NOT ({TOKEN_LIVE})
             LIMIT ?1)"
    );
    let deleted = conn
        .execute(&sql, params![p.limit, micros(p.now)])
        .map_err(db("sweep ended dashboard sessions"))?;
    Ok(deleted as u64)
}
